"""Named generator specs: the published PixelFolder and CIPS models, the paper's ablations and
tiny models for tests and CPU training.

>>> from pixelfold.models import presets
>>> "pixelfolder-256" in presets.names()
True
>>> presets.get("pixelfolder-256").resolution
(256, 256)
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Sequence

from ..utils.errors import ConfigError
from .spec import GeneratorSpec, StageSpec

__all__ = ["PIXELFOLDER_CHANNELS", "UnknownPresetError", "cips", "get", "names", "pixelfolder",
           "register"]


class UnknownPresetError(ConfigError, KeyError):
    """No preset has this name. A ``pixelfold.utils.ConfigError`` (so a ``ValueError``) and,
    for code that looks presets up like a dict, a ``KeyError``; its message is one line
    listing the presets."""

    def __str__(self) -> str:  # KeyError's str() would quote the message
        return str(self.args[0]) if self.args else ""

PIXELFOLDER_CHANNELS: dict[int, int] = {
    4: 512, 8: 512, 16: 512, 32: 512, 64: 512, 128: 256, 256: 128, 512: 64, 1024: 32,
}
"""Feature width by resolution in PixelFolder (and StyleGAN2 config-f)."""

_REGISTRY: dict[str, Callable[[], GeneratorSpec]] = {}


def register(name: str) -> Callable[[Callable[[], GeneratorSpec]], Callable[[], GeneratorSpec]]:
    """Decorator registering a zero-argument function that returns a
    [`GeneratorSpec`][pixelfold.models.GeneratorSpec]."""

    def wrap(fn: Callable[[], GeneratorSpec]) -> Callable[[], GeneratorSpec]:
        if name in _REGISTRY:
            raise ValueError(f"preset {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return wrap


def names() -> list[str]:
    """All preset names, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> GeneratorSpec:
    """The spec of preset ``name`` (a fresh copy each call).

    Raises:
        UnknownPresetError: no preset is called ``name`` (the message lists them).
    """
    if not isinstance(name, str) or name not in _REGISTRY:
        raise UnknownPresetError(f"unknown preset {name!r}; choose one of: "
                                 f"{', '.join(names())}")
    spec = _REGISTRY[name]()
    spec.name = name
    return copy.deepcopy(spec)


def pixelfolder(
    stage_resolutions: Sequence[int],
    *,
    channels: dict[int, int] | None = None,
    coord_embedding: bool = True,
    merge: str = "concat",
    grow: str = "unfold",
    reduce: str = "fold",
    z_dim: int = 512,
    w_dim: int = 512,
    mapping_layers: int = 8,
    fourier_channels: dict[int, int] | None = None,
    stage0_hidden: int | None = None,
    stage0_projection: int = 32,
    noise: bool = True,
    shape_consistent: bool = False,
) -> GeneratorSpec:
    """The PixelFolder layout as the authors' code builds it, for any stage resolutions.

    Each stage initializes its pixel tensor at its resolution ``R``, folds it twice (to
    ``R / 4``) and runs two blocks ``ModConv -> unfold -> ModConv -> ToRGB`` back to ``R``,
    with block widths ``channels[R / 2]`` and ``channels[R]``. Stage 0 encodes
    ``concat(fourier, coordinate embedding)`` with 1x1 convs to ``stage0_hidden`` then
    ``stage0_projection`` channels; later stages project their Fourier features to
    ``prev / 16`` channels so that two folds give the previous stage's width, concatenate with
    the previous output and merge with a 1x1 conv.

    Args:
        stage_resolutions: e.g. ``(16, 64, 256)``.
        channels: width by resolution (default
            [`PIXELFOLDER_CHANNELS`][pixelfold.models.presets.PIXELFOLDER_CHANNELS]).
        coord_embedding: give stage 0 a learned coordinate embedding.
        merge: ``"concat"``, ``"add"`` or ``"none"`` for stages after the first.
        grow: ``"unfold"`` or an ablation (``"deconv"``, ``"nearest"``).
        reduce: ``"fold"`` or ``"avgpool"``.
        z_dim: latent width.
        w_dim: style width.
        mapping_layers: depth of the mapping network.
        fourier_channels: Fourier width by stage resolution (default: ``channels``).
        stage0_hidden: width of stage 0's first 1x1 conv (default ``channels[R0]``).
        stage0_projection: width of stage 0's projection before folding.
        noise: noise injection in the ModConvs.
        shape_consistent: with a growth other than ``"unfold"``, make it output the tensor an
            unfold would, ``block / 4`` channels at twice the resolution, so the second ModConv
            of each block takes ``block / 4`` channels as in PixelFolder (the paper's ``-sc``
            ablations; see ``StageSpec.mid_channels``). With ``"unfold"`` it changes nothing.
    """
    ch = dict(PIXELFOLDER_CHANNELS if channels is None else channels)
    four = dict(ch if fourier_channels is None else fourier_channels)
    stages = []
    prev_out: int | None = None
    for i, res in enumerate(stage_resolutions):
        r0 = res // 4
        blocks = (ch[r0 * 2], ch[r0 * 4])
        if i == 0:
            hidden = ch[res] if stage0_hidden is None else stage0_hidden
            inputs: tuple[int, ...] = (hidden, stage0_projection)
            emb = ch[res] if coord_embedding else 0
            stage_merge = "none"
        else:
            assert prev_out is not None
            proj = prev_out // 16 if reduce == "fold" else prev_out
            inputs = (proj,)
            emb = 0
            stage_merge = merge
        mid = (tuple(c // 4 for c in blocks) if shape_consistent and grow != "unfold"
               else ())
        stages.append(StageSpec(
            resolution=res, block_channels=blocks, fourier_channels=four[res],
            coord_embedding_channels=emb, input_channels=inputs, input_layer="conv",
            reduce_steps=2, reduce_factor=2, reduce=reduce, merge=stage_merge,  # type: ignore[arg-type]
            kernel_size=3, grow=grow, rgb="skip", noise=noise,  # type: ignore[arg-type]
            mid_channels=mid,
        ))
        prev_out = blocks[-1]
    return GeneratorSpec(stages=tuple(stages), z_dim=z_dim, w_dim=w_dim,
                         mapping_layers=mapping_layers)


def cips(
    resolution: int = 256,
    *,
    hidden: int = 512,
    channels: Sequence[int] = (512, 512, 512, 512, 512, 256, 128),
    z_dim: int = 512,
    w_dim: int = 512,
    mapping_layers: int = 8,
) -> GeneratorSpec:
    """CIPS (CIPSskip) as a one-stage spec: Fourier features and a coordinate embedding at full
    resolution, a 1x1 styled conv, then blocks of two 1x1 ModConvs whose RGBs are summed.

    Args:
        resolution: image side.
        hidden: width of the Fourier features, of the embedding and of the first conv.
        channels: width of each block.
        z_dim: latent width.
        w_dim: style width.
        mapping_layers: depth of the mapping network.
    """
    stage = StageSpec(
        resolution=resolution, block_channels=tuple(channels), fourier_channels=hidden,
        coord_embedding_channels=hidden, input_channels=(hidden,), input_layer="modconv",
        reduce_steps=0, merge="none", kernel_size=1, grow="none", rgb="sum", noise=True,
    )
    return GeneratorSpec(stages=(stage,), z_dim=z_dim, w_dim=w_dim, mapping_layers=mapping_layers)


# ---- the published models -------------------------------------------------------------------

@register("pixelfolder-256")
def _pixelfolder_256() -> GeneratorSpec:
    return pixelfolder((16, 64, 256))


@register("pixelfolder-512")
def _pixelfolder_512() -> GeneratorSpec:
    return pixelfolder((32, 128, 512))


@register("pixelfolder-1024")
def _pixelfolder_1024() -> GeneratorSpec:
    return pixelfolder((16, 64, 256, 1024))


@register("cips-256")
def _cips_256() -> GeneratorSpec:
    return cips(256)


# ---- the paper's ablations (Tables 3, 4, E, F) ----------------------------------------------

@register("pixelfolder-256-fold-deconv")
def _fold_deconv() -> GeneratorSpec:
    """Fold + DeConv: each ``ModConv -> unfold`` becomes a StyleGAN2 upsampling ModConv."""
    return pixelfolder((16, 64, 256), grow="deconv")


@register("pixelfolder-256-down-deconv")
def _down_deconv() -> GeneratorSpec:
    """DownSampling + DeConv: average pooling instead of folding, upsampling ModConvs."""
    return pixelfolder((16, 64, 256), grow="deconv", reduce="avgpool", stage0_projection=512)


@register("pixelfolder-256-fold-deconv-sc")
def _fold_deconv_sc() -> GeneratorSpec:
    """Fold + DeConv, shape-consistent: each ``ModConv -> unfold`` becomes one upsampling
    ModConv to ``block / 4`` channels (3x3x512x128 in the first stage), the tensor an unfold
    gives, and the second ModConv keeps PixelFolder's ``block / 4 -> block`` (3x3x128x512)."""
    return pixelfolder((16, 64, 256), grow="deconv", shape_consistent=True)


@register("pixelfolder-256-down-deconv-sc")
def _down_deconv_sc() -> GeneratorSpec:
    """DownSampling + DeConv, shape-consistent: ``pixelfolder-256-down-deconv`` with the
    upsampling ModConvs of ``pixelfolder-256-fold-deconv-sc``."""
    return pixelfolder((16, 64, 256), grow="deconv", reduce="avgpool", stage0_projection=512,
                       shape_consistent=True)


@register("pixelfolder-256-no-coord")
def _no_coord() -> GeneratorSpec:
    """Without the coordinate embedding of stage 0."""
    return pixelfolder((16, 64, 256), coord_embedding=False)


@register("pixelfolder-256-no-connection")
def _no_connection() -> GeneratorSpec:
    """Without the connection between stages (each stage starts from its own encoding)."""
    return pixelfolder((16, 64, 256), merge="none")


# ---- tiny models for tests and CPU training --------------------------------------------------

_TINY = {1: 64, 2: 64, 4: 64, 8: 64, 16: 32, 32: 16, 64: 16}


@register("pixelfolder-tiny-16")
def _tiny_16() -> GeneratorSpec:
    """The quickstart's model: two stages (4x4 and 16x16 grids), 32 channels, 32-wide z and w,
    and a mapping network at the full learning rate (``mapping_lr_mul`` 1 instead of 0.01:
    short CPU runs on small data learn faster with it, measured on the digits)."""
    spec = pixelfolder((4, 16), channels={1: 32, 2: 32, 4: 32, 8: 32, 16: 16}, z_dim=32,
                       w_dim=32, mapping_layers=2, stage0_projection=4)
    return dataclasses.replace(spec, mapping_lr_mul=1.0)


@register("pixelfolder-tiny-32")
def _tiny_32() -> GeneratorSpec:
    return pixelfolder((8, 32), channels=_TINY, z_dim=64, w_dim=64, mapping_layers=2,
                       stage0_projection=4)


@register("pixelfolder-tiny-64")
def _tiny_64() -> GeneratorSpec:
    return pixelfolder((4, 16, 64), channels=_TINY, z_dim=64, w_dim=64, mapping_layers=2,
                       stage0_projection=4)


@register("cips-tiny-32")
def _cips_tiny_32() -> GeneratorSpec:
    return cips(32, hidden=32, channels=(32, 32, 16), z_dim=64, w_dim=64, mapping_layers=2)
