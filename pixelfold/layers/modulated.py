"""Style-modulated convolutions (StyleGAN2's ModConv), the styled conv block and ToRGB."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from .activation import BiasLeakyReLU
from .equalized import EqualLinear
from .noise import NoiseInjection, NoiseMode
from .upfirdn import Blur, Upsample

__all__ = ["ModConvPath", "ModulatedConv2d", "StyledConv2d", "ToRGB", "modulated_conv2d"]

ModConvPath = Literal["batched", "grouped"]
"""How [`modulated_conv2d`][pixelfold.layers.modulated_conv2d] computes its result: scaling the
activations (``"batched"``) or building per-sample weights (``"grouped"``)."""


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool = True,
    eps: float = 1e-8,
    padding: int = 0,
    path: ModConvPath = "batched",
    transposed: bool = False,
) -> torch.Tensor:
    """Convolve each sample with the shared ``weight`` modulated by its own style.

    For sample ``b``: ``w'[o, i] = weight[o, i] * styles[b, i]``; with demodulation,
    ``w''[o, i] = w'[o, i] / sqrt(sum_{i,k} w'[o, i, k]**2 + eps)``.

    Two equivalent computations (equal to float tolerance):

    * ``"grouped"``: build the per-sample weights and run one grouped convolution with
      ``groups=B`` (StyleGAN2's ``fused_modconv``);
    * ``"batched"``: scale the *activations* by the styles, run one ordinary convolution with the
      shared weight, then scale the output by the demodulation coefficients. Cheaper: no
      per-sample weight tensor, and a normal batched conv.

    Args:
        x: input ``(B, Cin, H, W)``.
        weight: shared weight ``(Cout, Cin, k, k)``, already scaled.
        styles: per-sample input-channel scales ``(B, Cin)``.
        demodulate: normalize each output filter to unit L2 norm.
        eps: added under the square root.
        padding: zero padding.
        path: ``"batched"`` or ``"grouped"``.
        transposed: run a stride-2 transposed convolution instead (no padding), the first half
            of StyleGAN2's upsampling ModConv; the output is ``(B, Cout, 2H + k - 2, 2W + k - 2)``
            and is meant to be followed by a FIR blur.
    """
    b, cin, h, w = x.shape
    cout, wcin, kh, kw = weight.shape
    if wcin != cin or styles.shape != (b, cin):
        raise ValueError(
            f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and styles "
            f"{tuple(styles.shape)} do not agree (expected styles ({b}, {cin}))"
        )
    if path == "batched":
        xs = x * styles.to(x.dtype)[:, :, None, None]
        if transposed:
            out = F.conv_transpose2d(xs, weight.transpose(0, 1).to(x.dtype), stride=2)
        else:
            out = F.conv2d(xs, weight.to(x.dtype), padding=padding)
        if demodulate:
            # sum_{i,k} (W[o,i,k] s[b,i])^2 = (s^2) @ (sum_k W^2)^T
            dcoefs = torch.rsqrt(styles.square() @ weight.square().sum([2, 3]).t() + eps)
            out = out * dcoefs.to(out.dtype)[:, :, None, None]
        return out
    if path == "grouped":
        wb = weight[None] * styles[:, None, :, None, None]
        if demodulate:
            wb = wb * torch.rsqrt(wb.square().sum([2, 3, 4]) + eps)[:, :, None, None, None]
        if transposed:
            wb = wb.transpose(1, 2).reshape(b * cin, cout, kh, kw).to(x.dtype)
            out = F.conv_transpose2d(x.reshape(1, b * cin, h, w), wb, stride=2, groups=b)
        else:
            wb = wb.reshape(b * cout, cin, kh, kw).to(x.dtype)
            out = F.conv2d(x.reshape(1, b * cin, h, w), wb, padding=padding, groups=b)
        return out.reshape(b, cout, out.shape[2], out.shape[3])
    raise ValueError(f"path must be 'batched' or 'grouped', got {path!r}")


class ModulatedConv2d(nn.Module):
    """Modulated convolution ("ModConv", StyleGAN2).

    A style vector ``w`` is mapped by an equalized linear layer (bias initialized to 1) to one
    scale per input channel; the shared weight, stored ``N(0, 1)`` and scaled by
    ``1 / sqrt(in_channels * k * k)`` at run time, is modulated by those scales and optionally
    demodulated. Padding is ``kernel_size // 2`` so the resolution is kept.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel side.
        style_dim: width of ``w``.
        demodulate: normalize each output filter per sample.
        eps: demodulation epsilon.
        path: ``"batched"`` (default, faster) or ``"grouped"``; see
            [`modulated_conv2d`][pixelfold.layers.modulated_conv2d].
        up: 1, or 2 for an upsampling ModConv (StyleGAN2): a stride-2 transposed convolution
            followed by a FIR blur with ``blur_kernel``, doubling the resolution.
        blur_kernel: FIR taps of the blur used when ``up=2``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        demodulate: bool = True,
        eps: float = 1e-8,
        path: ModConvPath = "batched",
        up: int = 1,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if up not in (1, 2):
            raise ValueError(f"up must be 1 or 2, got {up!r}")
        for name, value in (("in_channels", in_channels), ("out_channels", out_channels),
                            ("style_dim", style_dim), ("kernel_size", kernel_size)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the resolution, got {kernel_size}")
        if path not in ("batched", "grouped"):
            raise ValueError(f"path must be 'batched' or 'grouped', got {path!r}")
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = kernel_size
        self.style_dim = style_dim
        self.demodulate = demodulate
        self.eps = eps
        self.path = path
        self.padding = kernel_size // 2
        self.up = up
        if up == 2:
            p = (len(blur_kernel) - 2) - (kernel_size - 1)
            self.blur: Blur | None = Blur(blur_kernel, ((p + 1) // 2 + 1, p // 2 + 1),
                                          upsample_factor=2)
        else:
            self.blur = None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size,
                                               kernel_size, device=device, dtype=dtype))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0, device=device,
                                      dtype=dtype)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Modulate the weight with the styles of ``w`` and convolve ``x`` with it.

        Args:
            x: input ``(B, in_channels, H, W)``.
            w: one style vector per sample, ``(B, style_dim)``.
        """
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"ModulatedConv2d expects (B, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        if w.ndim != 2 or w.shape != (x.shape[0], self.style_dim):
            raise ValueError(
                f"ModulatedConv2d expects w of shape ({x.shape[0]}, {self.style_dim}), "
                f"got {tuple(w.shape)}"
            )
        styles = self.modulation(w)
        out = modulated_conv2d(x, self.weight * self.weight_gain, styles,
                               demodulate=self.demodulate, eps=self.eps, padding=self.padding,
                               path=self.path, transposed=self.up == 2)
        if self.blur is not None:
            out = self.blur(out)
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"style_dim={self.style_dim}, demodulate={self.demodulate}, path={self.path!r}"
            + (f", up={self.up}" if self.up != 1 else "")
        )


class StyledConv2d(nn.Module):
    """ModConv, then noise injection, then bias + leaky ReLU (StyleGAN2's ``StyledConv``).

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: odd kernel side.
        style_dim: width of ``w``.
        demodulate: demodulate the ModConv.
        noise: whether to hold a [`NoiseInjection`][pixelfold.layers.NoiseInjection] (off: no
            noise parameters at all).
        resolution: ``(H, W)`` of the constant noise image for ``noise_mode="const"`` (the
            output resolution).
        path: ModConv computation path.
        up: 2 for an upsampling ModConv (see [`ModulatedConv2d`][pixelfold.layers.ModulatedConv2d]).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        style_dim: int,
        *,
        demodulate: bool = True,
        noise: bool = True,
        resolution: int | tuple[int, int] | None = None,
        path: ModConvPath = "batched",
        up: int = 1,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, kernel_size, style_dim,
                                    demodulate=demodulate, path=path, up=up, device=device,
                                    dtype=dtype)
        self.noise = NoiseInjection(resolution, device=device, dtype=dtype) if noise else None
        self.activate = BiasLeakyReLU(out_channels, device=device, dtype=dtype)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        noise_mode: NoiseMode = "random",
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Apply the block.

        Args:
            x: input ``(B, in_channels, H, W)``.
            w: styles ``(B, style_dim)``.
            noise_mode: ``"random"``, ``"const"`` or ``"none"`` (see
                [`NoiseInjection`][pixelfold.layers.NoiseInjection]).
            noise: explicit noise broadcastable to ``(B, 1, H', W')``; overrides ``noise_mode``.
        """
        x = self.conv(x, w)
        if self.noise is not None:
            x = self.noise(x, noise_mode=noise_mode, noise=noise)
        return self.activate(x)


class ToRGB(nn.Module):
    """Project features to RGB with a modulated 1x1 conv (no demodulation) plus a bias, and add
    the running RGB ``skip``, upsampled with a FIR filter when ``upsample=True``.

    Args:
        in_channels: feature channels.
        style_dim: width of ``w``.
        out_channels: image channels (3).
        upsample: upsample the skip by 2 with ``blur_kernel`` before adding it (PixelFolder,
            StyleGAN2); ``False`` adds it at the same resolution (CIPS).
        blur_kernel: FIR taps of the skip upsampler.
        path: ModConv computation path.
    """

    def __init__(
        self,
        in_channels: int,
        style_dim: int,
        *,
        out_channels: int = 3,
        upsample: bool = True,
        blur_kernel: Sequence[float] = (1, 3, 3, 1),
        path: ModConvPath = "batched",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False,
                                    path=path, device=device, dtype=dtype)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1, device=device, dtype=dtype))
        self.upsample = Upsample(blur_kernel, factor=2) if upsample else None

    def forward(
        self, x: torch.Tensor, w: torch.Tensor, skip: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Project ``x`` to RGB and add ``skip``.

        Args:
            x: features ``(B, in_channels, H, W)``.
            w: styles ``(B, style_dim)``.
            skip: running RGB, ``(B, out_channels, H / 2, W / 2)`` when ``upsample=True``, else
                ``(B, out_channels, H, W)``; ``None`` for the first ToRGB.
        """
        out = self.conv(x, w) + self.bias.to(x.dtype)
        if skip is not None:
            if self.upsample is not None:
                skip = self.upsample(skip)
            if skip.shape != out.shape:
                raise ValueError(
                    f"ToRGB skip of shape {tuple(skip.shape)} (after upsampling: "
                    f"{self.upsample is not None}) does not match the output {tuple(out.shape)}"
                )
            out = out + skip
        return out
