"""Bias + leaky ReLU scaled by sqrt(2): StyleGAN2's "fused" activation, in pure PyTorch."""

from __future__ import annotations

import math

import torch
from torch import nn

from .ops import Impl, bias_act_fast, reference, resolve_impl

__all__ = ["BiasLeakyReLU", "bias_leaky_relu"]


def bias_leaky_relu(
    x: torch.Tensor,
    bias: torch.Tensor | None = None,
    negative_slope: float = 0.2,
    scale: float = math.sqrt(2.0),
    *,
    impl: Impl | None = None,
) -> torch.Tensor:
    """``leaky_relu(x + bias, negative_slope) * scale``, the bias broadcast along dim 1.

    The ``sqrt(2)`` gain keeps the second moment of a unit-variance input roughly unchanged,
    which is what equalized-learning-rate networks assume. The definition is
    [`reference.bias_leaky_relu`][pixelfold.layers.ops.reference.bias_leaky_relu]; the fast
    implementation (``pixelfold/layers/ops/bias_act_fast.py``) runs the activation in place.

    Args:
        x: input of shape ``(B, C, ...)``.
        bias: optional per-channel bias of shape ``(C,)``.
        negative_slope: slope for negative inputs.
        scale: output gain.
        impl: ``"ref"`` or ``"fast"``; default: [`get_impl()`][pixelfold.layers.get_impl].

    Example:
        >>> bias_leaky_relu(torch.tensor([[-1.0, 2.0]]), torch.tensor([0.0, 1.0]), scale=1.0)
        tensor([[-0.2000,  3.0000]])
    """
    if bias is not None:
        if bias.ndim != 1 or x.ndim < 2 or bias.shape[0] != x.shape[1]:
            raise ValueError(
                f"bias_leaky_relu needs a bias of shape (C,) matching dim 1 of x, "
                f"got bias {tuple(bias.shape)} for x {tuple(x.shape)}"
            )
    if resolve_impl(impl) == "ref":
        return reference.bias_leaky_relu(x, bias, negative_slope, scale)
    return bias_act_fast.bias_leaky_relu(x, bias, negative_slope, scale)


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
        """``leaky_relu(x + bias) * scale`` for ``x`` ``(B, channels, ...)``."""
        return bias_leaky_relu(x, self.bias, self.negative_slope, self.scale)

    def activation_(self, y: torch.Tensor) -> torch.Tensor:
        """The nonlinearity alone, in place, for the fresh output ``y`` of a layer that folded
        this layer's bias and gain into its own computation (``scale * bias`` added and
        ``scale`` multiplied): ``forward(x)`` equals ``activation_(scale * x + scale * bias)``,
        the fast path of the layers that own one."""
        return bias_act_fast.leaky_relu_(y, self.negative_slope)

    def extra_repr(self) -> str:
        return f"{self.bias.shape[0]}, negative_slope={self.negative_slope}, scale={self.scale:.4g}"
