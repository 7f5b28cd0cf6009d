"""Training checkpoints that hold only tensors and JSON: nothing in one can run code.

A checkpoint is a folder ``checkpoint-<step>/`` of:

* ``generator.safetensors``, ``generator_ema.safetensors``, ``discriminator.safetensors``:
  the trained generator, its moving average (what ``generator_ema/`` holds) and the
  discriminator, as ``state_dict`` tensors;
* ``optimizers.safetensors``: both Adam states (moments, step counts, param groups) and the
  fp16 loss scaler's state, written by [`save_state`][pixelfold.utils.tensors.save_state]
  (tensors as tensors, the structure as JSON metadata);
* ``rng-<rank>.safetensors``: per process, Python's, NumPy's and torch's RNG states (CPU and
  CUDA) and the trainer's latent and augmentation generators;
* ``train_config.json``: the run's settings when the checkpoint was written;
  ``generator_config.json`` and ``discriminator_config.json``: the two architectures;
* ``checkpoint.json``, the manifest, written last: format, step, trainer state (images seen,
  epoch and position in it, path-length mean, last losses, resumes), and every other file's
  size and SHA-256.

A folder without a readable manifest, or whose files differ from it (missing, truncated,
changed), is incomplete: [`find_resumable`][pixelfold.training.checkpoint.find_resumable]
skips it with a warning naming it and takes the newest complete one. Checkpoints of pixelfold
versions that used Accelerate's ``save_state`` (pickles: ``custom_checkpoint_*.pkl``,
``random_states_*.pkl``, ``optimizer.bin``) are not loaded, because unpickling them can run
code.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils.errors import CheckpointError
from ..utils.tensors import load_state

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_RE",
    "MANIFEST_NAME",
    "Checkpoint",
    "capture_rng",
    "find_resumable",
    "list_checkpoints",
    "restore_rng",
    "validate_checkpoint",
    "write_manifest",
]

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = 2
"""Version of the checkpoint layout (1 was Accelerate's ``save_state`` with pickles)."""
MANIFEST_NAME = "checkpoint.json"
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
_LEGACY_FILES = ("custom_checkpoint_0.pkl", "random_states_0.pkl", "optimizer.bin")

MODEL_FILES = {"generator": "generator.safetensors",
               "generator_ema": "generator_ema.safetensors",
               "discriminator": "discriminator.safetensors"}
OPTIMIZERS_FILE = "optimizers.safetensors"


def rng_file(rank: int) -> str:
    """Name of process ``rank``'s RNG file."""
    return f"rng-{rank}.safetensors"


def list_checkpoints(checkpoint_dir: str | os.PathLike) -> list[Path]:
    """Folders named ``checkpoint-<step>`` in ``checkpoint_dir``, oldest first (complete or
    not: see [`validate_checkpoint`][pixelfold.training.checkpoint.validate_checkpoint])."""
    checkpoint_dir = Path(checkpoint_dir)
    if not checkpoint_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in checkpoint_dir.iterdir()
             if p.is_dir() and (m := CHECKPOINT_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def write_manifest(folder: Path, *, step: int, trainer_state: Mapping[str, Any],
                   num_processes: int) -> Path:
    """Write ``checkpoint.json`` for the files now in ``folder`` (last, after flushing each of
    them to disk): the checkpoint is complete once this file is."""
    from .. import __version__

    files = {}
    for path in sorted(folder.iterdir()):
        if path.name == MANIFEST_NAME or not path.is_file():
            continue
        _fsync(path)
        files[path.name] = {"bytes": path.stat().st_size, "sha256": _sha256(path)}
    manifest = {"format": CHECKPOINT_FORMAT, "pixelfold_version": __version__, "step": step,
                "num_processes": num_processes, "trainer_state": dict(trainer_state),
                "files": files}
    target = folder / MANIFEST_NAME
    target.write_text(json.dumps(manifest, indent=2) + "\n")
    _fsync(target)
    return target


def validate_checkpoint(folder: str | os.PathLike, *, hashes: bool = True) -> str | None:
    """Why ``folder`` is not a complete checkpoint (``None`` when it is): no manifest, an
    unreadable or foreign manifest, a file missing, of another size, or (with ``hashes``) of
    other contents than the manifest says."""
    folder = Path(folder)
    if not folder.is_dir():
        return "not a folder"
    manifest_path = folder / MANIFEST_NAME
    if not manifest_path.is_file():
        if any((folder / name).exists() for name in _LEGACY_FILES):
            return ("written by an older pixelfold with Accelerate's pickles, which can run "
                    "code when loaded: pixelfold no longer loads them")
        return "incomplete (no checkpoint.json: the run stopped while writing it)"
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        return f"its checkpoint.json is unreadable ({exc})"
    if not isinstance(manifest, dict) or manifest.get("format") != CHECKPOINT_FORMAT:
        return f"its checkpoint.json is not a format-{CHECKPOINT_FORMAT} pixelfold manifest"
    files = manifest.get("files")
    if not isinstance(files, dict):
        return "its checkpoint.json lists no files"
    for name in (*MODEL_FILES.values(), OPTIMIZERS_FILE, "train_config.json"):
        if name not in files:
            return f"its checkpoint.json does not list {name}"
    for name, entry in files.items():
        path = folder / name
        if not path.is_file():
            return f"{name} is missing"
        size = path.stat().st_size
        if size != entry.get("bytes"):
            return f"{name} has {size:,d} bytes, the manifest says {entry.get('bytes'):,d}"
        if hashes and _sha256(path) != entry.get("sha256"):
            return f"{name} does not have the contents the manifest records (SHA-256 differs)"
    return None


def find_resumable(checkpoint_dir: str | os.PathLike) -> tuple[Path | None,
                                                               list[tuple[Path, str]]]:
    """The newest complete checkpoint of ``checkpoint_dir`` (``None`` if there is none) and
    the newer ones skipped, each with the reason."""
    skipped = []
    for path in reversed(list_checkpoints(checkpoint_dir)):
        reason = validate_checkpoint(path)
        if reason is None:
            return path, skipped
        skipped.append((path, reason))
    return None, skipped


# ---------------------------------------------------------------------------------------------
# RNG states


def capture_rng(generators: Mapping[str, torch.Generator]) -> dict[str, Any]:
    """This process's RNG states: Python's, NumPy's, torch's CPU and CUDA default generators
    and the given named ``generators``, as tensors and plain values."""
    np_state = np.random.get_state()  # noqa: NPY002 - the global state code may use
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": str(np_state[0]), "keys": torch.from_numpy(np_state[1].astype(np.int64)),
                  "pos": int(np_state[2]), "has_gauss": int(np_state[3]),
                  "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
        "generators": {name: g.get_state() for name, g in generators.items()},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = list(torch.cuda.get_rng_state_all())
    return state


def restore_rng(state: Mapping[str, Any], generators: Mapping[str, torch.Generator]) -> None:
    """Undo [`capture_rng`][pixelfold.training.checkpoint.capture_rng]."""
    try:
        version, internal, gauss = state["python"]
        random.setstate((int(version), tuple(int(v) for v in internal), gauss))
        n = state["numpy"]
        keys = n["keys"].numpy().astype(np.uint32)
        np.random.set_state((n["kind"], keys, int(n["pos"]), int(n["has_gauss"]),  # noqa: NPY002
                             float(n["cached_gaussian"])))
        torch.set_rng_state(state["torch"].to(torch.uint8))
        if "cuda" in state and torch.cuda.is_available():
            cuda_states = state["cuda"]
            if len(cuda_states) == torch.cuda.device_count():
                torch.cuda.set_rng_state_all([s.to(torch.uint8) for s in cuda_states])
            else:
                logger.warning("the checkpoint has CUDA RNG states of %d devices, this machine "
                               "%d: CUDA RNG not restored", len(cuda_states),
                               torch.cuda.device_count())
        for name, g in generators.items():
            g.set_state(state["generators"][name].to(torch.uint8))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"the RNG state is not in the expected layout ({exc})") from None


# ---------------------------------------------------------------------------------------------
# reading


@dataclass
class Checkpoint:
    """A complete checkpoint folder, read on demand.

    Args:
        folder: the ``checkpoint-<step>`` folder.
        manifest: its parsed ``checkpoint.json``.
    """

    folder: Path
    manifest: dict[str, Any]

    @classmethod
    def open(cls, folder: str | os.PathLike) -> Checkpoint:
        """Check ``folder`` (see
        [`validate_checkpoint`][pixelfold.training.checkpoint.validate_checkpoint]) and read
        its manifest.

        Raises:
            CheckpointError: the folder is not a complete checkpoint (the reason is named).
        """
        folder = Path(folder)
        reason = validate_checkpoint(folder)
        if reason is not None:
            raise CheckpointError(f"{folder} is not a usable checkpoint: {reason}")
        return cls(folder, json.loads((folder / MANIFEST_NAME).read_text()))

    @property
    def step(self) -> int:
        """The optimizer step the checkpoint was written after."""
        return int(self.manifest["step"])

    @property
    def trainer_state(self) -> dict[str, Any]:
        """Images seen, epoch, position in it, path-length mean, last losses."""
        return dict(self.manifest["trainer_state"])

    def json(self, name: str) -> dict[str, Any]:
        """A JSON file of the checkpoint (``train_config.json``, ...)."""
        path = self.folder / name
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"cannot read {path} ({exc})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path} does not hold a JSON object")
        return data

    def model_state(self, name: str) -> dict[str, torch.Tensor]:
        """``generator``, ``generator_ema`` or ``discriminator`` state dict."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = self.folder / MODEL_FILES[name]
        try:
            return load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(f"{path} is corrupt ({exc})") from None

    def optimizers(self) -> dict[str, Any]:
        """``{"G": state_dict, "D": state_dict, "scaler": state_dict or None}``."""
        return load_state(self.folder / OPTIMIZERS_FILE)[0]

    def rng(self, rank: int) -> dict[str, Any] | None:
        """Process ``rank``'s RNG states (``None`` if the checkpoint has none for it)."""
        path = self.folder / rng_file(rank)
        if not path.is_file():
            return None
        return load_state(path)[0]
