"""Positional encoders of pixel-regression generators: coordinate grids, Fourier features and
learned per-pixel coordinate embeddings (CIPS, PixelFolder), and the coordinate window that
moves or scales what they see (rendering outside the training frame)."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.spec import check_int

__all__ = ["EMBEDDING_PADDINGS", "CoordinateEmbedding", "CoordinateWindow", "FourierFeatures",
           "coordinate_grid"]

EmbeddingPadding = Literal["border", "reflection", "zeros"]
EMBEDDING_PADDINGS: tuple[str, ...] = ("border", "reflection", "zeros")
"""How a [`CoordinateEmbedding`][pixelfold.layers.CoordinateEmbedding] is continued outside
its grid: the edge values (``"border"``), the grid mirrored about its edge pixels
(``"reflection"``) or zero, the mean of its initialization (``"zeros"``)."""


def coordinate_grid(
    height: int,
    width: int | None = None,
    *,
    batch_size: int = 1,
    device: torch.device | str | None = None,
    dtype: torch.dtype | None = None,
) -> torch.Tensor:
    """Pixel coordinates in ``[-1, 1]`` as a ``(batch_size, 2, height, width)`` tensor.

    Channel 0 is x (``linspace(-1, 1, width)`` along the columns), channel 1 is y
    (``linspace(-1, 1, height)`` along the rows); both endpoints are included. Rectangular
    grids are supported.

    Args:
        height: number of rows.
        width: number of columns (default: ``height``).
        batch_size: leading dimension (the grid is expanded, not copied).
    """
    width = height if width is None else width
    for name, value in (("height", height), ("width", width), ("batch_size", batch_size)):
        check_int(value, name, where="coordinate_grid")
    dtype = dtype or torch.get_default_dtype()
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)])
    return grid[None].expand(batch_size, 2, height, width)


@dataclass(frozen=True)
class CoordinateWindow:
    """The part of the coordinate plane a generator renders: the training frame moved by
    ``shift`` and magnified by ``zoom`` about its center.

    Units are frames: ``shift=(1, 0)`` is the frame to the right of the training frame, and
    the same window is taken at every grid size (every stage of a generator), so that the
    stages stay aligned. Pixel ``i`` of a grid of ``n`` pixels sits at the continuous pixel
    position ``p = (n - 1) / 2 + (i - (n - 1) / 2) / zoom + shift * n`` of the training
    grid, i.e. at the coordinate ``-1 + 2 p / (n - 1)`` (``coordinate_grid``'s spacing, its
    endpoints at the centers of the edge pixels). A shift by a whole number of pixels of a
    grid moves that grid by exactly those pixels: a shift of ``k / n`` frames moves it by
    ``k`` pixels.

    Args:
        shift: ``(dx, dy)`` in frames (x to the right, y down).
        zoom: magnification (> 1 shows less of the plane, larger; < 1 more of it, smaller).
        padding: how a learned [`CoordinateEmbedding`][pixelfold.layers.CoordinateEmbedding]
            (a fixed grid of vectors) is continued outside its grid, one of
            [`EMBEDDING_PADDINGS`][pixelfold.layers.positional.EMBEDDING_PADDINGS]; between its
            pixels it is interpolated bilinearly. Fourier features need no such choice.

    Raises:
        ValueError: a shift or zoom that is not a finite number, a zoom that is not positive,
            an unknown padding.
    """

    shift: tuple[float, float] = (0.0, 0.0)
    zoom: float = 1.0
    padding: EmbeddingPadding = "border"

    def __post_init__(self) -> None:
        shift = tuple(self.shift) if isinstance(self.shift, (tuple, list)) else self.shift
        if not isinstance(shift, tuple) or len(shift) != 2 or not all(
                _is_number(v) and math.isfinite(v) for v in shift):
            raise ValueError(f"CoordinateWindow shift must be two finite numbers (dx, dy) in "
                             f"frames, got {self.shift!r}")
        if not _is_number(self.zoom) or not math.isfinite(self.zoom) or self.zoom <= 0:
            raise ValueError(f"CoordinateWindow zoom must be a finite number > 0, got "
                             f"{self.zoom!r}")
        if self.padding not in EMBEDDING_PADDINGS:
            raise ValueError(f"CoordinateWindow padding must be one of "
                             f"{', '.join(EMBEDDING_PADDINGS)}, got {self.padding!r}")
        object.__setattr__(self, "shift", (float(shift[0]), float(shift[1])))
        object.__setattr__(self, "zoom", float(self.zoom))

    @property
    def is_identity(self) -> bool:
        """Whether this is the training frame (no shift, zoom 1): generators then use their
        stored grids, bit for bit."""
        return self.shift == (0.0, 0.0) and self.zoom == 1.0

    def positions(self, size: int, axis: int) -> torch.Tensor:
        """Continuous pixel positions (float64) along ``axis`` (0: x, 1: y) of a grid of
        ``size`` pixels: ``arange(size)`` for the training frame."""
        i = torch.arange(size, dtype=torch.float64)
        center = (size - 1) / 2
        return center + (i - center) / self.zoom + self.shift[axis] * size

    def grid(self, height: int, width: int | None = None, *,
             device: torch.device | str | None = None,
             dtype: torch.dtype | None = None) -> torch.Tensor:
        """The window's coordinates as a ``(1, 2, height, width)`` tensor, as
        [`coordinate_grid`][pixelfold.layers.coordinate_grid] (its values for the training
        frame, up to rounding)."""
        width = height if width is None else width
        xs = _coordinates(self.positions(width, 0), width)
        ys = _coordinates(self.positions(height, 1), height)
        grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)])
        return grid[None].to(dtype=dtype or torch.get_default_dtype()).to(device=device)


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _coordinates(positions: torch.Tensor, size: int) -> torch.Tensor:
    """Pixel positions -> coordinates of a grid of ``size`` pixels (``-1`` at pixel 0, ``1``
    at pixel ``size - 1``; a 1-pixel grid has spacing 2)."""
    return -1.0 + positions * (2.0 / max(size - 1, 1))


def _sample_axis(x: torch.Tensor, positions: torch.Tensor, dim: int,
                 padding: EmbeddingPadding) -> torch.Tensor:
    """Linear interpolation of ``x`` along ``dim`` at continuous pixel positions; a whole
    position inside the grid gives that pixel exactly."""
    n = x.shape[dim]
    pos = positions
    if padding == "reflection" and n > 1:
        period = 2 * (n - 1)
        pos = torch.remainder(pos, period)
        pos = torch.where(pos > n - 1, period - pos, pos)
    if padding != "zeros":
        pos = pos.clamp(0, n - 1)
    i0 = pos.floor().clamp(max=max(n - 2, 0)) if padding != "zeros" else pos.floor()
    frac = (pos - i0).to(x.dtype)
    i0 = i0.long()
    i1 = i0 + 1

    def take(index: torch.Tensor) -> torch.Tensor:
        values = x.index_select(dim, index.clamp(0, n - 1).to(x.device))
        if padding == "zeros":
            inside = ((index >= 0) & (index < n)).to(x.dtype).to(x.device)
            values = values * inside.view([-1 if d == dim else 1 for d in range(x.ndim)])
        return values

    shape = [-1 if d == dim else 1 for d in range(x.ndim)]
    frac = frac.to(x.device).view(shape)
    return take(i0) * (1 - frac) + take(i1) * frac


class FourierFeatures(nn.Module):
    """``sin(W @ coords + b)`` per pixel: Fourier features of 2-D (or n-D) coordinates.

    * ``learned=True`` (PixelFolder, CIPS): ``W``, ``b`` are a trainable 1x1 convolution,
      ``W ~ U(-sqrt(9 / in_channels), sqrt(9 / in_channels))`` and PyTorch's default conv bias
      init ``U(-1/sqrt(in_channels), 1/sqrt(in_channels))``.
    * ``learned=False``: fixed octave frequencies ``pi * 2**k`` for ``k < out_channels // (2 *
      in_channels)`` with phases ``0`` and ``pi / 2`` (sin and cos) for every input channel,
      as in NeRF; ``out_channels`` must then be a multiple of ``2 * in_channels`` (the number
      of frequencies is not an argument: it follows from ``out_channels``). Stored as
      non-persistent buffers: nothing to save.

    Args:
        out_channels: number of features.
        in_channels: coordinate channels (2 for images).
        learned: trainable or fixed frequencies.
    """

    def __init__(
        self,
        out_channels: int,
        in_channels: int = 2,
        *,
        learned: bool = True,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if out_channels < 1 or in_channels < 1:
            raise ValueError(f"FourierFeatures needs positive widths, got "
                             f"in_channels={in_channels}, out_channels={out_channels}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.learned = learned
        if learned:
            bound = math.sqrt(9.0 / in_channels)
            self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1, device=device,
                                                   dtype=dtype).uniform_(-bound, bound))
            bias_bound = 1.0 / math.sqrt(in_channels)
            self.bias = nn.Parameter(torch.empty(out_channels, device=device, dtype=dtype)
                                     .uniform_(-bias_bound, bias_bound))
        else:
            per_freq = 2 * in_channels
            if out_channels % per_freq:
                raise ValueError(
                    f"fixed FourierFeatures need out_channels divisible by 2 * in_channels = "
                    f"{per_freq}, got {out_channels}"
                )
            num_freqs = out_channels // per_freq
            weight = torch.zeros(out_channels, in_channels)
            bias = torch.zeros(out_channels)
            j = 0
            for k in range(num_freqs):
                for i in range(in_channels):
                    for phase in (0.0, math.pi / 2):
                        weight[j, i] = math.pi * 2.0**k
                        bias[j] = phase
                        j += 1
            self.register_buffer("weight", weight[:, :, None, None].to(device=device,
                                                                       dtype=dtype),
                                 persistent=False)
            self.register_buffer("bias", bias.to(device=device, dtype=dtype), persistent=False)

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """``coords`` ``(B, in_channels, H, W)`` -> features ``(B, out_channels, H, W)``."""
        if coords.ndim != 4 or coords.shape[1] != self.in_channels:
            raise ValueError(f"FourierFeatures expects (B, {self.in_channels}, H, W), "
                             f"got {tuple(coords.shape)}")
        return torch.sin(F.conv2d(coords, self.weight.to(coords.dtype),
                                  self.bias.to(coords.dtype)))

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, learned={self.learned}"


class CoordinateEmbedding(nn.Module):
    """A learned vector for every pixel position: a ``(1, C, H, W)`` parameter initialized
    ``N(0, 1)``, expanded over the batch (CIPS's coordinate embedding; PixelFolder's first
    stage).

    Args:
        channels: embedding width.
        height: rows.
        width: columns (default ``height``).
    """

    def __init__(
        self,
        channels: int,
        height: int,
        width: int | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        width = height if width is None else width
        if min(channels, height, width) < 1:
            raise ValueError(f"CoordinateEmbedding needs positive sizes, got "
                             f"channels={channels}, height={height}, width={width}")
        self.weight = nn.Parameter(torch.randn(1, channels, height, width, device=device,
                                               dtype=dtype))

    def forward(self, batch_size: int, window: CoordinateWindow | None = None) -> torch.Tensor:
        """Return the embedding expanded to ``(batch_size, C, H, W)``; with a ``window``
        other than the training frame, the embedding sampled at the window's pixel positions
        (bilinear between grid points, ``window.padding`` outside the grid; a shift by whole
        pixels gives the stored vectors exactly)."""
        # without autograd, a view of the parameter would still say requires_grad but have no
        # gradient function, which module hooks that follow the graph (FlopCounterMode) refuse
        weight = self.weight if torch.is_grad_enabled() else self.weight.detach()
        if window is None or window.is_identity:
            return weight.expand(batch_size, -1, -1, -1)
        _, _, h, w = weight.shape
        x = _sample_axis(weight, window.positions(w, 0), 3, window.padding)
        x = _sample_axis(x, window.positions(h, 1), 2, window.padding)
        return x.expand(batch_size, -1, -1, -1)

    def extra_repr(self) -> str:
        _, c, h, w = self.weight.shape
        return f"channels={c}, height={h}, width={w}"
