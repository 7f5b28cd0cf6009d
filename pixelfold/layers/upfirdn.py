"""FIR filtered up/down-sampling (``upfirdn2d``) in pure PyTorch.

``upfirdn2d`` upsamples by zero insertion, pads, applies a 2-D FIR filter depthwise and then
keeps every ``down``-th sample, exactly as the StyleGAN2 CUDA op defines it, so modules built on
it load StyleGAN2-family weights. [`Upsample`][pixelfold.layers.Upsample],
[`Downsample`][pixelfold.layers.Downsample] and [`Blur`][pixelfold.layers.Blur] carry the
kernel as a (non-persistent) buffer.

``upfirdn2d`` is the definition; the modules run two cheaper computations of the same result
(equal to float rounding, tested against ``upfirdn2d``):

* [`upsample2d`][pixelfold.layers.upfirdn.upsample2d]: no zero insertion. A separable kernel is
  applied per axis and per output phase (``factor`` short 1-D filters on the input, then an
  interleave); a general 2-D kernel becomes one stride-``factor`` depthwise transposed
  convolution.
* [`filter2d`][pixelfold.layers.upfirdn.filter2d]: one depthwise convolution with the padding
  built in (no padded copy) and the decimation done by its stride (no discarded outputs).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .conv import transposed_output_padding

__all__ = ["Blur", "Downsample", "Upsample", "filter2d", "make_kernel", "separable_taps",
           "upfirdn2d", "upsample2d"]


def make_kernel(kernel: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """A normalized 2-D FIR kernel: the outer product of a 1-D kernel with itself (or a 2-D
    kernel as given), divided by its sum.

    Args:
        kernel: 1-D taps such as ``(1, 3, 3, 1)``, or a 2-D kernel.
    """
    k = torch.as_tensor(kernel, dtype=torch.float32, device="cpu")
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    if k.ndim != 2 or k.numel() == 0:
        raise ValueError(f"kernel must be 1-D or 2-D and non-empty, got shape {tuple(k.shape)}")
    total = k.sum()
    if total == 0:
        raise ValueError("kernel taps sum to 0 and cannot be normalized")
    return k / total


def separable_taps(kernel: Sequence[float] | torch.Tensor) -> tuple[float, ...] | None:
    """The per-axis taps ``t`` of the normalized kernel of ``make_kernel(kernel)`` when that
    kernel is ``outer(t, t)`` (any 1-D ``kernel``), else ``None``.

    Args:
        kernel: what [`make_kernel`][pixelfold.layers.make_kernel] accepts.
    """
    k = torch.as_tensor(kernel, dtype=torch.float64, device="cpu")
    if k.ndim != 1:
        return None
    return tuple(float(v) for v in k / k.sum())


def _pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    vals = tuple(int(v) for v in value)
    if len(vals) != 2:
        raise ValueError(f"{name} must be an int or a pair, got {value!r}")
    return vals  # type: ignore[return-value]


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Equivalent to the StyleGAN2 ``upfirdn2d`` op: for each channel,

    1. insert ``up - 1`` zeros after every sample along each axis;
    2. pad with zeros (negative padding crops);
    3. convolve with ``kernel`` (a true convolution: the kernel is flipped);
    4. keep every ``down``-th sample.

    Args:
        x: images ``(B, C, H, W)``.
        kernel: 2-D FIR kernel ``(kh, kw)``.
        up: upsampling factor, an int or ``(up_x, up_y)``.
        down: downsampling factor, an int or ``(down_x, down_y)``.
        padding: an int, ``(pad_x, pad_y)``, ``(pad_0, pad_1)`` applied to both axes as
            StyleGAN2's ``pad`` argument, or ``(x0, x1, y0, y1)``.

    Returns:
        ``(B, C, H', W')`` with ``H' = (H * up_y + y0 + y1 - kh) // down_y + 1``.
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d expects a 2-D kernel, got shape {tuple(kernel.shape)}")
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    if min(upx, upy, downx, downy) < 1:
        raise ValueError(f"up and down must be >= 1, got up={up!r}, down={down!r}")
    if isinstance(padding, int):
        px0 = px1 = py0 = py1 = padding
    else:
        pads = [int(p) for p in padding]
        if len(pads) == 2:  # StyleGAN2's (pad0, pad1), the same on both axes
            px0, px1 = py0, py1 = pads
        elif len(pads) == 4:
            px0, px1, py0, py1 = pads
        else:
            raise ValueError(f"padding must have 1, 2 or 4 entries, got {padding!r}")

    b, c, h, w = x.shape
    if upx > 1 or upy > 1:
        x = x.reshape(b, c, h, 1, w, 1)
        x = F.pad(x, [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(b, c, h * upy, w * upx)
    x = F.pad(x, [max(px0, 0), max(px1, 0), max(py0, 0), max(py1, 0)])
    x = x[:, :, max(-py0, 0): x.shape[2] - max(-py1, 0), max(-px0, 0): x.shape[3] - max(-px1, 0)]
    weight = kernel.flip([0, 1]).to(dtype=x.dtype, device=x.device)
    weight = weight[None, None].expand(c, 1, kernel.shape[0], kernel.shape[1])
    x = F.conv2d(x, weight, groups=c)
    if downx > 1 or downy > 1:
        x = x[:, :, ::downy, ::downx]
    return x


def _filter_weight(kernel: torch.Tensor, x: torch.Tensor, flip: bool) -> torch.Tensor:
    """The depthwise ``(C, 1, kh, kw)`` weight of ``kernel`` for ``x``, in ``x``'s layout."""
    k = kernel.flip([0, 1]) if flip else kernel
    k = k.to(dtype=x.dtype, device=x.device)[None, None].expand(x.shape[1], 1, *kernel.shape)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    return k.contiguous(memory_format=torch.channels_last if channels_last
                        else torch.contiguous_format)


def filter2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    padding: int | Sequence[int] = 0,
    down: int = 1,
) -> torch.Tensor:
    """``upfirdn2d(x, kernel, down=down, padding=padding)``, computed as one depthwise
    convolution of stride ``down``.

    Padding that is non-negative and the same on both sides of an axis is done by the
    convolution itself (no padded copy of ``x``); any other padding falls back to an explicit
    pad or crop. The stride computes only the samples that decimation keeps.

    The gradient with respect to ``x`` is the same kind of filter (without decimation: the
    flipped kernel with complementary padding; with it: the transposed strided depthwise
    convolution, whose own gradient is this filter again), so gradients of gradients (R1, path
    length) stay depthwise convolutions: autograd's own double backward of a grouped
    convolution would compute the kernel's gradient one channel at a time, although the kernel
    is a constant.

    Args:
        x: images ``(B, C, H, W)``.
        kernel: 2-D FIR kernel ``(kh, kw)`` (a constant: it gets no gradient).
        padding: as in [`upfirdn2d`][pixelfold.layers.upfirdn2d].
        down: decimation factor (the same on both axes).
    """
    if x.ndim != 4 or kernel.ndim != 2:
        raise ValueError(f"filter2d expects a (B, C, H, W) tensor and a 2-D kernel, got shapes "
                         f"{tuple(x.shape)} and {tuple(kernel.shape)}")
    if down < 1:
        raise ValueError(f"down must be >= 1, got {down!r}")
    if isinstance(padding, int):
        pads = (padding,) * 4
    else:
        pads = tuple(int(p) for p in padding)
        if len(pads) == 2:
            pads = pads + pads
        elif len(pads) != 4:
            raise ValueError(f"padding must have 1, 2 or 4 entries, got {padding!r}")
    if torch.is_grad_enabled() and x.requires_grad:
        px0, px1, py0, py1 = pads
        if down == 1:
            return _Filter2d.apply(x, kernel.detach(), pads)
        if px0 == px1 >= 0 and py0 == py1 >= 0:
            return _StridedFilter2d.apply(x, kernel.detach(), (py0, px0), down)
    return _filter2d(x, kernel, pads, down)  # type: ignore[arg-type]


def _filter2d(x: torch.Tensor, kernel: torch.Tensor, pads: tuple[int, int, int, int],
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


def upsample2d(
    x: torch.Tensor,
    kernel: torch.Tensor | Sequence[float],
    factor: int = 2,
    padding: Sequence[int] | None = None,
) -> torch.Tensor:
    """``upfirdn2d(x, kernel, up=factor, padding=padding)`` without inserting zeros.

    * ``kernel`` given as 1-D taps ``t`` (Python floats) stands for the separable 2-D kernel
      ``outer(t, t)``. When the output is exactly ``factor`` times the input (the default
      padding), each axis is upsampled in polyphase form: ``factor`` short filters over the
      input and an interleave, about ``len(t) / factor`` multiply-adds per output sample and
      axis, and no full-size zero-stuffed tensor.
    * a 2-D ``kernel`` runs as one depthwise stride-``factor`` transposed convolution (the
      unflipped kernel, padding ``kh - 1 - pad0``), which skips the zeros by construction.

    Other paddings fall back to [`upfirdn2d`][pixelfold.layers.upfirdn2d].

    Args:
        x: images ``(B, C, H, W)``.
        kernel: 1-D per-axis taps or a 2-D kernel ``(kh, kw)``, already scaled (upsampling by 2
            with a unit-sum kernel needs a gain of 4 to keep the mean: 2 per axis).
        factor: upsampling factor (the same on both axes).
        padding: ``(pad0, pad1)`` on both axes; default ``((p + 1) // 2 + factor - 1, p // 2)``
            with ``p = len(kernel) - factor``, which makes the output ``factor`` times larger.
    """
    if x.ndim != 4:
        raise ValueError(f"upsample2d expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    if isinstance(kernel, torch.Tensor) and kernel.ndim == 2:
        size = kernel.shape[0]
        if kernel.shape[1] != size:
            raise ValueError(f"upsample2d needs a square kernel, got shape {tuple(kernel.shape)}")
        taps: tuple[float, ...] | None = None
    else:
        taps = tuple(float(t) for t in kernel)
        size = len(taps)
        if size == 0:
            raise ValueError("upsample2d needs at least one tap")
    if padding is None:
        p = size - factor
        padding = ((p + 1) // 2 + factor - 1, p // 2)
    pad0, pad1 = (int(v) for v in padding)
    if taps is not None:
        if pad0 + pad1 == size - 1 and 0 <= pad0 and 0 <= pad1:
            y = _upsample_1d(x, taps, factor, pad0, dim=3)
            return _upsample_1d(y, taps, factor, pad0, dim=2)
        t = torch.tensor(taps, dtype=x.dtype, device=x.device)
        return upfirdn2d(x, t[:, None] * t[None, :], up=factor, padding=(pad0, pad1))
    conv_pad = size - 1 - pad0
    out_pad = pad1 - pad0 + factor - 1
    if conv_pad < 0 or not 0 <= out_pad < factor:
        return upfirdn2d(x, kernel, up=factor, padding=(pad0, pad1))  # type: ignore[arg-type]
    return F.conv_transpose2d(x, _filter_weight(kernel, x, flip=False),  # type: ignore[arg-type]
                              stride=factor, padding=conv_pad, output_padding=out_pad,
                              groups=x.shape[1])


class Upsample(nn.Module):
    """Upsample by ``factor`` with a FIR anti-imaging filter (StyleGAN2's ``Upsample``).

    The kernel is scaled by ``factor**2`` to keep the mean, and padded so that the output is
    exactly ``factor`` times larger (for ``(1, 3, 3, 1)`` and factor 2: padding ``(2, 1)``).

    Args:
        kernel: 1-D taps of the separable filter.
        factor: integer upsampling factor.
    """

    def __init__(self, kernel: Sequence[float] = (1, 3, 3, 1), factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor**2, persistent=False)
        taps = separable_taps(kernel)
        # the per-axis taps of the separable kernel, gain ``factor`` per axis (None: 2-D kernel)
        self.taps = None if taps is None else tuple(t * factor for t in taps)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` ``(B, C, H, W)`` to ``(B, C, factor * H, factor * W)``, computed by
        [`upsample2d`][pixelfold.layers.upfirdn.upsample2d]: exactly ``upfirdn2d(x, kernel,
        up=factor, padding=pad)`` without the zero insertion."""
        kernel = self.kernel if self.taps is None else self.taps
        return upsample2d(x, kernel, self.factor, self.pad)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, pad={self.pad}"


class Downsample(nn.Module):
    """Downsample by ``factor`` after a FIR anti-aliasing filter (StyleGAN2's ``Downsample``).

    Args:
        kernel: 1-D taps of the separable filter.
        factor: integer downsampling factor.
    """

    def __init__(self, kernel: Sequence[float] = (1, 3, 3, 1), factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel), persistent=False)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``upfirdn2d(x, kernel, down=factor, padding=pad)``, as one strided depthwise conv
        ([`filter2d`][pixelfold.layers.upfirdn.filter2d])."""
        return filter2d(x, self.kernel, self.pad, down=self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, pad={self.pad}"


class Blur(nn.Module):
    """FIR blur with explicit padding, used before strided convolutions (StyleGAN2's ``Blur``).

    Args:
        kernel: 1-D taps of the separable filter.
        padding: ``(pad0, pad1)`` applied on both axes.
        upsample_factor: if > 1 the kernel is scaled by ``upsample_factor**2`` (used after a
            transposed convolution).
    """

    def __init__(
        self,
        kernel: Sequence[float] = (1, 3, 3, 1),
        padding: Sequence[int] = (1, 1),
        upsample_factor: int = 1,
    ) -> None:
        super().__init__()
        k = make_kernel(kernel)
        if upsample_factor > 1:
            k = k * upsample_factor**2
        self.register_buffer("kernel", k, persistent=False)
        self.pad = tuple(int(p) for p in padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``upfirdn2d(x, kernel, padding=pad)``, as one depthwise conv with the padding built
        in ([`filter2d`][pixelfold.layers.upfirdn.filter2d])."""
        return filter2d(x, self.kernel, self.pad)

    def extra_repr(self) -> str:
        return f"pad={self.pad}"
