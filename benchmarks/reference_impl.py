"""The straightforward implementation that the benchmarks and tests/test_fast_paths.py compare
pixelfold's fast paths against.

It runs a pixelfold [`Generator`][pixelfold.models.Generator] (and a
[`Discriminator`][pixelfold.models.Discriminator]) from *their* weights, layer by layer, but with
the slow operations a first implementation would use:

* ModConv: per-sample modulated and demodulated weights, one grouped convolution with
  ``groups=B`` (StyleGAN2's ``fused_modconv``), for every kernel size and batch size;
* FIR resampling (the RGB skip upsampling of ToRGB, the blurs of the discriminator and of the
  upsampling ModConv): zero insertion, an explicit padded copy, a depthwise convolution over
  every sample, then decimation by slicing;
* noise: fresh ``N(0, 1)`` noise drawn for every noise layer (whatever its strength) and added
  as a separate operation, then bias, leaky ReLU and the ``sqrt(2)`` gain as separate
  operations;
* default memory layout (NCHW), no fusion.

The noise is drawn from the global generator in the same order and with the same shapes as the
fast path, so with the same seed both see the same noise and their outputs can be compared
directly.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from pixelfold.layers import Blur, NoiseInjection, StyledConv2d, ToRGB
from pixelfold.models import Discriminator, Generator

__all__ = ["reference_discriminator", "reference_generator", "reference_styled_conv",
           "reference_synthesis", "reference_to_rgb", "trained_like", "upfirdn2d_reference"]


def trained_like(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give zero-initialized parameters (noise strengths, biases) non-zero values, as training
    would, so that comparisons with the fast paths exercise every term (in place; returns
    ``module``)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.3)
        for name, p in module.named_parameters():
            if name.endswith("bias") and not p.any():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen).to(p))
    return module


def upfirdn2d_reference(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
                        padding: tuple[int, int] = (0, 0)) -> torch.Tensor:
    """Zero insertion, an explicit pad, a depthwise true convolution, then decimation."""
    b, c, h, w = x.shape
    if up > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, up - 1, 0, 0, 0, up - 1])
        x = x.reshape(b, c, h * up, w * up)
    p0, p1 = padding
    x = F.pad(x, [p0, p1, p0, p1])
    weight = kernel.flip([0, 1]).to(x)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::down, ::down] if down > 1 else x


def _modconv_grouped(conv: nn.Module, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """A ModulatedConv2d through per-sample weights and one grouped convolution."""
    b, cin, h, wd = x.shape
    styles = conv.modulation(w)
    weight = conv.weight * conv.weight_gain
    wb = weight[None] * styles[:, None, :, None, None]  # (B, Cout, Cin, k, k)
    if conv.demodulate:
        wb = wb * torch.rsqrt(wb.square().sum([2, 3, 4]) + conv.eps)[:, :, None, None, None]
    cout, k = wb.shape[1], wb.shape[-1]
    if conv.up == 2:
        wb = wb.transpose(1, 2).reshape(b * cin, cout, k, k).to(x.dtype).contiguous()
        out = F.conv_transpose2d(x.reshape(1, b * cin, h, wd), wb, stride=2, groups=b)
        out = out.reshape(b, cout, out.shape[2], out.shape[3])
        return upfirdn2d_reference(out, conv.blur.kernel, padding=conv.blur.pad)
    # contiguous: grouped 1x1 weights with the odd strides of a channels-last product get
    # wrong weight gradients from oneDNN on one thread (PyTorch 2.14.1, CPU)
    wb = wb.reshape(b * cout, cin, k, k).to(x.dtype).contiguous()
    out = F.conv2d(x.reshape(1, b * cin, h, wd), wb, padding=conv.padding, groups=b)
    return out.reshape(b, cout, h, wd)


def reference_styled_conv(block: StyledConv2d, x: torch.Tensor, w: torch.Tensor,
                          noise_mode: str = "random") -> torch.Tensor:
    """StyledConv2d: grouped ModConv, noise, bias, leaky ReLU, gain, one operation each."""
    x = _modconv_grouped(block.conv, x, w)
    if block.noise is not None and noise_mode != "none":
        if noise_mode == "const":
            noise = block.noise.noise_const
        else:
            noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device,
                                dtype=x.dtype)
        x = x + block.noise.weight.to(x.dtype) * noise.to(x.dtype)
    act = block.activate
    x = x + act.bias.to(x.dtype)[None, :, None, None]
    return F.leaky_relu(x, act.negative_slope) * act.scale


def reference_to_rgb(layer: ToRGB, x: torch.Tensor, w: torch.Tensor,
                     skip: torch.Tensor | None) -> torch.Tensor:
    """ToRGB: grouped 1x1 ModConv, bias, and the skip upsampled by zero insertion + pad +
    conv."""
    out = _modconv_grouped(layer.conv, x, w) + layer.bias.to(x.dtype)
    if skip is not None:
        if layer.upsample is not None:
            skip = upfirdn2d_reference(skip, layer.upsample.kernel, up=layer.upsample.factor,
                                       padding=layer.upsample.pad)
        out = out + skip
    return out


def reference_synthesis(synthesis: nn.Module, ws: torch.Tensor,
                        noise_mode: str = "random") -> torch.Tensor:
    """``G.synthesis(ws, noise_mode)`` with the straightforward operations."""
    x: torch.Tensor | None = None
    rgb: torch.Tensor | None = None
    batch = ws.shape[0]
    for stage in synthesis.stages:
        k = stage.w_offset
        feats = []
        if stage.fourier is not None:
            feats.append(stage.fourier(stage.coords))
        if stage.coord_embedding is not None:
            feats.append(stage.coord_embedding(1))
        h = torch.cat(feats, dim=1) if len(feats) > 1 else feats[0]
        if stage.style_free_input:
            for layer in stage.input_layers:
                h = layer(h)
            h = stage.reduce(h)
        h = h.expand(batch, -1, -1, -1).to(ws.dtype)
        if not stage.style_free_input:
            for layer in stage.input_layers:
                h = reference_styled_conv(layer, h, ws[:, k], noise_mode)
                k += 1
            h = stage.reduce(h)
        if x is not None:
            if stage.spec.merge == "concat":
                h = stage.merge.act(stage.merge.conv(torch.cat([h, x], dim=1)))
            elif stage.spec.merge == "add":
                h = h + x
        for block in stage.blocks:
            h = reference_styled_conv(block.conv0, h, ws[:, k], noise_mode)
            h = block.grow(h)
            h = reference_styled_conv(block.conv1, h, ws[:, k + 1], noise_mode)
            rgb = reference_to_rgb(block.to_rgb, h, ws[:, k + 2], rgb)
            k += 2
        x = h
    assert rgb is not None
    return rgb


def reference_generator(G: Generator, z: torch.Tensor, truncation_psi: float = 1.0,
                        noise_mode: str = "random") -> torch.Tensor:
    """``G(z, truncation_psi=..., noise_mode=...)`` with the straightforward operations (the
    mapping network is G's own: it has no fast path)."""
    ws = G.mapping(z, truncation_psi=truncation_psi)
    return reference_synthesis(G.synthesis, ws, noise_mode)


def reference_discriminator(D: Discriminator, images: torch.Tensor) -> torch.Tensor:
    """``D(images)`` with every blur done by an explicit pad and a full-resolution depthwise
    convolution."""

    def conv(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
        if isinstance(layer.blur, Blur):
            x = upfirdn2d_reference(x, layer.blur.kernel, padding=layer.blur.pad)
        x = layer.conv(x)
        return layer.act(x)

    x = conv(D.from_rgb, images)
    for block in D.blocks:
        x = (conv(block.conv1, conv(block.conv0, x)) + conv(block.skip, x)) * (1 / math.sqrt(2))
    x = conv(D.final_conv, D.mbstd(x))
    return D.out(D.final_linear(x.flatten(1)))
