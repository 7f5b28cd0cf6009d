"""Generators built from declarative specs, their presets and weights I/O.

``from pixelfold.models import Generator, GeneratorSpec, StageSpec, presets``.
"""

from . import presets
from .discriminator import Discriminator, DiscriminatorSpec
from .generator import (
    Generator,
    PointwiseConv,
    StageBlock,
    SynthesisNetwork,
    SynthesisStage,
    style_mix,
)
from .loading import load_generator
from .pretrained import CONFIG_NAME, WEIGHTS_NAME, PretrainedMixin, atomic_directory
from .spec import GeneratorSpec, StageSpec

__all__ = [
    "CONFIG_NAME",
    "WEIGHTS_NAME",
    "Discriminator",
    "DiscriminatorSpec",
    "Generator",
    "GeneratorSpec",
    "PointwiseConv",
    "PretrainedMixin",
    "StageBlock",
    "StageSpec",
    "SynthesisNetwork",
    "SynthesisStage",
    "atomic_directory",
    "load_generator",
    "presets",
    "style_mix",
]
