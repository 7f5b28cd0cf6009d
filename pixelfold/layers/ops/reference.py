"""The readable definitions of the ops with a fast path: what the papers write, a few lines
each, and what the tests compare the fast implementations against.

Selected with ``impl="ref"`` on the public ops or
[`use_impl("ref")`][pixelfold.layers.use_impl] for a whole model. The functions here take their
arguments already checked and normalized by the public ops of
``pixelfold.layers`` (per-axis factors and paddings as tuples).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["bias_leaky_relu", "conv2d", "modulated_conv2d", "upfirdn2d"]


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool,
    eps: float,
    padding: int,
    transposed: bool,
    bias: torch.Tensor | None,
    gain: float,
) -> torch.Tensor:
    """StyleGAN2's modulated convolution (Karras et al. 2020, eqs. 1 and 3), sample by sample:
    ``w'[b, o, i] = w[o, i] * s[b, i]``, ``w''[b, o, i] = w'[b, o, i] / sqrt(sum_{i,k}
    w'[b, o, i, k]**2 + eps)``, ``y[b] = gain * conv(x[b], w''[b]) + bias``.

    The per-sample weights run as one grouped convolution (``groups=B``); ``transposed`` makes
    it a stride-2 transposed convolution (the first half of an upsampling ModConv).
    """
    b, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    wb = weight[None] * styles[:, None, :, None, None]  # (B, Cout, Cin, kh, kw)
    if demodulate:
        wb = wb * torch.rsqrt(wb.square().sum([2, 3, 4]) + eps)[:, :, None, None, None]
    # contiguous per-sample weights (oneDNN mishandles some strides of grouped weights)
    if transposed:
        wb = wb.transpose(1, 2).reshape(b * cin, cout, kh, kw).to(x.dtype).contiguous()
        out = F.conv_transpose2d(x.reshape(1, b * cin, h, w), wb, stride=2, groups=b)
    else:
        wb = wb.reshape(b * cout, cin, kh, kw).to(x.dtype).contiguous()
        out = F.conv2d(x.reshape(1, b * cin, h, w), wb, padding=padding, groups=b)
    out = out.reshape(b, cout, out.shape[2], out.shape[3])
    if gain != 1.0:
        out = out * gain
    return out if bias is None else out + bias.to(out.dtype)[None, :, None, None]


def upfirdn2d(
    x: torch.Tensor,
    kernel: torch.Tensor,
    up: tuple[int, int],
    down: tuple[int, int],
    padding: tuple[int, int, int, int],
) -> torch.Tensor:
    """Upsample, pad, FIR-filter, downsample (the StyleGAN2 op), per axis: ``up = (up_x,
    up_y)``, ``down = (down_x, down_y)``, ``padding = (x0, x1, y0, y1)``.

    1. insert ``up - 1`` zeros after every sample;
    2. pad with zeros (a negative padding crops);
    3. convolve every channel with ``kernel`` (a true convolution: the kernel flipped);
    4. keep every ``down``-th sample.
    """
    b, c, h, w = x.shape
    (upx, upy), (downx, downy) = up, down
    if upx > 1 or upy > 1:
        x = F.pad(x.reshape(b, c, h, 1, w, 1), [0, upx - 1, 0, 0, 0, upy - 1])
        x = x.reshape(b, c, h * upy, w * upx)
    x = F.pad(x, list(padding))  # (x0, x1, y0, y1): F.pad's order, the last axis first
    weight = kernel.flip([0, 1]).to(x)[None, None].expand(c, 1, *kernel.shape)
    x = F.conv2d(x, weight, groups=c)
    return x[:, :, ::downy, ::downx]


def conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: int,
           padding: int) -> torch.Tensor:
    """A plain 2-D convolution (cross-correlation), autograd's own gradients of every order."""
    return F.conv2d(x, weight, bias, stride=stride, padding=padding)


def bias_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None, negative_slope: float,
                    scale: float) -> torch.Tensor:
    """``leaky_relu(x + bias) * scale``, the bias broadcast along dim 1 (StyleGAN2's
    ``fused_leaky_relu``)."""
    if bias is not None:
        x = x + bias.to(x.dtype).view([1, -1] + [1] * (x.ndim - 2))
    return F.leaky_relu(x, negative_slope) * scale
