"""Fine-tuning: start a run from trained weights, and FreezeD.

[`load_init_weights`][pixelfold.training.finetune.load_init_weights] reads what a run can
start from (``TrainConfig.init_from``, ``--init-from``):

* a ``save_pretrained`` generator folder (``config.json`` + ``model.safetensors``, e.g.
  ``generator_ema/`` of a run or the folder ``pixelfold convert`` writes), with the
  discriminator of its ``discriminator/`` subfolder when it has one (``pixelfold convert`` and
  ``push_to_hub`` of a run write it there); the generator starts both G and its moving average;
* a pixelfold training checkpoint (``checkpoint-<step>/``) or a run folder (its newest complete
  checkpoint): G, the EMA generator and D, each as it was saved;
* an authors' ``.pt`` checkpoint: ``g``, ``g_ema`` and ``d`` converted by
  [`load_official`][pixelfold.convert.load_official] and
  [`load_official_discriminator`][pixelfold.convert.load_official_discriminator], read without
  running code from the file;
* a Hugging Face Hub repository id of a pushed generator (and its ``discriminator/``).

Only weights are taken: optimizers, step count, images seen, RNG states and augmentation
strength start afresh (``resume_from_checkpoint`` is what continues a run).
[`check_init_weights`][pixelfold.training.finetune.check_init_weights] refuses weights of
another architecture in one line naming both, before any training.

[`freeze_discriminator`][pixelfold.training.finetune.freeze_discriminator] is FreezeD (Mo et
al. 2020, "Freeze the Discriminator: a Simple Baseline for Fine-Tuning GANs"): it freezes the
layers of D nearest the image. ``n`` counts resolutions from the input: ``n = 1`` freezes the
from-RGB convolution and the residual block that reads ``R x R`` features (and writes
``R/2 x R/2``); ``n = k`` freezes from-RGB and the first ``k`` residual blocks, i.e. every layer
that reads features at ``R, R/2, ..., R/2**(k-1)``. The minibatch-std epilogue (final
convolution and the two linear layers) always trains. At 256 the six residual blocks allow
``n`` in ``0..6``; StyleGAN2-ADA's ``--freezed`` counts layers instead (from-RGB, then three per
block), so its ``--freezed 10`` is pixelfold's ``n = 3``.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..models import Discriminator, DiscriminatorSpec, Generator, GeneratorSpec, presets
from ..models.pretrained import CONFIG_NAME, WEIGHTS_NAME, load_state_dict_strict
from ..models.spec import format_resolution
from ..utils.errors import CheckpointError, ConfigError
from ..utils.tensors import check_finite

__all__ = ["InitWeights", "apply_init_weights", "check_init_weights", "freeze_discriminator",
           "load_init_weights"]

logger = logging.getLogger(__name__)

DISCRIMINATOR_FOLDER = "discriminator"
"""Subfolder of a ``save_pretrained`` generator folder that holds its discriminator."""


@dataclass
class InitWeights:
    """The weights a run starts from.

    Args:
        source: what was read (as given).
        kind: ``"pretrained"`` (a ``save_pretrained`` folder or Hub repo), ``"checkpoint"`` (a
            pixelfold training checkpoint) or ``"authors"`` (an authors' ``.pt``).
        generator: the trained generator G.
        generator_ema: its moving average (the same module as ``generator`` when the source
            holds one generator).
        discriminator: the discriminator, or ``None`` when the source has none (D then starts
            from random weights).
        generator_config: the file that holds the generator's architecture, for the hint of a
            mismatch error (``None``: a preset, or none on disk).
    """

    source: str
    kind: str
    generator: Generator
    generator_ema: Generator
    discriminator: Discriminator | None = None
    generator_config: str | None = None

    def describe(self) -> str:
        """``"a 256x256 pixelfolder-256 model"``."""
        h, w = self.generator.spec.resolution
        return f"a {h}x{w} {self.generator.spec.name or 'custom'} model"

    def architecture_flags(self) -> str:
        """The training flags that select this generator's architecture."""
        spec = self.generator.spec
        h, w = spec.resolution
        h = h if h == w else f"{h}x{w}"  # type: ignore[assignment]
        if spec.name in presets.names() and presets.get(spec.name).to_dict() == spec.to_dict():
            return f"--preset {spec.name} --resolution {h}"
        if self.generator_config:
            return f"--generator-config {self.generator_config} --resolution {h}"
        return f"a --generator-config of its architecture and --resolution {h}"


# ---------------------------------------------------------------------------------------------
# reading


def load_init_weights(model: str | os.PathLike, *, allow_pickle: bool = False,
                      w_avg_samples: int = 10_000) -> InitWeights:
    """Read the weights a fine-tuning run starts from (see the module's description).

    Args:
        model: a ``save_pretrained`` generator folder, a training checkpoint folder, a run
            folder, an authors' ``.pt`` file or a Hub repo id.
        allow_pickle: an authors' file may hold pickled objects besides tensors (only for files
            you trust).
        w_avg_samples: random ``z`` for the average ``w`` of a converted authors' generator.

    Raises:
        FileNotFoundError: nothing at ``model``.
        CheckpointError: the folder or file is not one of the above, or its weights do not
            load (the message names why).
        NonFiniteError: a weight holds NaN or infinity.
    """
    text = str(model)
    path = Path(text).expanduser()
    with torch.random.fork_rng(devices=[]):  # building modules must not move the run's RNG
        if path.is_file():
            return _from_authors(text, path, allow_pickle, w_avg_samples)
        if path.is_dir():
            return _from_folder(text, path)
        if text.count("/") == 1 and not text.startswith((".", "/", "~")):
            return _from_hub(text)
    raise FileNotFoundError(f"--init-from {text}: no such file or folder")


def _from_folder(text: str, path: Path) -> InitWeights:
    from .checkpoint import MANIFEST_NAME, find_resumable

    if (path / MANIFEST_NAME).is_file():
        return _from_checkpoint(text, path)
    if (path / CONFIG_NAME).is_file() and (path / WEIGHTS_NAME).is_file():
        return _from_pretrained(text, path)
    if (path / "checkpoints").is_dir():  # a run folder: its newest complete checkpoint
        found, skipped = find_resumable(path / "checkpoints")
        for folder, reason in skipped:
            logger.warning("--init-from %s: skipping %s: %s", text, folder, reason)
        if found is not None:
            return _from_checkpoint(str(found), found)
        ema = path / "generator_ema"
        if (ema / CONFIG_NAME).is_file():
            logger.warning("--init-from %s: no complete checkpoint; starting from its "
                           "generator_ema/ (without a discriminator)", text)
            return _from_pretrained(str(ema), ema)
    raise CheckpointError(f"--init-from {text} is neither a save_pretrained folder ({CONFIG_NAME}"
                          f" + {WEIGHTS_NAME}), a training checkpoint (checkpoint.json) nor a "
                          f"run folder (checkpoints/)")


def _from_pretrained(text: str, path: Path) -> InitWeights:
    G = Generator.from_pretrained(path)
    D = None
    d_folder = path / DISCRIMINATOR_FOLDER
    if (d_folder / CONFIG_NAME).is_file():
        D = Discriminator.from_pretrained(d_folder)
    return InitWeights(text, "pretrained", G, G, D, generator_config=str(path / CONFIG_NAME))


def _from_hub(repo: str) -> InitWeights:
    try:
        from huggingface_hub import snapshot_download

        folder = Path(snapshot_download(repo, allow_patterns=[
            CONFIG_NAME, WEIGHTS_NAME, f"{DISCRIMINATOR_FOLDER}/*"]))
    except Exception as exc:  # network, offline mode, missing repo
        raise FileNotFoundError(f"--init-from {repo} is not a local file or folder and could "
                                f"not be fetched from the Hugging Face Hub "
                                f"({type(exc).__name__}: {' '.join(str(exc).split())[:200]})"
                                ) from None
    init = _from_pretrained(repo, folder)
    init.generator_config = None
    return init


def _from_checkpoint(text: str, path: Path) -> InitWeights:
    from .checkpoint import MODEL_FILES, Checkpoint

    ckpt = Checkpoint.open(path)
    try:
        gspec = GeneratorSpec.from_dict(ckpt.json("generator_config.json"))
        dspec = DiscriminatorSpec.from_dict(ckpt.json("discriminator_config.json"))
    except ConfigError as exc:
        raise CheckpointError(f"--init-from {text}: {exc}") from None
    modules: dict[str, nn.Module] = {"generator": Generator(gspec),
                                     "generator_ema": Generator(gspec),
                                     "discriminator": Discriminator(dspec)}
    for name, module in modules.items():
        state = ckpt.model_state(name)
        source = str(path / MODEL_FILES[name])
        check_finite(state, what=f"the {name.replace('_', ' ')} weights", source=source)
        load_state_dict_strict(module, state, source=source)
    return InitWeights(text, "checkpoint", modules["generator"].eval(),  # type: ignore[arg-type]
                       modules["generator_ema"].eval(),  # type: ignore[arg-type]
                       modules["discriminator"],  # type: ignore[arg-type]
                       generator_config=str(path / "generator_config.json"))


def _from_authors(text: str, path: Path, allow_pickle: bool, w_avg_samples: int) -> InitWeights:
    from ..convert import (
        has_official_discriminator,
        load_official,
        load_official_discriminator,
        read_official_checkpoint,
    )

    ckpt = read_official_checkpoint(
        path, allow_pickle=allow_pickle,
        pickle_hint=f"convert it once with 'pixelfold convert --allow-pickle {text} FOLDER' and "
                    f"start from FOLDER")
    present = [k for k in ("g", "g_ema") if isinstance(ckpt.get(k), dict) and ckpt[k]]
    if not present and "style.1.weight" not in ckpt:
        raise CheckpointError(f"--init-from {text} is a file but not an authors' checkpoint "
                              f"(no 'g' or 'g_ema' generator; keys: "
                              f"{sorted(str(k) for k in ckpt)[:8]})")
    loaded = {which: load_official(ckpt, which=which, w_avg_samples=w_avg_samples, source=text)
              for which in (present or ["g_ema"])}
    G = loaded.get("g", loaded.get("g_ema"))
    G_ema = loaded.get("g_ema", G)
    if len(loaded) == 1:
        logger.warning("--init-from %s holds only %s: it starts both G and the EMA", text,
                       next(iter(loaded)))
    D = None
    if has_official_discriminator(ckpt):
        D = load_official_discriminator(ckpt, resolution=G.resolution[0], source=text)
    return InitWeights(text, "authors", G, G_ema, D)


# ---------------------------------------------------------------------------------------------
# checking and applying


def _differences(a: dict, b: dict) -> list[str]:
    return sorted(k for k in set(a) | set(b) if k != "name" and a.get(k) != b.get(k))


def _d_architecture(spec: DiscriminatorSpec) -> dict:
    """The spec as a dict with only the widths it uses (a table may list more)."""
    out = spec.to_dict()
    out["channels"] = _widths(spec)
    return out


def _widths(spec: DiscriminatorSpec) -> str:
    used = (*spec.block_resolutions, 4)
    return ",".join(f"{r}:{spec.channels[r]}" for r in used)


def check_init_weights(init: InitWeights, generator_spec: GeneratorSpec,
                       discriminator_spec: DiscriminatorSpec, *,
                       run_name: str | None = None) -> None:
    """Refuse weights of another architecture than the run's, in one line naming both.

    The generator must have this run's architecture (every field of its spec but the name);
    the discriminator, when the source has one, this run's resolution and widths.

    Args:
        init: what [`load_init_weights`][pixelfold.training.finetune.load_init_weights] read.
        generator_spec: the run's generator.
        discriminator_spec: the run's discriminator.
        run_name: how the run's generator is named in the message (default: its spec name).

    Raises:
        ConfigError: the architectures differ.
    """
    theirs, ours = init.generator.spec.to_dict(), generator_spec.to_dict()
    diff = _differences(theirs, ours)
    if diff:
        h, w = generator_spec.resolution
        name = run_name or generator_spec.name or "a custom generator"
        raise ConfigError(f"--init-from {init.source} is {init.describe()}; this run trains "
                          f"{name} at {h}x{w} (they differ in {', '.join(diff[:6])}): to "
                          f"fine-tune it, train with {init.architecture_flags()}")
    D = init.discriminator
    if D is None:
        return
    d_theirs, d_ours = _d_architecture(D.spec), _d_architecture(discriminator_spec)
    if d_theirs != d_ours:
        r, s = D.spec.resolution, discriminator_spec.resolution
        theirs_size, ours_size = format_resolution(r), format_resolution(s)
        same_widths = _widths(D.spec) == _widths(discriminator_spec)
        hint = (f"pass --d-channels {_widths(D.spec)}" if not same_widths and r == s else
                f"they differ in {', '.join(_differences(d_theirs, d_ours))}")
        raise ConfigError(f"--init-from {init.source} has a discriminator for {theirs_size} "
                          f"images with widths {_widths(D.spec)}; this run's is for {ours_size} "
                          f"with widths {_widths(discriminator_spec)}: {hint}")


def apply_init_weights(init: InitWeights, generator: nn.Module, generator_ema: nn.Module,
                       discriminator: nn.Module) -> str:
    """Copy the weights of ``init`` into a run's modules (in place: optimizers built over
    them stay valid); D keeps its weights when ``init`` has no discriminator. Returns what
    was loaded, e.g. ``"G, G_ema and D"``.

    Raises:
        CheckpointError: a module does not match (run
            [`check_init_weights`][pixelfold.training.finetune.check_init_weights] first for a
            one-line message).
    """
    with torch.no_grad():
        load_state_dict_strict(generator, init.generator.state_dict(), source=init.source)
        load_state_dict_strict(generator_ema, init.generator_ema.state_dict(),
                               source=init.source)
        if init.discriminator is not None:
            load_state_dict_strict(discriminator, init.discriminator.state_dict(),
                                   source=init.source)
    ema = "G_ema" if init.generator_ema is not init.generator else "G_ema (= G)"
    return f"G, {ema} and D" if init.discriminator is not None else f"G and {ema} (D afresh)"


def freeze_discriminator(discriminator: Discriminator, n: int) -> list[str]:
    """FreezeD: freeze the from-RGB layer and the first ``n`` residual blocks of
    ``discriminator``, counted from the input (the highest resolution); see the module's
    description for what ``n`` means. Their parameters get ``requires_grad=False`` (leave them
    out of the optimizer); the gradient with respect to the images (R1) still flows through
    them. Returns the names of the frozen parameters.

    Raises:
        ConfigError: ``n`` is not in ``0 .. len(discriminator.blocks)``.
    """
    blocks = len(discriminator.blocks)
    if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= blocks:
        size = format_resolution(discriminator.spec.resolution)
        r = discriminator.spec.short_side
        raise ConfigError(f"--freeze-d must be in 0..{blocks} at {size} (the discriminator's "
                          f"{blocks} residual blocks, {r} down to 8, counted from the image), "
                          f"got {n!r}")
    if n == 0:
        return []
    frozen = {"from_rgb": discriminator.from_rgb,
              **{f"blocks.{i}": discriminator.blocks[i] for i in range(n)}}
    names = []
    for prefix, module in frozen.items():
        for name, p in module.named_parameters():
            p.requires_grad_(False)
            names.append(f"{prefix}.{name}")
    return names
