"""Differentiable augmentation of the discriminator's inputs, for training on small datasets.

* [`AugmentPipe`][pixelfold.training.augment.AugmentPipe]: ADA's pipeline (Karras et al.
  2020), twelve geometric and color transforms each applied with probability ``p`` times a
  multiplier, composed into one geometric resampling and one color matrix;
* [`AdaController`][pixelfold.training.augment.AdaController]: adapts ``p`` from the signs of
  D's logits on real images;
* [`DiffAugment`][pixelfold.training.augment.DiffAugment]: the fixed ``color``,
  ``translation``, ``cutout`` policy of Zhao et al. 2020;
* [`build_augment`][pixelfold.training.augment.build_augment]: builds one of them from
  settings (``"none"``, ``"ada"``, ``"diffaugment"``).

Every module is called as ``module(images, generator)``, with images ``(N, C, H, W)`` in
``[-1, 1]`` and a CPU ``torch.Generator`` that all random parameters are drawn from (so a
resumed run that restores the generator's state draws the same augmentations). The output is
differentiable with respect to the images, twice (R1 through the augmentation works), and has
the images' shape and dtype. The same module augments reals and fakes; each call draws new
parameters.

``from pixelfold.training.augment import AugmentPipe, AdaController, DiffAugment,
build_augment``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ...utils.errors import ConfigError
from .ada import ADA_PRESETS, AdaParams, AugmentPipe
from .controller import AdaController
from .diffaugment import DIFFAUGMENT_POLICIES, DiffAugment, DiffAugmentParams, parse_policy

__all__ = [
    "ADA_PRESETS",
    "AUGMENT_KINDS",
    "AdaController",
    "AdaParams",
    "Augmentation",
    "AugmentPipe",
    "DIFFAUGMENT_POLICIES",
    "DiffAugment",
    "DiffAugmentParams",
    "NoAugment",
    "build_augment",
    "parse_policy",
]

AUGMENT_KINDS = ("none", "ada", "diffaugment")
"""The kinds [`build_augment`][pixelfold.training.augment.build_augment] accepts (``"noaug"``
is an alias of ``"none"``)."""

_ALIASES = {"noaug": "none"}


class NoAugment(nn.Module):
    """The identity, with the augmentation modules' call signature."""

    def forward(self, images: torch.Tensor,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``images`` unchanged (``generator`` is not used)."""
        return images


@dataclass
class Augmentation:
    """What [`build_augment`][pixelfold.training.augment.build_augment] returns.

    Attributes:
        kind: ``"none"``, ``"ada"`` or ``"diffaugment"``.
        module: the augmentation, called as ``module(images, generator)``.
        controller: the [`AdaController`][pixelfold.training.augment.AdaController] of an
            adaptive ADA run, else ``None`` (fixed ``p``, DiffAugment, none).
    """

    kind: str
    module: nn.Module
    controller: AdaController | None = None

    @property
    def active(self) -> bool:
        """Whether the module can change images (not ``"none"``)."""
        return self.kind != "none"

    def step(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> bool:
        """With a controller: [`AdaController.step`][pixelfold.training.augment.AdaController.step]
        and copy its ``p`` to the pipe; returns whether ``p`` was adjusted. Without one:
        ``False``."""
        if self.controller is None:
            return False
        adjusted = self.controller.step(reduce)
        self.module.p = self.controller.p
        return adjusted


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    return float(value)


def build_augment(kind: str = "none", *, p: float | None = None, pipeline: str = "bgc",
                  target: float = 0.6, ada_kimg: float = 500, interval: int = 4,
                  batch_total: int | None = None,
                  policy: str = "color,translation,cutout") -> Augmentation:
    """Build the augmentation of the discriminator's inputs from settings.

    Args:
        kind: ``"none"`` (alias ``"noaug"``), ``"ada"`` or ``"diffaugment"``.
        p: ADA only: a fixed strength in ``[0, 1]``; ``None`` (default) adapts it with an
            [`AdaController`][pixelfold.training.augment.AdaController] starting at 0.
        pipeline: ADA only: a name of
            [`ADA_PRESETS`][pixelfold.training.augment.ada.ADA_PRESETS] (default ``"bgc"``).
        target: adaptive ADA: the target of ``r_t``, in ``(0, 1)`` (checked for every kind).
        ada_kimg: adaptive ADA: kimg for ``p`` to go from 0 to 1.
        interval: adaptive ADA: steps between adjustments of ``p``.
        batch_total: adaptive ADA: real images per step over all processes (required).
        policy: DiffAugment only: comma-separated ``color``, ``translation``, ``cutout``.

    Raises:
        ConfigError: an unknown ``kind``, ``pipeline`` or ``policy``; ``target`` outside
            ``(0, 1)``; ``p`` outside ``[0, 1]`` or given for a kind other than ``"ada"``; an
            adaptive ADA without ``batch_total``. The message is one line naming the value.
    """
    if not isinstance(kind, str):
        raise ConfigError(f"augment kind must be a string, got {kind!r}; choose from "
                          f"{', '.join(AUGMENT_KINDS)}")
    name = _ALIASES.get(kind.strip().lower(), kind.strip().lower())
    if name not in AUGMENT_KINDS:
        raise ConfigError(f"unknown augment kind {kind!r}; choose from "
                          f"{', '.join(AUGMENT_KINDS)} (or noaug)")
    target = _number("ada target", target)
    if not 0 < target < 1:
        raise ConfigError(f"ada target must be in (0, 1), got {target!r}")
    if p is not None:
        p = _number("augment p", p)
        if name != "ada":
            raise ConfigError(f"augment p={p!r} applies to kind 'ada' only, not {name!r}")
        if not 0 <= p <= 1:
            raise ConfigError(f"augment p must be in [0, 1], got {p!r}")

    if name == "none":
        return Augmentation(name, NoAugment())
    if name == "diffaugment":
        return Augmentation(name, DiffAugment(policy))
    if p is not None:
        return Augmentation(name, AugmentPipe.from_preset(pipeline, p=p))
    if batch_total is None:
        raise ConfigError("adaptive ADA (augment p=None) needs batch_total, the real images "
                          "per step over all processes")
    controller = AdaController(target=target, ada_kimg=ada_kimg, interval=interval,
                               batch_total=batch_total)
    return Augmentation(name, AugmentPipe.from_preset(pipeline, p=controller.p), controller)
