"""Grayscale, RGB and RGBA models and rectangular resolutions, end to end: specs, G and D,
the data pipeline, augmentation (R1 included), the metrics' RGB conversion, training with
grids and checkpoints, and `pixelfold generate`."""

from __future__ import annotations

import dataclasses
import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from pixelfold.models import Discriminator, DiscriminatorSpec, Generator, GeneratorSpec, presets
from pixelfold.training import GANTrainer, TrainConfig, preprocess_image
from pixelfold.training.augment import AugmentPipe, DiffAugment
from pixelfold.utils import ConfigError
from pixelfold.utils.channels import to_rgb

from .training_helpers import _config, reset_accelerate

TINY = "pixelfolder-tiny-32"
D_TINY = {32: 8, 16: 8, 8: 8, 4: 8}


@pytest.fixture(autouse=True)
def _reset_accelerate():
    reset_accelerate()
    yield
    reset_accelerate()


def _spec(channels: int = 3, resolution: tuple[int, int] = (32, 32)) -> GeneratorSpec:
    spec = presets.get(TINY).with_resolution(resolution)
    return dataclasses.replace(spec, image_channels=channels)


def _digest(module: torch.nn.Module) -> str:
    keys = ",".join(f"{k}:{tuple(v.shape)}" for k, v in module.state_dict().items())
    return hashlib.sha256(keys.encode()).hexdigest()[:16]


# ---------------------------------------------------------------- square RGB is unchanged

def test_square_rgb_models_keep_their_keys_and_outputs():
    # the numbers of the commit before grayscale/RGBA and rectangles existed (same seeds)
    torch.manual_seed(0)
    G = Generator(presets.get(TINY))
    z = torch.randn(2, G.z_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        x = G(z, noise_mode="const")
    assert _digest(G) == "e7e01d87ae7e8ccf"
    assert float(x.double().sum()) == pytest.approx(-303.1259799366817, abs=1e-3)
    assert x[0, :, 5, 7].tolist() == pytest.approx(
        [0.2048291563987732, -1.5183417797088623, 0.8453487753868103], abs=1e-5)
    torch.manual_seed(0)
    D = Discriminator(DiscriminatorSpec(resolution=32,
                                        channels={32: 16, 16: 32, 8: 32, 4: 32}))
    with torch.no_grad():
        y = D(x)
    assert _digest(D) == "f8828c554016a2f1"
    assert y.flatten().tolist() == pytest.approx([-0.5314122438430786, -0.34264224767684937],
                                                 abs=1e-5)
    assert D.spec.to_dict()["resolution"] == 32  # square specs still serialize one int


# ---------------------------------------------------------------- G and D

@pytest.mark.parametrize("channels, resolution", [
    (1, (32, 32)), (3, (32, 32)), (4, (32, 32)), (3, (16, 32)), (1, (32, 16)), (4, (32, 64)),
])
def test_generator_and_discriminator_forward_backward(channels, resolution):
    G = Generator(_spec(channels, resolution))
    D = Discriminator(DiscriminatorSpec(resolution=resolution, image_channels=channels,
                                        channels={**D_TINY, 64: 8}))
    x = G(torch.randn(2, G.z_dim))
    assert x.shape == (2, channels, *resolution) and G.image_channels == channels
    logits = D(x)
    assert logits.shape == (2, 1)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all()
               for p in G.synthesis.parameters() if p.requires_grad
               and p is not G.synthesis.stages[0].input_layers[0].conv.weight)
    h, w = resolution
    short = min(h, w)
    assert D.spec.final_size == (4 * h // short, 4 * w // short)
    assert D.final_linear.weight.shape[1] == 8 * D.spec.final_size[0] * D.spec.final_size[1]
    empty = G.synthesis(torch.randn(0, G.num_ws, G.w_dim))
    assert empty.shape == (0, channels, *resolution)


def test_spec_json_accepts_hxw_and_pairs_and_round_trips():
    spec = _spec(1, (16, 32))
    data = json.loads(spec.to_json())
    assert data["image_channels"] == 1 and data["stages"][0]["resolution"] == [4, 8]
    data["stages"][0]["resolution"] = "4x8"
    data["stages"][1]["resolution"] = [16, 32]
    assert GeneratorSpec.from_dict(data) == spec
    d = DiscriminatorSpec(resolution="16x32", channels=D_TINY)
    assert d.resolution == (16, 32) and DiscriminatorSpec.from_json(d.to_json()) == d
    assert DiscriminatorSpec(resolution=[32, 32], channels=D_TINY).resolution == 32
    assert spec.name == "pixelfolder-tiny-32-16x32"


def test_bad_shapes_name_the_divisibility_each_stage_needs():
    with pytest.raises(ConfigError) as info:
        presets.get("pixelfolder-256").with_resolution("100x60")
    assert str(info.value) == (
        "resolution 100x60 (pixelfolder-256): stage 0 folds by 4 and needs H and W divisible "
        "by 64, stage 1 folds by 4 and needs H and W divisible by 16, stage 2 folds by 4 and "
        "needs H and W divisible by 4")
    with pytest.raises(ConfigError, match="the shorter side to be a power of two >= 4"):
        DiscriminatorSpec(resolution=(48, 64))
    with pytest.raises(ConfigError, match=r"resolution 32x36: the discriminator's 3 halvings "
                                          r".* divisible by 8, got 36"):
        DiscriminatorSpec(resolution=(32, 36))
    with pytest.raises(ConfigError, match="image_channels must be 1 \\(grayscale\\), 3"):
        dataclasses.replace(presets.get(TINY), image_channels=2)
    with pytest.raises(ConfigError, match="resolution must be a positive int, \\[height, "
                                          "width\\] or 'HxW', got '32by64'"):
        TrainConfig(resolution="32by64")


def test_training_cli_gives_one_line_for_a_bad_shape(tmp_path, capsys):
    from pixelfold.training import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--resolution", "32x36"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.endswith("error: resolution 32x36: the discriminator's 3 halvings down to a "
                        "final block of shorter side 4 need both sides divisible by 8, got 36")
    with pytest.raises(SystemExit):
        parse_args(["--image-channels", "2"])
    assert "image_channels must be 1 (grayscale), 3 (RGB) or 4 (RGBA), got 2" in \
        capsys.readouterr().err
    with pytest.raises(ConfigError, match="resolution 32x40 \\(pixelfolder-tiny-32\\): stage 0 "
                                          "folds by 4 and needs H and W divisible by 16"):
        GANTrainer(_config(tmp_path, resolution=(32, 40), dataset="digits"))


# ---------------------------------------------------------------- data

def test_images_are_converted_to_the_models_channels_and_cropped_to_h_x_w():
    rgb = Image.new("RGB", (60, 40), (200, 100, 50))
    gray = preprocess_image(rgb, (16, 32), image_channels=1)
    luma = (200 * 299 + 100 * 587 + 50 * 114) / 1000
    assert gray.shape == (1, 16, 32)
    assert float(gray[0, 0, 0]) == pytest.approx(round(luma) / 127.5 - 1, abs=1e-6)
    # transparency is composited over white without an alpha channel, kept with one
    rgba = Image.new("RGBA", (32, 32), (0, 0, 0, 0))
    assert torch.all(preprocess_image(rgba, 8, image_channels=1) == 1)
    assert torch.all(preprocess_image(rgba, 8, image_channels=3) == 1)
    kept = preprocess_image(rgba, 8, image_channels=4)
    assert kept.shape == (4, 8, 8) and torch.all(kept[:3] == -1) and torch.all(kept[3] == -1)
    # an image without alpha gets an opaque one; grayscale is repeated into R, G and B
    opaque = preprocess_image(Image.new("L", (20, 20), 51), 8, image_channels=4)
    assert torch.all(opaque[3] == 1) and torch.all(opaque[:3] == 51 / 127.5 - 1)
    # a 16-bit grayscale image keeps its precision in every mode
    deep = Image.fromarray(np.full((8, 8), 1000, dtype=np.uint16)).convert("I")
    assert preprocess_image(deep, (4, 8), image_channels=1).shape == (1, 4, 8)
    assert preprocess_image(deep, 8, image_channels=4)[3].eq(1).all()
    # a wide image for a tall model: scaled to cover 32x16, the center kept
    stripes = np.zeros((40, 80, 3), np.uint8)
    stripes[:, 40:] = 255
    tall = preprocess_image(Image.fromarray(stripes), (32, 16), resize_filter="nearest")
    assert tall.shape == (3, 32, 16)
    assert torch.all(tall[:, :, :8] == -1) and torch.all(tall[:, :, 8:] == 1)


# ---------------------------------------------------------------- augmentation

@pytest.mark.parametrize("channels", [1, 4])
def test_color_augmentation_leaves_alpha_and_r1_runs_through(channels):
    images = torch.rand(4, channels, 16, 16) * 2 - 1
    gen = torch.Generator().manual_seed(0)
    color = AugmentPipe.from_preset("color", p=1.0)
    out = color(images, generator=gen)
    assert out.shape == images.shape and not torch.equal(out, images)
    diff = DiffAugment("color")(images, gen)
    if channels == 4:
        assert torch.equal(out[:, 3], images[:, 3]) and torch.equal(diff[:, 3], images[:, 3])
    # R1 through the full pipes: the double backward works on 1 and 4 channels
    D = Discriminator(DiscriminatorSpec(resolution=16, image_channels=channels,
                                        channels=D_TINY))
    for pipe in (AugmentPipe.from_preset("bgc", p=1.0), DiffAugment()):
        real = images.clone().requires_grad_(True)
        logits = D(pipe(real, torch.Generator().manual_seed(1)))
        (grad,) = torch.autograd.grad(logits.sum(), real, create_graph=True)
        grad.square().sum().backward()
        assert D.from_rgb.conv.weight.grad is not None
        assert torch.isfinite(D.from_rgb.conv.weight.grad).all()
        D.zero_grad()


# ---------------------------------------------------------------- metrics

def test_metrics_see_grayscale_and_rgba_as_rgb(tmp_path):
    from pixelfold.metrics import compute_ppl
    from pixelfold.metrics.sources import GeneratorSource, RealImages

    gray = torch.tensor([-1.0, 0.0, 1.0]).view(1, 1, 1, 3)
    assert torch.equal(to_rgb(gray), gray.expand(1, 3, 1, 3))
    rgba = torch.tensor([[-1.0], [-1.0], [-1.0], [0.0]]).view(1, 4, 1, 1)
    assert to_rgb(rgba).flatten().tolist() == [0.0, 0.0, 0.0]  # black, half over white
    torch.manual_seed(0)
    G = Generator(_spec(1))
    source = GeneratorSource(G, num_images=3, batch_size=3, device="cpu")
    (batch,) = list(source)
    assert batch.shape == (3, 3, 32, 32) and batch.dtype == torch.uint8
    assert torch.equal(batch[:, 0], batch[:, 1]) and torch.equal(batch[:, 1], batch[:, 2])
    assert source.describe()["rgb_conversion"] == "grayscale repeated into R, G and B"
    folder = tmp_path / "real"
    folder.mkdir()
    for i in range(2):
        Image.new("RGB", (40, 40), (10 * i, 200, 30)).save(folder / f"{i}.png")
    real = RealImages(str(folder), (32, 16), image_channels=1)
    assert real[0].shape == (3, 32, 16) and torch.equal(real[0][0], real[0][2])
    assert "grayscale (L), scaled to cover 32x16" in real.describe()["real_preprocessing"]
    seen = []

    def similarity(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append(a.shape[1])
        return (a.float() - b.float()).square().mean((1, 2, 3))

    report = compute_ppl(Generator(_spec(4)), num_samples=2, batch_size=2,
                         similarity=similarity, device="cpu", progress=False)
    assert seen == [3] and report.to_dict()["protocol"]["ppl"]["image_channels"] == 4


# ---------------------------------------------------------------- training and tools

def _write_color_images(folder, n: int = 8, size: tuple[int, int] = (48, 40)) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        arr = rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(arr).save(folder / f"{i}.png")


@pytest.mark.parametrize("kw, mode, shape", [
    (dict(image_channels=1), "L", (32, 32)),
    (dict(resolution=(16, 32), d_channels=D_TINY), "RGB", (16, 32)),
], ids=["grayscale", "16x32"])
def test_a_short_run_writes_grids_and_models_of_the_shape(tmp_path, kw, mode, shape):
    _write_color_images(tmp_path / "images")
    config = _config(tmp_path, max_steps=2, checkpointing_steps=2, sample_every=2,
                     d_reg_interval=1, augment="ada", augment_p=0.5, **kw)
    out = GANTrainer(config).train()
    with Image.open(tmp_path / "run" / "samples" / "step-0000002.png") as grid:
        assert grid.mode == mode and grid.size == (2 * shape[1], 2 * shape[0])
    G = Generator.from_pretrained(out)
    assert G.resolution == shape and G.image_channels == (1 if mode == "L" else 3)
    assert G(torch.randn(1, G.z_dim)).shape == (1, G.image_channels, *shape)
    # the checkpoint reloads (as fine-tuning reads it) with D of the same shape
    from pixelfold.training.finetune import load_init_weights

    init = load_init_weights(str(tmp_path / "run" / "checkpoints" / "checkpoint-2"))
    assert init.generator.resolution == shape and init.discriminator is not None
    assert init.discriminator.spec.size == shape
    assert init.discriminator.spec.image_channels == G.image_channels
    saved = json.loads((tmp_path / "run" / "train_config.json").read_text())
    assert saved["resolution"] == (list(shape) if shape[0] != shape[1] else shape[0])


@pytest.mark.parametrize("channels, resolution, mode", [
    (1, (32, 32), "L"), (4, (32, 32), "RGBA"), (3, (16, 32), "RGB")])
def test_generate_writes_pngs_of_the_models_mode_and_size(tmp_path, capsys, channels,
                                                          resolution, mode):
    from pixelfold.cli import main

    folder = tmp_path / "model"
    Generator(_spec(channels, resolution)).save_pretrained(folder)
    assert main(["generate", str(folder), "--seeds", "0-1", "--out", str(tmp_path / "o"),
                 "--device", "cpu"]) == 0
    assert main(["generate", str(folder), "--seeds", "0-2", "--grid", "--out",
                 str(tmp_path / "g.png"), "--device", "cpu"]) == 0
    h, w = resolution
    with Image.open(tmp_path / "o" / "seed0001.png") as one, Image.open(tmp_path / "g.png") as g:
        assert (one.mode, one.size) == (mode, (w, h))
        assert (g.mode, g.size) == (mode, (2 * w, 2 * h))
    assert main(["mix", str(folder), "--rows", "0", "--cols", "1", "--out",
                 str(tmp_path / "mix.png"), "--device", "cpu"]) == 0
    with Image.open(tmp_path / "mix.png") as figure:
        assert figure.mode == "RGB"
