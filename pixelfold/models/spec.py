"""Declarative specification of a multi-stage pixel-regression generator.

A [`GeneratorSpec`][pixelfold.models.GeneratorSpec] is the whole architecture as data: it
round-trips through JSON
(``spec == GeneratorSpec.from_dict(json.loads(json.dumps(spec.to_dict())))``), it is saved as
``config.json`` next to the weights, and [`Generator`][pixelfold.models.Generator] is built from
it and nothing else.

A stage ([`StageSpec`][pixelfold.models.StageSpec]) turns a grid of pixel coordinates into
features and then into RGB:

1. **positional encoding** at the stage resolution: Fourier features of the coordinates and/or a
   learned coordinate embedding, concatenated;
2. **input layers**: 1x1 convolutions (``input_channels``), style-free (PixelFolder) or
   modulated (CIPS); the last width is the projection before reduction;
3. **reduction** by ``reduce_factor ** reduce_steps``: pixel folding (PixelFolder) or average
   pooling (the paper's DownSampling ablation);
4. **merge** with the previous stage's output: concatenation + 1x1 conv, addition, or none;
5. **blocks**: each is ModConv -> growth (unfold / transposed ModConv / nearest / none) ->
   ModConv -> ToRGB; the RGB outputs accumulate across blocks and stages. The width between
   the growth and the second ModConv is derived from the growth (``block / factor²`` after an
   unfold, the block width otherwise) unless ``mid_channels`` sets it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, get_args

from ..utils.errors import ConfigError
from ..utils.spec import (
    SpecMixin,
    check_bool,
    check_choice,
    check_finite_fields,
    check_int,
    check_int_tuple,
    check_number,
    format_resolution,
    parse_resolution,
)

__all__ = [
    "IMAGE_CHANNELS",
    "GeneratorSpec",
    "GrowMode",
    "InputLayer",
    "MergeMode",
    "ReduceMode",
    "RGBMode",
    "StageSpec",
    "format_resolution",
    "parse_resolution",
]

IMAGE_CHANNELS = {1: "L", 3: "RGB", 4: "RGBA"}
"""The image channels a model may have, with the PIL mode of its images: grayscale, RGB and
RGB with alpha (straight, not premultiplied)."""

MergeMode = Literal["concat", "add", "none"]
GrowMode = Literal["unfold", "deconv", "nearest", "none"]
ReduceMode = Literal["fold", "avgpool"]
RGBMode = Literal["skip", "sum"]
InputLayer = Literal["conv", "modconv"]

CHANNEL_ORDERS = ("pixelfolder", "pixel_shuffle")
"""The channel layouts of pixel folding (see [`PixelFold`][pixelfold.layers.PixelFold])."""


def _err(where: str, name: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {name} {message}")


def _resolution(where: str, value: Any) -> tuple[int, int]:
    return parse_resolution(value, f"{where}: resolution")


@dataclass
class StageSpec(SpecMixin):
    """One stage of a pixel-regression generator.

    Args:
        resolution: ``(height, width)`` of the stage's coordinate grid, i.e. of the pixel
            tensor the stage initializes; one int (a square), a ``[height, width]`` list or an
            ``"HxW"`` string are accepted. Height and width may differ (rectangular images):
            each must be divisible by the stage's reduction.
        fourier_channels: width of the Fourier features of the coordinates (0: none).
        fourier_learned: learned Fourier features (PixelFolder, CIPS) or fixed octaves.
        coord_embedding_channels: width of a learned per-pixel embedding (0: none).
        input_channels: output widths of the 1x1 input layers applied to the positional
            encoding; the last one is the projection before reduction (may be empty when
            ``input_layer="conv"`` and no projection is wanted).
        input_layer: ``"conv"`` (equalized 1x1 conv + bias + leaky ReLU, style-free, computed
            once for the whole batch) or ``"modconv"`` (1x1 styled conv, CIPS).
        reduce_steps: how many times the pixel tensor is reduced before the blocks.
        reduce_factor: reduction factor of each step.
        reduce: ``"fold"`` (pixel folding: channels x factor², lossless) or ``"avgpool"``
            (average pooling, channels kept).
        merge: how the previous stage's output enters: ``"concat"`` (then a 1x1 conv back to the
            previous width, as the authors' code), ``"add"``, or ``"none"``.
        block_channels: output width of each block.
        kernel_size: kernel side of the block ModConvs (odd).
        grow: how resolution doubles inside each block: ``"unfold"`` (pixel unfolding, channels
            / factor²), ``"deconv"`` (StyleGAN2 upsampling ModConv), ``"nearest"``, or
            ``"none"`` (resolution kept).
        rgb: ``"skip"``: each ToRGB adds the running RGB, FIR-upsampled when the resolution
            doubled (StyleGAN2, PixelFolder); ``"sum"``: the stage's RGBs are summed at one
            resolution (CIPS).
        noise: per-pixel noise injection in the block ModConvs.
        mid_channels: width of each block after its growth, i.e. the input width of its second
            ModConv (one entry per block, or empty for the default: ``block / reduce_factor²``
            with ``"unfold"``, the block width otherwise). The first ModConv outputs this width
            (``mid * reduce_factor²`` before an unfold). For example ``grow="deconv"`` with
            ``mid_channels = block / 4`` is the paper's *shape-consistent* DeConv: the
            transposed ModConv outputs the tensor an unfold would. Left out of
            [`to_dict`][pixelfold.utils.spec.SpecMixin.to_dict] when empty, so the configs of
            specs that do not use it are unchanged.
    """

    resolution: tuple[int, int]
    block_channels: tuple[int, ...]
    fourier_channels: int = 0
    fourier_learned: bool = True
    coord_embedding_channels: int = 0
    input_channels: tuple[int, ...] = ()
    input_layer: InputLayer = "conv"
    reduce_steps: int = 2
    reduce_factor: int = 2
    reduce: ReduceMode = "fold"
    merge: MergeMode = "concat"
    kernel_size: int = 3
    grow: GrowMode = "unfold"
    rgb: RGBMode = "skip"
    noise: bool = True
    mid_channels: tuple[int, ...] = ()

    omit_if_default: ClassVar[tuple[str, ...]] = ("mid_channels",)

    def __post_init__(self) -> None:
        where = "StageSpec"
        check_finite_fields(where, self)
        self.resolution = _resolution(where, self.resolution)
        self.block_channels = check_int_tuple(self.block_channels, "block_channels",
                                              where=where)
        self.input_channels = check_int_tuple(self.input_channels, "input_channels",
                                              where=where, allow_empty=True)
        self.mid_channels = check_int_tuple(self.mid_channels, "mid_channels", where=where,
                                            allow_empty=True)
        if self.mid_channels and len(self.mid_channels) != len(self.block_channels):
            raise _err(where, "mid_channels",
                       f"needs one width per block ({len(self.block_channels)}) or none, got "
                       f"{list(self.mid_channels)} for block_channels "
                       f"{list(self.block_channels)}")
        for name in ("fourier_channels", "coord_embedding_channels", "reduce_steps"):
            check_int(getattr(self, name), name, where=where, low=0)
        for name in ("reduce_factor", "kernel_size"):
            check_int(getattr(self, name), name, where=where)
        for name, kind in (("input_layer", InputLayer), ("reduce", ReduceMode),
                           ("merge", MergeMode), ("grow", GrowMode), ("rgb", RGBMode)):
            check_choice(getattr(self, name), name, get_args(kind), where=where)
        for name in ("fourier_learned", "noise"):
            check_bool(getattr(self, name), name, where=where)
        if self.kernel_size % 2 == 0:
            raise _err(where, "kernel_size", f"must be odd, got {self.kernel_size}")
        if self.fourier_channels == 0 and self.coord_embedding_channels == 0:
            raise _err(where, "fourier_channels",
                       "and coord_embedding_channels are both 0: the stage has no input")

    # ---- derived geometry (validated against neighbours by GeneratorSpec) ----------------------
    @property
    def reduction(self) -> int:
        """Total reduction factor ``reduce_factor ** reduce_steps``."""
        return self.reduce_factor**self.reduce_steps

    @property
    def reduced_resolution(self) -> tuple[int, int]:
        """Resolution at which the blocks start."""
        h, w = self.resolution
        return h // self.reduction, w // self.reduction

    @property
    def grow_factor(self) -> int:
        """Resolution factor of one block."""
        if self.grow == "none":
            return 1
        return self.reduce_factor if self.grow == "unfold" else 2

    @property
    def output_resolution(self) -> tuple[int, int]:
        """Resolution of the stage's output features and last RGB."""
        h, w = self.reduced_resolution
        g = self.grow_factor ** len(self.block_channels)
        return h * g, w * g

    @property
    def block_mid_channels(self) -> tuple[int, ...]:
        """Width of each block after its growth (the input of its second ModConv):
        ``mid_channels``, or the growth's default."""
        if self.mid_channels:
            return self.mid_channels
        if self.grow == "unfold":
            return tuple(c // self.reduce_factor**2 for c in self.block_channels)
        return self.block_channels

    @property
    def block_first_channels(self) -> tuple[int, ...]:
        """Output width of each block's first ModConv: the mid width, times
        ``reduce_factor²`` when an unfold follows."""
        if self.grow == "unfold":
            return tuple(m * self.reduce_factor**2 for m in self.block_mid_channels)
        return self.block_mid_channels

    @property
    def positional_channels(self) -> int:
        """Width of the concatenated positional encoding."""
        return self.fourier_channels + self.coord_embedding_channels

    @property
    def projected_channels(self) -> int:
        """Width after the input layers (before reduction)."""
        return self.input_channels[-1] if self.input_channels else self.positional_channels

    @property
    def reduced_channels(self) -> int:
        """Width after reduction."""
        if self.reduce == "fold":
            return self.projected_channels * self.reduce_factor ** (2 * self.reduce_steps)
        return self.projected_channels

    @property
    def num_modconvs(self) -> int:
        """Modulated convolutions in the stage (each consumes one ``w``)."""
        n_in = len(self.input_channels) if self.input_layer == "modconv" else 0
        return n_in + 2 * len(self.block_channels)


@dataclass
class GeneratorSpec(SpecMixin):
    """A multi-stage pixel-regression generator, as data.

    Args:
        stages: the stages, from coarse to fine.
        z_dim: latent width.
        w_dim: style width.
        mapping_layers: depth of the mapping network.
        mapping_lr_mul: learning-rate multiplier of the mapping network.
        w_avg_beta: decay of the tracked average ``w``.
        image_channels: channels of the images: 1 (grayscale), 3 (RGB) or 4 (RGBA, straight
            alpha); every ToRGB outputs this many (see [Image shapes](../training/image-shapes.md)).
        channel_order: channel layout of folding (``"pixelfolder"`` or ``"pixel_shuffle"``).
        blur_kernel: FIR taps for RGB skip upsampling and upsampling ModConvs.
        name: optional human-readable name (presets set it); not used to build the model.
        c_dim: number of classes of a class-conditional generator (0: unconditional). The
            mapping network then embeds the one-hot label as StyleGAN2-ADA does (see
            [`MappingNetwork`][pixelfold.layers.MappingNetwork]). Left out of
            [`to_dict`][pixelfold.models.GeneratorSpec.to_dict] when 0, so unconditional
            configs are unchanged.
        class_names: the name of each class (``c_dim`` of them, or none: the classes are then
            called by their index), as the training data named them; tools print and accept
            them (``pixelfold generate --class NAME``). Not used to build the model; left out
            of ``to_dict`` when empty.
    """

    stages: tuple[StageSpec, ...]
    z_dim: int = 512
    w_dim: int = 512
    mapping_layers: int = 8
    mapping_lr_mul: float = 0.01
    w_avg_beta: float = 0.995
    image_channels: int = 3
    channel_order: str = "pixelfolder"
    blur_kernel: tuple[int, ...] = (1, 3, 3, 1)
    name: str | None = None
    c_dim: int = 0
    class_names: tuple[str, ...] = ()

    omit_if_default: ClassVar[tuple[str, ...]] = ("c_dim", "class_names")

    def __post_init__(self) -> None:
        where = "GeneratorSpec"
        check_finite_fields(where, self)
        stages = self.stages
        if isinstance(stages, StageSpec):
            stages = (stages,)
        if not isinstance(stages, (tuple, list)) or not stages:
            raise _err(where, "stages",
                       f"must be a non-empty sequence of StageSpec, got {stages!r}")
        converted = []
        for i, st in enumerate(stages):
            if isinstance(st, dict):
                try:
                    st = StageSpec.from_dict(st)
                except ValueError as exc:
                    raise ConfigError(f"stage {i}: {exc}") from None
            if not isinstance(st, StageSpec):
                raise _err(where, f"stages[{i}]", f"must be a StageSpec, got {type(st).__name__}")
            converted.append(st)
        self.stages = tuple(converted)
        for name in ("z_dim", "w_dim", "mapping_layers", "image_channels"):
            check_int(getattr(self, name), name, where=where)
        if self.image_channels not in IMAGE_CHANNELS:
            raise _err(where, "image_channels", f"must be 1 (grayscale), 3 (RGB) or 4 (RGBA), "
                       f"got {self.image_channels}")
        check_number(self.mapping_lr_mul, "mapping_lr_mul", where=where, low=0, low_open=True)
        check_number(self.w_avg_beta, "w_avg_beta", where=where, low=0, high=1, high_open=True)
        if self.name is not None and not isinstance(self.name, str):
            raise _err(where, "name", f"must be a string or None, got {self.name!r}")
        check_choice(self.channel_order, "channel_order", CHANNEL_ORDERS, where=where)
        self.blur_kernel = check_int_tuple(self.blur_kernel, "blur_kernel", where=where)
        check_int(self.c_dim, "c_dim", where=where, low=0)
        self.class_names = check_class_names(where, self.class_names, self.c_dim)
        self._validate_chain()

    def _validate_chain(self) -> None:
        prev_res: tuple[int, int] | None = None
        prev_ch: int | None = None
        for i, st in enumerate(self.stages):
            where = f"stage {i}"
            h, w = st.resolution
            if h % st.reduction or w % st.reduction:
                raise _err(where, "resolution", f"{h}x{w} is not divisible by reduce_factor ** "
                           f"reduce_steps = {st.reduction}")
            if st.input_layer == "modconv" and not st.input_channels:
                raise _err(where, "input_channels", "must not be empty with input_layer='modconv'")
            if i == 0 and st.merge != "none":
                raise _err(where, "merge", f"must be 'none' for the first stage, got {st.merge!r}")
            if i > 0 and st.merge != "none":
                if st.reduced_resolution != prev_res:
                    raise _err(where, "resolution",
                               f"{h}x{w} reduced by {st.reduction} gives {st.reduced_resolution}, "
                               f"which does not chain with the previous stage's output "
                               f"{prev_res}")
                if st.merge == "add" and st.reduced_channels != prev_ch:
                    raise _err(where, "input_channels",
                               f"gives {st.reduced_channels} channels after reduction but "
                               f"merge='add' needs the previous stage's {prev_ch}")
            f2 = st.reduce_factor**2
            for j, cout in enumerate(st.block_channels):
                if st.grow == "unfold" and not st.mid_channels and cout % f2:
                    raise _err(where, f"block_channels[{j}]",
                               f"= {cout} is not divisible by reduce_factor² = {f2}, "
                               f"needed to unfold")
            if st.rgb == "sum" and st.grow != "none":
                raise _err(where, "rgb", "'sum' needs grow='none' (all RGBs at one resolution)")
            # the first RGB of this stage must chain with the last RGB of the previous one
            if prev_res is not None:
                first = (st.reduced_resolution[0] * st.grow_factor,
                         st.reduced_resolution[1] * st.grow_factor)
                if first not in (prev_res, (prev_res[0] * 2, prev_res[1] * 2)):
                    raise _err(where, "resolution",
                               f"gives a first RGB at {first}, which is neither the previous "
                               f"RGB's {prev_res} nor twice it")
            prev_res = st.output_resolution
            prev_ch = st.block_channels[-1]

    # ---- derived ------------------------------------------------------------------------------
    @property
    def resolution(self) -> tuple[int, int]:
        """Output image ``(height, width)``."""
        return self.stages[-1].output_resolution

    @property
    def num_ws(self) -> int:
        """Number of per-layer styles: one per ModConv, plus one for the last ToRGB."""
        return sum(st.num_modconvs for st in self.stages) + 1

    def with_resolution(self, resolution: int | Sequence[int] | str) -> GeneratorSpec:
        """This architecture at another output ``(height, width)``: every stage's coordinate
        grid scaled by ``height / H`` and ``width / W`` (``H x W`` being this spec's output),
        widths and layers unchanged, so a square preset gives its rectangular version
        (``presets.get("pixelfolder-256").with_resolution((256, 512))``: grids 16x32, 64x128,
        256x512). Only the coordinate embedding (per grid pixel) and the noise images change
        size. A new resolution appends ``-HxW`` to the name.

        Raises:
            ConfigError: a stage's grid would not be a whole number of pixels divisible by its
                reduction; one line names the divisibility each stage needs, e.g.
                ``resolution 100x60: stage 0 folds by 4 and needs H and W divisible by 16, ...``.
        """
        h, w = parse_resolution(resolution)
        out_h, out_w = self.resolution
        needs = []
        bad = False
        for i, st in enumerate(self.stages):
            gh, gw = st.resolution
            dh = out_h * st.reduction // math.gcd(out_h * st.reduction, gh)
            dw = out_w * st.reduction // math.gcd(out_w * st.reduction, gw)
            bad = bad or h % dh or w % dw
            verb = "folds" if st.reduce == "fold" else "reduces"
            by = f"{verb} by {st.reduction}" if st.reduce_steps else "does not reduce"
            sides = f"H and W divisible by {dh}" if dh == dw else \
                f"H divisible by {dh} and W by {dw}"
            needs.append(f"stage {i} {by} and needs {sides}")
        if bad:
            name = f" ({self.name})" if self.name else ""
            raise ConfigError(f"resolution {h}x{w}{name}: {', '.join(needs)}")
        stages = [dataclasses.replace(st, resolution=(st.resolution[0] * h // out_h,
                                                      st.resolution[1] * w // out_w))
                  for st in self.stages]
        name = self.name
        if name and (h, w) != (out_h, out_w):
            name = f"{name}-{h}x{w}"
        return dataclasses.replace(self, stages=tuple(stages), name=name)

    def block_input_channels(self, index: int) -> int:
        """Width entering the first block of stage ``index``."""
        st = self.stages[index]
        if index == 0 or st.merge == "none":
            return st.reduced_channels
        return self.stages[index - 1].block_channels[-1]

    def summary(self) -> str:
        """A short human-readable description of the stages."""
        lines = [f"GeneratorSpec {self.name or ''}: {self.resolution[0]}x{self.resolution[1]}, "
                 f"{len(self.stages)} stage(s), {self.num_ws} ws"]
        for i, st in enumerate(self.stages):
            lines.append(
                f"  stage {i}: grid {st.resolution[0]}x{st.resolution[1]} -> "
                f"{st.reduce} x{st.reduction} -> {st.reduced_resolution[0]}x"
                f"{st.reduced_resolution[1]}x{self.block_input_channels(i)}, merge={st.merge}, "
                f"blocks {list(st.block_channels)} ({st.grow}"
                + (f", mid {list(st.mid_channels)}" if st.mid_channels else "")
                + f") -> {st.output_resolution[0]}x{st.output_resolution[1]}"
            )
        return "\n".join(lines)


def check_class_names(where: str, names: Any, c_dim: int) -> tuple[str, ...]:
    """``names`` as a tuple of ``c_dim`` distinct non-empty strings (or an empty tuple);
    otherwise a ``ConfigError`` naming the bad value."""
    if isinstance(names, str) or not isinstance(names, (tuple, list)):
        raise _err(where, "class_names", f"must be a list of strings, got {names!r}")
    names = tuple(names)
    if not names:
        return names
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise _err(where, "class_names", f"must hold non-empty strings, got {bad[0]!r}")
    if len(names) != c_dim:
        raise _err(where, "class_names", f"has {len(names)} names but c_dim is {c_dim}: give "
                   f"one name per class, or none")
    if len(set(names)) != len(names):
        twice = next(n for n in names if names.count(n) > 1)
        raise _err(where, "class_names", f"names {twice!r} twice")
    return names
