"""The fast modulated convolution: the same result as
[`reference.modulated_conv2d`][pixelfold.layers.ops.reference.modulated_conv2d] (to float
rounding) through the cheaper of two computations, with the gain and bias folded in.

* ``"grouped"``: build the per-sample weights and run one grouped convolution with ``groups=B``
  (StyleGAN2's ``fused_modconv``); a 1x1 kernel runs as one batched matrix product instead, a
  batch of 1 as one plain convolution; modulation, demodulation and gain in one pass over the
  weights.
* ``"batched"``: scale the *activations* by the styles, run one ordinary convolution with the
  shared weight, then scale the output by the demodulation coefficients (one fused multiply-add
  with the bias, in place when nothing needs the old values).
* ``"auto"``: ``"grouped"`` for 1x1 kernels and for a batch of 1 when building the per-sample
  weights (``Cout·Cin·k²`` values per sample) costs less than the two passes over the
  activations it saves (``(Cin + Cout)·H·W``); ``"batched"`` otherwise.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from ._util import channels_last, may_write_in_place

__all__ = ["modulated_conv2d"]


def modulated_conv2d(
    x: torch.Tensor,
    weight: torch.Tensor,
    styles: torch.Tensor,
    *,
    demodulate: bool,
    eps: float,
    padding: int,
    path: str,
    transposed: bool,
    bias: torch.Tensor | None,
    gain: float,
) -> torch.Tensor:
    """``gain * modconv(x, weight, styles) + bias`` by ``path`` (``"auto"``, ``"batched"`` or
    ``"grouped"``); arguments as the public
    [`modulated_conv2d`][pixelfold.layers.modulated_conv2d] checked them."""
    b, cin, h, w = x.shape
    cout, _, kh, kw = weight.shape
    pointwise = kh == kw == 1 and padding == 0 and not transposed
    if path == "auto":
        # per-sample weights cost one pass over Cout*Cin*k*k weights per sample; scaling the
        # activations costs a pass over the input and one over the output (Cin + Cout per pixel)
        cheaper = cout * cin * kh * kw <= (cin + cout) * h * w
        path = "grouped" if cheaper and (pointwise or (b == 1 and not transposed)) else "batched"
    dtype = x.dtype
    if path == "batched":
        scales = styles.to(dtype)[:, :, None, None]
        if (channels_last(weight) and not channels_last(x) and not transposed
                and may_write_in_place(x, styles)):
            # the convolution would copy x to the weight's channels-last layout: scale it
            # into that layout instead, one pass instead of two
            xs = torch.mul(x, scales, out=torch.empty_like(x, memory_format=torch.channels_last))
        else:
            xs = x * scales
        if transposed:
            out = F.conv_transpose2d(xs, weight.transpose(0, 1).to(dtype), stride=2)
        else:
            out = F.conv2d(xs, weight.to(dtype), padding=padding)
        scale: torch.Tensor | float = gain
        if demodulate:
            scale = _demodulation(weight, styles, eps) * gain
        return _scale_and_shift(out, scale, bias, styles, weight)
    # "grouped": per-sample weights (B, Cout, Cin, k, k), modulation, demodulation and gain in
    # one pass over the weights
    factor = styles[:, None, :]
    if demodulate:
        factor = factor * _demodulation(weight, styles, eps)[:, :, None]
    if gain != 1.0:
        factor = factor * gain
    if pointwise:
        # sum_i W'[b, o, i] x[b, i, p] as a batched matrix product over the pixels p, in the
        # layout of x (channels-last: pixels-major rows)
        wb = (weight[None, :, :, 0, 0] * factor).to(dtype)  # (B, Cout, Cin)
        if channels_last(x):
            rows = x.permute(0, 2, 3, 1).reshape(b, h * w, cin)
            out = _pixel_rows_matmul(rows, wb, None if bias is None else bias.to(dtype))
            return out.reshape(b, h, w, cout).permute(0, 3, 1, 2)
        cols = x.reshape(b, cin, h * w)
        out = (torch.bmm(wb, cols) if bias is None else
               torch.baddbmm(bias.to(dtype)[:, None], wb, cols))
        return out.reshape(b, cout, h, w)
    if b == 1 and not transposed:
        wb = (weight * factor[0, :, :, None, None]).to(dtype)
        return F.conv2d(x, wb, None if bias is None else bias.to(dtype), padding=padding)
    # contiguous per-sample weights: the strides a channels-last weight gives this product
    # are ones oneDNN mishandles in some kernels (wrong grouped 1x1 weight gradients on one
    # thread with PyTorch 2.14.1), and the copy is small
    wb = weight[None] * factor[:, :, :, None, None]
    if transposed:
        wb = wb.transpose(1, 2).reshape(b * cin, cout, kh, kw).to(dtype).contiguous()
        out = F.conv_transpose2d(x.reshape(1, b * cin, h, w), wb, stride=2, groups=b)
    else:
        wb = wb.reshape(b * cout, cin, kh, kw).to(dtype).contiguous()
        out = F.conv2d(x.reshape(1, b * cin, h, w), wb,
                       None if bias is None else bias.to(dtype).repeat(b),
                       padding=padding, groups=b)
        bias = None
    out = out.reshape(b, cout, out.shape[2], out.shape[3])
    return out if bias is None else out + bias.to(dtype)[None, :, None, None]


def _pixel_rows_matmul(rows: torch.Tensor, wb: torch.Tensor,
                       bias: torch.Tensor | None) -> torch.Tensor:
    """``rows @ wb^T + bias``: pixels-major rows ``(B, P, Cin)`` times per-sample weights
    ``(B, Cout, Cin)``, as ``torch.baddbmm``, whose backward computes the weight gradient as
    ``grad^T @ rows`` (``(B, Cout, Cin)``, the weights' own orientation) instead of autograd's
    ``rows^T @ grad``: with few outputs (ToRGB: 3) and many pixels that orientation is 4-8x
    faster on the CPU (2 cores, 256x256, 128 channels: 33-52 ms -> 6-7 ms per call). Without
    autograd recording it is the plain product."""
    wt = wb.transpose(1, 2)
    if (not torch.is_grad_enabled() or torch.compiler.is_compiling()
            or not (rows.requires_grad or wb.requires_grad
                    or (bias is not None and bias.requires_grad))):
        return torch.bmm(rows, wt) if bias is None else torch.baddbmm(bias, rows, wt)
    return _PixelRowsMatmul.apply(rows, wb, bias)


class _PixelRowsMatmul(torch.autograd.Function):
    """``rows @ wb^T + bias`` with the weight gradient in ``wb``'s orientation (its backward
    is made of differentiable products, so gradients of gradients work)."""

    @staticmethod
    def forward(ctx: Any, rows: torch.Tensor, wb: torch.Tensor,
                bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(rows, wb)
        ctx.has_bias = bias is not None
        wt = wb.transpose(1, 2)
        return torch.bmm(rows, wt) if bias is None else torch.baddbmm(bias, rows, wt)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        rows, wb = ctx.saved_tensors
        need_rows, need_wb, need_bias = ctx.needs_input_grad
        g_rows = torch.bmm(grad, wb) if need_rows else None
        g_wb = torch.bmm(grad.transpose(1, 2), rows) if need_wb else None
        g_bias = grad.sum((0, 1)) if need_bias and ctx.has_bias else None
        return g_rows, g_wb, g_bias


def _demodulation(weight: torch.Tensor, styles: torch.Tensor, eps: float) -> torch.Tensor:
    """``1 / sqrt(sum_{i,k} (W[o, i, k] s[b, i])**2 + eps)`` as ``(B, Cout)``:
    ``(s**2) @ (sum_k W**2)^T``, without building the per-sample weights."""
    return torch.rsqrt(styles.square() @ weight.square().sum([2, 3]).t() + eps)


def _scale_and_shift(out: torch.Tensor, scale: torch.Tensor | float,
                     bias: torch.Tensor | None, *operands: torch.Tensor) -> torch.Tensor:
    """``out * scale + bias`` (scale ``(B, C)`` or a number, bias ``(C,)``) in one pass,
    overwriting ``out`` when nothing needs its old value."""
    if isinstance(scale, float) and scale == 1.0 and bias is None:
        return out
    dtype = out.dtype
    scale_t = (scale.to(dtype)[:, :, None, None] if isinstance(scale, torch.Tensor)
               else torch.tensor(scale, dtype=dtype, device=out.device))
    shift = (torch.zeros((), dtype=dtype, device=out.device) if bias is None
             else bias.to(dtype)[None, :, None, None])
    if may_write_in_place(out, *operands, bias):
        return torch.addcmul(shift, out, scale_t, out=out)
    return torch.addcmul(shift, out, scale_t)


