"""Saving and loading models as ``config.json`` + ``model.safetensors`` folders (or Hub repos)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import torch

from ..utils.errors import CheckpointError, ConfigError
from ..utils.files import atomic_directory, cleanup_leftovers
from ..utils.tensors import check_finite

__all__ = ["CONFIG_NAME", "WEIGHTS_NAME", "PretrainedMixin", "atomic_directory"]

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"

T = TypeVar("T", bound="PretrainedMixin")


def _resolve_folder(name_or_path: str | os.PathLike, revision: str | None) -> Path:
    path = Path(name_or_path)
    if not path.exists() and path.parent.is_dir():
        cleanup_leftovers(path)  # a save killed mid-swap left the old folder aside: put it back
    if path.is_dir():
        return path
    if path.exists():
        raise NotADirectoryError(f"{path} is a file; from_pretrained expects a folder holding "
                                 f"{CONFIG_NAME} and {WEIGHTS_NAME}")
    text = str(name_or_path)
    looks_like_repo = text.count("/") == 1 and not text.startswith((".", "/", "~"))
    if not looks_like_repo:
        raise FileNotFoundError(f"no such folder: {path}")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(text, revision=revision,
                                      allow_patterns=[CONFIG_NAME, WEIGHTS_NAME]))
    except Exception as exc:  # network, offline mode, missing repo
        raise FileNotFoundError(
            f"{text!r} is not a local folder and could not be fetched from the Hugging Face Hub "
            f"({type(exc).__name__}: {exc})"
        ) from None


class PretrainedMixin:
    """Adds ``save_pretrained`` / ``from_pretrained`` to a module whose whole architecture is
    the dataclass ``self.spec`` (with ``to_dict`` / ``from_dict``), diffusers-style.

    Loading is strict: a missing or unexpected tensor, one of the wrong shape, or one holding
    NaN or infinity is an error that names it; a corrupt or truncated weights file is an error
    that names the file.
    """

    spec_class: ClassVar[Any]
    spec: Any

    def save_pretrained(self, save_directory: str | os.PathLike) -> Path:
        """Write ``config.json`` and ``model.safetensors`` into ``save_directory``.

        The folder is written atomically: files go to a temporary sibling folder that replaces
        ``save_directory`` only once everything is written, so a failed save leaves no
        half-written folder (and an existing one untouched). The folder and its files get the
        permissions of the user's umask (``0o755`` / ``0o644`` with the usual ``022``).
        Returns the folder.
        """
        from safetensors.torch import save_file

        from .. import __version__

        module: torch.nn.Module = self  # type: ignore[assignment]
        config = {"_class_name": type(self).__name__, "_pixelfold_version": __version__,
                  **self.spec.to_dict()}
        state = {k: v.detach().to("cpu").contiguous() for k, v in module.state_dict().items()}
        target = Path(save_directory)
        with atomic_directory(target) as tmp:
            (tmp / CONFIG_NAME).write_text(json.dumps(config, indent=2) + "\n")
            save_file(state, str(tmp / WEIGHTS_NAME), metadata={"format": "pt"})
        return target

    def push_to_hub(self, repo_id: str, **kwargs: Any) -> Any:
        """Upload this model to the Hub repository ``repo_id`` with a model card (a sample
        grid, loading code, the metrics of ``report=``): see
        [`pixelfold.hub.push_to_hub`][pixelfold.hub.push_to_hub] for the arguments (``token``,
        ``private``, ``revision``, ``create_pr``, ``commit_message``, ``report``,
        ``datasets``, ``license``, ...). Returns the ``huggingface_hub.CommitInfo``.

        ``from_pretrained(repo_id)`` loads it back (cached; ``revision=`` pins a commit).
        """
        from ..hub import push_to_hub

        return push_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_pretrained(
        cls: type[T],
        pretrained_model_name_or_path: str | os.PathLike,
        *,
        revision: str | None = None,
        map_location: str | torch.device = "cpu",
    ) -> T:
        """Load a model saved by ``save_pretrained`` from a local folder or a Hub repo id.

        Args:
            pretrained_model_name_or_path: folder with ``config.json`` and ``model.safetensors``,
                or ``"user/repo"`` on the Hugging Face Hub.
            revision: Hub revision.
            map_location: device for the weights.

        Raises:
            FileNotFoundError: no such folder, or it lacks ``config.json`` or
                ``model.safetensors``.
            ConfigError: ``config.json`` is not valid JSON or not a valid spec (the message
                names the file and the field).
            CheckpointError: the weights file is corrupt or truncated, does not match the spec,
                or holds NaN or infinity (the message names the tensors and the file).
            MemoryLimitError: the model does not fit in the memory available.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        folder = _resolve_folder(pretrained_model_name_or_path, revision)
        config_path, weights_path = folder / CONFIG_NAME, folder / WEIGHTS_NAME
        for p in (config_path, weights_path):
            if not p.is_file():
                raise FileNotFoundError(f"{folder} has no {p.name}: not a save_pretrained folder")
        try:
            config = json.loads(config_path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{config_path} is not valid JSON ({exc})") from None
        if not isinstance(config, dict):
            raise ConfigError(f"{config_path} must hold a JSON object")
        saved_class = config.get("_class_name")
        if saved_class is not None and saved_class != cls.__name__:
            raise ConfigError(f"{config_path} describes a {saved_class}, not a {cls.__name__}")
        try:
            spec = cls.spec_class.from_dict(config)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"{config_path}: {exc}") from None
        try:  # built first: a spec too large for the memory fails before reading any weights
            model = cls(spec)  # type: ignore[call-arg]
        except MemoryError as exc:
            raise type(exc)(f"{config_path}: {exc}") from None
        try:
            state = load_file(str(weights_path), device=str(map_location))
        except (SafetensorError, OSError, ValueError) as exc:
            raise CheckpointError(
                f"{weights_path} is corrupt or truncated and cannot be read "
                f"({' '.join(str(exc).split())})"
            ) from None
        check_finite(state, what="the weights", source=str(weights_path))
        load_state_dict_strict(model, state, source=str(weights_path))  # type: ignore[arg-type]
        return model.to(map_location)  # type: ignore[attr-defined,return-value]


def load_state_dict_strict(module: torch.nn.Module, state: dict[str, torch.Tensor],
                           source: str = "state_dict") -> None:
    """``module.load_state_dict(state, strict=True)`` with errors that name every missing,
    unexpected or mis-shaped tensor and where it came from.

    Raises:
        CheckpointError: (a ``ValueError``) naming the tensors that do not match.
    """
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: {tuple(state[k].shape)} in {source}, {tuple(v.shape)} in the model"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {_short(missing)}")
    if unexpected:
        problems.append(f"unexpected {len(unexpected)} tensor(s): {_short(unexpected)}")
    if shapes:
        problems.append("shape mismatch: " + "; ".join(shapes[:8]))
    if problems:
        raise CheckpointError(f"{source} does not match {type(module).__name__}: "
                              + " | ".join(problems))
    module.load_state_dict(state, strict=True)


def _short(keys: list[str], n: int = 10) -> str:
    shown = ", ".join(keys[:n])
    return shown + (f", ... ({len(keys) - n} more)" if len(keys) > n else "")


def apply_memory_format(module: torch.nn.Module,
                        memory_format: torch.memory_format | None) -> None:
    """Put the 4-D parameters and buffers of ``module`` in ``memory_format``
    (``torch.channels_last`` or ``torch.contiguous_format``; ``None`` leaves them as they
    are). The convolutions of a model follow the layout of its weights: a channels-last model
    runs channels-last activations, which oneDNN (CPU) and cuDNN (tensor cores) convolve
    fastest.

    Tensors of 1x1 spatial size (1x1 convolution weights, ``(1, C, 1, 1)`` biases) stay
    contiguous: channels-last means nothing for them, and their gradients come back with
    contiguous strides, which DistributedDataParallel would otherwise warn about ("grad
    strides do not match bucket view strides") and copy on every step."""
    if memory_format is None:
        return
    if memory_format not in (torch.channels_last, torch.contiguous_format):
        raise ValueError(f"memory_format must be torch.channels_last, torch.contiguous_format "
                         f"or None, got {memory_format!r}")

    def laid_out(t: torch.Tensor) -> torch.Tensor:
        if t.ndim != 4:
            return t
        spatial = t.shape[2] * t.shape[3] > 1
        return t.contiguous(memory_format=memory_format if spatial else torch.contiguous_format)

    for sub in module.modules():
        for param in sub.parameters(recurse=False):
            param.data = laid_out(param.data)
        for name, buf in sub.named_buffers(recurse=False):
            if buf is not None:
                sub._buffers[name] = laid_out(buf)
