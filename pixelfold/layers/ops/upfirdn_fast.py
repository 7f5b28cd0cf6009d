"""Fast FIR resampling: the values of
[`reference.upfirdn2d`][pixelfold.layers.ops.reference.upfirdn2d] (to float rounding)
without its zero-stuffed, padded copies.

* [`filter2d`][pixelfold.layers.ops.upfirdn_fast.filter2d] (no upsampling): one depthwise
  convolution with the padding built in (no padded copy) and the decimation done by its stride
  (no discarded outputs). Its gradient is the same kind of filter (without decimation: the
  flipped kernel with complementary padding; with it: the transposed strided depthwise
  convolution, whose own gradient is this filter again), so gradients of gradients (R1, path
  length) stay depthwise convolutions: autograd's own double backward of a grouped
  convolution would compute the kernel's gradient one channel at a time, although the kernel
  is a constant.
* [`upsample2d`][pixelfold.layers.ops.upfirdn_fast.upsample2d] (no decimation): no zero
  insertion. A separable kernel is applied per axis and per output phase (``factor`` short 1-D
  filters on the input, then an interleave); a general 2-D kernel becomes one
  stride-``factor`` depthwise transposed convolution.
* [`upfirdn2d`][pixelfold.layers.ops.upfirdn_fast.upfirdn2d]: whichever of the two applies,
  else the reference.

Paddings are per axis, ``(x0, x1, y0, y1)``, as the public ops normalize them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

from . import reference
from ._util import channels_last
from .conv_fast import transposed_output_padding

__all__ = ["filter2d", "upfirdn2d", "upsample2d"]

Pads = tuple[int, int, int, int]


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: tuple[int, int],
              down: tuple[int, int], padding: Pads) -> torch.Tensor:
    """``reference.upfirdn2d`` through [`filter2d`][pixelfold.layers.ops.upfirdn_fast.filter2d]
    (no upsampling, one decimation factor) or
    [`upsample2d`][pixelfold.layers.ops.upfirdn_fast.upsample2d] (no decimation, one
    upsampling factor); other combinations run the reference."""
    (upx, upy), (downx, downy) = up, down
    if upx == upy == 1 and downx == downy:
        return filter2d(x, kernel, padding, downx)
    if downx == downy == 1 and upx == upy:
        return upsample2d(x, kernel, upx, padding)
    return reference.upfirdn2d(x, kernel, up, down, padding)


def filter2d(x: torch.Tensor, kernel: torch.Tensor, padding: Pads, down: int = 1
             ) -> torch.Tensor:
    """``upfirdn2d(x, kernel, down=down, padding=padding)`` as one depthwise convolution of
    stride ``down``: padding that is non-negative and the same on both sides of an axis is done
    by the convolution itself, any other by an explicit pad or crop."""
    if torch.is_grad_enabled() and x.requires_grad:
        px0, px1, py0, py1 = padding
        if down == 1:
            return _Filter2d.apply(x, kernel.detach(), padding)
        if px0 == px1 >= 0 and py0 == py1 >= 0:
            return _StridedFilter2d.apply(x, kernel.detach(), (py0, px0), down)
    return _filter2d(x, kernel, padding, down)


def _filter_weight(kernel: torch.Tensor, x: torch.Tensor, flip: bool) -> torch.Tensor:
    """The depthwise ``(C, 1, kh, kw)`` weight of ``kernel`` for ``x``, in ``x``'s layout."""
    k = kernel.flip([0, 1]) if flip else kernel
    k = k.to(dtype=x.dtype, device=x.device)[None, None].expand(x.shape[1], 1, *kernel.shape)
    return k.contiguous(memory_format=torch.channels_last if channels_last(x)
                        else torch.contiguous_format)


def _filter2d(x: torch.Tensor, kernel: torch.Tensor, pads: Pads,
              down: int = 1) -> torch.Tensor:
    px0, px1, py0, py1 = pads
    conv_pad = (0, 0)
    if px0 == px1 >= 0 and py0 == py1 >= 0:
        conv_pad = (py0, px0)
    else:
        x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
        x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0),
              max(-px0, 0): x.shape[3] - max(-px1, 0)]
    return F.conv2d(x, _filter_weight(kernel, x, flip=True), stride=down, padding=conv_pad,
                    groups=x.shape[1])


class _Filter2d(torch.autograd.Function):
    """``filter2d`` without decimation, whose backward is ``filter2d`` with the flipped kernel:
    ``y = x (*) k`` (true convolution, padding ``p0, p1``) gives ``dL/dx = g (*) flip(k)`` with
    padding ``k - 1 - p0, k - 1 - p1``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: torch.Tensor,
                pads: tuple[int, int, int, int]) -> torch.Tensor:
        ctx.save_for_backward(kernel)
        ctx.pads = pads
        return _filter2d(x, kernel, pads)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (kernel,) = ctx.saved_tensors
        kh, kw = kernel.shape
        px0, px1, py0, py1 = ctx.pads
        pads = (kw - 1 - px0, kw - 1 - px1, kh - 1 - py0, kh - 1 - py1)
        return _Filter2d.apply(grad, kernel.flip([0, 1]), pads), None, None


class _StridedFilter2d(torch.autograd.Function):
    """``filter2d`` with decimation ``down`` and symmetric padding ``(py, px)``, i.e. a strided
    depthwise convolution; its backward is the transposed convolution
    (``_StridedFilter2dTranspose``), whose backward is this function again."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int],
                down: int) -> torch.Tensor:
        ctx.save_for_backward(kernel)
        ctx.pad, ctx.down, ctx.size = pad, down, (x.shape[2], x.shape[3])
        py, px = pad
        return _filter2d(x, kernel, (px, px, py, py), down)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        (kernel,) = ctx.saved_tensors
        return (_StridedFilter2dTranspose.apply(grad, kernel, ctx.pad, ctx.down, ctx.size),
                None, None, None)


class _StridedFilter2dTranspose(torch.autograd.Function):
    """The gradient of ``_StridedFilter2d`` with respect to its input: a transposed strided
    depthwise convolution back to the input size ``size``."""

    @staticmethod
    def forward(ctx: Any, grad: torch.Tensor, kernel: torch.Tensor, pad: tuple[int, int],
                down: int, size: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(kernel)
        ctx.pad, ctx.down = pad, down
        extra = transposed_output_padding(size, grad.shape[2:], down, pad, kernel.shape)
        weight = _filter_weight(kernel, grad, flip=True)
        return F.conv_transpose2d(grad, weight, stride=down, padding=pad,
                                  output_padding=extra, groups=grad.shape[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None, None]:
        (kernel,) = ctx.saved_tensors
        return _StridedFilter2d.apply(grad, kernel, ctx.pad, ctx.down), None, None, None, None


def _upsample_1d(x: torch.Tensor, taps: Sequence[float], factor: int, pad0: int,
                 dim: int) -> torch.Tensor:
    """Polyphase form of 1-D upfirdn along ``dim`` for paddings with ``pad0 + pad1 ==
    len(taps) - 1`` (output exactly ``factor`` times longer).

    Output sample ``factor * m + r`` is ``sum_t taps[t] * x[m - j]`` over the taps ``t`` with
    ``t = len(taps) - 1 - pad0 + r + factor * j``: each phase ``r`` is a short filter on ``x``
    itself, and the phases are interleaved.
    """
    n = x.shape[dim]
    k = len(taps)
    phases: list[list[tuple[float, int]]] = []
    for r in range(factor):
        base = k - 1 - pad0 + r
        phases.append([(taps[t], (t - base) // factor) for t in range(k)
                       if (t - base) % factor == 0])
    shifts = [j for terms in phases for _, j in terms]
    left, right = max(max(shifts, default=0), 0), max(-min(shifts, default=0), 0)
    pad = [0, 0] * (x.ndim - 1 - dim % x.ndim) + [left, right]
    xp = F.pad(x, pad) if left or right else x
    outs = []
    for terms in phases:
        acc: torch.Tensor | None = None
        for coef, j in terms:
            part = xp.narrow(dim, left - j, n)
            acc = part * coef if acc is None else torch.add(acc, part, alpha=coef)
        outs.append(acc if acc is not None else torch.zeros_like(x))
    shape = list(x.shape)
    shape[dim] = n * factor
    return torch.stack(outs, dim=dim % x.ndim + 1).reshape(shape)


def upsample2d(x: torch.Tensor, kernel: torch.Tensor | Sequence[float], factor: int,
               padding: Pads) -> torch.Tensor:
    """``upfirdn2d(x, kernel, up=factor, padding=padding)`` without inserting zeros.

    * ``kernel`` given as 1-D taps ``t`` (Python floats) stands for the separable 2-D kernel
      ``outer(t, t)``. When the output is exactly ``factor`` times the input on both axes, each
      axis is upsampled in polyphase form: ``factor`` short filters over the input and an
      interleave, about ``len(t) / factor`` multiply-adds per output sample and axis, and no
      full-size zero-stuffed tensor.
    * a 2-D ``kernel`` runs as one depthwise stride-``factor`` transposed convolution (the
      unflipped kernel, padding ``k - 1 - pad0`` per axis), which skips the zeros by
      construction.

    Other paddings run the reference.
    """
    x0, x1, y0, y1 = padding
    if not isinstance(kernel, torch.Tensor):
        taps = tuple(float(t) for t in kernel)
        size = len(taps)
        if all(p0 + p1 == size - 1 and p0 >= 0 and p1 >= 0 for p0, p1 in ((x0, x1), (y0, y1))):
            y = _upsample_1d(x, taps, factor, x0, dim=3)
            return _upsample_1d(y, taps, factor, y0, dim=2)
        t = torch.tensor(taps, dtype=x.dtype, device=x.device)
        return reference.upfirdn2d(x, t[:, None] * t[None, :], (factor, factor), (1, 1),
                                   padding)
    kh, kw = kernel.shape
    conv_pad = (kh - 1 - y0, kw - 1 - x0)
    out_pad = (y1 - y0 + factor - 1, x1 - x0 + factor - 1)
    if min(conv_pad) < 0 or not all(0 <= p < factor for p in out_pad):
        return reference.upfirdn2d(x, kernel, (factor, factor), (1, 1), padding)
    return F.conv_transpose2d(x, _filter_weight(kernel, x, flip=False), stride=factor,
                              padding=conv_pad, output_padding=out_pad, groups=x.shape[1])
