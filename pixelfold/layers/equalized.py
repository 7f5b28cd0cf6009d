"""Equalized-learning-rate layers (Karras et al., ProGAN): weights stored N(0, 1), scaled at
run time by ``lr_mul / sqrt(fan_in)`` so that Adam's per-parameter step is the same everywhere."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ..utils.spec import check_int
from .activation import BiasLeakyReLU, bias_leaky_relu
from .checks import check_input
from .conv import conv2d
from .ops import resolve_impl
from .upfirdn import Blur

__all__ = ["EqualConv2d", "EqualLinear"]


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
        check_int(in_features, "in_features")
        check_int(out_features, "out_features")
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
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("kernel_size", kernel_size), ("stride", stride)):
            check_int(value, name)
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

    def forward(
        self,
        x: torch.Tensor,
        *more: torch.Tensor,
        gain: float = 1.0,
        activation: BiasLeakyReLU | None = None,
        blur: Blur | None = None,
    ) -> torch.Tensor:
        """``gain * activation(conv(blur(cat([x, *more], dim=1))))`` for ``x``
        ``(B, in_channels, H, W)``; without ``activation`` (and ``blur``), ``gain *
        conv(x)``, this layer's own bias included.

        The fast implementation (the default; see [`use_impl`][pixelfold.layers.use_impl])
        computes it as one convolution with the gains, this layer's and the activation's bias
        folded into its weight and bias, then the leaky ReLU in place (exact: the leaky ReLU is
        positively homogeneous); the parts ``x, *more`` are convolved one by one with the
        matching slices of the weight and summed (the concatenation is never built), and a
        part may have a batch of 1 (an input shared by the batch, convolved once and
        broadcast); after a ``blur``, a strided 1x1 convolution filters only the pixels it
        reads. Stride-1 convolutions take the cheaper double backward of
        [`conv2d`][pixelfold.layers.conv2d].

        Args:
            x: input, or the first part of it along the channels.
            *more: further parts (their channels add up to ``in_channels``).
            gain: multiplies the result; must be positive with an ``activation``.
            activation: a [`BiasLeakyReLU`][pixelfold.layers.BiasLeakyReLU] applied to the
                convolution (its bias is the bias of the pair).
            blur: a [`Blur`][pixelfold.layers.Blur] applied to the input first.

        Raises:
            InputError: ``x`` has the wrong dtype or device, saying what to convert (checked
                when the convolution fails: a call that works pays nothing).
            ValueError: the parts' channels do not add up to ``in_channels``, or a
                non-positive ``gain`` with an activation.
        """
        if activation is not None and not gain > 0:
            raise ValueError(f"EqualConv2d: gain must be positive with an activation (it is "
                             f"folded through the leaky ReLU), got {gain!r}")
        parts = (x, *more)
        if sum(p.shape[1] for p in parts) != self.in_channels:
            raise ValueError(f"EqualConv2d expects {self.in_channels} input channels in all, "
                             f"got parts of {[p.shape[1] for p in parts]}")
        try:
            if resolve_impl(None) == "ref":
                return self._forward_ref(parts, gain, activation, blur)
            return self._forward_fast(parts, gain, activation, blur)
        except (RuntimeError, TypeError):
            check_input(x, self.weight, "x", "EqualConv2d", var="layer")
            raise

    def _forward_ref(self, parts: tuple[torch.Tensor, ...], gain: float,
                     activation: BiasLeakyReLU | None, blur: Blur | None) -> torch.Tensor:
        batch = max(p.shape[0] for p in parts)
        x = parts[0] if len(parts) == 1 else torch.cat(
            [p.expand(batch, -1, -1, -1) for p in parts], dim=1)
        if blur is not None:
            x = blur(x)
        bias = self.bias * self.lr_mul if self.bias is not None else None
        y = conv2d(x, self.weight * self.weight_gain, bias, self.stride, self.padding,
                   impl="ref")
        if activation is not None:
            y = activation(y)
        return y if gain == 1.0 else y * gain

    def _forward_fast(self, parts: tuple[torch.Tensor, ...], gain: float,
                      activation: BiasLeakyReLU | None, blur: Blur | None) -> torch.Tensor:
        scale = gain if activation is None else gain * activation.scale
        # a weight with size-1 dimensions gets its gradient with the weight's strides
        weight = contiguous_grad(self.weight) * (self.weight_gain * scale)
        bias = self.bias * self.lr_mul if self.bias is not None else None
        if activation is not None:
            bias = activation.bias if bias is None else bias + activation.bias
        if bias is not None and scale != 1.0:
            bias = bias * scale
        stride = self.stride
        if blur is not None:
            if len(parts) > 1:
                parts = (torch.cat([p.expand(max(q.shape[0] for q in parts), -1, -1, -1)
                                    for p in parts], dim=1),)
            if self.kernel_size == 1 and self.padding == 0 and stride > 1:
                # a strided 1x1 convolution reads only every stride-th blurred pixel
                parts = (blur(parts[0], down=stride),)
                stride = 1
            else:
                parts = (blur(parts[0]),)
        if len(parts) == 1:
            out = conv2d(parts[0], weight, bias, stride, self.padding, impl="fast")
        else:
            # the part with the full batch carries the bias; the others are added to it
            order = sorted(range(len(parts)), key=lambda i: -parts[i].shape[0])
            starts = [0]
            for p in parts:
                starts.append(starts[-1] + p.shape[1])
            out = conv2d(parts[order[0]], weight[:, starts[order[0]]:starts[order[0] + 1]],
                         bias, stride, self.padding, impl="fast")
            for i in order[1:]:
                out = out.add_(conv2d(parts[i], weight[:, starts[i]:starts[i + 1]], None,
                                      stride, self.padding, impl="fast"))
        return out if activation is None else activation.activation_(out)

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}, padding={self.padding}, bias={self.bias is not None}"
        )
