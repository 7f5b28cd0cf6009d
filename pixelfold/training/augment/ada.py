"""Adaptive discriminator augmentation (ADA, Karras et al. 2020): the ``bgc`` pipeline.

[`AugmentPipe`][pixelfold.training.augment.AugmentPipe] applies, to every image of a batch
independently, a random subset of twelve transforms. Transform ``t`` is applied to an image
with probability ``p * multiplier_t``; ``p`` is the augmentation strength that
[`AdaController`][pixelfold.training.augment.AdaController] adapts during training. The
transforms and their ranges are those of NVlabs' ``stylegan2-ada-pytorch``:

| group | transform | parameter drawn per image | default range |
|---|---|---|---|
| pixel blitting | ``xflip`` | mirror x with probability 1/2 | |
| | ``rotate90`` | rotate by ``k * 90`` degrees, ``k`` uniform in 0..3 | |
| | ``xint`` | translation ``round(u W), round(v H)``, ``u, v ~ U(-m, m)`` | ``xint_max = 0.125`` |
| general geometric | ``scale`` | isotropic scale ``2**N(0, s)`` | ``scale_std = 0.2`` |
| | ``rotate`` | rotation ``U(-pi, pi) * rotate_max``, twice (see below) | ``rotate_max = 1`` |
| | ``aniso`` | anisotropic scale ``(a, 1/a)``, ``a = 2**N(0, s)`` | ``aniso_std = 0.2`` |
| | ``xfrac`` | fractional translation ``N(0, s) * (W, H)`` | ``xfrac_std = 0.125`` |
| color | ``brightness`` | add ``N(0, s)`` to every channel | ``brightness_std = 0.2`` |
| | ``contrast`` | multiply by ``2**N(0, s)`` | ``contrast_std = 0.5`` |
| | ``lumaflip`` | reflect the luma axis (``x - 2 v v^T x``) with probability 1/2 | |
| | ``hue`` | rotate around the luma axis by ``U(-pi, pi) * hue_max`` | ``hue_max = 1`` |
| | ``saturation`` | scale the chroma (orthogonal to v) by ``2**N(0, s)`` | ``saturation_std = 1`` |

The luma axis is ``v = (1, 1, 1) / sqrt(3)``. The arbitrary rotation is applied twice, before
and after the anisotropic scaling, each time with probability ``1 - sqrt(1 - p * rotate)``,
so that some rotation happens with probability ``p * rotate``. The geometric transforms are
composed into one 3x3 matrix per image and executed with one resampling; the color transforms
into one 4x4 (homogeneous RGB) matrix applied with one batched matrix product.

Geometric resampling, as NVlabs define it: the image is reflect-padded just enough to cover
the region the transform reads (plus the filter's support), upsampled 2x with the 12-tap
symlet-6 orthogonal low-pass (``sym6``), resampled bilinearly with ``affine_grid`` /
``grid_sample`` (zeros outside, ``align_corners=False``), and downsampled 2x with the same
filter, which also crops the padding. Because the filter is orthogonal, downsampling undoes
upsampling for any translation, so integer translations reproduce the input pixels up to float
rounding (about 3e-6 in float32, 3e-12 in float64).

One deviation, for exactness: sym6 is not symmetric. The resampling's coordinates assume a
filter centered on its sixth tap, sym6's centroid lies 0.1 upsampled samples off it and its
phase is not linear, so a mirror or a 90-degree rotation resampled through it (as NVlabs do)
comes out filtered and shifted by about a tenth of a pixel: errors of 0.01 on a smooth ramp,
0.1-0.3 on noise. The x-flip and the 90-degree rotations are the first transforms of the chain
and symmetries of a square pixel grid, so this pipe executes them first as an exact
permutation of the pixels (one ``gather``) and resamples only the rest of the chain; the
composed transform, the probabilities and the reflect padding are those of NVlabs. For
non-square images the quarter turns are not permutations and stay in the resampled matrix, as
in NVlabs (mirrors and half turns are still exact). Arbitrary rotations keep NVlabs'
behaviour: on a smooth image they sample where the matrix says to within about 0.1 pixel.

Images without any geometric transform in a draw are passed through untouched (bit-exact),
and a batch whose draw has no geometric (color) transform at all skips the resampling (the
matrix product); with ``p == 0`` the pipe returns its input object itself.

Second derivatives (R1 through the pipe), torch 2.14.1: NVlabs shipped a custom
``grid_sample`` because PyTorch 1.7-1.8 raised ``RuntimeError: derivative for
grid_sampler_2d_backward is not implemented`` on a double backward (pytorch/pytorch#34704).
In torch 2.14.1 ``torch.autograd.grad(D(grid_sample(x, grid)).sum(), x, create_graph=True)``
followed by ``backward`` of the squared gradient works (the graph holds a
``GridSampler2DBackwardBackward0`` node), for bilinear, nearest and bicubic modes and zeros and
reflection padding; ``torch.autograd.gradgradcheck`` with respect to the input passes in
float64. This pipe therefore calls ``F.grid_sample`` itself. The grid here is a constant of the
random draw (it never requires grad); with a grid that requires grad, ``gradgradcheck`` reports
a Jacobian mismatch for the grid, which does not concern this use. Reflect padding, the FIR
filters (``pixelfold.layers``) and the color matrix product are twice differentiable too.

Randomness: every parameter is drawn on the CPU, in float64, from the ``torch.Generator`` given
to ``forward`` (torch's default CPU generator when none is given), so a run restored with the
generator's state draws the same augmentations on any device. The matrices are built on the CPU
and copied once to the images' device; the data-dependent padding is computed from them there,
which needs no device synchronization.

Precision: the pipe computes in float32 (float64 for float64 images) with autocast disabled,
and returns the images' dtype, so bfloat16 autocast does not round the sampling coordinates or
the color matrix; the discriminator after it runs under autocast as usual.

Libraries considered: torchvision's ``transforms.v2.functional`` (``affine``, ``rotate``,
``adjust_brightness``/``contrast``/``saturation``/``hue``) take one parameter for a whole batch
and define the color operations differently (multiplicative brightness, blends with the
gray image, an HSV hue shift), so they cannot express per-image ADA draws without a Python
loop over images. kornia (not a dependency) warps a batch with per-image matrices, but its
``warp_affine`` is the same ``affine_grid`` + ``grid_sample`` call, and its augmentation
modules use their own parameter distributions. ADA's design, one composed matrix and one
resampling, is a handful of tensor operations in plain PyTorch; a library would add a
dependency and no speed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from ...layers.upfirdn import filter2d, upsample2d
from ...utils.errors import ConfigError

__all__ = ["ADA_PRESETS", "AdaParams", "AugmentPipe"]

# Low-pass decomposition filter of the symlet-6 wavelet (orthogonal: its autocorrelation at
# even lags is a unit impulse), the filter NVlabs use around the geometric resampling.
_SYM6 = (0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
         -0.048311742585633, 0.4910559419267466, 0.787641141030194, 0.3379294217276218,
         -0.07263752278646252, -0.021060292512300564, 0.04472490177066578,
         0.0017677118642428036, -0.007800708325034148)

_GEOMETRIC = ("xflip", "rotate90", "xint", "scale", "rotate", "aniso", "xfrac")
_COLOR = ("brightness", "contrast", "lumaflip", "hue", "saturation")

ADA_PRESETS: dict[str, dict[str, float]] = {
    "blit": {"xflip": 1, "rotate90": 1, "xint": 1},
    "geom": {"scale": 1, "rotate": 1, "aniso": 1, "xfrac": 1},
    "color": {"brightness": 1, "contrast": 1, "lumaflip": 1, "hue": 1, "saturation": 1},
}
ADA_PRESETS["bg"] = {**ADA_PRESETS["blit"], **ADA_PRESETS["geom"]}
ADA_PRESETS["bgc"] = {**ADA_PRESETS["bg"], **ADA_PRESETS["color"]}
"""Named pipelines as StyleGAN2-ADA names them: transform multipliers by preset (``blit``,
``geom``, ``color``, ``bg``, ``bgc``; ``bgc`` is ADA's recommended pipeline)."""
"""Probability multipliers of NVlabs' pipelines made of the transforms implemented here
(``bgc``, blit + geometric + color, is the one the ADA paper recommends)."""

_F64 = torch.float64


# --- batched homogeneous matrices (float64, CPU) --------------------------------------------

def _matrix(rows: list[list[Any]], n: int) -> torch.Tensor:
    """``(n, k, k)`` matrices whose entries are numbers or ``(n,)`` tensors."""
    out = torch.zeros(n, len(rows), len(rows[0]), dtype=_F64)
    for i, row in enumerate(rows):
        for j, value in enumerate(row):
            out[:, i, j] = value
    return out


def _translate2d(tx: Any, ty: Any, n: int) -> torch.Tensor:
    return _matrix([[1, 0, tx], [0, 1, ty], [0, 0, 1]], n)


def _scale2d(sx: Any, sy: Any, n: int) -> torch.Tensor:
    return _matrix([[sx, 0, 0], [0, sy, 0], [0, 0, 1]], n)


def _rotate2d(cos: Any, sin: Any, n: int) -> torch.Tensor:
    """Counter-clockwise rotation (x right, y down: clockwise on screen) given cos and sin."""
    return _matrix([[cos, -sin, 0], [sin, cos, 0], [0, 0, 1]], n)


def _translate3d(t: torch.Tensor) -> torch.Tensor:
    n = t.shape[0]
    return _matrix([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]], n)


def _scale3d(s: torch.Tensor) -> torch.Tensor:
    n = s.shape[0]
    return _matrix([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]], n)


def _luma_axis() -> torch.Tensor:
    """The unit luma axis ``(1, 1, 1) / sqrt(3)`` in homogeneous RGB (last entry 0)."""
    return torch.tensor([1.0, 1.0, 1.0, 0.0], dtype=_F64) / math.sqrt(3)


def _rotate_around(v: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotation by ``theta`` around the unit axis ``v[:3]`` (Rodrigues' formula
    ``cos I + sin [v]x + (1 - cos) v v^T``), as ``(n, 4, 4)`` homogeneous matrices."""
    n = theta.shape[0]
    x, y, z = (float(c) for c in v[:3])
    cross = torch.tensor([[0, -z, y], [z, 0, -x], [-y, x, 0]], dtype=_F64)
    outer = torch.outer(v[:3], v[:3])
    cos, sin = theta.cos()[:, None, None], theta.sin()[:, None, None]
    out = torch.eye(4, dtype=_F64).repeat(n, 1, 1)
    out[:, :3, :3] = cos * torch.eye(3, dtype=_F64) + sin * cross + (1 - cos) * outer
    return out


def _is_identity(m: torch.Tensor) -> torch.Tensor:
    """``(n,)`` booleans: which of the ``(n, k, k)`` matrices are exactly the identity."""
    return (m == torch.eye(m.shape[-1], dtype=m.dtype)).flatten(1).all(dim=1)


@dataclass
class AdaParams:
    """One draw of [`AugmentPipe`][pixelfold.training.augment.AugmentPipe]'s random parameters
    for a batch, on the CPU in float64.

    All matrices are inverse transforms in pixel coordinates centered on the image (x right,
    y down): ``m[i] @ (x_out, y_out, 1)`` is where output pixel ``(x_out, y_out)`` of image
    ``i`` reads its input. NVlabs' single geometric matrix is ``dihedral @ geometric``.

    Attributes:
        dihedral: ``(N, 3, 3)`` x-flip and 90-degree rotation (x-flip only for non-square
            images), entries in ``{-1, 0, 1}``: executed exactly, as a permutation of the
            pixels; ``None`` when no geometric transform is enabled.
        geometric: ``(N, 3, 3)`` the other geometric transforms, executed after the dihedral
            part by one resampling; ``None`` when no geometric transform is enabled.
        color: ``(N, 4, 4)`` homogeneous RGB matrices, ``rgb_out = color[i] @ (r, g, b, 1)``;
            ``None`` when no color transform is enabled.
    """

    dihedral: torch.Tensor | None
    geometric: torch.Tensor | None
    color: torch.Tensor | None


def _check_number(name: str, value: Any, *, low: float = 0.0,
                  high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"AugmentPipe: {name} must be a number, got {value!r}")
    value = float(value)
    if not (low <= value <= high):
        raise ConfigError(f"AugmentPipe: {name} must be in [{low:g}, {high:g}], got {value!r}")
    return value


class AugmentPipe(nn.Module):
    """ADA's augmentation pipeline (blit, general geometric and color transforms).

    Every transform is disabled (multiplier 0) unless enabled; ``AugmentPipe.from_preset("bgc")``
    enables the twelve of ADA's recommended pipeline. Transform ``t`` is applied to each image
    with probability ``p * t`` (its multiplier), independently per image and per transform.

    Args:
        p: augmentation strength in ``[0, 1]``; a plain float attribute (settable; reading it
            needs no device synchronization), normally set from
            [`AdaController.p`][pixelfold.training.augment.AdaController], whose state dict
            is what a checkpoint keeps (the pipe has no parameters or buffers).
        xflip: probability multiplier of the horizontal flip (pixel blitting).
        rotate90: multiplier of the quarter turns (pixel blitting).
        xint: multiplier of the integer translation (pixel blitting).
        scale: multiplier of the isotropic scaling (general geometric).
        rotate: multiplier of the arbitrary rotation (general geometric).
        aniso: multiplier of the anisotropic scaling (general geometric).
        xfrac: multiplier of the fractional translation (general geometric).
        brightness: multiplier of the brightness offset (color).
        contrast: multiplier of the contrast scaling (color).
        lumaflip: multiplier of the luma flip (color).
        hue: multiplier of the hue rotation (color).
        saturation: multiplier of the saturation scaling (color).
        xint_max: range of the integer translation, a fraction of the image size.
        scale_std: log2 standard deviation of the isotropic scaling.
        rotate_max: range of the arbitrary rotation, 1 = full circle.
        aniso_std: log2 standard deviation of the anisotropic scaling.
        xfrac_std: standard deviation of the fractional translation, a fraction of the size.
        brightness_std: standard deviation of the brightness offset.
        contrast_std: log2 standard deviation of the contrast scaling.
        saturation_std: log2 standard deviation of the saturation scaling.
        hue_max: range of the hue rotation, 1 = full circle.

    Images are ``(N, C, H, W)`` floating point, normally in ``[-1, 1]``. Geometric transforms
    work for any ``C``. Color transforms need ``C == 3`` (RGB), ``C == 1`` (gray) or ``C == 4``
    (RGBA). For gray images, as in NVlabs, hue and saturation are skipped (neither is drawn),
    and the other color transforms act as on a gray RGB image whose three outputs are then
    averaged: brightness adds ``b``, contrast multiplies by ``c`` and luma flip negates the
    image. For RGBA images the color transforms act on R, G and B as for RGB and leave the
    alpha channel untouched (it is not a color); the geometric ones move all four channels
    alike. (NVlabs' pipe refuses anything but 1 or 3 channels.)

    Raises:
        ConfigError: a multiplier, range or ``p`` that is negative, not a number, or ``p``
            above 1 (the message names it).

    Example:
        >>> pipe = AugmentPipe.from_preset("bgc", p=0.3)
        >>> gen = torch.Generator().manual_seed(0)
        >>> pipe(torch.zeros(4, 3, 16, 16), generator=gen).shape
        torch.Size([4, 3, 16, 16])
    """

    def __init__(self, *, p: float = 0.0,
                 xflip: float = 0, rotate90: float = 0, xint: float = 0,
                 scale: float = 0, rotate: float = 0, aniso: float = 0, xfrac: float = 0,
                 brightness: float = 0, contrast: float = 0, lumaflip: float = 0,
                 hue: float = 0, saturation: float = 0,
                 xint_max: float = 0.125, scale_std: float = 0.2, rotate_max: float = 1,
                 aniso_std: float = 0.2, xfrac_std: float = 0.125,
                 brightness_std: float = 0.2, contrast_std: float = 0.5, hue_max: float = 1,
                 saturation_std: float = 1) -> None:
        super().__init__()
        settings = dict(xflip=xflip, rotate90=rotate90, xint=xint, scale=scale, rotate=rotate,
                        aniso=aniso, xfrac=xfrac, brightness=brightness, contrast=contrast,
                        lumaflip=lumaflip, hue=hue, saturation=saturation, xint_max=xint_max,
                        scale_std=scale_std, rotate_max=rotate_max, aniso_std=aniso_std,
                        xfrac_std=xfrac_std, brightness_std=brightness_std,
                        contrast_std=contrast_std, hue_max=hue_max,
                        saturation_std=saturation_std)
        for name, value in settings.items():
            setattr(self, name, _check_number(name, value))
        self.p = p
        # 2x upsampling keeps the mean with a gain of 2 per axis; downsampling has gain 1
        total = sum(_SYM6)
        self._up_taps = tuple(2 * t / total for t in _SYM6)
        self._down_taps = tuple(t / total for t in _SYM6)
        self._filter_pad = len(_SYM6) // 4  # margin of the filters, in input pixels
        self._kernels: dict[tuple[torch.device, torch.dtype],
                            tuple[torch.Tensor, torch.Tensor]] = {}

    @classmethod
    def from_preset(cls, name: str = "bgc", *, p: float = 0.0, **overrides: float
                    ) -> AugmentPipe:
        """The pipe of one of NVlabs' pipelines in
        [`ADA_PRESETS`][pixelfold.training.augment.ada.ADA_PRESETS] (``blit``, ``geom``,
        ``color``, ``bg``, ``bgc``), with any setting overridden by keyword.

        Raises:
            ConfigError: an unknown preset name.
        """
        if name not in ADA_PRESETS:
            raise ConfigError(f"unknown ADA pipeline {name!r}; choose from "
                              f"{', '.join(sorted(ADA_PRESETS))}")
        return cls(p=p, **{**ADA_PRESETS[name], **overrides})

    @property
    def p(self) -> float:
        """The augmentation strength in ``[0, 1]``."""
        return self._p

    @p.setter
    def p(self, value: float) -> None:
        if isinstance(value, torch.Tensor) and value.numel() == 1:
            value = float(value)
        self._p = _check_number("p", value, high=1.0)

    @property
    def enabled(self) -> bool:
        """Whether any transform can happen: ``p > 0`` and some multiplier ``> 0``."""
        return self._p > 0 and any(getattr(self, t) > 0 for t in _GEOMETRIC + _COLOR)

    def extra_repr(self) -> str:
        on = [f"{t}={getattr(self, t):g}" for t in _GEOMETRIC + _COLOR if getattr(self, t) > 0]
        return f"p={self._p:g}, " + (", ".join(on) if on else "no transforms")

    # --- drawing the parameters -------------------------------------------------------------

    def sample_params(self, shape: tuple[int, ...] | torch.Size,
                      generator: torch.Generator | None = None) -> AdaParams:
        """Draw the random parameters for a batch of images of ``shape`` ``(N, C, H, W)``.

        Args:
            shape: the images' shape (``C`` decides whether hue and saturation are drawn).
            generator: a CPU ``torch.Generator`` (default: torch's global CPU generator).

        Raises:
            ValueError: a generator that is not on the CPU.
        """
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"AugmentPipe needs a CPU torch.Generator, got one on "
                             f"{generator.device}")
        n, c, h, w = (int(s) for s in shape)
        dihedral, geometric = self._sample_geometric(n, h, w, generator)
        return AdaParams(dihedral, geometric, self._sample_color(n, c, generator))

    def _sample_geometric(self, n: int, h: int, w: int, gen: torch.Generator | None
                          ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        if not any(getattr(self, t) > 0 for t in _GEOMETRIC):
            return None, None
        p = self._p

        def rand(*size: int) -> torch.Tensor:
            return torch.rand(*size, generator=gen, dtype=_F64)

        def randn(*size: int) -> torch.Tensor:
            return torch.randn(*size, generator=gen, dtype=_F64)

        def chosen(probability: float, *size: int) -> torch.Tensor:
            return rand(*(size or (n,))) < probability

        # Each matrix maps output pixels to input pixels, so each transform multiplies it on
        # the right by its inverse: the first transform listed is the first applied.
        eye = torch.eye(3, dtype=_F64).repeat(n, 1, 1)
        dihedral, g = eye, eye
        if self.xflip > 0:
            flip = torch.floor(rand(n) * 2)
            flip = torch.where(chosen(self.xflip * p), flip, 0)
            dihedral = dihedral @ _scale2d(1 - 2 * flip, 1, n)  # a mirror is its own inverse
        if self.rotate90 > 0:
            k = torch.floor(rand(n) * 4)
            k = torch.where(chosen(self.rotate90 * p), k, 0).long()
            cos = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=_F64)[k]  # exact at multiples
            sin = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=_F64)[k]  # of 90 degrees
            rot = _rotate2d(cos, -sin, n)  # rotation by k * 90 degrees, inverted
            # a quarter turn of a non-square image is no permutation of its pixels: it is
            # resampled with the other transforms (as NVlabs do for every transform)
            quarter = (k % 2 == 1)[:, None, None] if h != w else torch.zeros(n, 1, 1, dtype=bool)
            dihedral = dihedral @ torch.where(quarter, eye, rot)
            g = g @ torch.where(quarter, rot, eye)
        if self.xint > 0:
            t = (rand(n, 2) * 2 - 1) * self.xint_max
            t = torch.where(chosen(self.xint * p, n, 1), t, 0)
            g = g @ _translate2d(-torch.round(t[:, 0] * w), -torch.round(t[:, 1] * h), n)
        if self.scale > 0:
            s = torch.exp2(randn(n) * self.scale_std)
            s = torch.where(chosen(self.scale * p), s, 1)
            g = g @ _scale2d(1 / s, 1 / s, n)
        # two rotations, each with probability p_rot: P(at least one) = p * rotate
        p_rot = 1 - math.sqrt(min(max(1 - self.rotate * p, 0.0), 1.0))
        if self.rotate > 0:
            theta = (rand(n) * 2 - 1) * math.pi * self.rotate_max
            theta = torch.where(chosen(p_rot), theta, 0)
            g = g @ _rotate2d(theta.cos(), -theta.sin(), n)
        if self.aniso > 0:
            s = torch.exp2(randn(n) * self.aniso_std)
            s = torch.where(chosen(self.aniso * p), s, 1)
            g = g @ _scale2d(1 / s, s, n)
        if self.rotate > 0:
            theta = (rand(n) * 2 - 1) * math.pi * self.rotate_max
            theta = torch.where(chosen(p_rot), theta, 0)
            g = g @ _rotate2d(theta.cos(), -theta.sin(), n)
        if self.xfrac > 0:
            t = randn(n, 2) * self.xfrac_std
            t = torch.where(chosen(self.xfrac * p, n, 1), t, 0)
            g = g @ _translate2d(-t[:, 0] * w, -t[:, 1] * h, n)
        return dihedral, g

    def _sample_color(self, n: int, c: int, gen: torch.Generator | None) -> torch.Tensor | None:
        if not any(getattr(self, t) > 0 for t in _COLOR):
            return None
        p = self._p

        def rand(*size: int) -> torch.Tensor:
            return torch.rand(*size, generator=gen, dtype=_F64)

        def randn(*size: int) -> torch.Tensor:
            return torch.randn(*size, generator=gen, dtype=_F64)

        def chosen(probability: float) -> torch.Tensor:
            return rand(n) < probability

        eye = torch.eye(4, dtype=_F64)
        v = _luma_axis()
        luma = torch.outer(v, v)  # projection onto the luma axis
        m = eye.repeat(n, 1, 1)
        if self.brightness > 0:
            b = randn(n) * self.brightness_std
            b = torch.where(chosen(self.brightness * p), b, 0)
            m = _translate3d(b) @ m
        if self.contrast > 0:
            s = torch.exp2(randn(n) * self.contrast_std)
            s = torch.where(chosen(self.contrast * p), s, 1)
            m = _scale3d(s) @ m
        if self.lumaflip > 0:
            flip = torch.floor(rand(n) * 2)
            flip = torch.where(chosen(self.lumaflip * p), flip, 0)
            m = (eye - 2 * luma * flip[:, None, None]) @ m  # Householder reflection of luma
        if self.hue > 0 and c > 1:
            theta = (rand(n) * 2 - 1) * math.pi * self.hue_max
            theta = torch.where(chosen(self.hue * p), theta, 0)
            m = _rotate_around(v, theta) @ m
        if self.saturation > 0 and c > 1:
            s = torch.exp2(randn(n) * self.saturation_std)
            s = torch.where(chosen(self.saturation * p), s, 1)
            m = (luma + (eye - luma) * s[:, None, None]) @ m
        return m

    # --- applying them ----------------------------------------------------------------------

    def forward(self, images: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment a batch: ``apply(images, sample_params(images.shape, generator))``.

        Args:
            images: ``(N, C, H, W)`` floating point images.
            generator: a CPU ``torch.Generator`` all random parameters are drawn from
                (default: torch's global CPU generator).

        Returns:
            The augmented images, same shape and dtype; ``images`` itself when ``p == 0`` or no
            transform is enabled (nothing is drawn then).
        """
        self._check_images(images)
        if not self.enabled:
            return images
        return self.apply(images, self.sample_params(images.shape, generator))

    def apply(self, images: torch.Tensor, params: AdaParams) -> torch.Tensor:
        """Apply a draw of parameters (from
        [`sample_params`][pixelfold.training.augment.AugmentPipe.sample_params]) to
        ``images``; deterministic, differentiable (twice) with respect to ``images``."""
        self._check_images(images)
        out_dtype = images.dtype
        work = torch.float64 if images.dtype == torch.float64 else torch.float32
        x = images
        with torch.autocast(images.device.type, enabled=False):
            if params.dihedral is not None and not bool(_is_identity(params.dihedral).all()):
                x = self._permute(x.to(work), params.dihedral)
            if params.geometric is not None and not bool(_is_identity(params.geometric).all()):
                x = self._resample(x.to(work), params.geometric)
            if params.color is not None and not bool(_is_identity(params.color).all()):
                x = self._recolor(x.to(work), params.color)
        return x.to(out_dtype)

    def _check_images(self, images: torch.Tensor) -> None:
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
            raise ValueError(f"AugmentPipe expects images (N, C, H, W), got {shape}")
        if not images.is_floating_point():
            raise ValueError(f"AugmentPipe expects floating point images, got {images.dtype}")
        c = images.shape[1]
        if c not in (1, 3, 4) and any(getattr(self, t) > 0 for t in _COLOR):
            raise ValueError(f"AugmentPipe's color transforms need 4 (RGBA), 1 (gray) or 3 "
                             f"(RGB) channels, got {c}")

    def _kernels_for(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The 2-D up- and downsampling kernels in ``x``'s dtype and device (cached). The
        downsampling kernel is flipped: NVlabs correlate with the filter there (their
        ``flip_filter=True``) while ``filter2d`` convolves."""
        key = (x.device, x.dtype)
        if key not in self._kernels:
            up = torch.tensor(self._up_taps, dtype=_F64)
            down = torch.tensor(self._down_taps, dtype=_F64)
            self._kernels[key] = (
                torch.outer(up, up).to(device=x.device, dtype=x.dtype),
                torch.outer(down, down).flip([0, 1]).to(device=x.device, dtype=x.dtype))
        return self._kernels[key]

    def _permute(self, x: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Execute the dihedral transforms ``d`` (``(N, 3, 3)``, CPU) exactly: output pixel
        ``(i, j)`` copies input pixel ``(i', j')`` with ``(x', y') = d (x, y)`` in centered
        coordinates, computed on doubled (integer) coordinates ``2 j - (W - 1)``."""
        n, c, h, w = x.shape
        a = d[:, :2, :2].round().long().to(device=x.device, non_blocking=True)
        cols = 2 * torch.arange(w, device=x.device) - (w - 1)
        rows = 2 * torch.arange(h, device=x.device) - (h - 1)
        xx, yy = cols[None, None, :], rows[None, :, None]
        src_x = (a[:, 0, 0, None, None] * xx + a[:, 0, 1, None, None] * yy + (w - 1)) // 2
        src_y = (a[:, 1, 0, None, None] * xx + a[:, 1, 1, None, None] * yy + (h - 1)) // 2
        index = (src_y * w + src_x).reshape(n, 1, h * w).expand(n, c, h * w)
        return x.reshape(n, c, h * w).gather(2, index).reshape(n, c, h, w)

    def _resample(self, x: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        """Execute the geometric transforms ``g`` (``(N, 3, 3)``, CPU) on ``x``."""
        n, c, h, w = x.shape
        identity = _is_identity(g)
        q = self._filter_pad

        # reflect padding: enough to cover where the corners of the output read, plus the
        # support of the filters, at most one image size minus 1 per side (reflect's limit)
        cx, cy = (w - 1) / 2, (h - 1) / 2
        corners = torch.tensor([[-cx, -cy, 1], [cx, -cy, 1], [cx, cy, 1], [-cx, cy, 1]],
                               dtype=_F64).T
        reach = g @ corners  # (N, 3, 4): where the corners read, centered pixel coordinates
        xs, ys = reach[:, 0].flatten(), reach[:, 1].flatten()
        margins = [(-xs).max() + 2 * q - cx, (-ys).max() + 2 * q - cy,
                   xs.max() + 2 * q - cx, ys.max() + 2 * q - cy]
        left, top, right, bottom = (
            int(math.ceil(min(max(float(m), 0.0), limit)))
            for m, limit in zip(margins, (w - 1, h - 1, w - 1, h - 1), strict=True))
        padded = F.pad(x, [left, right, top, bottom], mode="reflect")
        # the padded image's center is ((left - right) / 2, (top - bottom) / 2) from the old one
        g = _translate2d((left - right) / 2, (top - bottom) / 2, n) @ g

        # upsample 2x (NVlabs' padding for 12 taps, (6, 5), keeps the size exactly 2x): the
        # coordinates double, and the upsampled grid, centered on the filter's sixth tap, sits
        # half an upsampled sample off
        up_kernel, down_kernel = self._kernels_for(x)
        up = upsample2d(padded, up_kernel, 2, (6, 5, 6, 5))  # one strided transposed convolution
        to_up = _translate2d(-0.5, -0.5, n) @ _scale2d(2, 2, n)
        g = to_up @ g @ torch.linalg.inv(to_up)

        # resample into the upsampled output plus a margin of q input pixels per side for the
        # downsampling filter, in grid_sample's normalized coordinates (align_corners=False)
        out_h, out_w = (h + 2 * q) * 2, (w + 2 * q) * 2
        g = _scale2d(2 / up.shape[3], 2 / up.shape[2], n) @ g @ _scale2d(out_w / 2, out_h / 2, n)
        theta = g[:, :2, :].to(device=x.device, dtype=x.dtype)
        grid = F.affine_grid(theta, [n, c, out_h, out_w], align_corners=False)
        y = F.grid_sample(up, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

        # downsample 2x; cropping 1 upsampled pixel per side makes the output exactly (H, W)
        y = filter2d(y[:, :, 1:-1, 1:-1], down_kernel, 0, down=2)
        if bool(identity.any()):
            keep = identity.to(device=x.device, non_blocking=True)[:, None, None, None]
            y = torch.where(keep, x, y)
        return y

    def _recolor(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        """Execute the color matrices ``m`` (``(N, 4, 4)``, CPU) on ``x`` (the RGB channels of
        RGBA images; alpha is kept)."""
        n, c, h, w = x.shape
        flat = x.reshape(n, c, h * w)
        if c == 4:
            rgb = self._recolor(x[:, :3], m)
            return torch.cat([rgb, x[:, 3:]], dim=1)
        if c == 3:
            mat = m[:, :3, :].to(device=x.device, dtype=x.dtype)
            y = torch.baddbmm(mat[:, :, 3:], mat[:, :, :3], flat)
        else:  # gray: the mean of the three outputs for the input (x, x, x)
            row = m[:, :3, :].mean(dim=1)
            gain = row[:, :3].sum(dim=1).to(device=x.device, dtype=x.dtype)
            bias = row[:, 3].to(device=x.device, dtype=x.dtype)
            y = flat * gain[:, None, None] + bias[:, None, None]
        return y.reshape(n, c, h, w)
