"""Draw docs/assets/coordinates_digits.png and docs/assets/coordinates_padding.png with
``pixelfold generate --zoom / --panorama / --embedding-padding``.

A quickstart model (PixelFolder-tiny-32 on scikit-learn's digits) renders four seeds zoomed
out (0.5), in the training frame, zoomed in (2) and as a panorama of five windows (the
training frame in the middle); then one seed's panorama with each padding of the learned
coordinate embedding. The figures are the commands' own PNGs, tiled with gray gaps and
enlarged 3x with nearest-neighbor sampling; nothing else is drawn.

Train the model first (offline, on CPU), then run this from the repository root::

    python recipes/quickstart.py --max-steps 500 --output-dir /tmp/qs
    python docs/scripts/draw_coordinates.py --model /tmp/qs/generator_ema
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
SEEDS = (0, 1, 2, 3)
SCALE = 3
GAP = 4  # pixels between columns and rows, before enlarging
PANORAMA = 5
PADDING_SEEDS = (1, 2)


def run(argv: list[str]) -> None:
    code = main(argv)
    if code != 0:
        raise SystemExit(f"pixelfold {' '.join(argv)} failed with status {code}")


def generate(model: str, out: Path, seeds: tuple[int, ...], *extra: str) -> list[Path]:
    """``pixelfold generate`` into ``out``, one PNG per seed; returns their paths."""
    run(["generate", model, "--seeds", ",".join(map(str, seeds)), "--out", str(out),
         "--device", "cpu", *extra])
    return [out / f"seed{s:04d}.png" for s in seeds]


def table(rows: list[list[Path]]) -> Image.Image:
    """Images in rows (each row's images side by side; columns as wide as their widest image),
    gray gaps (the digits' background is white), enlarged ``SCALE`` times."""
    images = [[Image.open(p).convert("RGB") for p in row] for row in rows]
    widths = [max(row[c].width for row in images) for c in range(len(images[0]))]
    heights = [max(im.height for im in row) for row in images]
    canvas = Image.new("RGB", (sum(widths) + GAP * (len(widths) - 1),
                               sum(heights) + GAP * (len(heights) - 1)), (128, 128, 128))
    y = 0
    for row, h in zip(images, heights, strict=True):
        x = 0
        for image, w in zip(row, widths, strict=True):
            canvas.paste(image, (x, y))
            x += w + GAP
        y += h + GAP
    return canvas.resize((canvas.width * SCALE, canvas.height * SCALE),
                         Image.Resampling.NEAREST)


def save(figure: Image.Image, name: str) -> None:
    figure.save(ASSETS / name, optimize=True)
    print(f"wrote {ASSETS / name} ({figure.width}x{figure.height})")


def draw(model: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        columns = [
            generate(model, folder / "zoom-out", SEEDS, "--zoom", "0.5"),
            generate(model, folder / "frame", SEEDS),
            generate(model, folder / "zoom-in", SEEDS, "--zoom", "2"),
            generate(model, folder / "panorama", SEEDS, "--panorama", str(PANORAMA)),
        ]
        save(table([list(row) for row in zip(*columns, strict=True)]), "coordinates_digits.png")
        rows = [generate(model, folder / f"pad-{padding}", PADDING_SEEDS, "--panorama",
                         str(PANORAMA), "--embedding-padding", padding)
                for padding in ("border", "reflection", "zeros")]
        save(table(rows), "coordinates_padding.png")  # a row per padding, a column per seed


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="outputs/quickstart/generator_ema",
                        help="a save_pretrained folder (default: the quickstart's)")
    args = parser.parse_args()
    draw(args.model)
