"""Cases of the ``pixelfold`` command line: generate, mix, interpolate, stages, profile, convert,
project, edit and the ``.npz`` files of projected ws."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import Case

TINY = "pixelfolder-tiny-32"


# ---------------------------------------------------------------------------------------------
# setups


def _save_tiny(folder: Path) -> Path:
    import torch

    from pixelfold.models import Generator

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Generator.from_preset(TINY).save_pretrained(folder / "model")


def _model_with_weights(edit: Callable[[dict], None]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        model = _save_tiny(folder)
        state = load_file(str(model / "model.safetensors"))
        edit(state)
        save_file(state, str(model / "model.safetensors"))

    return setup


def _model_with_config(edit: Callable[[dict], Any]) -> Callable[[Path], None]:
    def setup(folder: Path) -> None:
        model = _save_tiny(folder)
        config = json.loads((model / "config.json").read_text())
        edit(config)
        (model / "config.json").write_text(json.dumps(config))

    return setup


def _nan(state: dict) -> None:
    state["mapping.layers.0.weight"].view(-1)[0] = float("nan")


def _overflow(state: dict) -> None:  # finite weights, infinite RGB
    for block in (0, 1):
        state[f"synthesis.stages.1.blocks.{block}.to_rgb.bias"].fill_(3e38)


def _with_old_grid(setup: Callable[[Path], None]) -> Callable[[Path], None]:
    def both(folder: Path) -> None:
        setup(folder)
        (folder / "grid.png").write_bytes(b"the old grid")

    return both


def _huge_resolution(config: dict) -> None:
    config["stages"] = [dict(resolution=32768, block_channels=[64, 64], fourier_channels=64,
                             coord_embedding_channels=64, input_channels=[64, 4],
                             merge="none")]


def _fake_checkpoint(folder: Path) -> None:
    (folder / "in.pt").write_bytes(b"never read: the output is checked first")


def _nan_checkpoint(folder: Path) -> None:
    import torch

    weight = torch.randn(512, 512)
    weight[3, 4] = float("nan")
    torch.save({"g_ema": {"style.1.weight": weight}, "d": {}}, folder / "in.pt")


def _file_named_out(folder: Path) -> None:
    _fake_checkpoint(folder)
    (folder / "out").write_text("an unrelated file")


def _target(folder: Path, name: str = "t.png", size: tuple[int, int] = (32, 32)) -> None:
    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    Image.fromarray(pixels).save(folder / name)


def _wide_target(folder: Path) -> None:
    _target(folder, "wide.png", (48, 24))


def _garbage_target(folder: Path) -> None:
    (folder / "t.png").write_bytes(b"these bytes are no PNG")


def _other_model_ws(folder: Path) -> None:
    import numpy as np

    np.savez(folder / "w.npz", w=np.zeros((1, 14, 512), dtype=np.float32))


def _garbage_ws(folder: Path) -> None:
    (folder / "w.npz").write_text("not an archive")


# ---------------------------------------------------------------------------------------------
# checks


def _only(*names: str) -> Callable[[Path], None]:
    """The folder holds exactly ``names`` afterwards (what the setup made): nothing written."""

    def check(folder: Path) -> None:
        found = sorted(p.name for p in folder.iterdir())
        assert found == sorted(names), found

    return check


def _old_grid_kept(folder: Path) -> None:
    assert (folder / "grid.png").read_bytes() == b"the old grid"
    _only("model", "grid.png")(folder)


def _file_kept(folder: Path) -> None:
    assert (folder / "out").read_text() == "an unrelated file"


def _projected_wide(folder: Path) -> None:
    import numpy as np

    data = np.load(folder / "o" / "projected_w.npz", allow_pickle=False)
    assert data["w"].shape == (1, 9, 64) and list(data["names"]) == ["wide"]
    assert (folder / "o" / "wide.compare.png").is_file()


_PROJECT = ["pixelfold", "project", TINY, "--target", "t.png", "--out", "o"]
_NO_LPIPS = {"HF_HUB_OFFLINE": "1", "TORCH_HOME": "no-torch-home", "PIXELFOLD_LPIPS_WEIGHTS": "",
             "PIXELFOLD_VGG16_WEIGHTS": ""}


NOTHING = "nothing written"
MODEL_ONLY = "nothing written (the model folder is left as it was)"

CASES = [
    Case(name="unknown-command", area="pixelfold CLI", what="`pixelfold frobnicate`",
         argv=["pixelfold", "frobnicate"], status=2, message=r"invalid choice: 'frobnicate'",
         leaves="nothing written"),
    Case(name="unknown-model", area="pixelfold CLI",
         what="a MODEL that is neither a folder nor a preset name",
         argv=["pixelfold", "generate", "pixelfolder-tiny-33", "--seeds", "0", "--out", "o"],
         status=2, message=r"^pixelfold generate: error: pixelfolder-tiny-33 is neither a "
                           r"folder .* nor a preset \(presets: cips-256, ",
         leaves=NOTHING, check=_only()),
    Case(name="empty-out", area="pixelfold CLI", what="`generate --out ''`",
         argv=["pixelfold", "generate", TINY, "--seeds", "0", "--out", ""], status=2,
         message=r"^pixelfold generate: error: --out is empty: give a path \(use '\.' for "
                 r"the current folder\)$",
         leaves="nothing written (the current folder is not used)", check=_only()),
    Case(name="nan-weights", area="non-finite values",
         what="a `model.safetensors` with a NaN weight",
         argv=["pixelfold", "generate", "model", "--seeds", "0-3", "--out", "out"], status=2,
         message=r"error: the weights in model/model\.safetensors hold non-finite values "
                 r"\(NaN or infinity\): mapping\.layers\.0\.weight \(1 of 4096\)$",
         leaves=MODEL_ONLY, setup=_model_with_weights(_nan), check=_only("model")),
    Case(name="overflowing-output", area="non-finite values",
         what="finite weights whose images overflow to infinity (they would be white PNGs)",
         argv=["pixelfold", "generate", "model", "--seeds", "0-3", "--out", "out"], status=2,
         message=r"error: the generator produced NaN or infinite pixels in images of seed\(s\) "
                 r"0, 1, 2, 3; nothing was written from them: its weights are finite, so the "
                 r"values overflow",
         leaves=MODEL_ONLY, setup=_model_with_weights(_overflow), check=_only("model")),
    Case(name="overflowing-grid", area="non-finite values",
         what="the same model, `--grid` over an existing `grid.png`",
         argv=["pixelfold", "generate", "model", "--seeds", "0-3", "--grid", "--out",
               "grid.png"], status=2, message=r"error: the generator produced NaN or infinite",
         leaves="the old `grid.png` untouched",
         setup=_with_old_grid(_model_with_weights(_overflow)), check=_old_grid_kept),
    Case(name="nan-mapping-lr-mul", area="non-finite values",
         what='`"mapping_lr_mul": NaN` in the config', argv=["pixelfold", "stages", "model",
                                                            "--seeds", "0", "--out", "s.png"],
         status=2, message=r"error: model/config\.json: GeneratorSpec: mapping_lr_mul must be "
                           r"finite, got nan$",
         leaves=MODEL_ONLY,
         setup=_model_with_config(lambda c: c.update(mapping_lr_mul=float("nan"))),
         check=_only("model")),
    Case(name="grid-of-all-seeds", area="sizes", what="`generate --seeds 0-4294967295 --grid`",
         argv=["pixelfold", "generate", TINY, "--seeds", "0-4294967295", "--grid", "--out",
               "g.png"], status=2,
         message=r"error: holding 4,294,967,296 images of 32x32 at once needs about 80\.0 TiB "
                 r"but cpu has .* available; use fewer seeds, or iter_images \(pixelfold "
                 r"generate without --grid\), which holds one batch at a time$",
         leaves=NOTHING, check=_only()),
    Case(name="mix-of-all-seeds", area="sizes", what="`mix --rows 0-99999 --cols 0-99999`",
         argv=["pixelfold", "mix", TINY, "--rows", "0-99999", "--cols", "0-99999", "--out",
               "m.png"], status=2,
         message=r"error: holding 20,000,200,000 images \(a mix of 100,000 rows x 100,000 "
                 r"columns x 2 crossovers\) of 32x32 at once needs about",
         leaves=NOTHING, check=_only()),
    Case(name="stages-of-all-seeds", area="sizes", what="`stages --seeds 0-4294967295`",
         argv=["pixelfold", "stages", TINY, "--seeds", "0-4294967295", "--out", "s.png"],
         status=2, message=r"error: holding 2 stage outputs of 4,294,967,296 seeds of 32x32 "
                           r"at once needs about",
         leaves=NOTHING, check=_only()),
    Case(name="interpolation-steps", area="sizes", what="`interpolate --steps 100000000`",
         argv=["pixelfold", "interpolate", TINY, "--seeds", "0,1", "--steps", "100000000",
               "--gif", "a.gif"], status=2,
         message=r"error: holding 100,000,000 frames of 32x32 at once needs about 2\.3 TiB but "
                 r"cpu has .* available; use fewer --steps or seeds$",
         leaves=NOTHING, check=_only()),
    Case(name="profile-batch-size", area="sizes", what="`profile --batch-size 1000000`",
         argv=["pixelfold", "profile", TINY, "--batch-size", "1000000"], status=2,
         message=r"error: a batch of 1,000,000 images of 32x32 \(batch size 1,000,000\) needs "
                 r"about [\d.]+ GiB but cpu has .* available; use a smaller batch size "
                 r"\(--batch-size\)$",
         leaves=NOTHING, check=_only()),
    Case(name="batch-over-memory-limit", area="sizes",
         what="`generate --batch-size 100` with `PIXELFOLD_MEMORY_LIMIT` = 8 MiB",
         argv=["pixelfold", "generate", TINY, "--seeds", "0-99", "--batch-size", "100",
               "--out", "o"], status=2,
         message=r"error: a batch of 100 images of 32x32 \(batch size 100\) needs about "
                 r"[\d.]+ MiB but cpu has 8\.0 MiB available",
         leaves=NOTHING, env={"PIXELFOLD_MEMORY_LIMIT": str(8 << 20)}, check=_only()),
    Case(name="config-2-20-channels", area="sizes",
         what="a config with 2^20 block channels",
         argv=["pixelfold", "generate", "model", "--seeds", "0", "--out", "o"], status=2,
         message=r"error: model/config\.json: the generator 'pixelfolder-tiny-32' \([\d,]+ "
                 r"weight and buffer values\) needs about [\d.]+ TiB but cpu has",
         leaves=MODEL_ONLY,
         setup=_model_with_config(lambda c: c["stages"][1].update(
             block_channels=[2**20, 2**20])), check=_only("model")),
    Case(name="config-z-dim-2-20", area="sizes", what="a config with `z_dim` and `w_dim` 2^20",
         argv=["pixelfold", "generate", "model", "--seeds", "0", "--out", "o"], status=2,
         message=r"error: model/config\.json: the generator .* needs about [\d.]+ TiB",
         leaves=MODEL_ONLY, setup=_model_with_config(lambda c: c.update(z_dim=2**20,
                                                                        w_dim=2**20)),
         check=_only("model")),
    Case(name="config-resolution-32768", area="sizes", what="a config with resolution 32768",
         argv=["pixelfold", "generate", "model", "--seeds", "0", "--out", "o"], status=2,
         message=r"error: model/config\.json: the generator .* needs about [\d.]+ GiB",
         leaves=MODEL_ONLY, setup=_model_with_config(_huge_resolution),
         check=_only("model")),
    Case(name="config-image-channels", area="models", what='`"image_channels": 2` in a config',
         argv=["pixelfold", "generate", "model", "--seeds", "0", "--out", "o"], status=2,
         message=r"error: model/config\.json: GeneratorSpec: image_channels must be 1 "
                 r"\(grayscale\), 3 \(RGB\) or 4 \(RGBA\), got 2$",
         leaves=MODEL_ONLY, setup=_model_with_config(lambda c: c.update(image_channels=2)),
         check=_only("model")),
    Case(name="convert-onto-a-file", area="convert", what="`convert IN.pt OUT` where OUT is a "
                                                          "file",
         argv=["pixelfold", "convert", "in.pt", "out"], status=2,
         message=r"^pixelfold convert: error: OUTPUT_DIR out exists and is not a folder$",
         leaves="the file untouched, before reading the checkpoint", setup=_file_named_out,
         check=_file_kept),
    Case(name="convert-under-a-file", area="convert", what="`convert IN.pt FILE/OUT`",
         argv=["pixelfold", "convert", "in.pt", "in.pt/out"], status=2,
         message=r"error: OUTPUT_DIR in\.pt/out: in\.pt is not a folder$",
         leaves="nothing written, before reading the checkpoint", setup=_fake_checkpoint,
         check=_only("in.pt")),
    Case(name="convert-w-avg-samples", area="convert", what="`convert --w-avg-samples -5`",
         argv=["pixelfold", "convert", "in.pt", "out", "--w-avg-samples", "-5"], status=2,
         message=r"error: --w-avg-samples must be >= 1, got -5$",
         leaves="nothing written, before reading the checkpoint", setup=_fake_checkpoint,
         check=_only("in.pt")),
    Case(name="convert-nan-weight", area="convert",
         what="an authors' checkpoint whose `g_ema` holds a NaN weight",
         argv=["pixelfold", "convert", "in.pt", "out"], status=2,
         message=r"error: the generator weights \(g_ema\) in in\.pt hold non-finite values "
                 r"\(NaN or infinity\): style\.1\.weight \(1 of 262144\)$",
         leaves=NOTHING, setup=_nan_checkpoint, check=_only("in.pt")),
    Case(name="demo-missing-model", area="demo", what="`demo MODEL` of a folder that does "
                                                      "not exist",
         argv=["pixelfold", "demo", "no-such-model", "--port", "0"], status=2,
         message=r"^pixelfold demo: error: no-such-model is neither a folder with config\.json "
                 r"\+ model\.safetensors nor a preset",
         leaves="nothing served or written", check=_only()),
    Case(name="demo-bad-port", area="demo", what="`demo MODEL --port 70000`",
         argv=["pixelfold", "demo", TINY, "--port", "70000"], status=2,
         message=r"^pixelfold demo: error: --port 70000: expected 0 \(a free port\) to 65535$",
         leaves="nothing served or written", check=_only()),
    Case(name="project-missing-target", area="project", what="`project --target` of no file",
         argv=_PROJECT, status=2,
         message=r"^pixelfold project: error: --target t\.png: no such file or folder$",
         leaves=NOTHING, check=_only()),
    Case(name="project-unreadable-target", area="project",
         what="a `--target` that is not an image",
         argv=[*_PROJECT, "--distance", "mse"], status=2,
         message=r"error: --target t\.png is not an image Pillow can read \(cannot identify "
                 r"image file",
         leaves="nothing written, before the optimization", setup=_garbage_target,
         check=_only("t.png")),
    Case(name="project-other-size", area="project",
         what="a 48x24 `--target` for a 32x32 model", argv=[
             "pixelfold", "project", TINY, "--target", "wide.png", "--out", "o", "--distance",
             "mse", "--num-steps", "1", "--w-avg-samples", "100"], status=0,
         message=r"^pixelfold project: note: wide\.png is 48x24: center-cropped to the model's "
                 r"aspect ratio and resized to 32x32 \(Lanczos\), as NVlabs' projector does$",
         leaves="the projection of the center, cropped and resized (as the note says)",
         setup=_wide_target, check=_projected_wide),
    Case(name="project-num-steps-0", area="project", what="`project --num-steps 0`",
         argv=[*_PROJECT, "--num-steps", "0"], status=2,
         message=r"error: --num-steps must be >= 1, got 0$", leaves=NOTHING, setup=_target,
         check=_only("t.png")),
    Case(name="project-no-lpips-offline", area="project",
         what="`project` offline (`HF_HUB_OFFLINE=1`) without LPIPS weights files",
         argv=_PROJECT, status=2,
         message=r"error: LPIPS-VGG16 linear-layer weights .* are needed, but downloads are off "
                 r"\(HF_HUB_OFFLINE=1\) .* pass a local copy with lpips_weights=PATH \(CLI: "
                 r"--lpips-weights PATH\) or set the environment variable "
                 r"PIXELFOLD_LPIPS_WEIGHTS=PATH\.$",
         leaves="nothing written, before the model is loaded", setup=_target,
         env=_NO_LPIPS, check=_only("t.png")),
    Case(name="edit-bad-strength", area="edit", what="`edit --strength 3:-3`",
         argv=["pixelfold", "edit", TINY, "--seeds", "0", "--strength", "3:-3", "--out",
               "e.png"], status=2,
         message=r"error: --strength: bad strengths '3:-3': expected A:B:N \(N values from A "
                 r"to B, e\.g\. -3:3:7\) or a comma-separated list of numbers$",
         leaves=NOTHING, check=_only()),
    Case(name="edit-direction-out-of-range", area="edit",
         what="`edit --direction 64` for a model with `w_dim` 64",
         argv=["pixelfold", "edit", TINY, "--seeds", "0", "--direction", "64", "--out",
               "e.png"], status=2,
         message=r"error: --direction 64 is out of range: --layers all has 64 directions "
                 r"\(0-63\)$",
         leaves=NOTHING, check=_only()),
    Case(name="ws-of-another-model", area="projected ws",
         what="`generate --seeds w.npz` with the ws of another model (14 x 512)",
         argv=["pixelfold", "generate", TINY, "--seeds", "w.npz", "--out", "o"], status=2,
         message=r"error: --seeds w\.npz: latents of shape \(1, 14, 512\) do not fit the model "
                 r"'pixelfolder-tiny-32', which takes \(9, 64\) per image \(num_ws, w_dim\); "
                 r"were they made with another model\?$",
         leaves=NOTHING, setup=_other_model_ws, check=_only("w.npz")),
    Case(name="ws-file-not-npz", area="projected ws",
         what="`edit --seeds w.npz` with a text file", argv=[
             "pixelfold", "edit", TINY, "--seeds", "w.npz", "--out", "e.png"], status=2,
         message=r"error: --seeds: w\.npz is not an \.npz file of latents \(not a zip "
                 r"archive\)$",
         leaves=NOTHING, setup=_garbage_ws, check=_only("w.npz")),
]

