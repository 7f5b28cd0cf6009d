"""Load the PixelFolder authors' checkpoints into pixelfold generators and discriminators.

The authors' ``.pt`` files are ``torch.save`` dicts with keys ``g``, ``d``, ``g_ema``,
``g_optim`` and ``d_optim``; their generator state dict uses the names of their code
(``style.*``, ``input.input``, ``lffs.*``, ``posfolders.*``, ``convs.*``, ``to_rgbs.*``).
[`load_official`][pixelfold.convert.load_official] maps every key onto a
[`Generator`][pixelfold.models.Generator] built from the matching preset, drops the merge
convolution the authors build and never use (``posfolders.0.conv_merge``), checks the FIR
kernels it drops, and fails on anything it does not understand, or on a weight holding NaN or
infinity (naming it and the file). What the authors' model lacks is filled in
deterministically: the constant noise images are drawn with a fixed seed, and the average
``w`` used for truncation is estimated from 10,000 random ``z`` (and must come out finite).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .layers import make_kernel
from .models import Discriminator, DiscriminatorSpec, Generator, presets
from .models.pretrained import load_state_dict_strict
from .utils.errors import CheckpointError, ConfigError, NonFiniteError
from .utils.spec import check_int
from .utils.tensors import check_finite

__all__ = ["discriminator_key_map", "has_official_discriminator", "infer_official_preset",
           "load_official", "load_official_discriminator", "official_discriminator_spec",
           "official_key_map", "read_official_checkpoint"]

_OFFICIAL_PRESETS = ("pixelfolder-256", "pixelfolder-512", "pixelfolder-1024")


def read_official_checkpoint(path: str | os.PathLike, *, allow_pickle: bool = False,
                             pickle_hint: str | None = None) -> dict:
    """Read an authors' ``.pt`` file without running code from it (``torch.load`` with
    ``weights_only=True``: tensors, dicts, lists and numbers only) unless ``allow_pickle``.

    Args:
        path: the file.
        allow_pickle: also unpickle other objects (only for files you trust).
        pickle_hint: what the error for a file with pickled objects suggests (default: pass
            ``allow_pickle=True``).

    Raises:
        FileNotFoundError: no such file.
        CheckpointError: the file is not a PyTorch checkpoint, holds pickled objects (without
            ``allow_pickle``) or does not hold a dict.
    """
    obj = _read_checkpoint(path, allow_pickle, pickle_hint)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a dict")
    return dict(obj)


def _checkpoint_dict(path_or_state_dict: str | os.PathLike | Mapping[str, Any],
                     allow_pickle: bool) -> Mapping[str, Any]:
    """The dict an authors' checkpoint holds: ``path_or_state_dict`` itself when it is one,
    else read from the file (a file holding anything else is refused, naming what it holds)."""
    if isinstance(path_or_state_dict, Mapping):
        return path_or_state_dict
    obj = _read_checkpoint(path_or_state_dict, allow_pickle)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path_or_state_dict} holds a {type(obj).__name__}, not a dict")
    return obj


def _read_checkpoint(path: str | os.PathLike, allow_pickle: bool,
                     pickle_hint: str | None = None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint file at {path}")
    try:
        return torch.load(path, map_location="cpu", weights_only=not allow_pickle)
    except Exception as exc:
        hint = ("" if allow_pickle else
                " If the file holds pickled Python objects besides tensors (e.g. an argparse "
                f"Namespace) and you trust it, {pickle_hint or 'pass allow_pickle=True'}.")
        message = " ".join(str(exc).split())
        raise CheckpointError(f"cannot read {path} as a PyTorch checkpoint "
                              f"({type(exc).__name__}: {message[:300]}).{hint}") from None


def _generator_state(obj: Mapping, which: str) -> dict[str, torch.Tensor]:
    if "style.1.weight" in obj:
        return dict(obj)
    if which in obj and isinstance(obj[which], Mapping):
        return dict(obj[which])
    keys = sorted(str(k) for k in obj)[:12]
    raise CheckpointError(f"checkpoint has no {which!r} generator and is not a bare generator "
                          f"state_dict (its keys: {keys})")


def infer_official_preset(state: Mapping[str, torch.Tensor]) -> str:
    """Which preset an authors' generator state dict belongs to, from its shapes."""
    stages = sorted({int(m.group(1)) for k in state
                     if (m := re.match(r"lffs\.(\d+)\.ffm\.conv\.weight$", k))})
    if "input.input" not in state or not stages:
        raise CheckpointError("not a PixelFolder generator state_dict: it lacks 'input.input' or "
                              "'lffs.*.ffm.conv.weight'")
    emb = tuple(state["input.input"].shape)
    if len(stages) == 4 and emb[2:] == (16, 16):
        return "pixelfolder-1024"
    if len(stages) == 3 and emb[2:] == (32, 32):
        return "pixelfolder-512"
    if len(stages) == 3 and emb[2:] == (16, 16):
        return "pixelfolder-256"
    raise CheckpointError(f"unrecognized PixelFolder layout: {len(stages)} stages with a "
                          f"coordinate embedding of shape {emb}")


def official_key_map(num_stages: int, mapping_layers: int = 8) -> dict[str, str | None]:
    """Authors' key -> pixelfold key for a PixelFolder with ``num_stages`` stages
    (``None``: a key that is checked and dropped)."""
    m: dict[str, str | None] = {}
    for i in range(1, mapping_layers + 1):
        for p in ("weight", "bias"):
            m[f"style.{i}.{p}"] = f"mapping.layers.{i - 1}.{p}"
    m["input.input"] = "synthesis.stages.0.coord_embedding.weight"
    for s in range(num_stages):
        st = f"synthesis.stages.{s}"
        for p in ("weight", "bias"):
            m[f"lffs.{s}.ffm.conv.{p}"] = f"{st}.fourier.{p}"
        last = 1 if s == 0 else 0
        m[f"posfolders.{s}.conv1.0.weight"] = f"{st}.input_layers.{last}.conv.weight"
        m[f"posfolders.{s}.conv1.1.bias"] = f"{st}.input_layers.{last}.act.bias"
        if s == 0:
            m["posfolders.0.conv0.0.weight"] = f"{st}.input_layers.0.conv.weight"
            m["posfolders.0.conv0.1.bias"] = f"{st}.input_layers.0.act.bias"
            m["posfolders.0.conv_merge.0.weight"] = None  # built by the authors, never used
            m["posfolders.0.conv_merge.1.bias"] = None
        else:
            m[f"posfolders.{s}.conv_merge.0.weight"] = f"{st}.merge.conv.weight"
            m[f"posfolders.{s}.conv_merge.1.bias"] = f"{st}.merge.act.bias"
        for b in range(2):
            block = f"{st}.blocks.{b}"
            for c in range(2):
                k = 4 * s + 2 * b + c
                ours = f"{block}.conv{c}"
                m[f"convs.{k}.conv.weight"] = f"{ours}.conv.weight"
                m[f"convs.{k}.conv.modulation.weight"] = f"{ours}.conv.modulation.weight"
                m[f"convs.{k}.conv.modulation.bias"] = f"{ours}.conv.modulation.bias"
                m[f"convs.{k}.noise.weight"] = f"{ours}.noise.weight"
                m[f"convs.{k}.activate.bias"] = f"{ours}.activate.bias"
            j = 2 * s + b
            m[f"to_rgbs.{j}.bias"] = f"{block}.to_rgb.bias"
            m[f"to_rgbs.{j}.conv.weight"] = f"{block}.to_rgb.conv.weight"
            m[f"to_rgbs.{j}.conv.modulation.weight"] = f"{block}.to_rgb.conv.modulation.weight"
            m[f"to_rgbs.{j}.conv.modulation.bias"] = f"{block}.to_rgb.conv.modulation.bias"
            m[f"to_rgbs.{j}.upsample.kernel"] = None  # derived FIR kernel, checked
    return m



def _check_keys(state: Mapping[str, Any], key_map: Mapping[str, Any], what: str) -> None:
    """Refuse ``state`` keys that ``key_map`` does not know, and mapped keys it lacks
    (``what``: the checkpoint part, for the message)."""
    unknown = sorted(k for k in state if k not in key_map)
    if unknown:
        raise CheckpointError(f"unknown key(s) in {what}: {unknown[:10]}"
                              + (f" ... ({len(unknown)} in all)" if len(unknown) > 10 else ""))
    missing = sorted(k for k, v in key_map.items() if v is not None and k not in state)
    if missing:
        raise CheckpointError(f"{what} lacks key(s): {missing[:10]}"
                              + (f" ... ({len(missing)} in all)" if len(missing) > 10 else ""))

def load_official(
    path_or_state_dict: str | os.PathLike | Mapping,
    preset: str | None = None,
    *,
    which: str = "g_ema",
    allow_pickle: bool = False,
    w_avg_samples: int = 10_000,
    seed: int = 0,
    source: str | None = None,
) -> Generator:
    """Build a pixelfold [`Generator`][pixelfold.models.Generator] from an authors' checkpoint.

    Args:
        path_or_state_dict: the authors' ``.pt`` file, the dict it holds, or a bare generator
            state dict.
        preset: ``"pixelfolder-256"``, ``"pixelfolder-512"`` or ``"pixelfolder-1024"``;
            inferred from the shapes when ``None``.
        which: which generator of a full checkpoint to take (``"g_ema"`` or ``"g"``).
        allow_pickle: load files that contain pickled objects besides tensors (only for files
            you trust).
        w_avg_samples: number of random ``z`` used to estimate the average ``w`` (truncation);
            0 leaves it at zero (truncation then pulls towards the origin).
        seed: seed of the constant noise images and of the ``w`` average estimate.
        source: the file the dict came from, named in errors (when passing a dict).

    Raises:
        CheckpointError: (a ``ValueError``) on a key it does not know, a missing key, a shape
            mismatch or an unexpected FIR kernel, naming them.
        NonFiniteError: a weight holds NaN or infinity (named, with the file), or the
            estimated average ``w`` is not finite.
        ConfigError: a bad ``preset`` or a negative ``w_avg_samples``.
    """
    check_int(w_avg_samples, "w_avg_samples", low=0)
    obj = _checkpoint_dict(path_or_state_dict, allow_pickle)
    state = _generator_state(obj, which)
    if not isinstance(path_or_state_dict, Mapping):
        source = str(path_or_state_dict)
    check_finite({k: v for k, v in state.items() if isinstance(v, torch.Tensor)},
                 what=f"the generator weights ({which})" if which in obj else
                 "the generator weights", source=source)
    inferred = infer_official_preset(state)
    if preset is None:
        preset = inferred
    elif preset not in _OFFICIAL_PRESETS:
        raise ConfigError(f"preset must be one of {_OFFICIAL_PRESETS}, got {preset!r}")
    elif preset != inferred:
        raise CheckpointError(f"the checkpoint looks like {inferred!r}, not {preset!r}")

    spec = presets.get(preset)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Generator(spec)
    key_map = official_key_map(len(spec.stages), spec.mapping_layers)

    _check_keys(state, key_map, f"the {preset} checkpoint")

    expected_kernel = make_kernel([1, 3, 3, 1]) * 4
    ours = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = key_map[key]
        if target is None:
            if key.endswith("upsample.kernel") and not torch.allclose(
                    value.float().cpu(), expected_kernel, atol=1e-6):
                raise CheckpointError(f"{key} is not the [1, 3, 3, 1] upsampling kernel pixelfold "
                                      f"uses: {value.tolist()}")
            if key.startswith("posfolders.0.conv_merge.0.weight") and value.ndim != 4:
                raise CheckpointError(f"{key} has shape {tuple(value.shape)}, expected a 1x1 conv")
            continue
        value = value.detach().float().cpu()
        if key.startswith(("convs.", "to_rgbs.")) and key.endswith("conv.weight"):
            if value.ndim != 5 or value.shape[0] != 1:
                raise CheckpointError(f"{key} has shape {tuple(value.shape)}, expected (1, out, "
                                      f"in, k, k)")
            value = value[0]
        if value.shape != ours[target].shape:
            raise CheckpointError(f"{key} has shape {tuple(value.shape)} but {preset} needs "
                                  f"{tuple(ours[target].shape)} for {target}")
        new_state[target] = value
    # what the authors' model does not have: keep pixelfold's own (seeded) values
    for key, value in ours.items():
        if key not in new_state:
            if not (key.endswith("noise_const") or key == "mapping.w_avg"):
                raise RuntimeError(f"internal error: no source for {key}")
            new_state[key] = value
    load_state_dict_strict(model, new_state, source=f"converted {preset} checkpoint")
    if w_avg_samples > 0:
        w_avg = model.mapping.estimate_w_avg(w_avg_samples, seed=seed)
        if not bool(torch.isfinite(w_avg).all()):
            raise NonFiniteError(f"the average w estimated from {w_avg_samples:,d} random z is "
                                 f"not finite: the mapping network overflows (its weights are "
                                 f"finite but too large)")
    return model.eval()


# ---------------------------------------------------------------------------------------------
# the discriminator


def discriminator_key_map(num_blocks: int) -> dict[str, str | None]:
    """Authors' (rosinality's) discriminator key -> pixelfold
    [`Discriminator`][pixelfold.models.Discriminator] key, for ``num_blocks`` residual blocks
    (6 at 256; ``None``: a blur kernel, checked and dropped: pixelfold derives it from the
    spec)."""
    m: dict[str, str | None] = {"convs.0.0.weight": "from_rgb.conv.weight",
                                "convs.0.1.bias": "from_rgb.act.bias"}
    for b in range(1, num_blocks + 1):
        ours = f"blocks.{b - 1}"
        m[f"convs.{b}.conv1.0.weight"] = f"{ours}.conv0.conv.weight"
        m[f"convs.{b}.conv1.1.bias"] = f"{ours}.conv0.act.bias"
        m[f"convs.{b}.conv2.0.kernel"] = None
        m[f"convs.{b}.conv2.1.weight"] = f"{ours}.conv1.conv.weight"
        m[f"convs.{b}.conv2.2.bias"] = f"{ours}.conv1.act.bias"
        m[f"convs.{b}.skip.0.kernel"] = None
        m[f"convs.{b}.skip.1.weight"] = f"{ours}.skip.conv.weight"
    m.update({"final_conv.0.weight": "final_conv.conv.weight",
              "final_conv.1.bias": "final_conv.act.bias",
              "final_linear.0.weight": "final_linear.weight",
              "final_linear.0.bias": "final_linear.bias",
              "final_linear.1.weight": "out.weight", "final_linear.1.bias": "out.bias"})
    return m


def _discriminator_state(obj: Mapping) -> dict[str, torch.Tensor]:
    if "convs.0.0.weight" in obj:
        return dict(obj)
    d = obj.get("d")
    if isinstance(d, Mapping) and d:
        return dict(d)
    keys = sorted(str(k) for k in obj)[:12]
    raise CheckpointError(f"checkpoint has no 'd' discriminator and is not a bare discriminator "
                          f"state_dict (its keys: {keys})")


def has_official_discriminator(obj: Mapping) -> bool:
    """Whether an authors' checkpoint dict holds a (non-empty) ``d`` discriminator."""
    d = obj.get("d")
    return "convs.0.0.weight" in obj or (isinstance(d, Mapping) and len(d) > 0)


def official_discriminator_spec(state: Mapping[str, torch.Tensor], *,
                                mbstd_group_size: int = 4) -> DiscriminatorSpec:
    """The [`DiscriminatorSpec`][pixelfold.models.DiscriminatorSpec] of an authors'
    discriminator state dict, read from its shapes: the resolution from the number of residual
    blocks, the channel table from their widths, the image channels from the from-RGB conv and
    the minibatch-std features from the final conv (the group size is not stored: the authors
    use 4)."""
    def shape(key: str) -> tuple[int, ...]:
        if key not in state:
            raise CheckpointError(f"not an authors' discriminator state_dict: it lacks {key!r}")
        return tuple(state[key].shape)

    blocks = sorted({int(m.group(1)) for k in state
                     if (m := re.match(r"convs\.(\d+)\.conv1\.0\.weight$", k))})
    if not blocks or blocks != list(range(1, len(blocks) + 1)):
        raise CheckpointError(f"not an authors' discriminator state_dict: residual blocks "
                              f"convs.1 .. convs.N expected, found {blocks}")
    resolution = 4 << len(blocks)
    rgb = shape("convs.0.0.weight")
    if len(rgb) != 4 or rgb[2:] != (1, 1):
        raise CheckpointError(f"convs.0.0.weight has shape {rgb}, expected a 1x1 conv")
    channels = {resolution: rgb[0]}
    for b in blocks:
        w = shape(f"convs.{b}.conv2.1.weight")
        if len(w) != 4:
            raise CheckpointError(f"convs.{b}.conv2.1.weight has shape {w}, expected a conv")
        channels[resolution >> b] = w[0]
    final_in = shape("final_conv.0.weight")
    if len(final_in) != 4:
        raise CheckpointError(f"final_conv.0.weight has shape {final_in}, expected a conv")
    try:
        return DiscriminatorSpec(resolution=resolution, image_channels=rgb[1],
                                 channels=channels, mbstd_group_size=mbstd_group_size,
                                 mbstd_num_channels=final_in[1] - channels[4])
    except ValueError as exc:
        raise CheckpointError(f"not a discriminator pixelfold can build: {exc}") from None


def load_official_discriminator(
    path_or_state_dict: str | os.PathLike | Mapping,
    resolution: int | None = None,
    *,
    allow_pickle: bool = False,
    mbstd_group_size: int = 4,
    source: str | None = None,
) -> Discriminator:
    """Build a pixelfold [`Discriminator`][pixelfold.models.Discriminator] from the ``d``
    entry of an authors' checkpoint (rosinality's key names, see
    [`discriminator_key_map`][pixelfold.convert.discriminator_key_map]). The mapping is exact:
    both give the same logits on the same images.

    Args:
        path_or_state_dict: the authors' ``.pt`` file, the dict it holds, or a bare
            discriminator state dict.
        resolution: the resolution it must have (``None``: whatever the shapes say).
        allow_pickle: load files that contain pickled objects besides tensors (only for files
            you trust).
        mbstd_group_size: minibatch-std group size (not stored in the file; the authors use 4).
        source: the file the dict came from, named in errors (when passing a dict).

    Raises:
        CheckpointError: (a ``ValueError``) no discriminator in the checkpoint, an unknown or
            missing key, a shape mismatch, an unexpected blur kernel, or another resolution
            than ``resolution``, naming them.
        NonFiniteError: a weight holds NaN or infinity (named, with the file).
    """
    obj = _checkpoint_dict(path_or_state_dict, allow_pickle)
    if not isinstance(path_or_state_dict, Mapping):
        source = str(path_or_state_dict)
    state = _discriminator_state(obj)
    check_finite({k: v for k, v in state.items() if isinstance(v, torch.Tensor)},
                 what="the discriminator weights (d)" if "d" in obj else
                 "the discriminator weights", source=source)
    spec = official_discriminator_spec(state, mbstd_group_size=mbstd_group_size)
    if resolution is not None and spec.resolution != resolution:
        raise CheckpointError(f"the checkpoint's discriminator is for {spec.resolution}x"
                              f"{spec.resolution} images, not {resolution}x{resolution}")
    key_map = discriminator_key_map(len(spec.block_resolutions))
    _check_keys(state, key_map, "the discriminator")
    with torch.random.fork_rng(devices=[]):  # the weights are replaced: leave the RNG alone
        model = Discriminator(spec)
    expected_kernel = make_kernel(list(spec.blur_kernel))
    ours = model.state_dict()
    new_state: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        target = key_map[key]
        if target is None:
            if tuple(value.shape) != tuple(expected_kernel.shape) or not torch.allclose(
                    value.float().cpu(), expected_kernel, atol=1e-6):
                raise CheckpointError(f"{key} is not the [1, 3, 3, 1] blur kernel (normalized "
                                      f"to sum 1) pixelfold uses: {value.tolist()}")
            continue
        value = value.detach().float().cpu()
        if value.shape != ours[target].shape:
            raise CheckpointError(f"{key} has shape {tuple(value.shape)} but a {spec.resolution}"
                                  f"x{spec.resolution} discriminator with these widths needs "
                                  f"{tuple(ours[target].shape)} for {target}")
        new_state[target] = value
    load_state_dict_strict(model, new_state, source="converted discriminator")
    return model.eval()
