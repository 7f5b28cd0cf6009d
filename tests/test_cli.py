"""The ``pixelfold`` command line and the ``pixelfold.tools`` functions behind it, on the tiny
32x32 preset and on a save_pretrained folder of it."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelfold.cli import COMMANDS, main
from pixelfold.metrics import count_macs, count_params
from pixelfold.models import Generator, load_generator
from pixelfold.tools import (
    generate_images,
    interpolation_frames,
    parse_seeds,
    profile_generator,
    resolve_crossovers,
    seed_latents,
    slerp,
)

PRESET = "pixelfolder-tiny-32"
RES = 32
GAP = 2  # white gap of the figures at 32x32: max(2, 32 // 16)


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("model") / "tiny"
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(1)
        Generator.from_preset(PRESET).save_pretrained(folder)
    return str(folder)


@pytest.fixture(params=["preset", "folder"])
def model(request, saved) -> str:
    return PRESET if request.param == "preset" else saved


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def size(path: Path) -> tuple[int, int]:
    with Image.open(path) as im:
        return im.size


def pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.int16)


def no_temp_files(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if ".tmp" in p.name]


# --- help and entry point ---------------------------------------------------------------------


@pytest.mark.parametrize("argv", [[], *([name] for name in COMMANDS)], ids=lambda a: " ".join(a)
                         or "pixelfold")
def test_help(capsys, argv):
    code, out, _ = run(capsys, *argv, "--help")
    assert code == 0
    assert out.startswith(f"usage: pixelfold {' '.join(argv)}".rstrip())


def test_help_lists_every_command(capsys):
    _, out, _ = run(capsys, "--help")
    for name in ("generate", "mix", "interpolate", "stages", "profile", "convert"):
        assert name in COMMANDS and f"    {name} " in out


def test_console_script():
    exe = shutil.which("pixelfold", path=str(Path(sys.executable).parent)) or \
        shutil.which("pixelfold")
    assert exe, "the pixelfold console script is not installed"
    proc = subprocess.run([exe, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "generate" in proc.stdout and "profile" in proc.stdout


# --- subcommands --------------------------------------------------------------------------------


def test_generate_folder(capsys, tmp_path, model):
    out = tmp_path / "a" / "samples"  # parents are created
    code, stdout, _ = run(capsys, "generate", model, "--seeds", "0-3,10", "--out", str(out),
                          "--batch-size", "2", "--device", "cpu")
    assert code == 0 and "wrote 5 images" in stdout
    names = sorted(p.name for p in out.iterdir())
    assert names == ["seed0000.png", "seed0001.png", "seed0002.png", "seed0003.png",
                     "seed0010.png"]
    assert all(size(out / n) == (RES, RES) for n in names)
    # the seed alone fixes the image: the same model and seed give the same file
    G = load_generator(model)
    expected = ((generate_images(G, [10])[0] + 1) * 127.5).round().permute(1, 2, 0).numpy()
    assert np.abs(pixels(out / "seed0010.png") - expected).max() <= 1


def test_generate_grid(capsys, tmp_path, model):
    out = tmp_path / "grid.png"
    code, *_ = run(capsys, "generate", model, "--seeds", "0-4", "--grid", "--out", str(out),
                   "--truncation", "0.5", "--noise-mode", "random")
    assert code == 0
    assert size(out) == (3 * RES, 2 * RES)  # 5 images in ceil(sqrt(5)) = 3 columns
    assert no_temp_files(tmp_path)


def test_generate_grid_matches_folder(capsys, tmp_path):
    run(capsys, "generate", PRESET, "--seeds", "0-3", "--grid", "--out", str(tmp_path / "g.png"))
    run(capsys, "generate", PRESET, "--seeds", "0-3", "--out", str(tmp_path / "f"))
    grid = pixels(tmp_path / "g.png")
    assert np.abs(grid[RES:, :RES] - pixels(tmp_path / "f" / "seed0002.png")).max() <= 1


def test_mix(capsys, tmp_path, model):
    out = tmp_path / "mix.png"
    code, *_ = run(capsys, "mix", model, "--rows", "1,2,3", "--cols", "10,11", "--out", str(out))
    assert code == 0
    w, h = size(out)
    assert w > 5 * RES and h > 4 * RES  # 2 stages x 2 columns + row sources, plus labels

    bare = tmp_path / "bare.png"
    code, *_ = run(capsys, "mix", model, "--rows", "1,2,3", "--cols", "10,11", "--out",
                   str(bare), "--no-labels")
    assert code == 0
    assert size(bare) == (5 * RES + 2 * GAP, 4 * RES + GAP)
    img = pixels(bare)
    assert (img[:RES, :RES] == 255).all()  # the empty corner
    G = load_generator(model)
    sources = ((generate_images(G, [2, 11]) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    row2 = img[2 * RES + GAP:3 * RES + GAP, :RES]  # second row source
    col11 = img[:RES, 2 * RES + GAP:3 * RES + GAP]  # second column source, first block
    assert np.abs(row2 - sources[0]).max() <= 1
    assert np.abs(col11 - sources[1]).max() <= 1


def test_mix_crossovers(capsys, tmp_path):
    out = tmp_path / "mix.png"
    code, *_ = run(capsys, "mix", PRESET, "--rows", "1", "--cols", "2,3,4", "--crossover",
                   "stage:1", "--crossover", "0", "--no-labels", "--out", str(out))
    assert code == 0
    assert size(out) == (7 * RES + 2 * GAP, 2 * RES + GAP)
    img = pixels(out)
    # crossover 0 takes every style from the column seed: the mix is the column image
    left = 4 * RES + 2 * GAP  # the second block: after the row sources, 3 columns, 2 gaps
    assert np.abs(img[RES + GAP:, left:left + RES] - img[:RES, left:left + RES]).max() <= 1


def test_interpolate(capsys, tmp_path, model):
    strip, gif = tmp_path / "strip.png", tmp_path / "anim" / "walk.gif"
    code, *_ = run(capsys, "interpolate", model, "--seeds", "0,7", "--steps", "6", "--out",
                   str(strip), "--gif", str(gif), "--fps", "10")
    assert code == 0
    assert size(strip) == (6 * RES, RES)
    with Image.open(gif) as im:
        assert im.n_frames == 6 and im.size == (RES, RES)
        assert im.info["duration"] == 100 and im.info["loop"] == 0
    # the walk starts and ends on the seeds' own images
    G = load_generator(model)
    ends = ((generate_images(G, [0, 7]) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    img = pixels(strip)
    assert np.abs(img[:, :RES] - ends[0]).max() <= 2
    assert np.abs(img[:, -RES:] - ends[1]).max() <= 2
    assert no_temp_files(tmp_path)


def test_interpolate_w_three_seeds(capsys, tmp_path):
    gif = tmp_path / "w.gif"
    code, *_ = run(capsys, "interpolate", PRESET, "--seeds", "0,7,3", "--steps", "4",
                   "--space", "w", "--gif", str(gif))
    assert code == 0
    with Image.open(gif) as im:
        assert im.n_frames == 2 * 3 + 1


def test_stages(capsys, tmp_path, model):
    out = tmp_path / "stages.png"
    code, *_ = run(capsys, "stages", model, "--seeds", "0-3", "--out", str(out))
    assert code == 0
    w, h = size(out)
    assert w > 2 * RES and h > 4 * RES
    bare = tmp_path / "bare.png"
    assert main(["stages", model, "--seeds", "0-3", "--out", str(bare), "--no-labels"]) == 0
    assert size(bare) == (2 * RES, 4 * RES)  # 2 stages x 4 seeds
    G = load_generator(model)
    final = ((generate_images(G, [1]) + 1) * 127.5).round().permute(0, 2, 3, 1).numpy()
    assert np.abs(pixels(bare)[RES:2 * RES, RES:] - final[0]).max() <= 1
    first = pixels(bare)[:RES, :RES]  # stage 0 is 8x8, upsampled 4x by nearest
    assert (first == np.repeat(np.repeat(first[::4, ::4], 4, 0), 4, 1)).all()


def test_profile_json(capsys, model):
    code, out, _ = run(capsys, "profile", model, "--json", "--warmup", "0", "--iters", "1",
                       "--batch-size", "2", "--device", "cpu")
    assert code == 0
    result = json.loads(out)
    G = load_generator(model)
    assert result["params"] == count_params(G)
    assert result["params_mapping"] + result["params_synthesis"] == result["params"]
    assert result["gmacs"] == pytest.approx(count_macs(G) / 1e9)
    assert result["images_per_s"] > 0 and result["batch_size"] == 2
    assert result["device"] == "cpu" and result["model"] == model
    assert result["peak_memory_mb"] is None or result["peak_memory_mb"] >= 0


def test_profile_table(capsys):
    threads = torch.get_num_threads()
    code, out, _ = run(capsys, "profile", PRESET, "--warmup", "0", "--iters", "1", "--dtype",
                       "bfloat16", "--threads", "1")
    assert code == 0
    assert "params (total)" in out and f"{count_params(Generator.from_preset(PRESET)):,d}" in out
    assert "cpu (bfloat16, 1 thread)" in out and "GMACs / image" in out
    assert torch.get_num_threads() == threads  # restored


# --- errors: one line on stderr, status 2 -------------------------------------------------------


@pytest.fixture
def no_weights(tmp_path, saved) -> str:
    folder = tmp_path / "no-weights"
    folder.mkdir()
    shutil.copy(Path(saved) / "config.json", folder)
    return str(folder)


ERRORS = {
    "seeds reversed": (["generate", PRESET, "--seeds", "3-1", "--out", "{tmp}/o"], "3-1"),
    "seeds letters": (["generate", PRESET, "--seeds", "a-b", "--out", "{tmp}/o"], "a-b"),
    "seeds empty": (["generate", PRESET, "--seeds", "", "--out", "{tmp}/o"], "empty"),
    "psi high": (["generate", PRESET, "--seeds", "0", "--out", "{tmp}/o", "--truncation", "2.5"],
                 "[-1, 2]"),
    "psi low": (["stages", PRESET, "--seeds", "0", "--out", "{tmp}/s.png", "--truncation", "-3"],
                "[-1, 2]"),
    "unknown preset": (["generate", "pixelfolder-tiny-33", "--seeds", "0", "--out", "{tmp}/o"],
                       "pixelfolder-tiny-33"),
    "missing folder": (["mix", "{tmp}/nothing", "--rows", "1", "--cols", "2", "--out",
                        "{tmp}/m.png"], "nothing"),
    "no weights": (["stages", "{no_weights}", "--seeds", "0", "--out", "{tmp}/s.png"],
                   "model.safetensors"),
    "model is a file": (["profile", "{tmp}/file.txt"], "file.txt"),
    "out is a file": (["generate", PRESET, "--seeds", "0", "--out", "{tmp}/file.txt"],
                      "not a folder"),
    "out under a file": (["stages", PRESET, "--seeds", "0", "--out", "{tmp}/file.txt/s.png"],
                         "not a folder"),
    "png without grid": (["generate", PRESET, "--seeds", "0", "--out", "{tmp}/o.png"], "--grid"),
    "grid without png": (["generate", PRESET, "--seeds", "0", "--out", "{tmp}/o", "--grid"],
                         ".png"),
    "gif suffix": (["interpolate", PRESET, "--seeds", "0,1", "--gif", "{tmp}/a.png"], ".gif"),
    "one seed": (["interpolate", PRESET, "--seeds", "4", "--out", "{tmp}/s.png"], "two seeds"),
    "nothing to write": (["interpolate", PRESET, "--seeds", "0,1"], "nothing to write"),
    "slerp in w": (["interpolate", PRESET, "--seeds", "0,1", "--space", "w", "--method", "slerp",
                    "--out", "{tmp}/s.png"], "slerp"),
    "bad crossover": (["mix", PRESET, "--rows", "1", "--cols", "2", "--crossover", "half",
                       "--out", "{tmp}/m.png"], "half"),
    "batch size": (["generate", PRESET, "--seeds", "0", "--out", "{tmp}/o", "--batch-size", "0"],
                   "--batch-size"),
    "bad device": (["profile", PRESET, "--device", "toaster"], "toaster"),
    "profile iters": (["profile", PRESET, "--iters", "0"], "--iters"),
    "profile threads": (["profile", PRESET, "--threads", "0"], "--threads"),
}


@pytest.mark.parametrize("name", list(ERRORS))
def test_errors(capsys, tmp_path, no_weights, name):
    argv, needle = ERRORS[name]
    (tmp_path / "file.txt").write_text("not a model")
    argv = [a.format(tmp=tmp_path, no_weights=no_weights) for a in argv]
    code, out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"pixelfold {argv[0]}: error: ")
    assert needle in lines[0]
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in tmp_path.iterdir()) in (["file.txt"],
                                                          ["file.txt", "no-weights"])


def test_crossover_out_of_range(capsys, tmp_path):
    code, _, err = run(capsys, "mix", PRESET, "--rows", "1", "--cols", "2", "--crossover",
                       "stage:7", "--out", str(tmp_path / "m.png"))
    assert code == 2
    assert err.strip().splitlines()[-1].startswith("pixelfold mix: error: --crossover")
    assert not (tmp_path / "m.png").exists()


def test_argparse_errors_exit_2(capsys):
    code, _, err = run(capsys, "generate", PRESET, "--seeds", "0", "--out", "o",
                       "--noise-mode", "loud")
    assert code == 2 and "invalid choice" in err


# --- Python API ---------------------------------------------------------------------------------


@pytest.mark.parametrize("text, seeds", [("0-3", [0, 1, 2, 3]), ("1,5,9", [1, 5, 9]),
                                         ("0-3,10", [0, 1, 2, 3, 10]), (" 7 ", [7]),
                                         ("2-2,2", [2, 2])])
def test_parse_seeds(text, seeds):
    assert parse_seeds(text) == seeds


@pytest.mark.parametrize("text", ["", " ", "3-1", "a-b", "1,,2", "-1", "1-", "4294967296"])
def test_parse_seeds_rejects(text):
    with pytest.raises(ValueError):
        parse_seeds(text)


def test_seed_latents_are_nvlabs_seeds():
    z = seed_latents([3, 5], 64)
    assert torch.equal(z[1:], torch.randn(1, 64, generator=torch.Generator().manual_seed(5)))


def test_slerp():
    a, b = torch.randn(2, 512, dtype=torch.float64).unbind()
    t = torch.linspace(0, 1, 9, dtype=torch.float64)[:, None]
    path = slerp(a[None], b[None], t)
    assert torch.allclose(path[0], a) and torch.allclose(path[-1], b)
    # equal angular steps along the arc
    unit = torch.nn.functional.normalize(path, dim=-1)
    steps = torch.arccos((unit[1:] * unit[:-1]).sum(-1).clamp(-1, 1))
    assert torch.allclose(steps, steps.mean().expand_as(steps), atol=1e-9)
    # the norm goes linearly from |a| to |b| (lerp would shrink it to ~ 1/sqrt(2) midway)
    norms = path.norm(dim=-1)
    assert torch.allclose(norms, torch.lerp(a.norm(), b.norm(), t[:, 0]))
    # parallel vectors fall back to lerp instead of dividing by sin(0)
    assert torch.allclose(slerp(a, 2 * a, 0.5), 1.5 * a)


def test_interpolation_frames_count():
    G = Generator.from_preset(PRESET).eval()
    assert interpolation_frames(G, [0, 1, 2, 3], 5).shape == (13, 3, RES, RES)
    with pytest.raises(ValueError, match="slerp"):
        interpolation_frames(G, [0, 1], 5, space="w", method="slerp")


def test_resolve_crossovers():
    G = Generator.from_preset(PRESET)
    resolved = resolve_crossovers(G, ["stage", 3, "stage:1"])
    ranges = G.synthesis.style_ranges()
    assert [r for _, r in resolved] == [*ranges, range(3, G.num_ws), ranges[1]]
    with pytest.raises(ValueError, match="stages 0-1"):
        resolve_crossovers(G, ["stage:2"])


def test_profile_generator_leaves_model_alone():
    G = Generator.from_preset(PRESET)
    before = {k: v.clone() for k, v in G.state_dict().items()}
    result = profile_generator(G, dtype="bfloat16", warmup=0, iters=1)
    assert result["dtype"] == "bfloat16" and result["params"] == count_params(G)
    assert next(G.parameters()).dtype == torch.float32
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())
    assert math.isfinite(result["images_per_s"])
