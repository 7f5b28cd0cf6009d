"""Bias + leaky ReLU scaled by sqrt(2): StyleGAN2's "fused" activation, in pure PyTorch."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["BiasLeakyReLU", "bias_leaky_relu"]


def bias_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    scale: float = math.sqrt(2.0),
) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale``, the bias broadcast along dim 1.

    The ``sqrt(2)`` gain keeps the second moment of a unit-variance input roughly unchanged,
    which is what equalized-learning-rate networks assume.

    Args:
        x: input of shape ``(B, C, ...)``.
        bias: optional per-channel bias of shape ``(C,)``.
        negative_slope: slope for negative inputs.
        scale: output gain.
    """
    if bias is not None:
        if bias.ndim != 1 or x.ndim < 2 or bias.shape[0] != x.shape[1]:
            raise ValueError(
                f"bias_leaky_relu needs a bias of shape (C,) matching dim 1 of x, "
                f"got bias {tuple(bias.shape)} for x {tuple(x.shape)}"
            )
        x = x + bias.to(x.dtype).view([1, -1] + [1] * (x.ndim - 2))
    return F.leaky_relu(x, negative_slope) * scale


class BiasLeakyReLU(nn.Module):
    """Learned per-channel bias followed by leaky ReLU times ``scale`` (StyleGAN2's
    ``FusedLeakyReLU``).

    Args:
        channels: number of channels (dim 1 of the input).
        negative_slope: slope for negative inputs.
        scale: output gain, ``sqrt(2)`` by default.
        bias_init: initial value of the bias.
    """

    def __init__(
        self,
        channels: int,
        *,
        negative_slope: float = 0.2,
        scale: float = math.sqrt(2.0),
        bias_init: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.full((channels,), float(bias_init), device=device,
                                            dtype=dtype))
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return bias_leaky_relu(x, self.bias, self.negative_slope, self.scale)

    def extra_repr(self) -> str:
        return f"{self.bias.shape[0]}, negative_slope={self.negative_slope}, scale={self.scale:.4g}"
