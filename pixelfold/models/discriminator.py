"""The residual StyleGAN2 discriminator the PixelFolder authors train against, built from a
JSON-serializable [`DiscriminatorSpec`][pixelfold.models.DiscriminatorSpec].

Layout for a ``resolution`` of ``R`` and a channel table ``C``:

1. from-RGB: 1x1 conv ``image_channels -> C[R]`` + bias + leaky ReLU;
2. one residual block per halving, ``R -> R/2 -> ... -> 4``, block ``r`` going
   ``C[r] -> C[r/2]``: 3x3 conv + act, then blur + stride-2 3x3 conv + act; the skip is blur +
   stride-2 1x1 conv (no bias, no activation); output ``(main + skip) / sqrt(2)``;
3. minibatch standard deviation, 3x3 conv ``C[4] + f -> C[4]`` + act;
4. flatten, equalized linear ``C[4]·4·4 -> C[4]`` + act, equalized linear ``C[4] -> 1``.

A rectangular ``H x W`` resolution is keyed by its shorter side ``S`` (a power of two): the
blocks halve both sides until the shorter one is 4, so the final block keeps the aspect ratio
(``256x512`` ends at ``4x8``; the longer side must be divisible by ``S / 4``), and the final
linear layer takes ``C[4]·h·w`` inputs. Square specs are unchanged.

A class-conditional discriminator (``c_dim > 0``) conditions by projection, as StyleGAN2-ADA
does: the last linear layer gives ``cmap_dim = C[4]`` features instead of one, a label mapping
network (``mapping``: the embedded, normalized one-hot label through ``mapping_layers``
equalized linear layers with learning-rate multiplier 0.01) gives the label's vector ``cmap``
of the same width, and the logit is their dot product ``(out · cmap) / sqrt(cmap_dim)``. An
unconditional spec builds exactly the unconditional network (same tensors, same outputs).

All convolutions are equalized and bias-free; the bias of an activated conv lives in its
[`BiasLeakyReLU`][pixelfold.layers.BiasLeakyReLU]. At 256 with the default table this gives
28,864,129 parameters, the count of the authors' discriminator.

The forward pass (the fast implementation, the default) computes the same function with fewer
passes over memory, in
[`EqualConv2d.forward`][pixelfold.layers.equalized.EqualConv2d.forward]: bias, activation gain
and the residual ``1/sqrt(2)`` are folded into each convolution's weight and bias and the leaky
ReLU runs in place; the skip path blurs only the pixels its stride-2 1x1
convolution reads; the stride-1 convolutions use [`conv2d`][pixelfold.layers.conv2d], whose
double backward (R1) is cheaper. Under [`use_impl("ref")`][pixelfold.layers.use_impl] every op
runs its readable definition; the tests compare the two up to R1's parameter gradients.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from ..layers import (
    BiasLeakyReLU,
    Blur,
    EqualConv2d,
    EqualLinear,
    MappingNetwork,
    MinibatchStdDev,
    check_input,
    label_vectors,
)
from ..utils.errors import ConfigError
from ..utils.memory import discriminator_values
from ..utils.spec import SpecMixin, check_finite_fields, check_int, check_int_tuple
from .generator import check_model_fits
from .presets import PIXELFOLDER_CHANNELS
from .pretrained import PretrainedMixin, apply_memory_format
from .spec import parse_resolution

__all__ = ["DiscriminatorBlock", "DiscriminatorConv", "Discriminator", "DiscriminatorSpec",
           "check_resolution"]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_pow2(value: Any, low: int) -> bool:
    return _is_int(value) and value >= low and value & (value - 1) == 0


def _channel_table(value: Any) -> dict[int, int]:
    """Normalize a channel table given as ``{res: ch}`` (int or JSON string keys) or as
    ``[[res, ch], ...]`` pairs to a ``{int: int}`` dict sorted by resolution."""
    where = "DiscriminatorSpec: channels"
    if isinstance(value, Mapping):
        items = list(value.items())
    elif isinstance(value, (list, tuple)) and all(
            isinstance(p, (list, tuple)) and len(p) == 2 for p in value):
        items = [tuple(p) for p in value]
    else:
        raise ConfigError(f"{where} must be a {{resolution: channels}} dict or a list of "
                         f"[resolution, channels] pairs, got {value!r}")
    table: dict[int, int] = {}
    for res, ch in items:
        if isinstance(res, str) and res.strip().isdigit():
            res = int(res)
        if not _is_pow2(res, 4):
            raise ConfigError(f"{where} keys must be powers of two >= 4, got {res!r}")
        check_int(ch, f"{where}[{res}]")
        if res in table:
            raise ConfigError(f"{where} lists resolution {res} twice")
        table[res] = ch
    return dict(sorted(table.items()))


def check_resolution(resolution: Any) -> int | tuple[int, int]:
    """A discriminator resolution, checked: a power of two >= 4 (a square), or ``(height,
    width)`` (also ``[H, W]`` or ``"HxW"``) whose shorter side is a power of two >= 4 and whose
    longer side is divisible by ``shorter / 4`` (D halves both sides until the shorter is 4).
    A square pair comes back as one int.

    Raises:
        ConfigError: one line naming what the resolution needs.
    """
    if not _is_int(resolution):
        if not isinstance(resolution, (str, list, tuple)):
            raise ConfigError(f"resolution must be a power of two >= 4 or (height, width), "
                              f"got {resolution!r}")
        h, w = parse_resolution(resolution)
        resolution = h if h == w else (h, w)
    if _is_int(resolution):
        if not _is_pow2(resolution, 4):
            raise ConfigError(f"resolution must be a power of two >= 4, got {resolution!r}")
        return resolution
    h, w = resolution
    short, long = min(h, w), max(h, w)
    if not _is_pow2(short, 4):
        raise ConfigError(f"resolution {h}x{w}: the discriminator needs the shorter side to be "
                          f"a power of two >= 4 (its channel table is keyed by it), got {short}")
    if long % (short // 4):
        halvings = short.bit_length() - 3
        raise ConfigError(f"resolution {h}x{w}: the discriminator's {halvings} halvings down to "
                          f"a final block of shorter side 4 need both sides divisible by "
                          f"{short // 4}, got {long}")
    return h, w


@dataclass
class DiscriminatorSpec(SpecMixin):
    """A residual StyleGAN2 discriminator, as data.

    Args:
        resolution: side of square input images, a power of two >= 4, or ``(height, width)``
            (also ``[H, W]`` or ``"HxW"``) of rectangular ones: the shorter side a power of
            two >= 4, the longer one divisible by ``shorter / 4`` (the blocks halve both sides
            down to a final block whose shorter side is 4). A square pair is stored as one
            int.
        image_channels: channels of the input images (1, 3 or 4 for pixelfold's generators).
        channels: feature width by resolution, ``{resolution: channels}``; it must cover every
            power of two from 4 to ``resolution`` (extra entries are ignored). Default: the
            StyleGAN2 config-f / PixelFolder table ``4..64: 512, 128: 256, 256: 128, 512: 64,
            1024: 32``. A list of ``[resolution, channels]`` pairs or string keys (as JSON
            writes them) are accepted too.
        mbstd_group_size: samples per minibatch-std group (clipped to the batch size).
        mbstd_num_channels: number of minibatch-std statistics.
        blur_kernel: FIR taps of the blur before each stride-2 convolution.
        c_dim: number of classes of a class-conditional discriminator (0: unconditional):
            projection conditioning (see the module's description). Left out of
            [`to_dict`][pixelfold.utils.spec.SpecMixin.to_dict] when 0.
        mapping_layers: depth of the label mapping network of a conditional discriminator
            (StyleGAN2-ADA: 8); left out of ``to_dict`` while 8.
    """

    resolution: int | tuple[int, int] = 256
    image_channels: int = 3
    channels: dict[int, int] = field(default_factory=lambda: dict(PIXELFOLDER_CHANNELS))
    mbstd_group_size: int = 4
    mbstd_num_channels: int = 1
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    c_dim: int = 0
    mapping_layers: int = 8

    omit_if_default: ClassVar[tuple[str, ...]] = ("c_dim", "mapping_layers")

    def __post_init__(self) -> None:
        where = "DiscriminatorSpec"
        check_finite_fields(where, self)
        check_int(self.c_dim, "c_dim", where=where, low=0)
        check_int(self.mapping_layers, "mapping_layers", where=where)
        try:
            self.resolution = check_resolution(self.resolution)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for name in ("image_channels", "mbstd_group_size", "mbstd_num_channels"):
            check_int(getattr(self, name), name, where=where)
        self.channels = _channel_table(self.channels)
        missing = [r for r in self.block_resolutions + (4,) if r not in self.channels]
        if missing:
            raise ConfigError(f"{where}: channels has no entry for resolution(s) {missing}, "
                             f"needed at resolution {self.size[0]}x{self.size[1]}; got "
                             f"{self.channels}")
        c4 = self.channels[4]
        if c4 % self.mbstd_num_channels:
            raise ConfigError(f"{where}: mbstd_num_channels must divide channels[4] = {c4}, "
                             f"got {self.mbstd_num_channels}")
        self.blur_kernel = check_int_tuple(self.blur_kernel, "blur_kernel", where=where)

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)`` of the input images."""
        return parse_resolution(self.resolution)

    @property
    def short_side(self) -> int:
        """The shorter side of the input images (the key of the channel table)."""
        return min(self.size)

    @property
    def block_resolutions(self) -> tuple[int, ...]:
        """Input resolution of each residual block, ``(R, R/2, ..., 8)`` (of the shorter side
        for a rectangular spec)."""
        side = self.short_side
        return tuple(side >> i for i in range(int(math.log2(side)) - 2))

    @property
    def final_size(self) -> tuple[int, int]:
        """``(height, width)`` of the final block (``(4, 4)`` for a square spec)."""
        h, w = self.size
        n = len(self.block_resolutions)
        return h >> n, w >> n

    def _field_to_json(self, name: str, value: Any) -> Any:
        # the channel table as [[res, ch], ...] pairs, so that its integer keys survive JSON
        if name == "channels":
            return [[r, c] for r, c in value.items()]
        return super()._field_to_json(name, value)


def _blur_padding(blur_taps: int, kernel_size: int, factor: int = 2) -> tuple[int, int]:
    """Padding of the blur before a stride-``factor`` ``kernel_size`` conv so that the conv
    output is exactly ``1/factor`` of the input: ``p = taps - factor + k - 1``, split
    ``((p + 1) // 2, p // 2)``."""
    p = blur_taps - factor + kernel_size - 1
    return (p + 1) // 2, p // 2


class DiscriminatorConv(nn.Module):
    """Equalized conv without bias, optionally preceded by a blur and strided by 2, optionally
    followed by bias + leaky ReLU.

    Args:
        in_channels: input width.
        out_channels: output width.
        kernel_size: square kernel side (odd).
        down: blur, then convolve with stride 2 and no padding (halves the resolution);
            otherwise stride 1 with ``kernel_size // 2`` padding.
        activate: add a per-channel bias and leaky ReLU (the only bias of the layer).
        blur_kernel: FIR taps of the blur.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *,
                 down: bool = False, activate: bool = True,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.blur = (Blur(blur_kernel, padding=_blur_padding(len(blur_kernel), kernel_size))
                     if down else nn.Identity())
        self.conv = EqualConv2d(in_channels, out_channels, kernel_size, stride=2 if down else 1,
                                padding=0 if down else kernel_size // 2, bias=False)
        self.act = BiasLeakyReLU(out_channels) if activate else nn.Identity()

    def forward(self, x: torch.Tensor, gain: float = 1.0) -> torch.Tensor:
        """``gain * act(conv(blur(x)))``, computed by
        [`EqualConv2d.forward`][pixelfold.layers.equalized.EqualConv2d.forward]: one
        convolution with the activation's gain, the ``gain`` argument and the bias folded into
        its weight and bias (exact: the leaky ReLU is positively homogeneous), then the leaky
        ReLU in place. A stride-2 1x1 convolution (the residual skip) filters only the pixels
        it reads."""
        if not gain > 0:
            raise ValueError(f"DiscriminatorConv: gain must be positive (it is folded through "
                             f"the leaky ReLU), got {gain!r}")
        blur = self.blur if isinstance(self.blur, Blur) else None
        act = self.act if isinstance(self.act, BiasLeakyReLU) else None
        return self.conv(x, gain=gain, activation=act, blur=blur)


class DiscriminatorBlock(nn.Module):
    """Residual downsampling block: ``(conv1(conv0(x)) + skip(x)) / sqrt(2)`` at half the
    resolution.

    Args:
        in_channels: input width (also the width of the first 3x3 conv).
        out_channels: output width.
        blur_kernel: FIR taps of the blurs.
    """

    def __init__(self, in_channels: int, out_channels: int,
                 blur_kernel: Sequence[int] = (1, 3, 3, 1)) -> None:
        super().__init__()
        self.conv0 = DiscriminatorConv(in_channels, in_channels, 3, blur_kernel=blur_kernel)
        self.conv1 = DiscriminatorConv(in_channels, out_channels, 3, down=True,
                                       blur_kernel=blur_kernel)
        self.skip = DiscriminatorConv(in_channels, out_channels, 1, down=True, activate=False,
                                      blur_kernel=blur_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # the 1/sqrt(2) is folded into the weights (and bias) of conv1 and skip
        gain = 1 / math.sqrt(2)
        return self.conv1(self.conv0(x), gain=gain) + self.skip(x, gain=gain)


class Discriminator(PretrainedMixin, nn.Module):
    """Residual StyleGAN2 discriminator built from a
    [`DiscriminatorSpec`][pixelfold.models.DiscriminatorSpec]:
    ``images (B, image_channels, H, W) -> logits (B, 1)``.

    Args:
        spec: the architecture, a [`DiscriminatorSpec`][pixelfold.models.DiscriminatorSpec]
            (or its dict form).
        memory_format: layout of the convolution weights, which the activations follow;
            channels-last by default (the fast layout of oneDNN and of tensor cores),
            ``torch.contiguous_format`` for NCHW, ``None`` to leave it as the layers create it.

    Raises:
        ConfigError: ``spec`` is not a valid spec.
        MemoryLimitError: the weights of ``spec`` need more memory than the default device
            has available (computed from the spec before anything is allocated).

    Example:
        >>> D = Discriminator(DiscriminatorSpec(resolution=32, channels={4: 16, 8: 16,
        ...                                                              16: 8, 32: 8}))
        >>> D(torch.randn(2, 3, 32, 32)).shape
        torch.Size([2, 1])
    """

    spec_class = DiscriminatorSpec

    def __init__(self, spec: DiscriminatorSpec | dict | None = None, *,
                 memory_format: torch.memory_format | None = torch.channels_last) -> None:
        super().__init__()
        if spec is None:
            spec = DiscriminatorSpec()
        elif isinstance(spec, dict):
            spec = DiscriminatorSpec.from_dict(spec)
        if not isinstance(spec, DiscriminatorSpec):
            raise ConfigError(f"Discriminator needs a DiscriminatorSpec, "
                              f"got {type(spec).__name__}")
        check_model_fits("discriminator", spec, discriminator_values(spec))
        self.spec = spec
        self.resolution = spec.resolution
        ch = spec.channels
        kernel = spec.blur_kernel
        self.from_rgb = DiscriminatorConv(spec.image_channels, ch[spec.short_side], 1)
        self.blocks = nn.ModuleList(
            DiscriminatorBlock(ch[r], ch[r // 2], kernel) for r in spec.block_resolutions
        )
        c4 = ch[4]
        self.mbstd = MinibatchStdDev(spec.mbstd_group_size, spec.mbstd_num_channels)
        self.final_conv = DiscriminatorConv(c4 + spec.mbstd_num_channels, c4, 3)
        fh, fw = spec.final_size
        self.final_linear = EqualLinear(c4 * fh * fw, c4, activation="lrelu")
        self.c_dim = spec.c_dim
        self.cmap_dim = c4 if spec.c_dim else 0
        self.out = EqualLinear(c4, self.cmap_dim or 1)
        # built last: an unconditional discriminator draws the same initial weights as before
        self.mapping = (MappingNetwork(0, c4, spec.mapping_layers, c_dim=spec.c_dim,
                                       track_w_avg=False) if spec.c_dim else None)
        apply_memory_format(self, memory_format)

    def forward(self, images: torch.Tensor, c: torch.Tensor | int | None = None) -> torch.Tensor:
        """Score a batch of images.

        Args:
            images: ``(B, image_channels, H, W)`` at the spec's resolution, floating-point,
                nominally in ``[-1, 1]``, in any memory format (a channels-last model converts
                NCHW images once, which is faster than letting every convolution do it). The
                batch size must be divisible by ``min(mbstd_group_size, B)``.
            c: class labels of a conditional discriminator: integer classes ``(B,)`` (or one
                int for the whole batch) or one-hot / soft vectors ``(B, c_dim)``; ``None`` for
                an unconditional one.

        Returns:
            real/fake logits ``(B, 1)``; an empty batch gives ``(0, 1)``.

        Raises:
            InputError: ``images`` is not a floating-point tensor (uint8 pixels must be
                scaled to ``[-1, 1]`` first) on the device of the weights, or has another
                dtype than them outside ``torch.autocast``.
            ValueError: the shape is wrong.
            LabelError: ``c`` missing for a conditional discriminator, given to an
                unconditional one, a class out of range or a wrong shape.
        """
        check_input(images, self.out.weight, "images", "the discriminator", var="D",
                    float_hint=" in [-1, 1] (uint8 pixels p as p.float() / 127.5 - 1)")
        s = self.spec
        expected = (s.image_channels, *s.size)
        if images.ndim != 4 or tuple(images.shape[1:]) != expected:
            raise ValueError(f"Discriminator expects images of shape (B, {s.image_channels}, "
                             f"{s.size[0]}, {s.size[1]}), got {tuple(images.shape)}")
        labels = label_vectors(c, self.c_dim, images.shape[0], owner="the discriminator",
                               like=self.out.weight)
        if images.shape[0] == 0:
            return images.new_zeros((0, 1))
        weight = self.final_conv.conv.weight  # 3x3: its layout is the model's
        if weight.is_contiguous(memory_format=torch.channels_last) \
                and not weight.is_contiguous() \
                and not images.is_contiguous(memory_format=torch.channels_last):
            # NCHW images (as loaders give them) into a channels-last model: one copy here
            # instead of layout conversions in the convolutions and their gradients (measured
            # at 128x128, batch 4, CPU: forward+backward 1.06-1.32x, the R1 double backward
            # 1.20-1.25x faster than without it)
            images = images.contiguous(memory_format=torch.channels_last)
        x = self.from_rgb(images)
        for block in self.blocks:
            x = block(x)
        x = self.final_conv(self.mbstd(x))
        x = self.out(self.final_linear(x.flatten(1)))
        if self.mapping is not None:
            cmap = self.mapping(None, labels)
            x = (x * cmap.to(x.dtype)).sum(dim=1, keepdim=True) * (1 / math.sqrt(self.cmap_dim))
        return x

    def extra_repr(self) -> str:
        cond = f", c_dim={self.c_dim}" if self.c_dim else ""
        return f"resolution={self.resolution}{cond}"
