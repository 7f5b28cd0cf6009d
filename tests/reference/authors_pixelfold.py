"""Independent oracle: the authors' PixelFolder generator, re-implemented from its description only.

This module is a test oracle. It deliberately shares no code with :mod:`pixelfold` (it imports
nothing from it) so that pixelfold's own generator and its checkpoint converter can be checked
against a second implementation written from a written description of the authors' model
(layers, exact parameter counts and checkpoint key names, transcribed in this file and in
``tests/test_reference_oracle.py``). Its ``state_dict()`` uses exactly the authors' key names and
shapes, so a dict built by :func:`authors_checkpoint` looks like the authors' ``.pt`` files.

Everything here is plain PyTorch on any device (no custom CUDA ops): fold/unfold are written with
``reshape`` + ``permute``, FIR upsampling with zero insertion + padding + depthwise convolution,
and the modulated convolution with per-sample weights and a grouped convolution.

Architecture rules, as read from that description (and checked against its exact parameter counts:
256 -> 20,843,614, 512 -> 17,478,430, 1024 -> 21,141,096, see ``tests/test_reference_oracle.py``):

* Stages (resolution of the pixel tensor of each stage): 256: 16/64/256, 512: 32/128/512,
  1024: 16/64/256/1024. Each stage folds its pixel tensor twice (res / 4), then runs two
  "pairs" (ModConv 3x3 -> unfold -> ModConv 3x3 -> ToRGB), each pair doubling the resolution.
  So a stage ends at its own pixel-tensor resolution, and the first RGB is at stages[0] / 2
  (8x8 for 256 and 1024, 16x16 for 512).
* Width of a pair = channel table at the resolution the pair produces (after its unfold).
  The first ModConv of a pair maps the incoming width to that width; the second takes width / 4
  (because of the unfold) and maps it back to the width. ToRGB j takes the width of pair j.
* Coordinate embedding ``input.input``: 1 x 512 x stages[0] x stages[0]. INTERPRETATION: for the
  512 model the reference only gives the 256 shape (16x16); a 32x32 embedding (the resolution of
  the 512 model's first stage) is the reading that gives exactly 17,478,430 parameters
  (16x16 would give 17,085,214).
* Fourier features of stage i: 1x1 conv 2 -> C_i with C_i = channel table at the stage's
  resolution (256: 512, 512, 128; 512: 512, 256, 64; 1024: 512, 512, 128, 32).
* Stage 0 input: concat(fourier, embedding) (1024 ch) -> conv0 1x1 1024->512 (+lrelu)
  -> conv1 1x1 512->32 (+lrelu) -> fold twice -> 512 channels at stages[0] / 4.
* Stage i > 0 input, with ``prev`` = width of the previous stage's output:
  fourier -> conv1 1x1 C_i -> prev/16 (+lrelu) -> fold twice -> prev channels at the previous
  output's resolution; concat with the previous output (2*prev) -> conv_merge 1x1
  2*prev -> prev (+lrelu). INTERPRETATION: the description states 32 channels / merge 1024->512
  for the 256 model and "the last stage projects to 8 channels, and its merge is 256->128" for
  the 1024 model; the single rule "project to prev/16, merge 2*prev -> prev" reproduces both
  and, for the 512 model (whose last stage follows a 256-wide stage), gives conv1 C->16 and
  merge 512->256, which makes the 512 count exact.
* ``posfolders.0.conv_merge`` (1x1 1024->512 + bias) is built but never used (as in the
  authors' code); its gradient stays None.
* INTERPRETATION (concat order at a merge, not stated by the description): by default the folded
  Fourier features come first and the previous stage's output second
  (``merge_order="fold_first"``); ``merge_order="prev_first"`` gives the other order. The order
  of concat(fourier, embedding) at stage 0 is stated explicitly in the description.
* Latents: n_latent = 4 * stages + 1; conv k uses w[k]; ToRGB j uses w[2j + 2].
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "AuthorsPixelFolder",
    "CHANNELS",
    "STAGES",
    "authors_checkpoint",
    "fold",
    "fold_twice",
    "unfold",
    "fir_upsample_2x",
]

#: Channel table by resolution (the authors' code).
CHANNELS: dict[int, int] = {
    4: 512,
    8: 512,
    16: 512,
    32: 512,
    64: 512,
    128: 256,
    256: 128,
    512: 64,
    1024: 32,
}

#: Resolution of the pixel tensor of each stage, per output size (the authors' code).
STAGES: dict[int, tuple[int, ...]] = {
    256: (16, 64, 256),
    512: (32, 128, 512),
    1024: (16, 64, 256, 1024),
}

STYLE_DIM = 512
N_MLP = 8
LR_MLP = 0.01
EMBED_DIM = 512  # channels of the coordinate embedding and of the stage-0 Fourier concat input
FOLD_BASE = 32  # width of the stage-0 pixel tensor before folding (32 * 16 = 512)


# --------------------------------------------------------------------------------------------
# Functional pieces
# --------------------------------------------------------------------------------------------


def fused_leaky_relu(x: Tensor, bias: Tensor) -> Tensor:
    """leaky_relu(x + bias, 0.2) * sqrt(2), the bias broadcast along dim 1."""
    shape = [1, -1] + [1] * (x.dim() - 2)
    return F.leaky_relu(x + bias.view(shape), negative_slope=0.2) * math.sqrt(2.0)


def fold(x: Tensor) -> Tensor:
    """``b c (h p1) (w p2) -> b (p1 p2 c) h w`` with p1 = p2 = 2."""
    b, c, hh, ww = x.shape
    h, w = hh // 2, ww // 2
    x = x.reshape(b, c, h, 2, w, 2)  # b, c, h, p1, w, p2
    x = x.permute(0, 3, 5, 1, 2, 4)  # b, p1, p2, c, h, w
    return x.reshape(b, 4 * c, h, w)


def unfold(x: Tensor) -> Tensor:
    """Exact inverse of :func:`fold`: ``b (p1 p2 c) h w -> b c (h p1) (w p2)``."""
    b, cc, h, w = x.shape
    c = cc // 4
    x = x.reshape(b, 2, 2, c, h, w)  # b, p1, p2, c, h, w
    x = x.permute(0, 3, 4, 1, 5, 2)  # b, c, h, p1, w, p2
    return x.reshape(b, c, 2 * h, 2 * w)


def fold_twice(x: Tensor) -> Tensor:
    return fold(fold(x))


def fir_kernel_2x() -> Tensor:
    """The [1, 3, 3, 1] outer-product kernel, normalized to sum 1, times 4 (= factor ** 2)."""
    k1 = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = k1[:, None] * k1[None, :]
    return k / k.sum() * 4.0


def fir_upsample_2x(x: Tensor, kernel: Tensor) -> Tensor:
    """x2 FIR upsampling: zero insertion, pad (2 before, 1 after), depthwise 4x4 convolution.

    Each input sample lands on the even output position (2i), zeros at the odd positions; the
    padded signal is then convolved (a true convolution, so the kernel is flipped for
    ``conv2d``'s cross-correlation; [1, 3, 3, 1] is symmetric anyway).
    """
    b, c, h, w = x.shape
    up = x.new_zeros(b, c, 2 * h, 2 * w)
    up[:, :, 0::2, 0::2] = x
    up = F.pad(up, (2, 1, 2, 1))  # (left, right, top, bottom)
    k = torch.flip(kernel, dims=(0, 1)).to(dtype=x.dtype, device=x.device)
    weight = k.view(1, 1, *k.shape).expand(c, 1, *k.shape)
    return F.conv2d(up, weight, groups=c)


def coordinate_grid(size: int, batch: int, device, dtype) -> Tensor:
    """(B, 2, size, size) grid, linspace(-1, 1) with endpoints; channel 0 = x, channel 1 = y."""
    lin = torch.linspace(-1.0, 1.0, size, device=device, dtype=dtype)
    ys, xs = torch.meshgrid(lin, lin, indexing="ij")  # ys varies along H, xs along W
    grid = torch.stack([xs, ys], dim=0).unsqueeze(0)
    return grid.expand(batch, 2, size, size)


def modulated_conv2d(
    x: Tensor, weight: Tensor, style: Tensor, demodulate: bool, eps: float = 1e-8
) -> Tensor:
    """StyleGAN2 modulated convolution with per-sample weights and a grouped convolution.

    ``weight`` is the raw (1, out, in, k, k) parameter; the run-time scale is 1/sqrt(in*k*k).
    """
    b, cin, h, w = x.shape
    _, cout, win, k, _ = weight.shape
    assert win == cin, (win, cin)
    scale = 1.0 / math.sqrt(cin * k * k)
    wts = scale * weight * style.view(b, 1, cin, 1, 1)  # (B, out, in, k, k)
    if demodulate:
        d = torch.rsqrt(wts.pow(2).sum(dim=(2, 3, 4)) + eps)  # (B, out)
        wts = wts * d.view(b, cout, 1, 1, 1)
    wts = wts.reshape(b * cout, cin, k, k)
    out = F.conv2d(x.reshape(1, b * cin, h, w), wts, padding=k // 2, groups=b)
    return out.view(b, cout, h, w)


# --------------------------------------------------------------------------------------------
# Modules (their attribute names give the authors' state_dict keys)
# --------------------------------------------------------------------------------------------


class PixelNorm(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x * torch.rsqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8)


class EqualLinear(nn.Module):
    """Equalized linear: raw weight N(0,1)/lr_mul, scale lr_mul/sqrt(in), bias * lr_mul."""

    def __init__(
        self,
        in_dim: int,
        out_dim: int,
        bias_init: float = 0.0,
        lr_mul: float = 1.0,
        activate: bool = False,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init)))
        self.lr_mul = lr_mul
        self.scale = lr_mul / math.sqrt(in_dim)
        self.activate = activate

    def forward(self, x: Tensor) -> Tensor:
        if self.activate:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), self.bias * self.lr_mul)
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class EqualConv1x1(nn.Module):
    """Equalized 1x1 conv without bias: raw weight N(0,1), scale 1/sqrt(in)."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_ch, in_ch, 1, 1))
        self.scale = 1.0 / math.sqrt(in_ch)

    def forward(self, x: Tensor) -> Tensor:
        return F.conv2d(x, self.weight * self.scale)


class FusedLeakyReLU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: Tensor) -> Tensor:
        return fused_leaky_relu(x, self.bias)


def conv1x1_lrelu(in_ch: int, out_ch: int) -> nn.Sequential:
    """Keys ``0.weight`` (out, in, 1, 1) and ``1.bias`` (out)."""
    return nn.Sequential(EqualConv1x1(in_ch, out_ch), FusedLeakyReLU(out_ch))


class ConstantInput(nn.Module):
    """The learned coordinate embedding (key ``input``)."""

    def __init__(self, channels: int, size: int) -> None:
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channels, size, size))

    def forward(self, batch: int) -> Tensor:
        return self.input.expand(batch, -1, -1, -1)


class FourierConv(nn.Module):
    """Plain (not equalized) 1x1 conv 2 -> C with bias, weight U(-sqrt(9/2), sqrt(9/2)), sin."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(2, channels, kernel_size=1, bias=True)
        bound = math.sqrt(9.0 / 2.0)
        with torch.no_grad():
            self.conv.weight.uniform_(-bound, bound)

    def forward(self, coords: Tensor) -> Tensor:
        return torch.sin(self.conv(coords))


class LFF(nn.Module):
    """Wrapper so that the keys read ``lffs.{i}.ffm.conv.*``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.ffm = FourierConv(channels)

    def forward(self, coords: Tensor) -> Tensor:
        return self.ffm(coords)


class PosFolder(nn.Module):
    """Pixel-tensor initialization of one stage.

    Stage 0 owns ``conv0`` (concat -> 512), ``conv1`` (512 -> 32) and an unused ``conv_merge``
    (1024 -> 512). Stage i > 0 owns ``conv1`` (C -> prev/16) and ``conv_merge`` (2 prev -> prev).
    """

    def __init__(
        self,
        first: bool,
        fourier_ch: int,
        prev_ch: int,
        merge_order: str = "fold_first",
    ) -> None:
        super().__init__()
        self.first = first
        self.merge_order = merge_order
        if first:
            self.conv0 = conv1x1_lrelu(fourier_ch + EMBED_DIM, 512)
            self.conv1 = conv1x1_lrelu(512, FOLD_BASE)
            # Built, as in the authors' code, but never used in forward (gradient stays None).
            self.conv_merge = conv1x1_lrelu(1024, 512)
        else:
            self.conv1 = conv1x1_lrelu(fourier_ch, prev_ch // 16)
            self.conv_merge = conv1x1_lrelu(2 * prev_ch, prev_ch)

    def forward(
        self, fourier: Tensor, embedding: Tensor | None = None, prev: Tensor | None = None
    ) -> Tensor:
        if self.first:
            assert embedding is not None
            x = self.conv0(torch.cat([fourier, embedding], dim=1))
            return fold_twice(self.conv1(x))
        assert prev is not None
        folded = fold_twice(self.conv1(fourier))
        if self.merge_order == "fold_first":
            x = torch.cat([folded, prev], dim=1)
        elif self.merge_order == "prev_first":
            x = torch.cat([prev, folded], dim=1)
        else:
            raise ValueError(f"unknown merge_order {self.merge_order!r}")
        return self.conv_merge(x)


class ModulatedConv2d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, demodulate: bool) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(1, out_ch, in_ch, kernel_size, kernel_size))
        self.modulation = EqualLinear(STYLE_DIM, in_ch, bias_init=1.0)
        self.demodulate = demodulate

    def forward(self, x: Tensor, w: Tensor) -> Tensor:
        return modulated_conv2d(x, self.weight, self.modulation(w), self.demodulate)


class NoiseInjection(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor, noise: Tensor | None) -> Tensor:
        if noise is None:
            return x
        return x + self.weight * noise


class StyledConv(nn.Module):
    """ModConv 3x3 (demodulated) -> noise -> fused leaky ReLU with its own bias."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv = ModulatedConv2d(in_ch, out_ch, 3, demodulate=True)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_ch)

    def forward(self, x: Tensor, w: Tensor, noise: Tensor | None) -> Tensor:
        return self.activate(self.noise(self.conv(x, w), noise))


class Upsample(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("kernel", fir_kernel_2x())

    def forward(self, x: Tensor) -> Tensor:
        return fir_upsample_2x(x, self.kernel)


class ToRGB(nn.Module):
    def __init__(self, in_ch: int) -> None:
        super().__init__()
        self.upsample = Upsample()
        self.conv = ModulatedConv2d(in_ch, 3, 1, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, 3, 1, 1))

    def forward(self, x: Tensor, w: Tensor, skip: Tensor | None) -> Tensor:
        out = self.conv(x, w) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


# --------------------------------------------------------------------------------------------
# Generator
# --------------------------------------------------------------------------------------------


class AuthorsPixelFolder(nn.Module):
    """The authors' PixelFolder generator (oracle), for sizes 256, 512 and 1024.

    ``forward(styles, ...)`` takes a z tensor (B, 512) or a list of one or two of them (two for
    style mixing). With ``input_is_latent=True`` the inputs are w vectors (B, 512) or a full
    latent tensor (B, n_latent, 512). Noise: ``noise_mode="none"`` / ``"zero"`` adds nothing
    (equivalent to zero noise), ``"random"`` draws fresh N(0, 1) noise of shape (B, 1, H, W) per
    conv; an explicit ``noise`` list (one tensor or None per conv) overrides the mode.
    """

    def __init__(self, size: int = 256, merge_order: str = "fold_first") -> None:
        super().__init__()
        if size not in STAGES:
            raise ValueError(f"size must be one of {sorted(STAGES)}, got {size}")
        self.size = size
        self.stages = STAGES[size]
        self.n_stages = len(self.stages)
        self.n_latent = 4 * self.n_stages + 1
        self.style_dim = STYLE_DIM

        # Mapping: index 0 is the parameter-free PixelNorm, 1..8 the equalized linears.
        self.style = nn.Sequential(
            PixelNorm(),
            *[
                EqualLinear(STYLE_DIM, STYLE_DIM, lr_mul=LR_MLP, activate=True)
                for _ in range(N_MLP)
            ],
        )

        self.input = ConstantInput(EMBED_DIM, self.stages[0])

        self.lffs = nn.ModuleList()
        self.posfolders = nn.ModuleList()
        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()

        ch = 512  # width of the pixel tensor entering the first conv (32 * 16 after two folds)
        res = self.stages[0] // 4
        self.conv_shapes: list[tuple[int, int, int]] = []  # (in, out, resolution) per conv
        for i, stage_res in enumerate(self.stages):
            fourier_ch = CHANNELS[stage_res]
            self.lffs.append(LFF(fourier_ch))
            # ``ch`` is the width of the previous stage's output (or 512 for stage 0)
            self.posfolders.append(
                PosFolder(
                    first=(i == 0), fourier_ch=fourier_ch, prev_ch=ch, merge_order=merge_order
                )
            )
            for _ in range(2):
                out = CHANNELS[res * 2]
                self.convs.append(StyledConv(ch, out))
                self.conv_shapes.append((ch, out, res))
                self.convs.append(StyledConv(out // 4, out))
                self.conv_shapes.append((out // 4, out, res * 2))
                self.to_rgbs.append(ToRGB(out))
                ch = out
                res *= 2
            assert res == stage_res, (res, stage_res)
        assert res == size
        assert len(self.convs) == self.n_latent - 1

    # ---------------------------------------------------------------- latents
    def mapping(self, z: Tensor) -> Tensor:
        return self.style(z)

    @torch.no_grad()
    def mean_latent(self, n: int = 4096) -> Tensor:
        device = self.input.input.device
        z = torch.randn(n, STYLE_DIM, device=device)
        return self.mapping(z).mean(dim=0, keepdim=True)

    def _latents(
        self,
        styles: Tensor | Sequence[Tensor],
        inject_index: int | None,
        truncation: float,
        truncation_latent: Tensor | None,
        input_is_latent: bool,
    ) -> Tensor:
        if isinstance(styles, Tensor):
            styles = [styles]
        styles = list(styles)
        if not input_is_latent:
            styles = [self.mapping(s) for s in styles]
        if truncation != 1:
            if truncation_latent is None:
                raise ValueError("truncation != 1 needs truncation_latent")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        n = self.n_latent
        if len(styles) == 1:
            s = styles[0]
            if s.dim() == 3:
                if s.shape[1] != n:
                    raise ValueError(f"latent has {s.shape[1]} entries, expected {n}")
                return s
            return s.unsqueeze(1).expand(-1, n, -1)
        if len(styles) != 2:
            raise ValueError("pass one or two style tensors")
        if inject_index is None:
            inject_index = int(torch.randint(1, n, ()).item())  # in [1, n_latent - 1]
        if not 1 <= inject_index <= n - 1:
            raise ValueError(f"inject_index must be in [1, {n - 1}]")
        a = styles[0].unsqueeze(1).expand(-1, inject_index, -1)
        b = styles[1].unsqueeze(1).expand(-1, n - inject_index, -1)
        return torch.cat([a, b], dim=1)

    def _noises(
        self, batch: int, noise_mode: str, noise: Sequence[Tensor | None] | None, ref: Tensor
    ) -> list[Tensor | None]:
        if noise is not None:
            noise = list(noise)
            if len(noise) != len(self.convs):
                raise ValueError(f"need {len(self.convs)} noise entries, got {len(noise)}")
            return noise
        if noise_mode in ("none", "zero", "const_zero"):
            return [None] * len(self.convs)
        if noise_mode == "random":
            return [
                torch.randn(batch, 1, r, r, device=ref.device, dtype=ref.dtype)
                for (_, _, r) in self.conv_shapes
            ]
        raise ValueError(f"unknown noise_mode {noise_mode!r}")

    # ---------------------------------------------------------------- forward
    def forward(
        self,
        styles: Tensor | Sequence[Tensor],
        return_latents: bool = False,
        inject_index: int | None = None,
        truncation: float = 1.0,
        truncation_latent: Tensor | None = None,
        input_is_latent: bool = False,
        noise_mode: str = "none",
        noise: Sequence[Tensor | None] | None = None,
    ) -> Tensor | tuple[Tensor, Tensor]:
        latent = self._latents(styles, inject_index, truncation, truncation_latent, input_is_latent)
        batch = latent.shape[0]
        ref = self.input.input
        noises = self._noises(batch, noise_mode, noise, ref)

        x: Tensor | None = None
        skip: Tensor | None = None
        k = 0  # conv index
        j = 0  # ToRGB index
        for i, stage_res in enumerate(self.stages):
            coords = coordinate_grid(stage_res, batch, ref.device, ref.dtype)
            fourier = self.lffs[i](coords)
            if i == 0:
                x = self.posfolders[0](fourier, embedding=self.input(batch))
            else:
                x = self.posfolders[i](fourier, prev=x)
            for _ in range(2):
                x = self.convs[k](x, latent[:, k], noises[k])
                x = unfold(x)
                x = self.convs[k + 1](x, latent[:, k + 1], noises[k + 1])
                skip = self.to_rgbs[j](x, latent[:, 2 * j + 2], skip)
                k += 2
                j += 1

        assert skip is not None
        if return_latents:
            return skip, latent
        return skip


def authors_checkpoint(model: AuthorsPixelFolder) -> dict:
    """A dict shaped like the authors' ``.pt`` file (g / d / g_ema / g_optim / d_optim).

    ``g`` and ``g_ema`` are independent copies of ``model.state_dict()``; the discriminator and
    the optimizer states are left empty.
    """
    sd = model.state_dict()
    g = {key: v.detach().clone() for key, v in sd.items()}
    g_ema = {key: v.detach().clone() for key, v in sd.items()}
    return {"g": g, "d": {}, "g_ema": g_ema, "g_optim": {}, "d_optim": {}}
