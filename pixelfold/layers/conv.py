"""A 2-D convolution with a cheaper gradient of its gradient (R1, path length).

The definition is [`reference.conv2d`][pixelfold.layers.ops.reference.conv2d] (``F.conv2d``);
the fast implementation, ``pixelfold/layers/ops/conv_fast.py``, computes the input gradient
through an autograd function of its own whose backward takes the weight term of the double
backward from the weight-gradient kernel (the one the ordinary backward uses) instead of
PyTorch's generic double backward, and a stride-2 weight gradient of channels-last CPU input
(64x64 and larger) from NCHW copies. Values and gradients of every order are those of ``F.conv2d``.
"""

from __future__ import annotations

import torch

from .ops import Impl, conv_fast, reference, resolve_impl
from .ops.conv_fast import transposed_output_padding

__all__ = ["conv2d", "transposed_output_padding"]


def conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    stride: int = 1,
    padding: int = 0,
    *,
    impl: Impl | None = None,
) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, stride, padding)`` (square stride and padding, no groups, no
    dilation) with a cheaper second-order backward.

    The first backward is the usual one; for stride 1 the fast implementation computes the
    gradient of the input gradient (what R1 and path-length penalties differentiate) with the
    convolution weight-gradient kernel instead of PyTorch's generic double backward: on 2 CPU
    cores 15-25% off the double backward of 3x3 convolutions at discriminator shapes. For
    stride 2 the input gradient and its double backward are ``F.conv2d``'s own, and the
    first-order weight gradient of channels-last CPU input of at least 64x64 pixels is
    computed from NCHW copies (oneDNN's NCHW kernel is 2-4x faster there). Without autograd
    recording or while ``torch.compile`` traces, it is ``F.conv2d`` itself.

    Args:
        x: input ``(B, Cin, H, W)``.
        weight: ``(Cout, Cin, k, k)``.
        bias: optional ``(Cout,)``.
        stride: stride on both axes.
        padding: zero padding on both sides of both axes.
        impl: ``"ref"`` or ``"fast"``; default: [`get_impl()`][pixelfold.layers.get_impl].
    """
    if x.ndim != 4 or weight.ndim != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(f"conv2d expects x (B, Cin, H, W) and weight (Cout, Cin, k, k) with "
                         f"matching Cin, got x {tuple(x.shape)} and weight "
                         f"{tuple(weight.shape)}")
    if resolve_impl(impl) == "ref":
        return reference.conv2d(x, weight, bias, stride, padding)
    return conv_fast.conv2d(x, weight, bias, stride, padding)
