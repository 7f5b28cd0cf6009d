"""The shared model checks of ``tests/model_tester.py`` over every model class of
``pixelfold.models``: the generator built from every preset family at tiny widths, and the
discriminator at several tiny sizes."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

import pixelfold.metrics
import pixelfold.models
from pixelfold.models import (
    Discriminator,
    DiscriminatorSpec,
    Generator,
    GeneratorSpec,
    PretrainedMixin,
    presets,
)
from pixelfold.models.presets import _TINY, pixelfolder

from .model_tester import Inputs, ModelTesterMixin

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(**kwargs: Any) -> Callable[[], GeneratorSpec]:
    """A two-stage 8 -> 32 PixelFolder at the widths of ``pixelfolder-tiny-32``, with
    ``kwargs`` of [`presets.pixelfolder`][pixelfold.models.presets.pixelfolder]."""
    base = dict(channels=_TINY, z_dim=64, w_dim=64, mapping_layers=2, stage0_projection=4)
    return lambda: pixelfolder((8, 32), **{**base, **kwargs})


GENERATOR_CONFIGS: dict[str, Callable[[], GeneratorSpec]] = {
    "pixelfolder-tiny-32": lambda: presets.get("pixelfolder-tiny-32"),
    "pixelfolder-tiny-64": lambda: presets.get("pixelfolder-tiny-64"),
    "cips-tiny-32": lambda: presets.get("cips-tiny-32"),
    "fold-deconv": _tiny(grow="deconv"),
    "fold-deconv-sc": _tiny(grow="deconv", shape_consistent=True),
    # average pooling keeps the width: the projection is the block width, as at 256
    "down-deconv": _tiny(grow="deconv", reduce="avgpool", stage0_projection=64),
    "down-deconv-sc": _tiny(grow="deconv", reduce="avgpool", stage0_projection=64,
                            shape_consistent=True),
    "no-coord": _tiny(coord_embedding=False),
    "no-connection": _tiny(merge="none"),
    # spec options that no preset uses
    "merge-add": _tiny(merge="add"),
    "grow-nearest": _tiny(grow="nearest"),
    "pixel-shuffle-order": lambda: dataclasses.replace(presets.get("pixelfolder-tiny-32"),
                                                       channel_order="pixel_shuffle"),
    # image shapes and labels (issue 13)
    "rgba": lambda: dataclasses.replace(presets.get("pixelfolder-tiny-32"), image_channels=4),
    "gray-16x32": lambda: dataclasses.replace(
        presets.get("pixelfolder-tiny-32").with_resolution((16, 32)), image_channels=1),
    "conditional": lambda: dataclasses.replace(presets.get("pixelfolder-tiny-32"), c_dim=3,
                                               class_names=("a", "b", "c")),
    # the smallest generator, one 4x4 stage: what test_torch_compile_inductor compiles
    "one-stage-4": lambda: pixelfolder((4,), channels={1: 8, 2: 8, 4: 8}, z_dim=8, w_dim=8,
                                       mapping_layers=1, stage0_projection=4),
}

DISCRIMINATOR_CONFIGS: dict[str, Callable[[], DiscriminatorSpec]] = {
    "d-4": lambda: DiscriminatorSpec(resolution=4, channels={4: 8}),
    "d-8": lambda: DiscriminatorSpec(resolution=8, channels={4: 8, 8: 8}),
    "d-32": lambda: DiscriminatorSpec(resolution=32, channels={4: 16, 8: 16, 16: 8, 32: 8}),
    "d-16-gray-mbstd2-blur3": lambda: DiscriminatorSpec(
        resolution=16, image_channels=1, channels={4: 8, 8: 8, 16: 4}, mbstd_group_size=2,
        mbstd_num_channels=2, blur_kernel=(1, 2, 1)),
    "d-16x32-rgba": lambda: DiscriminatorSpec(resolution=(16, 32), image_channels=4,
                                              channels={4: 8, 8: 8, 16: 4}),
    "d-16-conditional": lambda: DiscriminatorSpec(resolution=16, channels={4: 8, 8: 8, 16: 4},
                                                  c_dim=3, mapping_layers=2),
}


def _labels(model: nn.Module, batch_size: int, gen: torch.Generator) -> dict[str, Any]:
    """``c=`` class indices for a conditional model, nothing for another."""
    c_dim = model.spec.c_dim
    return {"c": torch.randint(0, c_dim, (batch_size,), generator=gen)} if c_dim else {}


class TestGenerator(ModelTesterMixin):
    model_class = Generator
    configs = GENERATOR_CONFIGS
    # the smallest (tests/test_fast_paths.py traces pixelfolder-tiny-32 forward and backward;
    # the layer matrix traces the upsampling ModConvs of the deconv ablations)
    compile_config = "one-stage-4"

    def make_inputs(self, model: nn.Module, batch_size: int, gen: torch.Generator) -> Inputs:
        return ((torch.randn(batch_size, model.z_dim, generator=gen),),
                _labels(model, batch_size, gen))

    def output_shape(self, model: nn.Module, batch_size: int) -> tuple[int, ...]:
        return (batch_size, model.image_channels, *model.resolution)

    def forward(self, model: nn.Module, inputs: Inputs, *, deterministic: bool = True
                ) -> torch.Tensor:
        (z,), kwargs = inputs
        return model(z, noise_mode="const" if deterministic else "random", **kwargs)

    def test_truncation_and_noise_modes_are_deterministic(self, config):
        G = self.build(config)
        (z,), labels = self.inputs(G)
        for kwargs in ({"noise_mode": "none"}, {"truncation_psi": 0.5, "noise_mode": "const"}):
            assert torch.equal(G(z, **labels, **kwargs), G(z, **labels, **kwargs)), kwargs
        torch.manual_seed(1)
        a = G(z, noise_mode="random", **labels)
        torch.manual_seed(1)
        assert torch.equal(G(z, noise_mode="random", **labels), a)
        assert not torch.equal(G(z, noise_mode="random", **labels), a)  # fresh noise each call

    @pytest.mark.skipif(os.environ.get("PIXELFOLD_INDUCTOR_TESTS") != "1",
                        reason="PIXELFOLD_INDUCTOR_TESTS=1 runs a real inductor compile: 50 s "
                               "with a cold compile cache on 2 busy cores, 5 s warm")
    def test_torch_compile_inductor(self):
        """A real inductor compile (generated C++ kernels) of the smallest generator; the
        other compile tests trace with aot_eager, which generates no code."""
        torch._dynamo.reset()
        G = self.build("one-stage-4")
        z = self.inputs(G)[0][0]
        compiled = torch.compile(G, fullgraph=True)
        torch.testing.assert_close(compiled(z, noise_mode="const"), G(z, noise_mode="const"),
                                   rtol=1e-4, atol=1e-4)


class TestDiscriminator(ModelTesterMixin):
    model_class = Discriminator
    configs = DISCRIMINATOR_CONFIGS
    compile_config = "d-8"
    batch_independent = False  # the minibatch standard deviation

    def make_inputs(self, model: nn.Module, batch_size: int, gen: torch.Generator) -> Inputs:
        s = model.spec
        images = torch.randn(batch_size, s.image_channels, *s.size, generator=gen)
        return (images,), _labels(model, batch_size, gen)

    def output_shape(self, model: nn.Module, batch_size: int) -> tuple[int, ...]:
        return (batch_size, 1)

    def test_channels_last_images_give_the_same_logits(self, config):
        D = self.build(config)
        (images,), labels = self.inputs(D, 4)
        torch.testing.assert_close(D(images.to(memory_format=torch.channels_last), **labels),
                                   D(images, **labels), rtol=1e-5, atol=1e-5)


TESTERS: dict[type, type[ModelTesterMixin]] = {Generator: TestGenerator,
                                               Discriminator: TestDiscriminator}

PARTS: dict[str, str] = {
    "PointwiseConv": "Generator (every stage's style-free input and merge)",
    "StageBlock": "Generator (every block)",
    "SynthesisNetwork": "Generator (G.synthesis)",
    "SynthesisStage": "Generator (every stage)",
    "ClassConditioned": "a conditional Generator with its classes chosen, for the metrics "
                        "(test_conditional.py)",
    "DinoV2Features": "a wrapper of a timm network with its own weight files and no "
                      "save_pretrained (test_metrics.py)",
}
"""nn.Module classes exported beside the models, and what tests them."""


# ---------------------------------------------------------------- the registries are complete


def _exported_modules() -> set[type]:
    out = set()
    for package in (pixelfold.models, pixelfold.metrics):
        for name in package.__all__:
            obj = getattr(package, name)
            if isinstance(obj, type) and issubclass(obj, nn.Module):
                out.add(obj)
    return out


def test_every_model_class_has_a_tester():
    classes = _exported_modules()
    models = {c for c in classes if issubclass(c, PretrainedMixin)}
    missing = sorted(c.__name__ for c in models - set(TESTERS))
    assert not missing, f"model classes without a ModelTesterMixin test class: {missing}"
    parts = sorted(c.__name__ for c in classes - models if c.__name__ not in PARTS)
    assert not parts, f"exported nn.Modules in neither TESTERS nor PARTS: {parts}"


_SIZE_FIELDS = {"resolution", "block_channels", "fourier_channels", "coord_embedding_channels",
                "input_channels", "mid_channels"}
_GENERATOR_SIZE_FIELDS = {"stages", "z_dim", "w_dim", "mapping_layers", "name"}


def _structure(spec: GeneratorSpec) -> tuple[Any, ...]:
    """What a spec builds, without its sizes: every field but the widths and resolutions, and
    for each kind of stage (first or later) whether it has each optional part."""
    top = tuple((f.name, getattr(spec, f.name)) for f in dataclasses.fields(spec)
                if f.name not in _GENERATOR_SIZE_FIELDS and f.name not in ("mapping_lr_mul",
                                                                          "w_avg_beta"))
    stages = set()
    for i, stage in enumerate(spec.stages):
        fields = tuple((f.name, getattr(stage, f.name)) for f in dataclasses.fields(stage)
                       if f.name not in _SIZE_FIELDS)
        parts = (("first", i == 0), ("fourier", bool(stage.fourier_channels)),
                 ("coord_embedding", bool(stage.coord_embedding_channels)),
                 ("input_layers", len(stage.input_channels)),
                 ("mid_channels", bool(stage.mid_channels)))
        stages.add(fields + parts)
    return top, frozenset(stages)


def test_every_preset_family_has_a_tiny_config():
    """Each preset's structure (everything but its sizes) is built by one of the tiny configs
    above, so that the tester covers what every preset builds."""
    tiny = {_structure(make()) for make in GENERATOR_CONFIGS.values()}
    missing = [name for name in presets.names() if _structure(presets.get(name)) not in tiny]
    assert not missing, f"presets whose structure no tiny config of TestGenerator has: {missing}"
