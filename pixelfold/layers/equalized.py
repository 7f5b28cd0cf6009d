"""Equalized-learning-rate layers (Karras et al., ProGAN): weights stored N(0, 1), scaled at
run time by ``lr_mul / sqrt(fan_in)`` so that Adam's per-parameter step is the same everywhere."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .activation import bias_leaky_relu
from .checks import check_input

__all__ = ["EqualConv2d", "EqualLinear"]


def _positive(name: str, value: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


class _ContiguousGrad(torch.autograd.Function):
    """Identity whose gradient gets canonical contiguous strides."""

    @staticmethod
    def forward(ctx: Any, weight: torch.Tensor) -> torch.Tensor:
        return weight.view_as(weight)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        # not grad.contiguous(): that keeps the strides of size-1 dimensions as they are
        return grad.clone(memory_format=torch.contiguous_format)


def contiguous_grad(weight: torch.Tensor) -> torch.Tensor:
    """``weight`` itself, but its gradient arrives with canonical contiguous strides.

    A weight with a dimension of size 1 (a ``(1, C)`` linear weight, an ``(O, I, 1, 1)``
    convolution weight) can get a gradient whose strides differ from the weight's in that
    dimension (a transposed matrix product, a convolution of channels-last activations): the
    same memory, but DistributedDataParallel compares strides and warns "grad strides do not
    match bucket view strides". The weights of pixelfold's models are contiguous in such
    dimensions, so their gradients are made so too (a copy of a small tensor)."""
    if not (weight.requires_grad and torch.is_grad_enabled()) or 1 not in weight.shape:
        return weight
    return _ContiguousGrad.apply(weight)


class EqualLinear(nn.Module):
    """Linear layer with equalized learning rate.

    ``y = x @ (W * lr_mul / sqrt(in_features)).T + b * lr_mul``, with ``W`` stored
    ``N(0, 1) / lr_mul`` and ``b`` stored as ``bias_init``: the same raw parameters as the
    StyleGAN2 code, so its checkpoints load unchanged.

    Args:
        in_features: input width.
        out_features: output width.
        bias: whether to add a bias.
        bias_init: initial value of the stored bias (the effective bias is ``bias_init * lr_mul``).
        lr_mul: learning-rate multiplier (0.01 in the mapping network).
        activation: ``None`` for a plain affine map or ``"lrelu"`` for
            [`bias_leaky_relu`][pixelfold.layers.bias_leaky_relu] carrying the bias.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activation: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _positive("in_features", in_features)
        _positive("out_features", out_features)
        if activation not in (None, "lrelu"):
            raise ValueError(f"activation must be None or 'lrelu', got {activation!r}")
        if lr_mul <= 0:
            raise ValueError(f"lr_mul must be positive, got {lr_mul!r}")
        self.in_features = in_features
        self.out_features = out_features
        self.lr_mul = float(lr_mul)
        self.activation = activation
        self.weight = nn.Parameter(
            torch.randn(out_features, in_features, device=device, dtype=dtype).div_(lr_mul)
        )
        self.bias = (
            nn.Parameter(torch.full((out_features,), float(bias_init), device=device,
                                    dtype=dtype))
            if bias
            else None
        )
        self.weight_gain = self.lr_mul / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x (..., in_features) -> (..., out_features)``; an input of the wrong dtype or
        device is an [`InputError`][pixelfold.layers.InputError] saying what to convert
        (checked when the product fails: a call that works pays nothing)."""
        weight = contiguous_grad(self.weight) * self.weight_gain
        bias = self.bias * self.lr_mul if self.bias is not None else None
        try:
            if self.activation == "lrelu":
                return bias_leaky_relu(F.linear(x, weight), bias)
            return F.linear(x, weight, bias)
        except (RuntimeError, TypeError):
            check_input(x, self.weight, "x", "EqualLinear", var="layer")
            raise

    def extra_repr(self) -> str:
        return (
            f"{self.in_features}, {self.out_features}, bias={self.bias is not None}, "
            f"lr_mul={self.lr_mul}, activation={self.activation!r}"
        )


class EqualConv2d(nn.Module):
    """2-D convolution with equalized learning rate.

    The weight is stored ``N(0, 1)`` with shape ``(out, in, k, k)`` and multiplied by
    ``lr_mul / sqrt(in * k * k)`` at run time.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: square kernel side.
        stride: convolution stride.
        padding: zero padding on each side.
        bias: whether to add a bias (initialized to 0).
        lr_mul: learning-rate multiplier.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        *,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
        lr_mul: float = 1.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _positive("in_channels", in_channels)
        _positive("out_channels", out_channels)
        _positive("kernel_size", kernel_size)
        _positive("stride", stride)
        if padding < 0:
            raise ValueError(f"padding must be >= 0, got {padding!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.lr_mul = float(lr_mul)
        self.weight = nn.Parameter(
            torch.randn(out_channels, in_channels, kernel_size, kernel_size, device=device,
                        dtype=dtype).div_(lr_mul)
        )
        self.bias = (
            nn.Parameter(torch.zeros(out_channels, device=device, dtype=dtype)) if bias else None
        )
        self.weight_gain = self.lr_mul / math.sqrt(in_channels * kernel_size * kernel_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Convolve ``x`` ``(B, in_channels, H, W)``; an input of the wrong dtype or device is
        an [`InputError`][pixelfold.layers.InputError] saying what to convert (checked when
        the convolution fails: a call that works pays nothing)."""
        bias = self.bias * self.lr_mul if self.bias is not None else None
        try:
            return F.conv2d(x, self.weight * self.weight_gain, bias, stride=self.stride,
                            padding=self.padding)
        except (RuntimeError, TypeError):
            check_input(x, self.weight, "x", "EqualConv2d", var="layer")
            raise

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )
