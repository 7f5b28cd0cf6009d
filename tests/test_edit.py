"""SeFa edit directions (``pixelfold.tools.edit``) and ``pixelfold edit``, on the tiny presets:
the directions against an independent eigendecomposition, the style layers against the
forward pass, edits and their grid."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from pixelfold.cli import main
from pixelfold.models import Generator
from pixelfold.tools import (
    WLatents,
    edit_figure,
    edit_images,
    edit_ws,
    generate_images,
    parse_strengths,
    resolve_layers,
    save_projected_w,
    seed_latents,
    sefa_directions,
    style_layers,
)

PRESETS = ("pixelfolder-tiny-32", "cips-tiny-32")


@pytest.fixture(scope="module", params=PRESETS)
def G(request) -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Generator.from_preset(request.param).eval()


def test_style_layers_are_the_affine_layers_reading_each_ws_index(G):
    """Change one row of ws at a time: exactly the listed affine layers see a new input."""
    layers = style_layers(G)
    assert sorted(layers) == list(range(G.num_ws))
    modules = {name: m for name, m in G.synthesis.named_modules() if name.endswith("modulation")}
    seen: dict[str, torch.Tensor] = {}
    hooks = [m.register_forward_hook(lambda mod, inp, out, name=name: seen.__setitem__(
        name, inp[0].clone())) for name, m in modules.items()]
    try:
        ws = G.mapping(seed_latents([0], G.z_dim)).detach().clone()
        with torch.no_grad():
            G.synthesis(ws, noise_mode="const")
            base = dict(seen)
            for i in range(G.num_ws):
                moved = ws.clone()
                moved[:, i] += 1.0
                G.synthesis(moved, noise_mode="const")
                changed = {n for n in modules if not torch.equal(seen[n], base[n])}
                listed = {n for n, _ in layers[i]}
                # SeFa reads the convolutions of an index; an index only a ToRGB reads uses it
                convs = {n for n in changed if ".to_rgb." not in n}
                assert listed == (convs or changed), (i, listed, changed)
    finally:
        for h in hooks:
            h.remove()


def test_sefa_directions_are_the_top_eigenvectors(G):
    directions, values = sefa_directions(G)
    k = directions.shape[0]
    assert directions.shape == (k, G.w_dim) and values.shape == (k,)
    torch.testing.assert_close(directions @ directions.T, torch.eye(k), atol=1e-5, rtol=0)
    assert (values[:-1] >= values[1:]).all()
    # an independent computation: SeFa's column-normalized weight, numpy's eigendecomposition
    weight = np.concatenate([m.weight.detach().double().numpy().T
                             for i in range(G.num_ws) for _, m in style_layers(G)[i]], axis=1)
    weight = weight / np.linalg.norm(weight, axis=0, keepdims=True)
    np_values, np_vectors = np.linalg.eigh(weight @ weight.T)
    order = np.argsort(np_values)[::-1][:k]
    np.testing.assert_allclose(values.numpy(), np_values[order], rtol=1e-4, atol=1e-4)
    cosine = np.abs(np.sum(directions.double().numpy() * np_vectors[:, order].T, axis=1))
    assert cosine[:5].min() > 0.999  # the same top directions, up to their sign
    # the top direction moves the normalized styles the most: |A d|² is its eigenvalue
    a = torch.from_numpy(weight.T).float()
    gain = (a @ directions[0]).square().sum()
    torch.testing.assert_close(gain, values[0], rtol=1e-4, atol=1e-4)
    random = torch.nn.functional.normalize(torch.randn(64, G.w_dim), dim=1)
    assert ((a @ random.T).square().sum(0) <= values[0] + 1e-4).all()
    # signs are fixed: the largest component is positive
    peak = directions.gather(1, directions.abs().argmax(1, keepdim=True))
    assert (peak > 0).all()


def test_layers_of_the_stages_split_ws(G):
    stages = [resolve_layers(G, f"stage:{k}") for k in range(len(G.synthesis.stages))]
    assert sum(stages, []) == resolve_layers(G, "all") == list(range(G.num_ws))
    assert resolve_layers(G, [3, 1, 1]) == [1, 3]
    one, _ = sefa_directions(G, "stage:0")
    assert one.shape[1] == G.w_dim
    for bad, match in (("stage:9", "this model has stages"), ("top", "expected 'all'"),
                       ([G.num_ws], r"ws indices must be in"), ([], "no ws index")):
        with pytest.raises(ValueError, match=match):
            resolve_layers(G, bad)


def test_edit_ws_moves_only_the_chosen_rows():
    ws = torch.randn(2, 5, 4)
    direction = torch.tensor([1.0, 0.0, 0.0, 0.0])
    out = edit_ws(ws, direction, [-2.0, 0.0, 3.0], [1, 3])
    assert out.shape == (2, 3, 5, 4)
    assert torch.equal(out[:, 1], ws)
    delta = out[:, 2] - ws
    assert torch.equal(delta[:, [0, 2, 4]], torch.zeros(2, 3, 4))
    torch.testing.assert_close(delta[:, [1, 3]], 3 * direction.expand(2, 2, 4))
    with pytest.raises(ValueError, match="edit_ws needs"):
        edit_ws(ws, torch.zeros(3), [1.0], [0])


@pytest.mark.parametrize("text, values", [
    ("-3:3:7", [-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0]),
    ("0:1:1", [0.0]),
    ("1.5: -1.5 :3", [1.5, 0.0, -1.5]),
    ("-2,0,2.5", [-2.0, 0.0, 2.5]),
    ("4", [4.0]),
    ("1e1:2e1:2", [10.0, 20.0]),
])
def test_parse_strengths(text, values):
    assert parse_strengths(text) == pytest.approx(values)


@pytest.mark.parametrize("text", ["", "3:1", "a:b:3", "1:2:0", "1:2:x", "1,,2", "1:2:3:4",
                                  "nan", "1e999"])
def test_parse_strengths_rejects(text):
    with pytest.raises(ValueError):
        parse_strengths(text)


def test_edit_images_at_strength_zero_are_the_samples(G):
    images = edit_images(G, [0, 1], 0, [-3.0, 0.0, 3.0])
    assert images.shape == (2, 3, 3, *G.resolution)
    torch.testing.assert_close(images[:, 1], generate_images(G, [0, 1]))
    assert not torch.equal(images[:, 0], images[:, 1])
    ws = G.mapping(seed_latents([0, 1], G.z_dim)).detach()
    torch.testing.assert_close(edit_images(G, WLatents(ws), 0, [-3.0, 0.0, 3.0]), images)
    with pytest.raises(ValueError, match="direction 64 is out of range: there are 64"):
        edit_images(G, [0], 64, [1.0])
    figure = edit_figure(images, [-3.0, 0.0, 3.0], seeds=[0, 1], title="direction 0")
    bare = edit_figure(images, [-3.0, 0.0, 3.0], labels=False)
    assert bare.size == (3 * G.resolution[1], 2 * G.resolution[0])
    assert figure.size[0] > bare.size[0] and figure.size[1] > bare.size[1]


def test_cli_edit(capsys, tmp_path):
    out = tmp_path / "edit.png"
    assert main(["edit", PRESETS[0], "--seeds", "0-2", "--direction", "1", "--strength",
                 "-3:3:5", "--layers", "stage:1", "--out", str(out), "--no-labels"]) == 0
    assert "3 latents x 5 strengths along direction 1 (ws 4-8)" in capsys.readouterr().out
    with Image.open(out) as im:
        assert im.size == (5 * 32, 3 * 32)
    G = Generator.from_preset(PRESETS[0])
    npz = save_projected_w(tmp_path / "w.npz", G.mapping(seed_latents([5], G.z_dim)).detach(),
                           names=["mine"])
    assert main(["edit", PRESETS[0], "--seeds", str(npz), "--out", str(out)]) == 0
    with Image.open(out) as im:
        assert im.size[0] > 7 * 32 and im.size[1] > 32  # 7 strengths by default, labeled
    capsys.readouterr()


@pytest.mark.parametrize("argv, message", [
    (["--direction", "64"], "--direction 64 is out of range: --layers all has 64 directions "
                            "(0-63)"),
    (["--direction", "-1"], "--direction must be >= 0, got -1"),
    (["--strength", "3:-3"], "--strength: bad strengths '3:-3'"),
    (["--layers", "stage:5"], "--layers: layers 'stage:5': this model has stages 0-1"),
    (["--layers", "first"], "--layers 'first': expected 'all' or 'stage:K'"),
])
def test_cli_edit_errors(capsys, tmp_path, argv, message):
    out = tmp_path / "e.png"
    assert main(["edit", PRESETS[0], "--seeds", "0", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()
