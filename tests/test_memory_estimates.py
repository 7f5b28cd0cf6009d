"""Sizes computed from specs before anything is allocated: exact weight counts, batch memory
estimates checked against a measurement on the meta device, and refusals with the estimate."""

from __future__ import annotations

import time

import pytest
import torch

from pixelfold.models import (
    Discriminator,
    DiscriminatorSpec,
    Generator,
    GeneratorSpec,
    StageSpec,
    presets,
)
from pixelfold.utils import MemoryLimitError
from pixelfold.utils.memory import (
    discriminator_values,
    format_bytes,
    generator_batch_bytes,
    generator_values,
    module_bytes,
    peak_forward_bytes,
    tensor_bytes,
)


def _values(module: torch.nn.Module) -> int:
    return sum(t.numel() for t in (*module.parameters(), *module.buffers()))


VARIANTS = {
    "no-noise": GeneratorSpec(stages=(
        StageSpec(resolution=16, block_channels=(16, 16), fourier_channels=8,
                  coord_embedding_channels=4, input_channels=(8, 2), noise=False,
                  merge="none"),), z_dim=16, w_dim=8, mapping_layers=3),
    "nearest-add-fixed-fourier": GeneratorSpec(stages=(
        StageSpec(resolution=8, block_channels=(16, 16), fourier_channels=8,
                  fourier_learned=False, input_channels=(4,), grow="nearest", merge="none"),
        StageSpec(resolution=32, block_channels=(16, 8), fourier_channels=8,
                  fourier_learned=False, input_channels=(1,), grow="nearest", merge="add")),
        z_dim=16, w_dim=16, mapping_layers=1, blur_kernel=(1, 2, 1)),
    "modconv-input-rectangular": GeneratorSpec(stages=(
        StageSpec(resolution=(8, 16), block_channels=(8,), fourier_channels=4,
                  coord_embedding_channels=4, input_channels=(8, 6), input_layer="modconv",
                  reduce_steps=1, reduce="avgpool", grow="deconv", kernel_size=1, merge="none"),),
        z_dim=8, w_dim=8, mapping_layers=1),
}


@pytest.mark.parametrize("name", presets.names() + list(VARIANTS))
def test_generator_values_are_the_built_models(name):
    spec = VARIANTS[name] if name in VARIANTS else presets.get(name)
    with torch.device("meta"):
        G = Generator(spec)
    assert generator_values(spec) == _values(G)
    assert module_bytes(lambda: Generator(spec)) == 4 * _values(G)


@pytest.mark.parametrize("resolution", [4, 32, 256])
def test_discriminator_values_are_the_built_models(resolution):
    spec = DiscriminatorSpec(resolution=resolution, mbstd_num_channels=2,
                             blur_kernel=(1, 2, 1))
    with torch.device("meta"):
        D = Discriminator(spec)
    assert discriminator_values(spec) == _values(D)


def _measured(spec: GeneratorSpec, batch: int) -> int:
    with torch.device("meta"):
        G = Generator(spec).eval()

    def run() -> torch.Tensor:
        with torch.device("meta"), torch.no_grad():
            return G(torch.randn(batch, G.z_dim), noise_mode="random")

    return peak_forward_bytes(run)


@pytest.mark.parametrize("name", [n for n in presets.names() if "tiny" not in n])
def test_batch_estimate_is_within_a_factor_2_of_the_measurement(name):
    """The published models and ablations (the tiny ones need a few MiB: no matter)."""
    spec = presets.get(name)
    measured = _measured(spec, 16)
    estimate = generator_batch_bytes(spec, 16)
    assert measured / 2 <= estimate <= 2 * measured, (format_bytes(estimate),
                                                      format_bytes(measured))
    # linear in the batch size, and in the dtype's size
    step = generator_batch_bytes(spec, 17) - estimate
    assert generator_batch_bytes(spec, 1_000_016) == estimate + 1_000_000 * step
    assert generator_batch_bytes(spec, 16, torch.bfloat16) * 2 == estimate


def test_peak_forward_bytes_follows_the_live_tensors():
    def run() -> torch.Tensor:
        with torch.device("meta"):
            a = torch.empty(1024, dtype=torch.float32)  # 4 KiB
            b = a + 1  # 8 KiB alive (a, b)
            del a  # 4 KiB
            c = b.expand(4, 1024)  # a view: no new memory
            d = c.sum(0).mul_(2)  # 8 KiB alive (b, d); in place: no new memory
            e = torch.cat([d, d, d])  # 20 KiB alive (b, d, e)
            del b, c, d
            return e

    assert peak_forward_bytes(run) == 5 * 4096


def test_tensor_bytes():
    assert tensor_bytes(2**20, 2**20, 9) == 9 * 2**42
    assert tensor_bytes(3, 4, dtype=torch.bfloat16) == 24


# ---------------------------------------------------------------- refusals


def _huge(**change) -> GeneratorSpec:
    data = presets.get("pixelfolder-tiny-32").to_dict()
    data.update(change)
    return GeneratorSpec.from_dict(data)


def test_a_generator_with_2_20_channels_is_refused_before_allocating():
    spec = presets.get("pixelfolder-tiny-32").to_dict()
    spec["stages"][1]["block_channels"] = [2**20, 2**20]
    spec = GeneratorSpec.from_dict(spec)
    start = time.perf_counter()
    with pytest.raises(MemoryLimitError, match=r"^the generator 'pixelfolder-tiny-32' "
                                               r"\([\d,]+ weight and buffer values\) needs about "
                                               r"[\d.]+ TiB but cpu has .* available; make the "
                                               r"spec smaller"):
        Generator(spec)
    assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize("change", [dict(z_dim=2**20, w_dim=2**20),
                                    dict(stages=[dict(resolution=32768, block_channels=[64, 64],
                                                      fourier_channels=64,
                                                      coord_embedding_channels=64,
                                                      input_channels=[64, 4], merge="none")])])
def test_huge_latents_or_resolution_are_refused(change):
    with pytest.raises(MemoryLimitError, match="needs about .* but cpu has"):
        Generator(_huge(**change))


def test_the_limit_can_be_set_and_meta_builds_are_not_checked(monkeypatch):
    monkeypatch.setenv("PIXELFOLD_MEMORY_LIMIT", str(2**20))
    with pytest.raises(MemoryLimitError, match=r"needs about [\d.]+ MiB but cpu has 1\.0 MiB "
                                               r"available"):
        Generator.from_preset("pixelfolder-256")
    with torch.device("meta"):  # nothing is allocated there: no check
        assert Generator.from_preset("pixelfolder-256").z_dim == 512
    with pytest.raises(MemoryLimitError, match="the discriminator"):
        Discriminator(DiscriminatorSpec(resolution=256))
    Generator.from_preset("cips-tiny-32")  # 0.3 MiB of weights: fits


def test_memory_limit_error_is_a_memory_error():
    assert issubclass(MemoryLimitError, MemoryError)
