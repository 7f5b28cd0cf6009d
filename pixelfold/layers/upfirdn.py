"""FIR filtered up/down-sampling (``upfirdn2d``) in pure PyTorch.

``upfirdn2d`` upsamples by zero insertion, pads, applies a 2-D FIR filter depthwise and then
keeps every ``down``-th sample, exactly as the StyleGAN2 CUDA op defines it (factors and
paddings per axis, as NVlabs reads them), so modules built on it load StyleGAN2-family weights.
[`Upsample`][pixelfold.layers.Upsample], [`Downsample`][pixelfold.layers.Downsample] and
[`Blur`][pixelfold.layers.Blur] carry the kernel as a (non-persistent) buffer and their
``pad`` as ``(pad0, pad1)`` before and after on both axes.

The definition is [`reference.upfirdn2d`][pixelfold.layers.ops.reference.upfirdn2d]; the fast
implementation (``pixelfold/layers/ops/upfirdn_fast.py``, the default) computes the same
result with two cheaper computations (equal to float rounding, tested against the reference):

* [`upsample2d`][pixelfold.layers.upsample2d]: no zero insertion. A separable kernel is
  applied per axis and per output phase (``factor`` short 1-D filters on the input, then an
  interleave); a general 2-D kernel becomes one stride-``factor`` depthwise transposed
  convolution.
* [`filter2d`][pixelfold.layers.filter2d]: one depthwise convolution with the padding
  built in (no padded copy) and the decimation done by its stride (no discarded outputs).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..utils.spec import check_int
from .ops import Impl, reference, resolve_impl, upfirdn_fast

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
        raise ValueError(f"{name} must be an int or a pair (x, y), got {value!r}")
    return vals  # type: ignore[return-value]


def _padding(padding: int | Sequence[int]) -> tuple[int, int, int, int]:
    """``(x0, x1, y0, y1)`` from an int, ``(pad_x, pad_y)`` or ``(x0, x1, y0, y1)``."""
    if isinstance(padding, int):
        return (padding,) * 4  # type: ignore[return-value]
    pads = tuple(int(p) for p in padding)
    if len(pads) == 2:
        return pads[0], pads[0], pads[1], pads[1]
    if len(pads) == 4:
        return pads  # type: ignore[return-value]
    raise ValueError(f"padding must be an int, (pad_x, pad_y) or (x0, x1, y0, y1), "
                     f"got {padding!r}")


def both_axes(pad: Sequence[int]) -> tuple[int, int, int, int]:
    """``(pad0, pad1)`` before and after on *both* axes (the ``pad`` of StyleGAN2's
    rosinality port and of the modules here) as ``(x0, x1, y0, y1)``."""
    p0, p1 = pad
    return p0, p1, p0, p1


def _check_images(x: torch.Tensor, kernel: torch.Tensor, name: str) -> None:
    if x.ndim != 4:
        raise ValueError(f"{name} expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if kernel.ndim != 2:
        raise ValueError(f"{name} expects a 2-D kernel, got shape {tuple(kernel.shape)}")


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: int | Sequence[int] = 1,
    down: int | Sequence[int] = 1,
    padding: int | Sequence[int] = 0,
    *,
    impl: Impl | None = None,
) -> torch.Tensor:
    """Upsample, pad, FIR-filter and downsample a batch of images.

    Equivalent to the StyleGAN2 ``upfirdn2d`` op, with NVlabs' per-axis arguments: for each
    channel,

    1. insert ``up - 1`` zeros after every sample along each axis;
    2. pad with zeros (negative padding crops);
    3. convolve with ``kernel`` (a true convolution: the kernel is flipped);
    4. keep every ``down``-th sample.

    The definition is [`reference.upfirdn2d`][pixelfold.layers.ops.reference.upfirdn2d]; the
    fast implementation runs [`filter2d`][pixelfold.layers.filter2d] or
    [`upsample2d`][pixelfold.layers.upsample2d] where they apply.

    Args:
        x: images ``(B, C, H, W)``.
        kernel: 2-D FIR kernel ``(kh, kw)``.
        up: upsampling factor, an int or ``(up_x, up_y)``.
        down: downsampling factor, an int or ``(down_x, down_y)``.
        padding: an int (all four sides), ``(pad_x, pad_y)`` (both sides of each axis, as
            NVlabs reads a pair) or ``(x0, x1, y0, y1)``. StyleGAN2's rosinality port passes
            ``(pad0, pad1)`` meaning before and after on *both* axes: that is
            ``(pad0, pad1, pad0, pad1)`` here.
        impl: ``"ref"`` or ``"fast"``; default: [`get_impl()`][pixelfold.layers.get_impl].

    Returns:
        ``(B, C, H', W')`` with ``H' = (H * up_y + y0 + y1 - kh) // down_y + 1`` and
        ``W' = (W * up_x + x0 + x1 - kw) // down_x + 1``.

    Example:
        >>> x = torch.arange(4.0).reshape(1, 1, 1, 4)
        >>> upfirdn2d(x, torch.ones(1, 2), padding=(1, 0))  # pad_x = 1, pad_y = 0
        tensor([[[[0., 1., 3., 5., 3.]]]])
    """
    _check_images(x, kernel, "upfirdn2d")
    upx, upy = _pair(up, "up")
    downx, downy = _pair(down, "down")
    if min(upx, upy, downx, downy) < 1:
        raise ValueError(f"up and down must be >= 1, got up={up!r}, down={down!r}")
    pads = _padding(padding)
    if resolve_impl(impl) == "ref":
        return reference.upfirdn2d(x, kernel, (upx, upy), (downx, downy), pads)
    return upfirdn_fast.upfirdn2d(x, kernel, (upx, upy), (downx, downy), pads)


def filter2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    padding: int | Sequence[int] = 0,
    down: int = 1,
    *,
    impl: Impl | None = None,
) -> torch.Tensor:
    """``upfirdn2d(x, kernel, down=down, padding=padding)``, computed (fast implementation) as
    one depthwise convolution of stride ``down``.

    Padding that is non-negative and the same on both sides of an axis is done by the
    convolution itself (no padded copy of ``x``); any other padding falls back to an explicit
    pad or crop. The stride computes only the samples that decimation keeps. The gradient with
    respect to ``x`` is the same kind of filter, so gradients of gradients (R1, path length)
    stay depthwise convolutions (see ``pixelfold/layers/ops/upfirdn_fast.py``).

    Args:
        x: images ``(B, C, H, W)``.
        kernel: 2-D FIR kernel ``(kh, kw)`` (a constant: it gets no gradient).
        padding: as in [`upfirdn2d`][pixelfold.layers.upfirdn2d] (per axis).
        down: decimation factor (the same on both axes).
        impl: ``"ref"`` or ``"fast"``; default: [`get_impl()`][pixelfold.layers.get_impl].
    """
    if x.ndim != 4 or kernel.ndim != 2:
        raise ValueError(f"filter2d expects a (B, C, H, W) tensor and a 2-D kernel, got shapes "
                         f"{tuple(x.shape)} and {tuple(kernel.shape)}")
    if down < 1:
        raise ValueError(f"down must be >= 1, got {down!r}")
    pads = _padding(padding)
    if resolve_impl(impl) == "ref":
        return reference.upfirdn2d(x, kernel, (1, 1), (down, down), pads)
    return upfirdn_fast.filter2d(x, kernel, pads, down)


def upsample2d(
    x: torch.Tensor,
    kernel: torch.Tensor | Sequence[float],
    factor: int = 2,
    padding: int | Sequence[int] | None = None,
    *,
    impl: Impl | None = None,
) -> torch.Tensor:
    """``upfirdn2d(x, kernel, up=factor, padding=padding)``, computed (fast implementation)
    without inserting zeros.

    * ``kernel`` given as 1-D taps ``t`` (Python floats) stands for the separable 2-D kernel
      ``outer(t, t)``. When the output is exactly ``factor`` times the input (the default
      padding), each axis is upsampled in polyphase form: ``factor`` short filters over the
      input and an interleave, about ``len(t) / factor`` multiply-adds per output sample and
      axis, and no full-size zero-stuffed tensor.
    * a 2-D ``kernel`` runs as one depthwise stride-``factor`` transposed convolution (the
      unflipped kernel, padding ``k - 1 - pad0`` per axis), which skips the zeros by
      construction.

    Other paddings fall back to the reference [`upfirdn2d`][pixelfold.layers.upfirdn2d].

    Args:
        x: images ``(B, C, H, W)``.
        kernel: 1-D per-axis taps or a 2-D kernel ``(kh, kw)``, already scaled (upsampling by 2
            with a unit-sum kernel needs a gain of 4 to keep the mean: 2 per axis).
        factor: upsampling factor (the same on both axes).
        padding: as in [`upfirdn2d`][pixelfold.layers.upfirdn2d] (per axis); default
            ``((p + 1) // 2 + factor - 1, p // 2)`` before and after on both axes, with
            ``p = len(kernel) - factor``, which makes the output ``factor`` times larger.
        impl: ``"ref"`` or ``"fast"``; default: [`get_impl()`][pixelfold.layers.get_impl].
    """
    if x.ndim != 4:
        raise ValueError(f"upsample2d expects a (B, C, H, W) tensor, got shape {tuple(x.shape)}")
    if factor < 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    if isinstance(kernel, torch.Tensor) and kernel.ndim == 2:
        size = kernel.shape[0]
        taps: tuple[float, ...] | None = None
    else:
        taps = tuple(float(t) for t in kernel)
        size = len(taps)
        if size == 0:
            raise ValueError("upsample2d needs at least one tap")
    if padding is None:
        p = size - factor
        pads = both_axes(((p + 1) // 2 + factor - 1, p // 2))
    else:
        pads = _padding(padding)
    if resolve_impl(impl) == "ref":
        if taps is not None:
            t = torch.tensor(taps, dtype=x.dtype, device=x.device)
            kernel = t[:, None] * t[None, :]
        return reference.upfirdn2d(x, kernel, (factor, factor), (1, 1), pads)  # type: ignore[arg-type]
    return upfirdn_fast.upsample2d(x, kernel if taps is None else taps, factor, pads)


def _register_kernel(module: nn.Module, kernel: Sequence[float], gain: float,
                     device: torch.device | str | None, dtype: torch.dtype | None) -> None:
    """The 2-D kernel of the 1-D ``kernel`` taps, times ``gain``, as the non-persistent buffer
    ``kernel`` of a resampling module (rebuilt from its arguments, so not saved)."""
    k = make_kernel(kernel) * gain
    module.register_buffer("kernel", k.to(device=device, dtype=dtype), persistent=False)


class Upsample(nn.Module):
    """Upsample by ``factor`` with a FIR anti-imaging filter (StyleGAN2's ``Upsample``).

    The kernel is scaled by ``factor**2`` to keep the mean, and padded so that the output is
    exactly ``factor`` times larger (for ``(1, 3, 3, 1)`` and factor 2: padding ``(2, 1)``).

    Args:
        kernel: 1-D taps of the separable filter.
        factor: integer upsampling factor.
        device: device of the kernel buffer.
        dtype: dtype of the kernel buffer (default float32).
    """

    def __init__(self, kernel: Sequence[float] = (1, 3, 3, 1), factor: int = 2, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.factor = check_int(factor, "factor")
        _register_kernel(self, kernel, factor**2, device, dtype)
        taps = separable_taps(kernel)
        # the per-axis taps of the separable kernel, gain ``factor`` per axis (None: 2-D kernel)
        self.taps = None if taps is None else tuple(t * factor for t in taps)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upsample ``x`` ``(B, C, H, W)`` to ``(B, C, factor * H, factor * W)``, computed by
        [`upsample2d`][pixelfold.layers.upsample2d]: exactly ``upfirdn2d(x, kernel,
        up=factor, padding=pad)`` (``pad`` on both axes) without the zero insertion."""
        if self.taps is None or resolve_impl(None) == "ref":
            return upsample2d(x, self.kernel, self.factor, both_axes(self.pad))
        return upsample2d(x, self.taps, self.factor, both_axes(self.pad))

    def extra_repr(self) -> str:
        return f"factor={self.factor}, pad={self.pad}"


class Downsample(nn.Module):
    """Downsample by ``factor`` after a FIR anti-aliasing filter (StyleGAN2's ``Downsample``).

    Args:
        kernel: 1-D taps of the separable filter.
        factor: integer downsampling factor.
        device: device of the kernel buffer.
        dtype: dtype of the kernel buffer (default float32).
    """

    def __init__(self, kernel: Sequence[float] = (1, 3, 3, 1), factor: int = 2, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.factor = check_int(factor, "factor")
        _register_kernel(self, kernel, 1, device, dtype)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``upfirdn2d(x, kernel, down=factor, padding=pad)`` (``pad`` on both axes), as one
        strided depthwise conv ([`filter2d`][pixelfold.layers.filter2d])."""
        return filter2d(x, self.kernel, both_axes(self.pad), down=self.factor)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, pad={self.pad}"


class Blur(nn.Module):
    """FIR blur with explicit padding, used before strided convolutions (StyleGAN2's ``Blur``).

    Args:
        kernel: 1-D taps of the separable filter.
        padding: ``(pad0, pad1)`` applied on both axes.
        upsample_factor: if > 1 the kernel is scaled by ``upsample_factor**2`` (used after a
            transposed convolution).
        device: device of the kernel buffer.
        dtype: dtype of the kernel buffer (default float32).
    """

    def __init__(
        self,
        kernel: Sequence[float] = (1, 3, 3, 1),
        padding: Sequence[int] = (1, 1),
        upsample_factor: int = 1,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        _register_kernel(self, kernel, max(upsample_factor, 1) ** 2, device, dtype)
        self.pad = tuple(int(p) for p in padding)

    def forward(self, x: torch.Tensor, down: int = 1) -> torch.Tensor:
        """``upfirdn2d(x, kernel, down=down, padding=pad)`` (``pad`` on both axes), as one
        depthwise conv with the padding built in ([`filter2d`][pixelfold.layers.filter2d]);
        ``down`` keeps every ``down``-th output sample only (a strided convolution after the
        blur that reads no other pixels, as a stride-2 1x1 convolution)."""
        return filter2d(x, self.kernel, both_axes(self.pad), down=down)

    def extra_repr(self) -> str:
        return f"pad={self.pad}"
