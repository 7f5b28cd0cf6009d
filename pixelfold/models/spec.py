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
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ..utils.errors import ConfigError

__all__ = [
    "GeneratorSpec",
    "GrowMode",
    "InputLayer",
    "MergeMode",
    "ReduceMode",
    "RGBMode",
    "StageSpec",
]

MergeMode = Literal["concat", "add", "none"]
GrowMode = Literal["unfold", "deconv", "nearest", "none"]
ReduceMode = Literal["fold", "avgpool"]
RGBMode = Literal["skip", "sum"]
InputLayer = Literal["conv", "modconv"]

_MERGE = ("concat", "add", "none")
_GROW = ("unfold", "deconv", "nearest", "none")
_REDUCE = ("fold", "avgpool")
_RGB = ("skip", "sum")
_INPUT = ("conv", "modconv")


def _err(where: str, name: str, message: str) -> ConfigError:
    return ConfigError(f"{where}: {name} {message}")


def _non_finite(value: Any) -> bool:
    """Whether ``value`` is, or holds (in a list, tuple or dict), a NaN or infinite float."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, Mapping):
        return any(_non_finite(v) for v in value.values())
    return False


def check_finite_fields(where: str, obj: Any) -> None:
    """Raise a ``pixelfold.utils.ConfigError`` naming the first field of the dataclass ``obj``
    that is or holds a NaN or infinite number (JSON files may spell them ``NaN`` and
    ``Infinity``): no field of a spec means anything with them."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not f.name.startswith("_") and _non_finite(value):
            raise _err(where, f.name, f"must be finite, got {value!r}")


def _pos_float(where: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0 \
            or not math.isfinite(value):
        raise _err(where, name, f"must be a finite positive number, got {value!r}")
    return value


def _pos_int(where: str, name: str, value: Any, *, zero_ok: bool = False) -> int:
    low = 0 if zero_ok else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        kind = "a non-negative" if zero_ok else "a positive"
        raise _err(where, name, f"must be {kind} integer, got {value!r}")
    return value


def _choice(where: str, name: str, value: Any, options: Sequence[str]) -> str:
    if value not in options:
        raise _err(where, name, f"must be one of {tuple(options)}, got {value!r}")
    return value


def _resolution(where: str, value: Any) -> tuple[int, int]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
        raise _err(where, "resolution", f"must be a positive int or (height, width), got {value!r}")
    return int(value[0]), int(value[1])


def _int_tuple(where: str, name: str, value: Any, *, allow_empty: bool) -> tuple[int, ...]:
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise _err(where, name, f"must be a sequence of positive integers, got {value!r}")
    out = tuple(value)
    if not allow_empty and not out:
        raise _err(where, name, "must not be empty")
    for v in out:
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise _err(where, name, f"must hold positive integers, got {value!r}")
    return out


@dataclass
class StageSpec:
    """One stage of a pixel-regression generator.

    Args:
        resolution: ``(height, width)`` (or one int) of the stage's coordinate grid, i.e. of the
            pixel tensor the stage initializes.
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
            [`to_dict`][pixelfold.models.StageSpec.to_dict] when empty, so the configs of
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

    def __post_init__(self) -> None:
        where = "StageSpec"
        check_finite_fields(where, self)
        self.resolution = _resolution(where, self.resolution)
        self.block_channels = _int_tuple(where, "block_channels", self.block_channels,
                                         allow_empty=False)
        self.input_channels = _int_tuple(where, "input_channels", self.input_channels,
                                         allow_empty=True)
        self.mid_channels = _int_tuple(where, "mid_channels", self.mid_channels,
                                       allow_empty=True)
        if self.mid_channels and len(self.mid_channels) != len(self.block_channels):
            raise _err(where, "mid_channels",
                       f"needs one width per block ({len(self.block_channels)}) or none, got "
                       f"{list(self.mid_channels)} for block_channels "
                       f"{list(self.block_channels)}")
        _pos_int(where, "fourier_channels", self.fourier_channels, zero_ok=True)
        _pos_int(where, "coord_embedding_channels", self.coord_embedding_channels, zero_ok=True)
        _pos_int(where, "reduce_steps", self.reduce_steps, zero_ok=True)
        _pos_int(where, "reduce_factor", self.reduce_factor)
        _pos_int(where, "kernel_size", self.kernel_size)
        _choice(where, "input_layer", self.input_layer, _INPUT)
        _choice(where, "reduce", self.reduce, _REDUCE)
        _choice(where, "merge", self.merge, _MERGE)
        _choice(where, "grow", self.grow, _GROW)
        _choice(where, "rgb", self.rgb, _RGB)
        for name in ("fourier_learned", "noise"):
            if not isinstance(getattr(self, name), bool):
                raise _err(where, name, f"must be a bool, got {getattr(self, name)!r}")
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

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict (tuples become lists); ``mid_channels`` only when set."""
        out = dataclasses.asdict(self)
        if not self.mid_channels:
            del out["mid_channels"]
        for key, value in out.items():
            if isinstance(value, tuple):
                out[key] = list(value)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StageSpec:
        """Inverse of [`to_dict`][pixelfold.models.StageSpec.to_dict]; unknown keys are an
        error naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"StageSpec.from_dict expects a dict, got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known, key=str)
        if unknown:
            raise ConfigError(f"StageSpec: unknown field(s) {unknown}")
        _require(cls, data, "StageSpec")
        return cls(**data)


@dataclass
class GeneratorSpec:
    """A multi-stage pixel-regression generator, as data.

    Args:
        stages: the stages, from coarse to fine.
        z_dim: latent width.
        w_dim: style width.
        mapping_layers: depth of the mapping network.
        mapping_lr_mul: learning-rate multiplier of the mapping network.
        w_avg_beta: decay of the tracked average ``w``.
        image_channels: output channels; only 3 (RGB) is supported (grayscale and RGBA
            generators are not, yet), anything else is an error.
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
            _pos_int(where, name, getattr(self, name))
        if self.image_channels != 3:
            raise _err(where, "image_channels", f"must be 3 (RGB): grayscale and RGBA "
                       f"generators are not supported yet, got {self.image_channels}")
        _pos_float(where, "mapping_lr_mul", self.mapping_lr_mul)
        if isinstance(self.w_avg_beta, bool) or not isinstance(self.w_avg_beta, (int, float)) \
                or not 0 <= self.w_avg_beta < 1:
            raise _err(where, "w_avg_beta", f"must be in [0, 1), got {self.w_avg_beta!r}")
        if self.name is not None and not isinstance(self.name, str):
            raise _err(where, "name", f"must be a string or None, got {self.name!r}")
        _choice(where, "channel_order", self.channel_order, ("pixelfolder", "pixel_shuffle"))
        self.blur_kernel = _int_tuple(where, "blur_kernel", self.blur_kernel, allow_empty=False)
        _pos_int(where, "c_dim", self.c_dim, zero_ok=True)
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

    def block_input_channels(self, index: int) -> int:
        """Width entering the first block of stage ``index``."""
        st = self.stages[index]
        if index == 0 or st.merge == "none":
            return st.reduced_channels
        return self.stages[index - 1].block_channels[-1]

    # ---- serialization ------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict; nested stages become dicts, tuples lists."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "stages":
                value = [st.to_dict() for st in value]
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        for key in ("c_dim", "class_names"):  # unconditional configs stay as they were
            if not out[key]:
                del out[key]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GeneratorSpec:
        """Inverse of [`to_dict`][pixelfold.models.GeneratorSpec.to_dict]. Keys starting with
        ``_`` (metadata such as ``_class_name``) are ignored; other unknown keys are an error
        naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"GeneratorSpec.from_dict expects a dict, "
                              f"got {type(data).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted((k for k in data if k not in known and not str(k).startswith("_")),
                         key=str)
        if unknown:
            raise ConfigError(f"GeneratorSpec: unknown field(s) {unknown}")
        if "stages" not in data:
            raise ConfigError("GeneratorSpec: missing field 'stages'")
        kwargs = {k: v for k, v in data.items() if k in known}
        stages = []
        for i, st in enumerate(_stage_list(data["stages"])):
            try:
                stages.append(st if isinstance(st, StageSpec) else StageSpec.from_dict(st))
            except ValueError as exc:
                raise ConfigError(f"stage {i}: {exc}") from None
        kwargs["stages"] = tuple(stages)
        return cls(**kwargs)

    def to_json(self, indent: int = 2) -> str:
        """JSON text of [`to_dict`][pixelfold.models.GeneratorSpec.to_dict]."""
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text_or_path: str | Path) -> GeneratorSpec:
        """Parse JSON text, or read a ``.json`` file, into a spec.

        Raises:
            FileNotFoundError: no such file.
            ConfigError: invalid JSON or an invalid spec; the message names the file (when
                one was read) and the field.
        """
        text = str(text_or_path)
        source = "GeneratorSpec.from_json"
        if isinstance(text_or_path, Path) or (not text.lstrip().startswith("{")
                                              and text.endswith(".json")):
            path = Path(text_or_path)
            if path.is_dir():
                raise ConfigError(f"{path} is a folder, not a generator config (.json) file")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise ConfigError(f"{path} is not a UTF-8 text (JSON) file") from None
            source = str(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source}: invalid JSON ({exc})") from None
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as exc:
            if source == "GeneratorSpec.from_json":
                raise
            raise ConfigError(f"{source}: {exc}") from None

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


def _stage_list(value: Any) -> list[Any]:
    if not isinstance(value, (list, tuple)) or not value:
        raise ConfigError(f"GeneratorSpec: stages must be a non-empty list, got {value!r}"
                          if isinstance(value, (list, tuple)) else
                          f"GeneratorSpec: stages must be a list, got {type(value).__name__}")
    return list(value)


def _require(cls: type, data: Mapping[str, Any], where: str) -> None:
    """A ConfigError naming the fields of the dataclass ``cls`` without a default that
    ``data`` lacks (instead of the TypeError of calling ``cls(**data)``)."""
    missing = [f.name for f in dataclasses.fields(cls)
               if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
               and f.name not in data]
    if missing:
        raise ConfigError(f"{where}: missing field(s) {missing}")
