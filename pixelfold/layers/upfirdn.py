"""FIR filtered up/down-sampling (``upfirdn2d``) in pure PyTorch.

``upfirdn2d`` upsamples by zero insertion, pads, applies a 2-D FIR filter depthwise and then
keeps every ``down``-th sample, exactly as the StyleGAN2 CUDA op defines it, so modules built on
it load StyleGAN2-family weights. [`Upsample`][pixelfold.layers.Upsample],
[`Downsample`][pixelfold.layers.Downsample] and [`Blur`][pixelfold.layers.Blur] carry the
kernel as a (non-persistent) buffer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Blur", "Downsample", "Upsample", "make_kernel", "upfirdn2d"]


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
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, padding=self.pad)

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
        return upfirdn2d(x, self.kernel, down=self.factor, padding=self.pad)

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
        return upfirdn2d(x, self.kernel, padding=self.pad)

    def extra_repr(self) -> str:
        return f"pad={self.pad}"
