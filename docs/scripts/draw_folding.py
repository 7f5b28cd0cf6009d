"""Draw docs/assets/pixel_folding.png: how pixel_fold / pixel_unfold move pixels.

Every layout in the figure is computed by pixelfold itself: the pixels are the numbers of a
``torch.arange`` tensor, folded and unfolded with :func:`pixelfold.layers.pixel_fold` and
:func:`pixelfold.layers.pixel_unfold`; nothing about the result is hard-coded. A pixel keeps its
number and its colour wherever it goes. The colour encodes where the pixel sat inside its 2x2
patch, ``(p1, p2)`` = (row, column) offset; for the two-channel input, channel 1 uses a darker
shade of the same colour.

Run from the repository root (needs matplotlib, from the ``docs`` extra)::

    python docs/scripts/draw_folding.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.patches import FancyArrowPatch, Rectangle  # noqa: E402

from pixelfold.layers import pixel_fold, pixel_unfold  # noqa: E402

OUT = Path(__file__).resolve().parents[1] / "assets" / "pixel_folding.png"

FACTOR = 2
SIDE = 4  # input images are SIDE x SIDE
# One colour per position inside a 2x2 patch, (p1, p2) = (row, column) offset.
OFFSET_COLORS = {
    (0, 0): "#8ecae6",
    (0, 1): "#ffb703",
    (1, 0): "#90be6d",
    (1, 1): "#f4978e",
}
GAP = 0.6  # space between the panels of one tensor
ARROW = 3.2  # length of an arrow between two tensors


def pixel_identity(value: int) -> tuple[int, int, int]:
    """Channel, row and column of the input pixel numbered ``value`` (inputs are aranges)."""
    c, rest = divmod(value, SIDE * SIDE)
    row, col = divmod(rest, SIDE)
    return c, row, col


def pixel_color(value: int) -> tuple[float, float, float]:
    c, row, col = pixel_identity(value)
    r, g, b = to_rgb(OFFSET_COLORS[(row % FACTOR, col % FACTOR)])
    shade = 1.0 if c == 0 else 0.62
    return (r * shade, g * shade, b * shade)


def patch_offsets(plane: torch.Tensor) -> tuple[set[int], set[tuple[int, int]]]:
    """Input channels and patch offsets of the pixels found in one folded channel."""
    ids = [pixel_identity(int(v)) for v in plane.flatten()]
    return {c for c, _, _ in ids}, {(r % FACTOR, q % FACTOR) for _, r, q in ids}


def draw_plane(ax, plane: torch.Tensor, x0: float, y0: float, title: str) -> None:
    """Draw a (H, W) plane of pixel numbers with its top-left corner at (x0, y0)."""
    h, w = plane.shape
    for i in range(h):
        for j in range(w):
            value = int(plane[i, j])
            color = pixel_color(value)
            ax.add_patch(Rectangle((x0 + j, y0 - i - 1), 1, 1, facecolor=color,
                                   edgecolor="#333333", linewidth=0.8))
            dark = sum(color) < 1.6
            ax.text(x0 + j + 0.5, y0 - i - 0.5, str(value), ha="center", va="center",
                    fontsize=10, color="white" if dark else "black", fontweight="bold")
    ax.add_patch(Rectangle((x0, y0 - h), w, h, fill=False, edgecolor="black", linewidth=1.6))
    ax.text(x0 + w / 2, y0 + 0.2, title, ha="center", va="bottom", fontsize=8.5,
            linespacing=1.15)


def draw_tensor(ax, t: torch.Tensor, x0: float, y0: float, titles) -> float:
    """Draw every channel of a (1, C, H, W) tensor side by side; return the right edge."""
    _, c, _, w = t.shape
    x = x0
    for k in range(c):
        draw_plane(ax, t[0, k], x, y0, titles(k, t[0, k]))
        x += w + GAP
    return x - GAP


def folded_title(k: int, plane: torch.Tensor) -> str:
    channels, offsets = patch_offsets(plane)
    assert len(channels) == 1 and len(offsets) == 1, "a folded channel mixes pixel kinds"
    (c,), ((p1, p2),) = channels, offsets
    return f"ch {k}\nc={c}, ({p1},{p2})"


def arrow(ax, start: tuple[float, float], end: tuple[float, float], label: str) -> None:
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=16,
                                 linewidth=1.6, color="#333333", shrinkA=0, shrinkB=0))
    mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    ax.text(mx, my + 0.25, label, ha="center", va="bottom", fontsize=8.5, family="monospace")


def row_heading(ax, x: float, y: float, text: str) -> None:
    ax.text(x, y, text, ha="left", va="bottom", fontsize=11, fontweight="bold")


def main() -> None:
    fig, ax = plt.subplots(figsize=(11.5, 10.5))
    ax.set_aspect("equal")
    ax.axis("off")

    # (a) one channel: fold, then unfold back.
    x1 = torch.arange(SIDE * SIDE).reshape(1, 1, SIDE, SIDE)
    f1 = pixel_fold(x1, FACTOR)  # the default "pixelfolder" order
    u1 = pixel_unfold(f1, FACTOR)
    assert torch.equal(u1, x1), "pixel_unfold must undo pixel_fold"
    # With one channel both orders agree.
    assert torch.equal(f1, pixel_fold(x1, FACTOR, "pixel_shuffle"))

    top = 0.0
    row_heading(ax, 0, top + 1.6, "(a) C = 1: (1, 1, 4, 4) -> fold -> (1, 4, 2, 2) -> unfold "
                "-> (1, 1, 4, 4)")
    right = draw_tensor(ax, x1, 0, top, lambda k, _: "input, C = 1")
    start = right + 0.3
    arrow(ax, (start, top - 2), (start + ARROW, top - 2), "pixel_fold")
    right = draw_tensor(ax, f1, start + ARROW + 0.3, top - 1, folded_title)
    start = right + 0.3
    arrow(ax, (start, top - 2), (start + ARROW, top - 2), "pixel_unfold")
    draw_tensor(ax, u1, start + ARROW + 0.3, top, lambda k, _: "unfolded = input")

    # (b) two channels: the two channel orders place the same planes differently.
    x2 = torch.arange(2 * SIDE * SIDE).reshape(1, 2, SIDE, SIDE)
    f_pf = pixel_fold(x2, FACTOR, "pixelfolder")
    f_ps = pixel_fold(x2, FACTOR, "pixel_shuffle")
    assert torch.equal(f_ps, F.pixel_unshuffle(x2, FACTOR))
    for order, folded in (("pixelfolder", f_pf), ("pixel_shuffle", f_ps)):
        assert torch.equal(pixel_unfold(folded, FACTOR, order), x2)
    assert not torch.equal(f_pf, f_ps)

    top = -6.4
    row_heading(ax, 0, top + 0.4, "(b) C = 2: (1, 2, 4, 4) -> fold -> (1, 8, 2, 2), "
                "in each channel order")
    rows = (
        (top - 2.2, 'channel_order="pixelfolder" (default):  b c (h p1) (w p2) -> '
                    "b (p1 p2 c) h w"),
        (top - 7.2, 'channel_order="pixel_shuffle" (= F.pixel_unshuffle):  '
                    "b c (h p1) (w p2) -> b (c p1 p2) h w"),
    )
    center = (rows[0][0] + rows[1][0] - 2) / 2
    input_top = center + 4.6
    draw_plane(ax, x2[0, 0], 0, input_top, "input, c = 0")
    draw_plane(ax, x2[0, 1], 0, input_top - 5.2, "input, c = 1")
    start = SIDE + 0.3
    fold_x = start + ARROW + 0.6
    for (row_top, label), folded in zip(rows, (f_pf, f_ps), strict=True):
        ax.add_patch(FancyArrowPatch((start, center), (fold_x - 0.2, row_top - 1),
                                     arrowstyle="-|>", mutation_scale=16, linewidth=1.6,
                                     color="#333333", shrinkA=0, shrinkB=0))
        draw_tensor(ax, folded, fold_x, row_top, folded_title)
        ax.text(fold_x, row_top + 1.5, label, ha="left", va="bottom", fontsize=9,
                family="monospace")
    ax.text(start + 0.9, center, "pixel_fold", ha="left", va="center", fontsize=8.5,
            family="monospace")

    # Legend: the patch offset of each colour.
    lx, ly = 0, input_top - 10.4
    ax.text(lx, ly, "colour = offset (p1, p2) of the pixel inside its 2x2 patch (p1: row, "
            "p2: column); darker = input channel 1.\nNumbers = torch.arange values. "
            "Titles of folded channels: index, input channel c, offset (p1, p2).",
            ha="left", va="top", fontsize=9, linespacing=1.4)
    x = lx + 0.1
    for (p1, p2), color in OFFSET_COLORS.items():
        ax.add_patch(Rectangle((x, ly - 2.3), 0.8, 0.8, facecolor=color, edgecolor="#333333"))
        ax.text(x + 1.0, ly - 1.9, f"({p1},{p2})", ha="left", va="center", fontsize=9)
        x += 3.2

    ax.set_xlim(-0.3, 29.5)
    ax.set_ylim(ly - 2.6, 2.3)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110, bbox_inches="tight", pad_inches=0.1,
                metadata={"Software": None})
    plt.close(fig)
    print(f"wrote {OUT} ({OUT.stat().st_size / 1024:.0f} KiB)")


if __name__ == "__main__":
    main()
