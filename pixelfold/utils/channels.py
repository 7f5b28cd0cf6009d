"""Image channels: grayscale (1), RGB (3) and RGBA (4) images, and the one rule that turns
them into RGB for whatever reads only RGB (the metric networks, labeled figures, GIFs).

The rule (:func:`to_rgb`): grayscale is repeated into R, G and B; RGBA (straight alpha) is
composited over a white background, ``rgb * a + 1 * (1 - a)`` in ``[-1, 1]`` with
``a = (alpha + 1) / 2`` clamped to ``[0, 1]``; RGB is kept as it is. White is the background
the data pipeline composites transparent images over for RGB models too
([`preprocess_image`][pixelfold.training.data.preprocess_image]), so an RGBA model measured
by FID is compared with its data exactly as an RGB model of the same data would see them.

>>> import torch
>>> to_rgb(torch.zeros(2, 1, 4, 4)).shape
torch.Size([2, 3, 4, 4])
>>> to_rgb(torch.tensor([-1.0, -1.0, -1.0, -1.0]).view(1, 4, 1, 1)).flatten().tolist()
[1.0, 1.0, 1.0]
"""

from __future__ import annotations

import logging

import torch

__all__ = ["IMAGE_MODES", "RGBA_BACKGROUND", "conversion_to_rgb", "note_conversion", "to_rgb"]

logger = logging.getLogger(__name__)

IMAGE_MODES = {1: "L", 3: "RGB", 4: "RGBA"}
"""The PIL mode of images with each number of channels (PNGs are written in it)."""

RGBA_BACKGROUND = "white"
"""What RGBA images are composited over when RGB is needed."""

_NOTED: set[tuple[str, int]] = set()


def conversion_to_rgb(channels: int) -> str:
    """How :func:`to_rgb` treats images of ``channels`` channels, in words (for reports)."""
    if channels == 1:
        return "grayscale repeated into R, G and B"
    if channels == 4:
        return f"RGBA composited over {RGBA_BACKGROUND}"
    if channels == 3:
        return "RGB as is"
    raise ValueError(f"images must have 1, 3 or 4 channels, got {channels}")


def to_rgb(images: torch.Tensor) -> torch.Tensor:
    """``(..., C, H, W)`` images in ``[-1, 1]`` with ``C`` of 1, 3 or 4 as ``(..., 3, H, W)``
    (see the module's description for the rule). Floating-point tensors only: quantize after.

    Raises:
        ValueError: another number of channels.
    """
    if images.ndim < 3:
        raise ValueError(f"to_rgb expects (..., C, H, W) images, got {tuple(images.shape)}")
    c = images.shape[-3]
    conversion_to_rgb(c)  # the check
    if c == 3:
        return images
    if c == 1:
        return images.expand(*images.shape[:-3], 3, *images.shape[-2:])
    rgb, alpha = images[..., :3, :, :], images[..., 3:, :, :]
    a = ((alpha + 1) / 2).clamp(0, 1)
    return rgb * a + (1 - a)


def note_conversion(channels: int, what: str) -> None:
    """Log once per process (per ``what`` and channel count) that images of ``what`` with
    ``channels`` channels are converted to RGB, and how; nothing for RGB."""
    key = (what, channels)
    if channels == 3 or key in _NOTED:
        return
    _NOTED.add(key)
    logger.warning("%s: %d-channel images are converted to RGB for the metric networks "
                   "(%s)", what, channels, conversion_to_rgb(channels))
