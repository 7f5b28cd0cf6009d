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
[`conv2d`][pixelfold.layers.ops.conv_fast.conv2d] keeps ``F.conv2d``'s input gradient (and its
double backward) there and changes only the first-order weight gradient: for channels-last
input on the CPU, oneDNN's stride-2 weight-gradient kernel is 2-4x slower in channels-last
than in NCHW (2 cores, discriminator shapes: 354 vs 107 ms at 128 -> 256 channels on 257x257,
320 vs 77 ms at 256 -> 512 on 129x129), more than the two layout copies cost, so that
gradient is computed from NCHW copies for inputs of at least 64x64 pixels (below, the copies
cost more than they save).

Both autograd functions compute a gradient only when the backward pass uses it (a custom
function's ``needs_input_grad`` says only what requires grad): R1's ``autograd.grad`` with
respect to the images needs no weight gradient in its first backward.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from ._util import channels_last

__all__ = ["conv2d", "conv2d_gradfix", "transposed_output_padding"]


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
           padding: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)``: through
    [`conv2d_gradfix`][pixelfold.layers.ops.conv_fast.conv2d_gradfix] for stride 1, where its
    double backward is the faster one; for other strides ``F.conv2d``'s own gradients except
    the first-order weight gradient of channels-last CPU input, computed in NCHW (see the
    module description)."""
    if stride == 1:
        return conv2d_gradfix(x, weight, bias, stride, padding)
    if not _records(x, weight, bias):
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    x, weight, bias = _autocast(x, weight, bias)
    return _StridedConv2d.apply(x, weight, bias, int(stride), int(padding))


def _records(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether a convolution of these operands needs pixelfold's autograd functions: autograd
    records (not under ``torch.compile``, whose graphs have no double backward) and an
    operand requires grad."""
    return (torch.is_grad_enabled() and not torch.compiler.is_compiling()
            and (x.requires_grad or weight.requires_grad
                 or (bias is not None and bias.requires_grad)))


def _autocast(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """The operands cast as autocast would cast them for ``F.conv2d``, so that the saved
    tensors and the backward (which runs outside autocast) use that dtype too."""
    device = x.device.type
    if device != "meta" and torch.is_autocast_enabled(device):  # meta: no autocast state
        dtype = torch.get_autocast_dtype(device)
        x, weight = x.to(dtype), weight.to(dtype)
        bias = None if bias is None else bias.to(dtype)
    return x, weight, bias


def _used(ctx: Any, index: int) -> bool:
    """Whether the running backward pass uses the gradient of input ``index`` of the autograd
    function ``ctx`` (``ctx.needs_input_grad`` only says that the input requires grad; an
    ``autograd.grad`` call may need less)."""
    if not ctx.needs_input_grad[index]:
        return False
    node = ctx.next_functions[index][0]
    will_execute = getattr(torch._C, "_will_engine_execute_node", None)
    if node is None or will_execute is None:
        return True
    try:
        return bool(will_execute(node))
    except RuntimeError:  # a leaf under autograd.grad: the engine cannot tell
        return True


def conv2d_gradfix(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                   stride: int, padding: int) -> torch.Tensor:
    """``F.conv2d`` (square stride and padding, no groups, no dilation) whose gradient of the
    input gradient uses the convolution weight-gradient kernel instead of PyTorch's generic
    double backward. Without autograd recording (inference, ``torch.no_grad``) and while
    ``torch.compile`` traces (compiled graphs have no double backward), it is ``F.conv2d``
    itself."""
    if not _records(x, weight, bias):
        return F.conv2d(x, weight, bias, stride=stride, padding=padding)
    x, weight, bias = _autocast(x, weight, bias)
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


def _parameter_grads(grad: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, stride: int,
                     padding: int, need_w: bool, need_b: bool, *, via_nchw: bool = False
                     ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """The weight and bias gradients a backward pass uses (``None`` for the others);
    ``via_nchw``: computed on NCHW copies, the weight gradient returned in the weight's
    layout."""
    if not (need_w or need_b):
        return None, None
    if via_nchw:
        gw, gb = _weight_grad(grad.contiguous(), x.contiguous(), weight.contiguous(), stride,
                              padding, bias=need_b)
        if channels_last(weight):
            gw = gw.contiguous(memory_format=torch.channels_last)
    else:
        gw, gb = _weight_grad(grad, x, weight, stride, padding, bias=need_b)
    return (gw if need_w else None), gb


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
        gx = (_Conv2dInputGrad.apply(grad, weight, s, p, (x.shape[2], x.shape[3]))
              if _used(ctx, 0) else None)
        gw, gb = _parameter_grads(grad, x, weight, s, p, _used(ctx, 1), _used(ctx, 2))
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


_NCHW_MIN_PIXELS = 64 * 64
"""Input size (pixels) from which the stride-2 weight gradient goes through NCHW copies: 2-4x
faster from 65x65 up (2 cores, 512 channels: 89 vs 50 ms at 65x65 with the copies), no faster
at 33x33 (12.4 vs 12.5 ms) and slower below (17x17: 3.9 vs 5.5 ms)."""


class _StridedConv2d(_Conv2d):
    """``F.conv2d`` (any stride) with ``F.conv2d``'s input gradient (differentiable, for R1)
    and, in a first-order backward of channels-last CPU input, the weight gradient computed on
    NCHW copies (oneDNN's faster kernel there)."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        x, weight = ctx.saved_tensors
        s, p = ctx.stride, ctx.padding
        gx = None
        if _used(ctx, 0):
            gx = torch.ops.aten.convolution_backward(
                grad, x, weight, None, [s, s], [p, p], [1, 1], False, [0, 0], 1,
                [True, False, False])[0]
        via_nchw = (not torch.is_grad_enabled() and x.device.type == "cpu"
                    and channels_last(x) and x.shape[2] * x.shape[3] >= _NCHW_MIN_PIXELS)
        gw, gb = _parameter_grads(grad, x, weight, s, p, _used(ctx, 1), _used(ctx, 2),
                                  via_nchw=via_nchw)
        return gx, gw, gb, None, None
