"""Style-modulated convolutions (StyleGAN2's ModConv), the styled conv block and ToRGB."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
from torch import nn

from ..utils.spec import check_int
from .activation import BiasLeakyReLU
from .checks import check_input
from .equalized import EqualLinear
from .noise import NoiseInjection, NoiseMode
from .ops import Impl, modconv_fast, reference, resolve_impl
from .upfirdn import Blur, Upsample

__all__ = ["ModConvPath", "ModulatedConv2d", "StyledConv2d", "ToRGB", "modulated_conv2d"]

ModConvPath = Literal["auto", "batched", "grouped"]
"""How [`modulated_conv2d`][pixelfold.layers.modulated_conv2d] computes its result: scaling the
activations (``"batched"``), building per-sample weights (``"grouped"``), or the cheaper of the
two for the shapes at hand (``"auto"``, the default of the modules)."""

_PATHS = ("auto", "batched", "grouped")


def _check_path(path: str) -> str:
    if path not in _PATHS:
        raise ValueError(f"path must be one of {_PATHS}, got {path!r}")
    return path


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
    bias: torch.Tensor | None = None,
    gain: float = 1.0,
    impl: Impl | None = None,
) -> torch.Tensor:
    """Convolve each sample with the shared ``weight`` modulated by its own style.

    For sample ``b``: ``w'[o, i] = weight[o, i] * styles[b, i]``; with demodulation,
    ``w''[o, i] = w'[o, i] / sqrt(sum_{i,k} w'[o, i, k]**2 + eps)``. The result is
    ``gain * conv(x, w'') + bias``. The definition is
    [`reference.modulated_conv2d`][pixelfold.layers.ops.reference.modulated_conv2d]; the fast
    implementation (``pixelfold/layers/ops/modconv_fast.py``) folds the gain and bias into the
    computation (into the per-sample weights and the convolution's own bias, or into one fused
    multiply-add), which is how [`StyledConv2d`][pixelfold.layers.StyledConv2d] and
    [`ToRGB`][pixelfold.layers.ToRGB] avoid extra passes over their outputs.

    The fast implementation has equivalent computations (equal to float tolerance):

    * ``"grouped"``: build the per-sample weights and run one grouped convolution with
      ``groups=B`` (StyleGAN2's ``fused_modconv``); a 1x1 kernel runs as one batched matrix
      product instead, a batch of 1 as one plain convolution.
    * ``"batched"``: scale the *activations* by the styles, run one ordinary convolution with the
      shared weight, then scale the output by the demodulation coefficients (one fused
      multiply-add with the bias).
    * ``"auto"``: ``"grouped"`` for 1x1 kernels and for a batch of 1 when building the
      per-sample weights (``Cout·Cin·k²`` values per sample) costs less than the two passes over
      the activations it saves (``(Cin + Cout)·H·W``); ``"batched"`` otherwise (one large
      convolution beats ``B`` small ones). The choice depends on shapes only.

    Args:
        x: input ``(B, Cin, H, W)``.
        weight: shared weight ``(Cout, Cin, k, k)``, already scaled.
        styles: per-sample input-channel scales ``(B, Cin)``.
        demodulate: normalize each output filter to unit L2 norm.
        eps: added under the square root.
        padding: zero padding.
        path: ``"auto"``, ``"batched"`` or ``"grouped"`` (the fast implementation's
            computation; the reference has one).
        transposed: run a stride-2 transposed convolution instead (no padding), the first half
            of StyleGAN2's upsampling ModConv; the output is ``(B, Cout, 2H + k - 2, 2W + k - 2)``
            and is meant to be followed by a FIR blur.
        bias: optional ``(Cout,)`` added to the result.
        gain: multiplies the modulated convolution (not ``bias``).
        impl: ``"ref"`` or ``"fast"``; default: [`get_impl()`][pixelfold.layers.get_impl].

    Example:
        >>> x, weight, styles = torch.randn(2, 4, 5, 5), torch.randn(6, 4, 3, 3), torch.randn(2, 4)
        >>> fast = modulated_conv2d(x, weight, styles, padding=1)
        >>> ref = modulated_conv2d(x, weight, styles, padding=1, impl="ref")
        >>> fast.shape, torch.allclose(fast, ref, atol=1e-5)
        (torch.Size([2, 6, 5, 5]), True)
    """
    b, cin, h, w = x.shape
    cout, wcin, kh, kw = weight.shape
    if wcin != cin or styles.shape != (b, cin):
        raise ValueError(
            f"modulated_conv2d: x {tuple(x.shape)}, weight {tuple(weight.shape)} and styles "
            f"{tuple(styles.shape)} do not agree (expected styles ({b}, {cin}))"
        )
    if bias is not None and bias.shape != (cout,):
        raise ValueError(f"modulated_conv2d: bias must have shape ({cout},), "
                         f"got {tuple(bias.shape)}")
    _check_path(path)
    if resolve_impl(impl) == "ref":
        return reference.modulated_conv2d(x, weight, styles, demodulate=demodulate, eps=eps,
                                          padding=padding, transposed=transposed, bias=bias,
                                          gain=gain)
    return modconv_fast.modulated_conv2d(x, weight, styles, demodulate=demodulate, eps=eps,
                                         padding=padding, path=path, transposed=transposed,
                                         bias=bias, gain=gain)


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
        path: ``"auto"`` (default: the faster of the two for the shapes at hand),
            ``"batched"`` or ``"grouped"``; see
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
        path: ModConvPath = "auto",
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
            check_int(value, name)
        if kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be odd to keep the resolution, got {kernel_size}")
        _check_path(path)
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
                                          upsample_factor=2, device=device, dtype=dtype)
        else:
            self.blur = None
        self.weight_gain = 1.0 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size,
                                               kernel_size, device=device, dtype=dtype))
        self.modulation = EqualLinear(style_dim, in_channels, bias_init=1.0, device=device,
                                      dtype=dtype)

    def forward(
        self,
        x: torch.Tensor,
        w: torch.Tensor,
        *,
        bias: torch.Tensor | None = None,
        gain: float = 1.0,
    ) -> torch.Tensor:
        """Modulate the weight with the styles of ``w`` and convolve ``x`` with it.

        Args:
            x: input ``(B, in_channels, H, W)``.
            w: one style vector per sample, ``(B, style_dim)``.
            bias: optional ``(out_channels,)`` added to the result, folded into the
                convolution where the path allows it.
            gain: multiplies the result (before ``bias``), folded into the weights or the
                demodulation coefficients.

        Raises:
            InputError: ``x`` or ``w`` is not a floating-point tensor on the device of the
                weight, or has another dtype outside ``torch.autocast``. ``x`` is checked
                first (PyTorch would promote a float16 or integer ``x`` silently); ``w`` when
                the computation fails (the style's matrix product refuses other dtypes).
        """
        check_input(x, self.weight, "x", "ModulatedConv2d", var="layer")
        try:
            return self._forward(x, w, bias, gain)
        except (RuntimeError, TypeError, AttributeError):
            check_input(w, self.weight, "w", "ModulatedConv2d", var="layer")
            raise

    def _forward(self, x: torch.Tensor, w: torch.Tensor, bias: torch.Tensor | None,
                 gain: float) -> torch.Tensor:
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
                               path=self.path, transposed=self.up == 2,
                               bias=bias if self.blur is None else None, gain=gain)
        if self.blur is not None:
            out = self.blur(out)
            if bias is not None:
                out = out + bias.to(out.dtype)[None, :, None, None]
        return out

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"style_dim={self.style_dim}, demodulate={self.demodulate}, path={self.path!r}"
            + (f", up={self.up}" if self.up != 1 else "")
        )


class StyledConv2d(nn.Module):
    """ModConv, then noise injection, then bias + leaky ReLU (StyleGAN2's ``StyledConv``).

    The fast implementation runs the three steps fused: ``leaky_relu(d * conv + b + s * n) * g``
    is computed as ``leaky_relu(g d * conv + g b + g s * n)`` (the gain ``g = sqrt(2)`` is
    positive), with ``g d`` and ``g b`` folded into the convolution (per-sample weights and conv
    bias) or into one multiply-add, the noise added in place and the activation applied in
    place: one to three passes over the output instead of five. Under
    [`use_impl("ref")`][pixelfold.layers.use_impl] the submodules ``conv``, ``noise`` and
    ``activate`` (which hold the parameters) run one after the other; the two agree to float
    rounding.

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
        path: ModConvPath = "auto",
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
        act = self.activate
        if resolve_impl(None) == "ref":
            x = self.conv(x, w)
            if self.noise is not None:
                x = self.noise(x, noise_mode=noise_mode, noise=noise)
            return act(x)
        # leaky_relu(y + b + s n) * g == leaky_relu(g y + g b + g s n) for the gain g > 0
        gain = act.scale
        x = self.conv(x, w, bias=act.bias * gain, gain=gain)
        if self.noise is not None:
            # x is this forward's own fresh output, which neither the conv nor the fused
            # multiply-add saved: the noise may be added in place
            x = self.noise(x, noise_mode=noise_mode, noise=noise, gain=gain, inplace=True)
        return act.activation_(x)


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
        path: ModConvPath = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_channels, out_channels, 1, style_dim, demodulate=False,
                                    path=path, device=device, dtype=dtype)
        self.bias = nn.Parameter(torch.zeros(1, out_channels, 1, 1, device=device, dtype=dtype))
        self.upsample = (Upsample(blur_kernel, factor=2, device=device, dtype=dtype)
                         if upsample else None)

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
        out = self.conv(x, w, bias=self.bias.reshape(-1))
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
