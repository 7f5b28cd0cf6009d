"""Resolve what users type as MODEL: a preset name or a ``save_pretrained`` folder."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from . import presets
from .generator import Generator

__all__ = ["load_generator"]

logger = logging.getLogger(__name__)


def load_generator(model: str | os.PathLike, *, device: str | torch.device = "cpu",
                   seed: int = 0) -> Generator:
    """A generator from a ``save_pretrained`` folder (or Hub id), or a freshly initialized one
    from a preset name (weights drawn with ``seed``; a warning says it is untrained).

    Args:
        model: folder, Hub id ``"user/repo"``, or preset name (see
            [`presets.names()`][pixelfold.models.presets.names]).
        device: where to put it.
        seed: seed of the random initialization of a preset.

    Raises:
        FileNotFoundError: ``model`` is neither an existing folder nor a preset, nor a
            reachable Hub repo.
    """
    text = str(model)
    path = Path(text)
    if path.is_dir():
        return Generator.from_pretrained(path, map_location=device).eval()
    if text in presets.names():
        logger.warning("%s is a preset name: using randomly initialized (untrained) weights",
                       text)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            G = Generator.from_preset(text)
        return G.to(device).eval()
    if path.exists():
        raise FileNotFoundError(f"{text} is a file; MODEL must be a save_pretrained folder or "
                                f"a preset name")
    if text.count("/") == 1 and not text.startswith((".", "/", "~")):
        return Generator.from_pretrained(text, map_location=device).eval()
    raise FileNotFoundError(f"{text} is neither a folder with config.json + model.safetensors "
                            f"nor a preset (presets: {', '.join(presets.names())})")
