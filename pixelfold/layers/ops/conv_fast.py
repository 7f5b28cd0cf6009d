"""The fast convolution: ``F.conv2d``'s values and gradients of every order, with a cheaper
gradient of the input gradient.

R1 and path-length regularization differentiate a gradient: for every convolution
``y = conv(x, w)`` the first backward computes ``dx = conv_transpose(dy, w)`` and the second
needs that term's gradient with respect to ``w``. PyTorch's generic double backward of a
convolution computes it as a convolution of *transposed* activations (the batch used as
channels) plus transposing copies, which on CPU costs more than the whole first backward.
[`conv2d_gradfix`][pixelfold.layers.ops.conv_fast.conv2d_gradfix] computes ``dx`` through an
autograd function of its own whose backward gets that weight term from the weight-gradient
kernel instead, the one the ordinary backward uses. On 2 CPU cores this takes 15-25% off the
double backward of stride-1 3x3 convolutions at discriminator shapes; for stride 2 oneDNN's
weight-gradient kernel is slower than the generic path, so
[`conv2d`][pixelfold.layers.ops.conv_fast.conv2d] runs ``F.conv2d`` there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["conv2d", "conv2d_gradfix", "transposed_output_padding"]


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
           padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)``: through
    [`conv2d_gradfix`][pixelfold.layers.ops.conv_fast.conv2d_gradfix] for stride 1, where its
    double backward is the faster one, ``F.conv2d`` itself otherwise."""
    if stride == 1:
        return conv2d_gradfix(x, weight, bias, stride, padding)
    return F.conv2d(x, weight, bias, stride=stride, padding=padding)


def conv2d_gradfix(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   stride: int, padding: int) -> torch.Tensor:
    """``F.conv2d`` (square stride and padding, no groups, no dilation) whose gradient of the
    input gradient uses the convolution weight-gradient kernel instead of PyTorch's generic
    double backward. Without autograd recording (inference, ``torch.no_grad``) and while
    ``torch.compile`` traces (compiled graphs have no double backward), it is ``F.conv2d``
    itself."""
    if (not torch.is_grad_enabled() or torch.compiler.is_compiling()
            or not (x.requires_grad or weight.requires_grad
                    or (bias is not None and bias.requires_grad))):
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    device = x.device.type
    if device != "meta" and torch.is_autocast_enabled(device):  # meta: no autocast state
        # cast as autocast would for F.conv2d, so that the saved tensors and the backward
        # (which runs outside autocast) use that dtype too
        dtype = torch.get_autocast_dtype(device)
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    return _Conv2d.apply(x, weight, bias, int(stride), int(padding))


def transposed_output_padding(size: Sequence[int], out_size: Sequence[int], stride: int,
                              padding: Sequence[int], kernel: Sequence[int]) -> list[int]:
    """The ``output_padding`` (per axis) with which ``conv_transpose2d`` maps the
    ``out_size`` output of a convolution (``stride``, ``padding``, ``kernel``) back to the
    input's ``size``: the rows a strided convolution skipped at the end."""
    return [size[i] - ((out_size[i] - 1) * stride - 2 * padding[i] + kernel[i])
            for i in range(2)]


def _weight_grad(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int,
                 padding: int, bias: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(dL/dweight, dL/dbias)`` of ``conv2d(x, weight)`` for the output gradient ``grad``."""
    _, gw, gb = torch.ops.aten.convolution_backward(
        grad, x, weight, [weight.shape[0]] if bias else None, [stride, stride],
        [padding, padding], [1, 1], False, [0, 0], 1, [False, True, bias])
    return gw, gb


class _Conv2d(torch.autograd.Function):
    """``F.conv2d`` whose input gradient is a ``_Conv2dInputGrad`` node."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                stride: int, padding: int) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        need_x, need_w, need_b = ctx.needs_input_grad[:3]
        gx = gw = gb = None
        if need_x:
            gx = _Conv2dInputGrad.apply(grad, weight, s, p, (x.shape[2], x.shape[3]))
        if need_w or (need_b and ctx.has_bias):
            gw, gb = _weight_grad(grad, x, weight, s, p, bias=bool(need_b and ctx.has_bias))
            if not need_w:
                gw = None
        return gx, gw, gb, None, None


class _Conv2dInputGrad(torch.autograd.Function):
    """``dL/dx = conv_transpose2d(grad, weight)`` of a convolution; its own gradient is a
    convolution (with respect to ``grad``) and a weight gradient (with respect to ``weight``)."""

    @staticmethod
    def forward(ctx: Any, grad: torch.Tensor, weight: torch.Tensor, stride: int, padding: int,
                size: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(grad, weight)
        ctx.stride, ctx.padding = stride, padding
        extra = transposed_output_padding(size, grad.shape[2:], stride, (padding, padding),
                                          weight.shape[2:])
        return F.conv_transpose2d(grad, weight, stride=stride, padding=padding,
                                  output_padding=extra)

    @staticmethod
    def backward(ctx: Any, gg: torch.Tensor) -> tuple[Any, ...]:
        grad, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        d_grad = d_weight = None
        if ctx.needs_input_grad[0]:
            d_grad = F.conv2d(gg, weight, stride=s, padding=p)
        if ctx.needs_input_grad[1]:
            # <grad, conv2d(gg, weight)> is what dx contributes: its weight gradient
            d_weight = _weight_grad(grad, gg, weight, s, p)[0]
        return d_grad, d_weight, None, None, None
