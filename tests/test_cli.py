"""The ``pixelfold`` command line and the ``pixelfold.tools`` functions behind it, on the tiny
32x32 preset and on a save_pretrained folder of it."""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
import sys
import time
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


# --- issue 10: nothing lost, nothing executed ---------------------------------------------------


def _last_error(err: str, command: str) -> str:
    lines = err.strip().splitlines()
    assert "Traceback" not in err, err
    assert lines and lines[-1].startswith(f"pixelfold {command}: error: "), err
    return lines[-1]


def _edit_weights(folder: Path, edit) -> None:
    from safetensors.torch import load_file, save_file

    state = load_file(str(folder / "model.safetensors"))
    edit(state)
    save_file(state, str(folder / "model.safetensors"))


def _copy_model(saved: str, dest: Path) -> Path:
    shutil.copytree(saved, dest)
    return dest


@pytest.fixture
def nan_model(tmp_path, saved) -> Path:
    folder = _copy_model(saved, tmp_path / "nan-model")
    _edit_weights(folder, lambda s: s["synthesis.stages.1.blocks.0.conv1.conv.weight"]
                  .view(-1)[3].fill_(float("nan")))
    return folder


@pytest.fixture
def overflow_model(tmp_path, saved) -> Path:
    """Finite weights whose RGB sum overflows float32: every pixel is infinite (clamped, it
    would have been a white image)."""
    folder = _copy_model(saved, tmp_path / "overflow-model")

    def edit(state):
        for block in (0, 1):
            state[f"synthesis.stages.1.blocks.{block}.to_rgb.bias"].fill_(3e38)

    _edit_weights(folder, edit)
    return folder




def test_non_finite_weights_are_refused_and_nothing_is_written(capsys, tmp_path, nan_model):
    out = tmp_path / "out"
    code, stdout, err = run(capsys, "generate", str(nan_model), "--seeds", "0-3", "--out",
                            str(out))
    assert code == 2 and stdout == ""
    line = _last_error(err, "generate")
    assert (f"the weights in {nan_model / 'model.safetensors'} hold non-finite values (NaN or "
            f"infinity): synthesis.stages.1.blocks.0.conv1.conv.weight (1 of ") in line
    assert not out.exists()


@pytest.mark.parametrize("command", ["generate", "grid", "mix", "stages", "interpolate"])
def test_non_finite_output_is_never_written(capsys, tmp_path, overflow_model, command):
    target = tmp_path / ("out" if command == "generate" else "old.png")
    if command != "generate":
        target.write_bytes(b"the old figure")
    argv = {
        "generate": ["generate", "--seeds", "0-3", "--out", str(target)],
        "grid": ["generate", "--seeds", "0-3", "--grid", "--out", str(target)],
        "mix": ["mix", "--rows", "0", "--cols", "1", "--out", str(target)],
        "stages": ["stages", "--seeds", "0,1", "--out", str(target)],
        "interpolate": ["interpolate", "--seeds", "0,1", "--steps", "3", "--out", str(target)],
    }[command]
    argv.insert(1, str(overflow_model))
    code, stdout, err = run(capsys, *argv)
    assert code == 2 and stdout == ""
    line = _last_error(err, argv[0])
    assert "the generator produced NaN or infinite pixels" in line
    assert "nothing was written from them: its weights are finite, so the values overflow" in line
    if command == "generate":
        assert "of seed(s) 0, 1, 2, 3" in line and not target.exists()
    else:
        assert target.read_bytes() == b"the old figure"
    assert no_temp_files(tmp_path)


def test_tools_refuse_non_finite_images():
    from pixelfold.tools import image_grid, save_image
    from pixelfold.utils import NonFiniteError

    G = Generator.from_preset(PRESET).eval()
    with torch.no_grad():
        G.synthesis.stages[0].blocks[0].conv0.activate.bias[0] = float("inf")
    with pytest.raises(NonFiniteError, match=r"seed\(s\) 5, 6; .* its weights hold NaN or "
                                             r"infinity: synthesis\.stages\.0\.blocks\.0\.conv0"
                                             r"\.activate\.bias"):
        generate_images(G, [5, 6])
    images = torch.zeros(2, 3, 8, 8)
    images[1, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="1 NaN or infinite values of 384"):
        image_grid(images)
    with pytest.raises(NonFiniteError):
        save_image(images[1], "never.png")
    assert not Path("never.png").exists()


def test_truncation_must_be_finite():
    from pixelfold.utils import ConfigError

    G = Generator.from_preset(PRESET).eval()
    with pytest.raises(ConfigError, match="truncation_psi must be a finite number, got nan"):
        generate_images(G, [0], truncation_psi=float("nan"))


@pytest.mark.parametrize("argv", [
    ["generate", PRESET, "--seeds", "0", "--out", ""],
    ["generate", PRESET, "--seeds", "0", "--grid", "--out", " "],
    ["stages", PRESET, "--seeds", "0", "--out", ""],
    ["mix", PRESET, "--rows", "0", "--cols", "1", "--out", ""],
    ["interpolate", PRESET, "--seeds", "0,1", "--gif", ""],
], ids=["generate", "grid", "stages", "mix", "gif"])
def test_empty_output_path_is_refused(capsys, tmp_path, monkeypatch, argv):
    monkeypatch.chdir(tmp_path)
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert "is empty: give a path (use '.' for the current folder)" in _last_error(err, argv[0])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv, needle", [
    (["generate", PRESET, "--seeds", "0-4294967295", "--grid", "--out", "g.png"],
     "holding 4,294,967,296 images of 32x32 at once needs about 80.0 TiB"),
    (["mix", PRESET, "--rows", "0-99999", "--cols", "0-99999", "--out", "m.png"],
     "holding 20,000,200,000 images (a mix of 100,000 rows x 100,000 columns x 2 crossovers)"),
    (["stages", PRESET, "--seeds", "0-4294967295", "--out", "s.png"],
     "holding 2 stage outputs of 4,294,967,296 seeds of 32x32 at once needs about"),
    (["interpolate", PRESET, "--seeds", "0,1", "--steps", "100000000", "--gif", "a.gif"],
     "holding 100,000,000 frames of 32x32 at once needs about 2.3 TiB"),
    (["interpolate", PRESET, "--seeds", "0-4294967295", "--out", "s.png"],
     "holding 30,064,771,066 frames"),
    (["profile", PRESET, "--batch-size", "1000000"],
     "a batch of 1,000,000 images of 32x32 (batch size 1,000,000) needs about"),
    (["generate", PRESET, "--seeds", "0-9", "--grid", "--out", "g.png", "--batch-size",
      "100000000"], None),
])
def test_absurd_sizes_are_refused_with_the_estimate(capsys, tmp_path, monkeypatch, argv,
                                                     needle):
    monkeypatch.chdir(tmp_path)
    start = time.perf_counter()
    code, _, err = run(capsys, *argv)
    assert time.perf_counter() - start < 10
    if needle is None:  # the batch is only as large as the seeds: legitimate
        assert code == 0 and (tmp_path / "g.png").exists()
        return
    assert code == 2
    line = _last_error(err, argv[0])
    assert needle in line and " available" in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_batch_too_large_for_the_memory_limit(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("PIXELFOLD_MEMORY_LIMIT", str(8 * 2**20))
    code, _, err = run(capsys, "generate", PRESET, "--seeds", "0-99", "--out",
                       str(tmp_path / "o"), "--batch-size", "100")
    assert code == 2
    assert re.search(r"a batch of 100 images of 32x32 \(batch size 100\) needs about "
                     r"[\d.]+ MiB but cpu has 8\.0 MiB available; use a smaller batch size "
                     r"\(--batch-size\)$", _last_error(err, "generate"))
    assert not (tmp_path / "o").exists()
    code, _, _ = run(capsys, "generate", PRESET, "--seeds", "0-99", "--out",
                     str(tmp_path / "o"), "--batch-size", "10")
    assert code == 0 and len(list((tmp_path / "o").iterdir())) == 100


def test_billions_of_seeds_stream_without_materializing():
    from pixelfold.tools import SeedList, iter_images

    seeds = parse_seeds("0-4294967295")
    assert isinstance(seeds, SeedList) and len(seeds) == 2**32
    G = Generator.from_preset(PRESET).eval()
    start = time.perf_counter()
    batch_seeds, images = next(iter_images(G, seeds, batch_size=2))
    assert time.perf_counter() - start < 5
    assert batch_seeds == [0, 1] and images.shape == (2, 3, RES, RES)


def test_seed_list_is_a_lazy_sequence():
    from pixelfold.tools import SeedList
    from pixelfold.utils import ConfigError

    seeds = parse_seeds("5-9,2,0-4294967295")
    assert len(seeds) == 6 + 2**32
    assert seeds[0] == 5 and seeds[5] == 2 and seeds[6] == 0 and seeds[-1] == 4294967295
    assert seeds[3:8] == [8, 9, 2, 0, 1] and isinstance(seeds[3:8], SeedList)
    assert seeds[:10:3] == [5, 8, 0, 3]
    assert list(seeds[-2:]) == [4294967294, 4294967295]
    assert seeds == parse_seeds("5-9,2,0-4294967295") and seeds != [5]
    assert parse_seeds("0-4294967295") == parse_seeds("0-9,10-4294967295")  # at once
    assert parse_seeds("0-9") != parse_seeds("0-8,10")
    assert "4,294,967,302 seeds" in repr(seeds) and repr(parse_seeds("1,2")) == "[1, 2]"
    with pytest.raises(IndexError):
        seeds[2**33]
    with pytest.raises(ConfigError):
        parse_seeds("1-")


@pytest.mark.parametrize("change, needle", [
    (lambda c: c["stages"][1].update(block_channels=[2**20, 2**20]),
     "the generator 'pixelfolder-tiny-32' ("),
    (lambda c: c.update(z_dim=2**20, w_dim=2**20), "needs about"),
    (lambda c: c.update(image_channels=2),
     "GeneratorSpec: image_channels must be 1 (grayscale), 3 (RGB) or 4 (RGBA), got 2"),
    (lambda c: c.update(mapping_lr_mul=float("nan")),
     "GeneratorSpec: mapping_lr_mul must be finite, got nan"),
], ids=["2^20 channels", "z_dim 2^20", "image_channels 2", "mapping_lr_mul NaN"])
def test_bad_model_configs_are_refused(capsys, tmp_path, saved, change, needle):
    folder = _copy_model(saved, tmp_path / "model")
    config = json.loads((folder / "config.json").read_text())
    change(config)
    (folder / "config.json").write_text(json.dumps(config))
    code, _, err = run(capsys, "generate", str(folder), "--seeds", "0", "--out",
                       str(tmp_path / "o"))
    assert code == 2
    line = _last_error(err, "generate")
    assert f"{folder / 'config.json'}: " in line and needle in line, line
    assert not (tmp_path / "o").exists()


def test_output_in_a_read_only_folder(capsys, readonly_dir):
    code, _, err = run(capsys, "generate", PRESET, "--seeds", "0", "--out",
                       str(readonly_dir / "o"))
    assert code == 2
    assert f"cannot write in {readonly_dir}" in _last_error(err, "generate")
    assert list(readonly_dir.iterdir()) == []


def test_a_bug_shows_its_traceback_and_exits_1(capsys, tmp_path, monkeypatch):
    import pixelfold.tools

    def bug(*args, **kwargs):
        raise RuntimeError("an internal bug")

    monkeypatch.setattr(pixelfold.tools, "stage_images", bug)
    code, _, err = run(capsys, "stages", PRESET, "--seeds", "0", "--out",
                       str(tmp_path / "s.png"))
    assert code == 1
    assert "Traceback (most recent call last)" in err and "RuntimeError: an internal bug" in err
    assert err.strip().splitlines()[-1].startswith("pixelfold stages: internal error")


def test_interrupt_exits_130(capsys, tmp_path, monkeypatch):
    import pixelfold.tools

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pixelfold.tools, "stage_images", interrupted)
    code, _, err = run(capsys, "stages", PRESET, "--seeds", "0", "--out",
                       str(tmp_path / "s.png"))
    assert code == 130 and err.strip() == "pixelfold stages: interrupted"


@pytest.mark.parametrize("where", ["before", "after", "env"])
def test_debug_shows_the_traceback_of_user_errors(capsys, monkeypatch, where):
    from pixelfold.cli import CLIError

    argv = ["generate", PRESET, "--seeds", "3-1", "--out", "o"]
    if where == "before":
        argv.insert(0, "--debug")
    elif where == "after":
        argv.append("--debug")
    else:
        monkeypatch.setenv("PIXELFOLD_DEBUG", "1")
    with pytest.raises(CLIError, match="ends before it starts"):
        main(argv)


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640)])
def test_written_images_get_the_umask_modes(capsys, tmp_path, umask, mode):
    import os
    import stat

    old = os.umask(umask)
    try:
        assert main(["generate", PRESET, "--seeds", "0,1", "--out", str(tmp_path / "f")]) == 0
        assert main(["interpolate", PRESET, "--seeds", "0,1", "--steps", "2", "--out",
                     str(tmp_path / "s.png"), "--gif", str(tmp_path / "a.gif")]) == 0
    finally:
        os.umask(old)
    files = [*(tmp_path / "f").iterdir(), tmp_path / "s.png", tmp_path / "a.gif"]
    assert len(files) == 4
    for f in files:
        assert stat.S_IMODE(f.stat().st_mode) == mode, f
    assert no_temp_files(tmp_path)


def test_a_failed_write_leaves_the_old_file(tmp_path, monkeypatch):
    import errno

    from PIL import Image as PILImage

    from pixelfold.tools import save_image
    from pixelfold.utils import DiskFullError

    target = tmp_path / "img.png"
    target.write_bytes(b"old image")
    image = torch.zeros(3, 8, 8)

    def half_written(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG half")
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(PILImage.Image, "save", half_written)
    with pytest.raises(OSError, match="Input/output error"):
        save_image(image, target)
    assert target.read_bytes() == b"old image" and no_temp_files(tmp_path)

    def disk_full(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"\x89PNG")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(PILImage.Image, "save", disk_full)
    with pytest.raises(DiskFullError, match=f"no space left on the device while writing {target}"):
        save_image(image, target)
    assert target.read_bytes() == b"old image" and no_temp_files(tmp_path)


def test_plot_metrics(capsys, tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    rows = [{"step": s, "kimg": s * 0.032, "metrics": {"fid": f, "kid": f / 100},
             "training": {"augment/p": p, "augment/rt": 0.5 + p / 4}}
            for s, f, p in [(100, 80.0, 0.0), (200, 40.0, 0.1), (300, 50.0, 0.2), (200, 30.0,
                                                                                 0.1)]]
    (folder / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, out, _ = run(capsys, "plot-metrics", str(folder))
    assert code == 0 and out.strip() == f"wrote {folder / 'metrics.png'}"
    with Image.open(folder / "metrics.png") as image:
        assert image.size[0] > 300 and image.size[1] > 3 * 200  # FID, KID and ADA panels
    from pixelfold.tools.plots import _series

    assert _series(rows)["fid"] == [(3.2, 80.0), (6.4, 30.0), (9.6, 50.0)]  # last of a step
    code, _, err = run(capsys, "plot-metrics", str(tmp_path / "nothing"))
    assert code == 2 and "has no metrics.jsonl: the run computed no metrics" in err
    code, _, err = run(capsys, "plot-metrics", str(folder), "--metrics", "ppl")
    assert code == 2 and "has no ppl (it has fid, kid, augment/p, augment/rt)" in err
