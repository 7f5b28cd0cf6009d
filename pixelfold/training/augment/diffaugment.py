"""DiffAugment (Zhao et al. 2020, "Differentiable Augmentation for Data-Efficient GAN
Training"): a fixed policy of cheap differentiable transforms, applied to every image seen by
the discriminator, real and generated alike.

| policy | transforms, one draw per image | range |
|---|---|---|
| ``color`` | brightness: add ``b`` | ``b ~ U(-0.5, 0.5)`` |
| | saturation: ``(x - mean_c) * s + mean_c`` (mean over channels, per pixel) | ``s ~ U(0, 2)`` |
| | contrast: ``(x - mean) * k + mean`` (mean over the whole image) | ``k ~ U(0.5, 1.5)`` |
| ``translation`` | integer shift ``(dy, dx)``, zeros shifted in | ``abs(d) <= size / 8`` |
| ``cutout`` | zero a square of half the image size at a uniform center (clipped at borders) | |

The ranges and the order (brightness, saturation, contrast) are those of the authors' PyTorch
code (``DiffAugment_pytorch.py``, ratios 1/8 and 1/2 rounded as ``int(size * ratio + 0.5)``).
Every transform is applied with probability 1; ``policy`` chooses which groups run, in the
order given.

Implementation: per-image parameters are drawn on the CPU from the given ``torch.Generator``;
the color transforms are element-wise, the translation is two ``gather`` calls on the
zero-padded image (rows, then columns), the cutout a multiplicative mask. All are linear in
the image up to a constant, and twice differentiable with native PyTorch operations, so R1's
double backward runs through them. Gray images (``C == 1``) work: saturation is then the
identity (the channel mean is the pixel itself). For RGBA images (``C == 4``) the color
transforms act on R, G and B only (the saturation's mean is over those three) and leave alpha
untouched; translation and cutout move and cut all four channels alike.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ...utils.errors import ConfigError

__all__ = ["DIFFAUGMENT_POLICIES", "DiffAugment", "DiffAugmentParams"]

DIFFAUGMENT_POLICIES = ("color", "translation", "cutout")
"""The policy names of [`DiffAugment`][pixelfold.training.augment.DiffAugment]."""


@dataclass
class DiffAugmentParams:
    """One draw of [`DiffAugment`][pixelfold.training.augment.DiffAugment]'s parameters for a
    batch of ``N`` images (CPU tensors).

    Attributes:
        steps: for each policy in order, ``(name, values)``: ``color`` has ``brightness``,
            ``saturation`` and ``contrast`` ``(N,)`` float64; ``translation`` has ``shift``
            ``(N, 2)`` int64, ``(dy, dx)``: output pixel ``(i, j)`` is input pixel
            ``(i + dy, j + dx)`` (zero outside); ``cutout`` has ``start`` ``(N, 2)`` int64,
            the top-left corner ``(row, col)`` of the zeroed square (may lie outside the
            image) and ``size`` ``(2,)`` int64, its height and width.
    """

    steps: list[tuple[str, dict[str, torch.Tensor]]] = field(default_factory=list)


def parse_policy(policy: str) -> tuple[str, ...]:
    """The policy names of a comma-separated ``policy`` string (empty: no transform).

    Raises:
        ConfigError: an unknown name (the message names it and the choices).
    """
    if not isinstance(policy, str):
        raise ConfigError(f"DiffAugment policy must be a string such as "
                          f"'color,translation,cutout', got {policy!r}")
    names = tuple(part.strip() for part in policy.split(",") if part.strip())
    for name in names:
        if name not in DIFFAUGMENT_POLICIES:
            raise ConfigError(f"unknown DiffAugment policy {name!r} in {policy!r}; choose a "
                              f"comma-separated list of {', '.join(DIFFAUGMENT_POLICIES)}")
    return names


class DiffAugment(nn.Module):
    """DiffAugment with a fixed policy.

    Args:
        policy: comma-separated groups from ``color``, ``translation``, ``cutout``, applied in
            that order (the authors' choice for few-shot data: all three).
        translation_ratio: the largest shift as a fraction of the image size (1/8).
        cutout_ratio: the side of the cutout square as a fraction of the image size (1/2).

    Raises:
        ConfigError: an unknown policy name or a ratio outside ``[0, 1]``.

    Example:
        >>> aug = DiffAugment("color,translation,cutout")
        >>> aug(torch.zeros(2, 3, 16, 16), generator=torch.Generator().manual_seed(0)).shape
        torch.Size([2, 3, 16, 16])
    """

    def __init__(self, policy: str = "color,translation,cutout", *,
                 translation_ratio: float = 0.125, cutout_ratio: float = 0.5) -> None:
        super().__init__()
        self.policies = parse_policy(policy)
        for name, value in (("translation_ratio", translation_ratio),
                            ("cutout_ratio", cutout_ratio)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 <= value <= 1:
                raise ConfigError(f"DiffAugment: {name} must be in [0, 1], got {value!r}")
        self.translation_ratio = float(translation_ratio)
        self.cutout_ratio = float(cutout_ratio)

    @property
    def policy(self) -> str:
        """The policy as a comma-separated string."""
        return ",".join(self.policies)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"

    def sample_params(self, shape: tuple[int, ...] | torch.Size,
                      generator: torch.Generator | None = None) -> DiffAugmentParams:
        """Draw the parameters for images of ``shape`` ``(N, C, H, W)`` from a CPU
        ``generator`` (default: torch's global CPU generator)."""
        if generator is not None and generator.device.type != "cpu":
            raise ValueError(f"DiffAugment needs a CPU torch.Generator, got one on "
                             f"{generator.device}")
        n, _, h, w = (int(s) for s in shape)
        gen = generator
        params = DiffAugmentParams()
        for name in self.policies:
            if name == "color":
                values = {
                    "brightness": torch.rand(n, generator=gen, dtype=torch.float64) - 0.5,
                    "saturation": torch.rand(n, generator=gen, dtype=torch.float64) * 2,
                    "contrast": torch.rand(n, generator=gen, dtype=torch.float64) + 0.5,
                }
            elif name == "translation":
                sy, sx = (int(s * self.translation_ratio + 0.5) for s in (h, w))
                values = {"shift": torch.stack([
                    torch.randint(-sy, sy + 1, (n,), generator=gen),
                    torch.randint(-sx, sx + 1, (n,), generator=gen)], dim=1)}
            else:  # cutout
                ch, cw = (int(s * self.cutout_ratio + 0.5) for s in (h, w))
                # the center is uniform over the pixels (one more position for even sizes)
                cy = torch.randint(0, h + 1 - ch % 2, (n,), generator=gen)
                cx = torch.randint(0, w + 1 - cw % 2, (n,), generator=gen)
                values = {"start": torch.stack([cy - ch // 2, cx - cw // 2], dim=1),
                          "size": torch.tensor([ch, cw])}
            params.steps.append((name, values))
        return params

    def forward(self, images: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment ``images`` ``(N, C, H, W)`` with parameters drawn from ``generator``
        (a CPU ``torch.Generator``; default: torch's global one). Returns ``images`` itself
        for an empty policy."""
        _check_images(images)
        if not self.policies:
            return images
        return self.apply(images, self.sample_params(images.shape, generator))

    def apply(self, images: torch.Tensor, params: DiffAugmentParams) -> torch.Tensor:
        """Apply a draw of parameters; deterministic, twice differentiable in ``images``."""
        _check_images(images)
        x = images
        n, _, h, w = x.shape

        def per_image(v: torch.Tensor) -> torch.Tensor:
            return v.to(device=x.device, dtype=x.dtype).view(n, 1, 1, 1)

        for name, values in params.steps:
            if name == "color":
                alpha = x[:, 3:] if x.shape[1] == 4 else None
                if alpha is not None:
                    x = x[:, :3]
                x = x + per_image(values["brightness"])
                mean = x.mean(dim=1, keepdim=True)
                x = (x - mean) * per_image(values["saturation"]) + mean
                mean = x.mean(dim=(1, 2, 3), keepdim=True)
                x = (x - mean) * per_image(values["contrast"]) + mean
                if alpha is not None:
                    x = torch.cat([x, alpha], dim=1)
            elif name == "translation":
                x = _translate(x, values["shift"])
            else:
                x = x * _cutout_mask(values["start"], values["size"], h, w, x)
        return x


def _check_images(images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.ndim != 4:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images)
        raise ValueError(f"DiffAugment expects images (N, C, H, W), got {shape}")
    if not images.is_floating_point():
        raise ValueError(f"DiffAugment expects floating point images, got {images.dtype}")


def _translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Output pixel ``(i, j)`` = input pixel ``(i + dy, j + dx)``, zero outside the image."""
    n, c, h, w = x.shape
    shift = shift.to(x.device)
    padded = F.pad(x, [1, 1, 1, 1])  # one ring of zeros: every outside index lands on it
    rows = (torch.arange(h, device=x.device)[None] + shift[:, :1]).clamp(-1, h) + 1
    cols = (torch.arange(w, device=x.device)[None] + shift[:, 1:]).clamp(-1, w) + 1
    x = padded.gather(2, rows[:, None, :, None].expand(n, c, h, w + 2))
    return x.gather(3, cols[:, None, None, :].expand(n, c, h, w))


def _cutout_mask(start: torch.Tensor, size: torch.Tensor, h: int, w: int,
                 like: torch.Tensor) -> torch.Tensor:
    """``(N, 1, H, W)``: 0 inside each image's square, 1 elsewhere."""
    start = start.to(like.device)
    ch, cw = (int(s) for s in size)
    rows = torch.arange(h, device=like.device)[None] - start[:, :1]
    cols = torch.arange(w, device=like.device)[None] - start[:, 1:]
    inside_r = (rows >= 0) & (rows < ch)
    inside_c = (cols >= 0) & (cols < cw)
    inside = inside_r[:, :, None] & inside_c[:, None, :]
    return (~inside).to(like.dtype)[:, None]
