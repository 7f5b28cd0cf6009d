"""Draw docs/assets/project_digits.png and docs/assets/edit_digits.png with the commands.

Real handwritten digits (scikit-learn's 8x8 set, upsampled to 32x32 as the quickstart trains
on them) are projected into a quickstart model with ``pixelfold project`` (``--distance mse``:
no pretrained VGG16 is needed), and the projections are edited along SeFa direction 0 with
``pixelfold edit``. The figures are the commands' own PNGs (``NAME.compare.png``, the edit
grid), tiled and enlarged (4x and 3x) with nearest-neighbor sampling; nothing else is drawn.

Train the model first (a few minutes on two CPU cores, offline), then run this from the
repository root::

    python recipes/quickstart.py --max-steps 300 --output-dir /tmp/qs \
        --preset pixelfolder-tiny-32 --resolution 32 --d-channels 32:32,16:64,8:64,4:64 \
        --lr 0.002 --r1-gamma 0.5 --ema-kimg 2    # the quickstart's 32x32 settings of then
    python docs/scripts/draw_project_edit.py --model /tmp/qs/generator_ema
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from PIL import Image  # noqa: E402

from pixelfold.cli import main  # noqa: E402

ASSETS = Path(__file__).resolve().parents[1] / "assets"
DIGITS = (0, 1, 2, 3, 4, 5, 6, 7)  # one image of each of these classes, the first in the set
SCALE = 4  # the projections
EDIT_SCALE = 3  # the edit grid (keeps the PNG small)


def write_digits(folder: Path) -> list[str]:
    """The first image of each class of ``DIGITS`` as a 32x32 PNG, as the quickstart sees it."""
    from pixelfold.training.data import digits_dataset

    data = digits_dataset(32)
    names = []
    for digit in DIGITS:
        index = data["label"].index(digit)
        name = f"digit{digit}-{index:04d}"
        data[index]["image"].convert("RGB").save(folder / f"{name}.png")
        names.append(name)
    return names


def tile(paths: list[Path], columns: int, gap: int) -> Image.Image:
    """The images side by side, ``columns`` per row, white gaps, enlarged ``SCALE`` times."""
    images = [Image.open(p).convert("RGB") for p in paths]
    w, h = images[0].size
    rows = (len(images) + columns - 1) // columns
    canvas = Image.new("RGB", (columns * w + (columns - 1) * gap,
                               rows * h + (rows - 1) * gap), "white")
    for i, image in enumerate(images):
        r, c = divmod(i, columns)
        canvas.paste(image, (c * (w + gap), r * (h + gap)))
    return enlarge(canvas, SCALE)


def enlarge(image: Image.Image, scale: int) -> Image.Image:
    return image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)


def run(argv: list[str]) -> None:
    code = main(argv)
    if code != 0:
        raise SystemExit(f"pixelfold {' '.join(argv)} failed with status {code}")


def draw(model: str, steps: int, strength: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "digits").mkdir()
        names = write_digits(folder / "digits")
        proj = folder / "proj"
        run(["project", model, "--target", str(folder / "digits"), "--out", str(proj),
             "--distance", "mse", "--num-steps", str(steps), "--device", "cpu"])
        figure = tile([proj / f"{n}.compare.png" for n in names], columns=4, gap=4)
        figure.save(ASSETS / "project_digits.png", optimize=True)
        print(f"wrote {ASSETS / 'project_digits.png'} ({figure.width}x{figure.height})")
        edit = folder / "edit.png"
        run(["edit", model, "--seeds", str(proj / "projected_w.npz"), "--direction", "0",
             "--strength", strength, "--out", str(edit), "--device", "cpu"])
        figure = enlarge(Image.open(edit).convert("RGB"), EDIT_SCALE)
        figure.save(ASSETS / "edit_digits.png", optimize=True)
        print(f"wrote {ASSETS / 'edit_digits.png'} ({figure.width}x{figure.height})")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="outputs/quickstart/generator_ema",
                        help="a save_pretrained folder (default: the quickstart's)")
    parser.add_argument("--steps", type=int, default=1000, help="projection steps")
    parser.add_argument("--strength", default="-6:6:7", help="edit strengths")
    args = parser.parse_args()
    draw(args.model, args.steps, args.strength)
