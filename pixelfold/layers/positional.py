"""Positional encoders of pixel-regression generators: coordinate grids, Fourier features and
learned per-pixel coordinate embeddings (CIPS, PixelFolder)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["CoordinateEmbedding", "FourierFeatures", "coordinate_grid"]


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
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"coordinate_grid {name} must be a positive integer, got {value!r}")
    dtype = dtype or torch.get_default_dtype()
    xs = torch.linspace(-1.0, 1.0, width, device=device, dtype=dtype)
    ys = torch.linspace(-1.0, 1.0, height, device=device, dtype=dtype)
    grid = torch.stack([xs[None, :].expand(height, width), ys[:, None].expand(height, width)])
    return grid[None].expand(batch_size, 2, height, width)


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

    def forward(self, batch_size: int) -> torch.Tensor:
        """Return the embedding expanded to ``(batch_size, C, H, W)``."""
        # without autograd, a view of the parameter would still say requires_grad but have no
        # gradient function, which module hooks that follow the graph (FlopCounterMode) refuse
        weight = self.weight if torch.is_grad_enabled() else self.weight.detach()
        return weight.expand(batch_size, -1, -1, -1)

    def extra_repr(self) -> str:
        _, c, h, w = self.weight.shape
        return f"channels={c}, height={h}, width={w}"
