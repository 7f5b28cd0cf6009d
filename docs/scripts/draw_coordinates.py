"""Draw docs/assets/coordinates_digits.png and docs/assets/coordinates_padding.png with
``pixelfold generate --zoom / --panorama / --embedding-padding``.

A quickstart model (PixelFolder-tiny-32 on scikit-learn's digits) renders four seeds zoomed
out (0.5), in the training frame, zoomed in (2) and as a panorama of five windows (the
training frame in the middle); then one seed's panorama with each padding of the learned
coordinate embedding. The figures are the commands' own PNGs, tiled with gray gaps and
enlarged 3x with nearest-neighbor sampling; nothing else is drawn. Then it prints the numbers
the docs quote, measured on 64 seeds with the Python API (the same windows).

Train the model first (offline, on CPU), then run this from the repository root::

    python recipes/quickstart.py --max-steps 1000 --output-dir /tmp/qs \
        --preset pixelfolder-tiny-32 --resolution 32 --d-channels 32:32,16:64,8:64,4:64 \
        --lr 0.002 --r1-gamma 0.5 --ema-kimg 2    # the quickstart's 32x32 settings of then
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


def measure(model: str) -> None:
    """The numbers of docs/tools/coordinates.md, on seeds 0-63 (pixel values in [-1, 1])."""
    import torch

    from pixelfold.layers import CoordinateWindow
    from pixelfold.models import load_generator
    from pixelfold.tools import aligned_shift, generate_images, panorama_images

    G = load_generator(model, device="cpu").eval()
    seeds = list(range(64))
    n = G.resolution[1]
    frame = generate_images(G, seeds)
    for shift in (float(aligned_shift(G)), 1 / n):
        k = round(shift * n)
        moved = generate_images(G, seeds, window=CoordinateWindow(shift=(shift, 0)))
        diff = (moved[..., :n - k] - frame[..., k:]).abs().mean().item()
        print(f"shift {shift:g} frame ({k} px): mean |difference| on the overlap {diff:.3f}")
    white = {s: (generate_images(G, seeds, window=CoordinateWindow(shift=(s, 0))) > 0.8)
             .all(1).float().mean().item() for s in (-2, -1, 0, 1, 2)}
    print("near-white pixels (all channels > 0.8) by shift:",
          ", ".join(f"{s:+d}: {v:.2f}" for s, v in white.items()))
    panos = {pad: panorama_images(G, seeds, PANORAMA, window=CoordinateWindow(padding=pad))
             for pad in ("border", "reflection", "zeros")}
    for pad in ("reflection", "zeros"):
        d = (panos[pad] - panos["border"]).abs()
        tiles = [d[..., n * t:n * (t + 1)].mean().item() for t in range(PANORAMA)]
        print(f"{pad} vs border, mean |difference| per tile:",
              ", ".join(f"{v:.3f}" for v in tiles))
    pano = panos["border"]
    seams = [(pano[..., n * t - 1] - pano[..., n * t]).abs().mean().item()
             for t in range(1, PANORAMA)]
    steps = (pano[..., 1:] - pano[..., :-1]).abs().mean().item()
    print("mean |step| across the seams:", ", ".join(f"{v:.2f}" for v in seams),
          f"(between neighboring columns, all of the panorama: {steps:.3f})")
    assert torch.equal(pano[..., n * (PANORAMA // 2):n * (PANORAMA // 2 + 1)], frame)


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
    measure(args.model)
