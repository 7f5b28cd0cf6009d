"""Class-conditional PixelFolder: labels in G's mapping and D's projection, unconditional
models unchanged, labelled data, training with labels (exact resume), --class in the CLI, and
metrics per class."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from pixelfold.cli import main
from pixelfold.layers import LabelError, MappingNetwork
from pixelfold.models import Discriminator, DiscriminatorSpec, Generator, GeneratorSpec, presets
from pixelfold.training import GANTrainer
from pixelfold.training.data import dataset_classes, load_image_dataset

from .training_helpers import (
    D_CHANNELS,
    _config,
    assert_same_weights,
    reset_accelerate,
    resumed_run,
)

REFERENCE = Path(__file__).parent / "reference" / "unconditional_tiny32.safetensors"


@pytest.fixture(autouse=True)
def _reset_accelerate():
    reset_accelerate()
    yield
    reset_accelerate()


def _digest(module: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in module.state_dict().items():
        h.update(k.encode())
        h.update(v.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _conditional(c_dim: int = 3, names: tuple[str, ...] = ()) -> Generator:
    spec = dataclasses.replace(presets.get("pixelfolder-tiny-32"), c_dim=c_dim,
                               class_names=names)
    return Generator(spec).eval()


def _cond_d(c_dim: int = 3) -> Discriminator:
    return Discriminator(DiscriminatorSpec(resolution=32, channels=D_CHANNELS, c_dim=c_dim))


# ---------------------------------------------------------------- unconditional: unchanged


def test_unconditional_models_are_those_before_labels_existed():
    """State dict keys, initial weights and a fixed-seed output of the tiny preset and its
    discriminator equal the ones main computed before conditioning was added (saved in
    tests/reference/unconditional_tiny32.safetensors by the code of commit 0913d15)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    with safe_open(str(REFERENCE), "pt") as f:
        meta = f.metadata()
    ref = load_file(str(REFERENCE))
    torch.manual_seed(0)
    G = Generator.from_preset("pixelfolder-tiny-32")
    torch.manual_seed(0)
    D = Discriminator(DiscriminatorSpec(resolution=32, channels=D_CHANNELS))
    assert ",".join(G.state_dict()) == meta["generator_keys"]
    assert ",".join(D.state_dict()) == meta["discriminator_keys"]
    assert _digest(G) == meta["generator_state_sha256"]
    assert _digest(D) == meta["discriminator_state_sha256"]
    z = torch.randn(2, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        images = G(z, noise_mode="const")
        logits = D(images)
    torch.testing.assert_close(images, ref["images"], rtol=0, atol=1e-6)
    torch.testing.assert_close(logits, ref["logits"], rtol=0, atol=1e-6)
    # and their configs say nothing of classes
    assert "c_dim" not in G.spec.to_dict() and "class_names" not in G.spec.to_dict()
    assert "c_dim" not in D.spec.to_dict() and "mapping_layers" not in D.spec.to_dict()


# ---------------------------------------------------------------- the models


def test_conditional_generator_takes_indices_or_vectors():
    G = _conditional(3, ("cat", "dog", "owl"))
    keys = set(G.state_dict())
    assert {"mapping.embed.weight", "mapping.embed.bias"} <= keys
    assert G.mapping.layers[0].weight.shape[1] == 64 + 64  # z and the label embedding
    z = torch.randn(3, 64)
    with torch.no_grad():
        by_index = G(z, torch.tensor([0, 2, 1]), noise_mode="const")
        by_vector = G(z, torch.eye(3)[[0, 2, 1]], noise_mode="const")
        one_class = G(z, 2, noise_mode="const")
        other = G(z, torch.tensor([1, 1, 0]), noise_mode="const")
    torch.testing.assert_close(by_index, by_vector)
    torch.testing.assert_close(one_class[1], by_index[1])
    assert not torch.allclose(by_index[0], other[0])  # the label changes the image
    assert (G.class_index("owl"), G.class_index("1"), G.class_index(0)) == (2, 1, 0)
    with pytest.raises(LabelError, match="no class is called 'cow'.*0: cat"):
        G.class_index("cow")
    with pytest.raises(LabelError, match="class 3 is out of range.*3 classes"):
        G.class_index(3)


@pytest.mark.parametrize("c, message", [
    (None, r"class-conditional \(3 classes\): give the labels c"),
    (torch.tensor([0, 3]), "class 3 is out of range: .* has 3 classes"),
    (torch.tensor([-1, 0]), "class -1 is out of range"),
    (torch.tensor([0]), r"class indices c of shape \(2,\), got \(1,\)"),
    (torch.zeros(2, 5), r"label vectors c of shape \(2, 3\), got \(2, 5\)"),
    (torch.tensor([True, False]), "got a bool tensor"),
])
def test_bad_labels_are_one_clear_error(c, message):
    G, D = _conditional(3), _cond_d(3)
    with pytest.raises(LabelError, match=message):
        G(torch.randn(2, 64), c)
    with pytest.raises(LabelError, match=message.replace("mapping network", "discriminator")):
        D(torch.randn(2, 3, 32, 32), c)


def test_unconditional_models_refuse_labels():
    G = Generator.from_preset("pixelfolder-tiny-32")
    with pytest.raises(LabelError, match=r"unconditional \(c_dim 0\) but was given"):
        G(torch.randn(2, 64), torch.tensor([0, 1]))
    with pytest.raises(LabelError, match="unconditional"):
        G.class_index(0)


def test_conditional_discriminator_projects_the_label():
    """logit = (out(features) . cmap(c)) / sqrt(cmap_dim), cmap from the label mapping."""
    D = _cond_d(4)
    assert D.out.weight.shape == (32, 32) and D.mapping.w_avg is None
    images = torch.randn(4, 3, 32, 32)
    c = torch.tensor([0, 1, 2, 3])
    logits = D(images, c)
    assert logits.shape == (4, 1)
    x = D.from_rgb(images)
    for block in D.blocks:
        x = block(x)
    out = D.out(D.final_linear(D.final_conv(D.mbstd(x)).flatten(1)))
    cmap = D.mapping(None, torch.eye(4))
    torch.testing.assert_close(logits, (out * cmap).sum(1, keepdim=True) / 32 ** 0.5)
    assert not torch.allclose(D(images, c), D(images, torch.tensor([1, 2, 3, 0])))
    logits.sum().backward()
    assert all(p.grad is not None for p in D.parameters())


def test_mapping_embeds_normalizes_and_concatenates():
    """As StyleGAN2-ADA: layer 0 reads cat(pixel_norm(z), pixel_norm(embed(one_hot(c))))."""
    from pixelfold.layers import pixel_norm

    m = MappingNetwork(8, 16, 2, c_dim=5)
    z, c = torch.randn(3, 8), torch.tensor([4, 0, 2])
    x = torch.cat([pixel_norm(z), pixel_norm(m.embed(torch.eye(5)[c]))], dim=1)
    for layer in m.layers:
        x = layer(x)
    torch.testing.assert_close(m(z, c), x)


def test_conditional_spec_round_trips_and_checks_class_names(tmp_path):
    G = _conditional(2, ("left", "right"))
    spec = G.spec
    again = GeneratorSpec.from_dict(json.loads(spec.to_json()))
    assert again == spec and again.class_names == ("left", "right")
    folder = G.save_pretrained(tmp_path / "g")
    assert json.loads((folder / "config.json").read_text())["class_names"] == ["left", "right"]
    loaded = Generator.from_pretrained(folder)
    assert loaded.c_dim == 2 and loaded.class_names == ("left", "right")
    with pytest.raises(ValueError, match="class_names has 1 names but c_dim is 2"):
        dataclasses.replace(spec, class_names=("one",))
    with pytest.raises(ValueError, match="class_names names 'a' twice"):
        dataclasses.replace(spec, class_names=("a", "a"))
    with pytest.raises(ValueError, match="c_dim must be a non-negative integer, got -1"):
        dataclasses.replace(spec, c_dim=-1)


# ---------------------------------------------------------------- data


def _class_folders(root: Path, classes=("circle", "square"), per_class: int = 4,
                   size: int = 32) -> Path:
    """An image folder with one subfolder per class: dark circles and dark squares."""
    yy, xx = np.mgrid[:size, :size]
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            r = size // 4 + i
            if k == 0:
                ink = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r
            else:
                ink = (abs(yy - size / 2) < r) & (abs(xx - size / 2) < r)
            arr = np.where(ink, 20, 235).astype(np.uint8)
            Image.fromarray(np.stack([arr] * 3, -1)).save(root / name / f"{i}.png")
    return root


def test_image_folder_classes_are_its_sorted_subfolders(tmp_path):
    import datasets

    ds = load_image_dataset(_class_folders(tmp_path / "shapes", ("square", "circle")))
    info = dataset_classes(ds)
    assert info.column == "label" and info.names == ("circle", "square")
    assert info.counts == (4, 4) and info.num_classes == 2
    ints = datasets.Dataset.from_dict({"image": [Image.new("RGB", (8, 8))] * 3, "y": [0, 2, 2]},
                                      features=datasets.Features({"image": datasets.Image(),
                                                                  "y": datasets.Value("int32")}))
    info = dataset_classes(ints, "y")
    assert info.names == ("0", "1", "2") and info.counts == (1, 0, 2)
    with pytest.raises(ValueError, match="no label column"):
        dataset_classes(ints)
    with pytest.raises(ValueError, match="'nope' is not a column"):
        dataset_classes(ints, "nope")
    with pytest.raises(ValueError, match="not class labels"):
        dataset_classes(ints, "image")


# ---------------------------------------------------------------- training


def test_conditional_training_resumes_exactly(tmp_path):
    """A conditional run on an image folder with a subfolder per class: G and D get
    c_dim and the folder names, samples have a row per class, and 2 steps + a resume to 4
    give the weights of 4 uninterrupted steps."""
    _class_folders(tmp_path / "images")
    common = dict(cond=True, checkpointing_steps=2, d_reg_interval=2, style_mixing_prob=0.5,
                  num_samples=4)
    full = GANTrainer(_config(tmp_path, output_dir=str(tmp_path / "full"), max_steps=4,
                              **common))
    assert full.G.c_dim == 2 and full.D.spec.c_dim == 2
    assert full.G.class_names == ("circle", "square")
    full.train()
    grid = Image.open(sorted((tmp_path / "full" / "samples").glob("*.png"))[-1])
    assert grid.size == (2 * 32, 2 * 32)  # 2 classes x ceil(4 / 2) latents
    saved = Generator.from_pretrained(tmp_path / "full" / "generator_ema")
    assert saved.class_names == ("circle", "square")
    assert_same_weights(full, resumed_run(tmp_path, 2, 4, **common))


def test_conditional_settings_are_checked(tmp_path):
    _class_folders(tmp_path / "images")
    with pytest.raises(ValueError, match="--class-column label needs --cond"):
        _config(tmp_path, class_column="label")
    spec = dataclasses.replace(presets.get("pixelfolder-tiny-32"), c_dim=3)
    path = tmp_path / "g3.json"
    path.write_text(spec.to_json())
    with pytest.raises(ValueError, match=r"has c_dim 3 but --dataset .* has 2 classes"):
        GANTrainer(_config(tmp_path, generator_config=str(path), cond=True))
    with pytest.raises(ValueError, match=r"is class-conditional \(c_dim 3\): pass --cond"):
        GANTrainer(_config(tmp_path, generator_config=str(path)))
    with pytest.raises(ValueError, match="ppl is not computed for class-conditional"):
        _config(tmp_path, cond=True, metrics="fid,ppl")


# ---------------------------------------------------------------- CLI


def test_cli_class_flag(tmp_path, capsys):
    G = _conditional(3, ("a", "b", "c"))
    folder = str(G.save_pretrained(tmp_path / "g"))
    out = tmp_path / "out"
    assert main(["generate", folder, "--seeds", "0-1", "--class", "b", "--out", str(out)]) == 0
    from pixelfold.tools import generate_images

    want = generate_images(G, [0, 1], c=1)
    got = torch.from_numpy(np.asarray(Image.open(out / "seed0001.png"), dtype=np.float32))
    torch.testing.assert_close(got.permute(2, 0, 1) / 127.5 - 1, want[1], atol=1 / 127, rtol=0)
    assert main(["generate", folder, "--seeds", "0-1", "--class", "all", "--grid",
                 "--out", str(tmp_path / "all.png")]) == 0
    assert Image.open(tmp_path / "all.png").size == (2 * 32, 3 * 32)  # a row per class
    assert main(["mix", folder, "--rows", "0", "--cols", "1", "--class", "2",
                 "--out", str(tmp_path / "mix.png")]) == 0
    assert main(["interpolate", folder, "--seeds", "0,1", "--steps", "2", "--class", "0",
                 "--out", str(tmp_path / "walk.png")]) == 0
    capsys.readouterr()
    for argv, message in (
            (["generate", folder, "--seeds", "0", "--out", str(out)],
             r"is class-conditional \(3 classes: a, b, c\): pass --class K"),
            (["generate", folder, "--seeds", "0", "--class", "7", "--out", str(out)],
             "--class 7: class 7 is out of range"),
            (["mix", folder, "--rows", "0", "--cols", "1", "--class", "all",
              "--out", str(tmp_path / "m.png")], "no class is called 'all'"),
            (["generate", "pixelfolder-tiny-32", "--seeds", "0", "--class", "1",
              "--out", str(out)], "--class 1: pixelfolder-tiny-32 is unconditional")):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
        assert pytest.importorskip("re").search(message, err), err


# ---------------------------------------------------------------- metrics


def test_class_metrics_per_class_and_overall(tmp_path, monkeypatch):
    """Per-class FID compares class k's images with the real images of class k; the overall
    value draws classes from the real label distribution (fast stand-in features)."""
    from pixelfold.metrics import ClassConditioned, compute_class_metrics, compute_metrics

    from .metrics_helpers import install_stand_in

    weights = install_stand_in(monkeypatch, tmp_path)
    real = _class_folders(tmp_path / "shapes", per_class=3)
    G = _conditional(2, ("circle", "square"))
    common = dict(num_gen=6, batch_size=6, inception_weights=weights["inception"],
                  progress=False)
    result = compute_class_metrics(G, str(real), **common)
    assert list(result.per_class) == ["circle", "square"]
    data = load_image_dataset(real)
    square = compute_metrics(ClassConditioned(G, 1), data.select([3, 4, 5]), fid=True,
                             kid=False, prc=False, **common)
    assert result.per_class["square"].fid == pytest.approx(square.fid)
    assert result.per_class["square"].protocol["fidelity"]["classes"] == "class 1 ('square')"
    assert result.overall.protocol["fidelity"]["num_real"] == 6
    assert result.mean()["fid"] == pytest.approx(np.mean([r.fid for r in
                                                          result.per_class.values()]))
    assert "mean" in str(result) and "all classes" in str(result)
    # a conditional generator given to the metrics as it is: classes drawn uniformly
    plain = compute_metrics(G, str(real), fid=True, kid=False, prc=False, **common)
    assert plain.protocol["fidelity"]["classes"] == "uniform over 2 classes"
    with pytest.raises(ValueError, match="the real images have 2 classes .* generator has 3"):
        compute_class_metrics(_conditional(3), str(real), **common)
    assert main(["eval", str(G.save_pretrained(tmp_path / "g")), "--real", str(real),
                 "--per-class", "--metrics", "fid", "--num-gen", "6", "--batch-size", "6",
                 "--inception-weights", weights["inception"],
                 "--json-out", str(tmp_path / "r.json")]) == 0
    saved = json.loads((tmp_path / "r.json").read_text())
    assert set(saved["per_class"]) == {"circle", "square"} and "fid" in saved["mean_per_class"]
