"""Rendering outside the training frame: shifted and zoomed coordinate windows, panoramas.

Every pixel of a pixel-regression generator is computed from its coordinates, so moving the
coordinate grid that every stage's positional encoding sees renders another part of the
plane: [`CoordinateWindow`][pixelfold.layers.CoordinateWindow] (shift in frames, zoom) is
taken by ``G.synthesis(ws, window=...)`` and ``G(z, window=...)``. This module parses the
command line's values, renders panoramas of horizontally shifted windows and says which
shifts keep the stages' cells aligned.

What a model gives outside its frame depends on its architecture; see [Coordinate
rendering](../tools/coordinates.md).

>>> from pixelfold.models import Generator
>>> G = Generator.from_preset("pixelfolder-tiny-32").eval()
>>> panorama_images(G, [0], 3).shape
torch.Size([1, 3, 32, 96])
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import torch

from ..layers import EMBEDDING_PADDINGS, CoordinateWindow
from ..models import Generator
from ..utils.errors import ConfigError
from .images import (
    _batches,
    _check_psi,
    _mapping,
    _ws_bytes,
    check_batch_memory,
    check_finite_images,
    check_held_memory,
)
from .latents import WLatents

__all__ = ["MAX_PANORAMA", "aligned_shift", "make_window", "panorama_images",
           "panorama_windows", "parse_shift", "parse_zoom"]

MAX_PANORAMA = 64
"""The most windows a panorama stitches (the CLI's limit; one image is that many frames
wide)."""


def parse_shift(text: str) -> tuple[float, float]:
    """``"DX,DY"`` (frames, e.g. ``"1,0"``, ``"-0.5,0.25"``) -> ``(dx, dy)``.

    Raises:
        ConfigError: not two finite numbers separated by a comma.
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        if len(parts) != 2:
            raise ValueError
        dx, dy = (float(p) for p in parts)
    except ValueError:
        raise ConfigError(f"bad shift {text!r}: expected DX,DY, two numbers in frames "
                          f"(e.g. 1,0 for the frame to the right)") from None
    if not (math.isfinite(dx) and math.isfinite(dy)):
        raise ConfigError(f"bad shift {text!r}: DX and DY must be finite")
    return dx, dy


def parse_zoom(text: str | float) -> float:
    """A zoom factor: a finite number > 0 (``"2"`` magnifies twice, ``"0.5"`` shows twice as
    much of the plane).

    Raises:
        ConfigError: not a finite positive number.
    """
    try:
        zoom = float(text)
    except (TypeError, ValueError):
        raise ConfigError(f"bad zoom {text!r}: expected a number > 0 (e.g. 2)") from None
    if not math.isfinite(zoom) or zoom <= 0:
        raise ConfigError(f"bad zoom {text!r}: the zoom must be a finite number > 0")
    return zoom


def make_window(shift: tuple[float, float] = (0.0, 0.0), zoom: float = 1.0,
                padding: str = "border") -> CoordinateWindow:
    """A [`CoordinateWindow`][pixelfold.layers.CoordinateWindow], its errors as
    ``ConfigError`` (one line on the command line)."""
    if padding not in EMBEDDING_PADDINGS:
        raise ConfigError(f"bad embedding padding {padding!r}: choose one of "
                          f"{', '.join(EMBEDDING_PADDINGS)}")
    try:
        return CoordinateWindow(shift=shift, zoom=zoom, padding=padding)  # type: ignore[arg-type]
    except ValueError as exc:
        raise ConfigError(str(exc)) from None


def aligned_shift(G: Generator) -> Fraction:
    """The shift step, in frames, that keeps every stage's reduction cells aligned: a shift
    that is a whole multiple of it (along x or y) moves each stage's coordinate grid by whole
    cells of its fold or pooling (``1 / reduced resolution`` of the coarsest stage), so every
    cell holds the same coordinates as a cell of the training frame. Other shifts regroup the
    pixels into cells the model never saw (still renders, differently). With zoom 1 only."""
    step = Fraction(0)
    for stage in G.synthesis.stages:
        h, w = stage.spec.reduced_resolution
        step = max(step, Fraction(1, min(h, w)))
    return step


def panorama_windows(count: int, window: CoordinateWindow | None = None
                     ) -> list[CoordinateWindow]:
    """``count`` windows side by side, left to right: ``window`` (default: the training
    frame) is the middle one (the one right of the middle for an even count), and each next
    window is shifted by its width, ``1 / zoom`` frames, so the tiles meet without a gap or
    an overlap.

    Raises:
        ConfigError: ``count`` is not an integer in ``[1, MAX_PANORAMA]``.
    """
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= MAX_PANORAMA:
        raise ConfigError(f"a panorama needs 1 to {MAX_PANORAMA} windows, got {count!r}")
    window = window or CoordinateWindow()
    dx, dy = window.shift
    return [CoordinateWindow(shift=(dx + (k - count // 2) / window.zoom, dy), zoom=window.zoom,
                             padding=window.padding) for k in range(count)]


@torch.inference_mode()
def panorama_images(
    G: Generator,
    seeds: Sequence[int] | WLatents,
    count: int,
    *,
    window: CoordinateWindow | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    progress: bool = False,
    c: int | None = None,
) -> torch.Tensor:
    """One panorama per seed: the images of
    [`panorama_windows(count, window)`][pixelfold.tools.coordinates.panorama_windows] side by
    side, ``(len(seeds), 3, H, count * W)`` in ``[-1, 1]``.

    The tiles are rendered separately and put side by side: nothing blends them, so what
    the model does at a window's border shows at the seams (see [Coordinate
    rendering](../tools/coordinates.md)). ``c``: the class of a conditional generator (an
    index).

    Raises:
        ConfigError: a bad ``count``.
        MemoryLimitError: the panoramas, or one batch, do not fit in memory.
        NonFiniteError: the generator's output holds NaN or infinity.
    """
    windows = panorama_windows(count, window)
    _check_psi(truncation_psi)
    n = len(seeds)
    check_held_memory(G, n * count, f"{n:,d} panoramas of {count} frames",
                      hint="use fewer seeds or windows", extra_bytes=_ws_bytes(G, n))
    check_batch_memory(G, batch_size, n)
    ws = _mapping(G, seeds, truncation_psi, c)
    out = []
    for sl in _batches(n, batch_size, progress, "panorama"):
        tiles = []
        for w in windows:
            img = G.synthesis(ws[sl], noise_mode=noise_mode, window=w)
            check_finite_images(G, img, seeds[sl], "the panoramas")
            tiles.append(img.float().clamp(-1, 1).cpu())
        out.append(torch.cat(tiles, dim=3))
    return torch.cat(out)
