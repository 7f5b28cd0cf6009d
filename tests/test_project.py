"""The projector (``pixelfold.tools.project``, ``pixelfold project``), the explicit noise
images of the synthesis network it optimizes, pivotal tuning, and ``.npz`` files of projected
ws wherever seeds are taken. Everything runs offline on the tiny 32x32 preset; the LPIPS
networks are random weights saved to files, as in tests/test_metrics.py."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pixelfold.cli import main
from pixelfold.metrics import lpips_vgg16
from pixelfold.metrics import weights as weights_mod
from pixelfold.models import Generator, load_generator
from pixelfold.tools import (
    WLatents,
    find_targets,
    generate_images,
    image_distance,
    interpolation_frames,
    learning_rate_schedule,
    load_projected_w,
    load_targets,
    lpips_size,
    noise_regularization,
    project,
    save_projected_w,
    seed_latents,
    stage_images,
    target_names,
    tune_generator,
)

PRESET = "pixelfolder-tiny-32"


def _tiny(seed: int = 0) -> Generator:
    """The tiny preset with noise strengths of 0.1 (a fresh one has 0: the noise images would
    have no effect)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        G = Generator.from_preset(PRESET).eval()
    with torch.no_grad():
        for layer in G.synthesis.noise_layers().values():
            layer.weight.fill_(0.1)
    return G


@pytest.fixture(scope="module")
def G() -> Generator:
    return _tiny()


@pytest.fixture(scope="module")
def saved(tmp_path_factory, G) -> str:
    return str(G.save_pretrained(tmp_path_factory.mktemp("model") / "tiny"))


@pytest.fixture(scope="module")
def known(G) -> tuple[torch.Tensor, torch.Tensor]:
    """Targets rendered by ``G`` from the ws of seeds 1 and 2: ``(ws, images)``."""
    with torch.no_grad():
        ws = G.mapping(seed_latents([1, 2], G.z_dim))
        return ws, G.synthesis(ws, noise_mode="const")


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for spec in (weights_mod.LPIPS_WEIGHTS, weights_mod.VGG16_WEIGHTS):
        monkeypatch.delenv(spec.env, raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _write_targets(folder, images: torch.Tensor, names: list[str]) -> None:
    from pixelfold.tools import save_image

    for image, name in zip(images, names, strict=True):
        save_image(image, folder / f"{name}.png")


def _pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


# --- explicit noise images of the synthesis network ------------------------------------------


def test_explicit_noise_equals_the_stored_noise_and_takes_one_image_per_sample(G):
    ws = G.mapping(seed_latents([3, 4], G.z_dim)).detach()
    layers = G.synthesis.noise_layers()
    assert list(layers)[0] == "stages.0.blocks.0.conv0.noise" and len(layers) == 8
    const = G.synthesis(ws, noise_mode="const")
    given = G.synthesis(ws, noise_mode="none",
                        noise={name: m.noise_const for name, m in layers.items()})
    torch.testing.assert_close(given, const, rtol=0, atol=0)
    # one noise image per sample: the batch equals the samples run one by one
    noise = {name: torch.randn(2, 1, *m.noise_const.shape[2:]) for name, m in layers.items()}
    batch = G.synthesis(ws, noise_mode="none", noise=noise)
    for i in range(2):
        one = G.synthesis(ws[i:i + 1], noise_mode="none",
                          noise={k: v[i:i + 1] for k, v in noise.items()})
        torch.testing.assert_close(batch[i:i + 1], one, rtol=1e-5, atol=1e-5)
    # layers left out follow noise_mode
    first = next(iter(layers))
    partial = G.synthesis(ws, noise_mode="const", noise={first: noise[first]})
    full = G.synthesis(ws, noise_mode="none", noise={
        name: noise[first] if name == first else m.noise_const for name, m in layers.items()})
    assert not torch.equal(partial, const)
    torch.testing.assert_close(partial, full, rtol=0, atol=0)


def test_explicit_noise_gets_gradients_and_leaves_the_state_alone(G):
    keys = list(G.state_dict())
    before = {k: v.clone() for k, v in G.state_dict().items()}
    ws = G.mapping(seed_latents([5], G.z_dim)).detach()
    noise = {name: torch.zeros(1, 1, *m.noise_const.shape[2:], requires_grad=True)
             for name, m in G.synthesis.noise_layers().items()}
    G.synthesis(ws, noise_mode="const", noise=noise).square().mean().backward()
    assert all(v.grad is not None and v.grad.abs().sum() > 0 for v in noise.values())
    G.zero_grad(set_to_none=True)
    assert list(G.state_dict()) == keys
    assert all(torch.equal(v, before[k]) for k, v in G.state_dict().items())


@pytest.mark.parametrize("noise, match", [
    ({"stages.0.blocks.0.conv9.noise": torch.zeros(1, 1, 2, 2)}, "not a noise layer"),
    ({"stages.0.blocks.0.conv0.noise": torch.zeros(1, 1, 4, 4)}, r"shape \(2 or 1, 1, 2, 2\)"),
    ({"stages.0.blocks.0.conv0.noise": torch.zeros(3, 1, 2, 2)}, r"got \(3, 1, 2, 2\)"),
    ({"stages.0.blocks.0.conv0.noise": torch.zeros(1, 1, 2, 2, dtype=torch.long)},
     "floating-point"),
])
def test_explicit_noise_errors(G, noise, match):
    ws = G.mapping(seed_latents([1, 2], G.z_dim))
    with pytest.raises(ValueError, match=match):
        G.synthesis(ws, noise=noise)


# --- the pieces of the projector ---------------------------------------------------------------


def test_schedule_is_nvlabs():
    assert learning_rate_schedule(0, 1000) == (0.0, 0.05)
    lr, noise = learning_rate_schedule(500, 1000)
    assert lr == pytest.approx(0.1) and noise == pytest.approx(0.05 * (1 - 0.5 / 0.75) ** 2)
    assert learning_rate_schedule(25, 1000)[0] == pytest.approx(0.05)  # half the ramp-up
    assert learning_rate_schedule(875, 1000)[0] == pytest.approx(0.05)  # half the ramp-down
    assert learning_rate_schedule(750, 1000)[1] == 0.0
    assert learning_rate_schedule(999, 1000)[0] == pytest.approx(
        0.1 * (0.5 - 0.5 * math.cos(0.004 * math.pi)))
    assert learning_rate_schedule(0, 10, lr_rampup_length=0)[0] == pytest.approx(0.1)


def test_noise_regularization_sees_structure_per_target():
    gen = torch.Generator().manual_seed(0)
    white = torch.randn(1, 1, 32, 32, generator=gen)
    smooth = torch.nn.functional.interpolate(torch.randn(1, 1, 4, 4, generator=gen), size=32,
                                             mode="bilinear")
    smooth = (smooth - smooth.mean()) / smooth.std()
    reg = noise_regularization({"a": torch.cat([white, smooth])})
    assert reg.shape == (2,) and reg[0] < 0.01 and reg[1] > 1.0
    # per target: a batch is the targets one by one
    torch.testing.assert_close(reg, torch.cat([noise_regularization([white]),
                                               noise_regularization([smooth])]))
    # a 4x4 image is regularized at its own scale only
    assert noise_regularization([torch.ones(1, 1, 4, 4)]).item() == pytest.approx(2.0)


def test_lpips_size():
    assert lpips_size((32, 32)) == (32, 32)
    assert lpips_size((16, 16)) == (32, 32)
    assert lpips_size((256, 256)) == (256, 256)
    assert lpips_size((1024, 1024)) == (256, 256)
    assert lpips_size((512, 1024)) == (128, 256)


def test_lpips_distance_with_target_features_is_torch_fidelitys(lpips_files):
    lpips = lpips_vgg16(lpips_weights=lpips_files[0], vgg16_weights=lpips_files[1],
                        resize=None, uint8=False, progress=False)
    gen = torch.Generator().manual_seed(0)
    a, b = (torch.rand(3, 3, 32, 32, generator=gen) * 2 - 1 for _ in range(2))
    ours = image_distance(a, b, distance="lpips", lpips=lpips)
    theirs = lpips((a + 1) * 127.5, (b + 1) * 127.5)
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-6)
    assert image_distance(a, a, distance="lpips", lpips=lpips).abs().max() < 1e-6
    torch.testing.assert_close(image_distance(a, b, distance="mse"),
                               (a - b).square().mean((1, 2, 3)))


# --- projection ------------------------------------------------------------------------------


def test_projection_recovers_images_of_known_ws(G, known):
    """The recovery test: images the model made from known ws are projected back far closer
    than random ws come (image MSE, and distance in w), on average over 16 random seeds."""
    ws, targets = known
    flags = [p.requires_grad for p in G.parameters()]
    state = {k: v.clone() for k, v in G.state_dict().items()}
    result = project(G, targets, num_steps=150, distance="mse")
    with torch.no_grad():
        ws_random = G.mapping(seed_latents(range(100, 116), G.z_dim))
        random_images = G.synthesis(ws_random, noise_mode="const")
        random_distance = torch.stack([image_distance(random_images, t.expand_as(random_images),
                                                      distance="mse").mean() for t in targets])
        random_w = (ws_random[:, None] - ws[None]).norm(dim=-1).mean((0, 2))
    assert result.ws.shape == (2, G.num_ws, G.w_dim) and result.ws.dtype == torch.float32
    assert torch.equal(result.ws, result.ws[:, :1].expand_as(result.ws))  # space w: one w
    # measured: MSE 0.118 and 0.078 against 1.77 and 1.71 for random ws (about 6.6% and 4.6%);
    # distance in w 3.9 and 1.9 against 11.3 and 8.8
    assert (result.distance < 0.1 * random_distance).all(), (result.distance, random_distance)
    assert ((result.ws - ws).norm(dim=-1).mean(1) < 0.5 * random_w).all()
    # the images are the model's, with its stored noise: what the commands render from ws
    torch.testing.assert_close(result.images, generate_images(G, WLatents(result.ws)))
    assert set(result.noise) == set(G.synthesis.noise_layers())
    assert all(v.shape[0] == 2 for v in result.noise.values())
    # the generator is left as it was
    assert [p.requires_grad for p in G.parameters()] == flags and not G.training
    assert all(p.grad is None for p in G.parameters())
    assert all(torch.equal(v, state[k]) for k, v in G.state_dict().items())


def test_wplus_projection_with_history_and_fixed_noise(G, known):
    _, targets = known
    steps = []
    result = project(G, targets[:1], space="wplus", num_steps=12, distance="mse",
                     w_avg_samples=500, optimize_noise=False, history_every=5,
                     callback=lambda step, d: steps.append(step))
    assert steps == list(range(12)) and result.history_steps == [5, 10, 12]
    assert result.history.shape == (3, 1, G.num_ws, G.w_dim)
    assert torch.equal(result.history[-1], result.ws)
    assert not torch.equal(result.history[0], result.history[-1])
    assert not torch.equal(result.ws[:, 0], result.ws[:, 1])  # one w per layer
    assert result.noise == {}


def test_projection_with_lpips_from_local_files(G, known, lpips_files):
    _, targets = known
    start = project(G, targets[:1], num_steps=1, distance="lpips", lpips_weights=lpips_files[0],
                    vgg16_weights=lpips_files[1], w_avg_samples=500)
    result = project(G, targets[:1], num_steps=10, distance="lpips",
                     lpips_weights=lpips_files[0], vgg16_weights=lpips_files[1],
                     w_avg_samples=500)
    assert result.distance_kind == "lpips" and result.distance < start.distance


def test_projection_argument_errors(G, known):
    _, targets = known
    for kwargs, match in (
        (dict(num_steps=0), "num_steps must be an integer >= 1"),
        (dict(space="z"), "space must be one of"),
        (dict(distance="l1"), "distance must be one of"),
        (dict(initial_learning_rate=float("nan")), "initial_learning_rate"),
    ):
        with pytest.raises(ValueError, match=match):
            project(G, targets, **kwargs)
    with pytest.raises(ValueError, match=r"must be \(N, 3, 32, 32\)"):
        project(G, targets[:, :, :16], distance="mse")


def test_projection_without_lpips_weights_offline(G, known, no_hub_cache):
    with pytest.raises(weights_mod.MissingWeightsError, match="--lpips-weights"):
        project(G, known[1], num_steps=1)


def test_pivotal_tuning_brings_the_pivots_closer(G, known):
    ws, targets = known
    pivots = G.mapping(seed_latents([7, 8], G.z_dim)).detach()
    state = {k: v.clone() for k, v in G.state_dict().items()}
    tuned = tune_generator(G, pivots, targets, num_steps=15, learning_rate=3e-3,
                           distance="mse")
    with torch.no_grad():
        before = image_distance(G.synthesis(pivots, noise_mode="const"), targets, distance="mse")
        after = image_distance(tuned.synthesis(pivots, noise_mode="const"), targets,
                               distance="mse")
    assert (after < 0.8 * before).all(), (before, after)
    assert all(torch.equal(v, state[k]) for k, v in G.state_dict().items())
    assert not any(p.requires_grad for p in tuned.parameters()) and not tuned.training
    with pytest.raises(ValueError, match="2 pivots for 1 targets"):
        tune_generator(G, pivots, targets[:1], num_steps=1, distance="mse")


# --- targets -------------------------------------------------------------------------------------


def test_targets_are_cropped_and_resized_like_nvlabs(tmp_path):
    wide = np.zeros((20, 40, 3), dtype=np.uint8)
    wide[:, 4:36] = 255  # white around the center square, black at the sides
    Image.fromarray(wide).save(tmp_path / "wide.png")
    Image.fromarray(np.full((8, 8, 4), 0, np.uint8), "RGBA").save(tmp_path / "clear.png")
    Image.fromarray(np.full((32, 32), 128, np.uint8), "L").save(tmp_path / "gray.jpg")
    (tmp_path / "notes.txt").write_text("not an image")
    files = find_targets([tmp_path])
    assert [f.name for f in files] == ["clear.png", "gray.jpg", "wide.png"]
    targets, sizes = load_targets(files, (32, 32))
    assert targets.shape == (3, 3, 32, 32) and sizes == [(8, 8), (32, 32), (40, 20)]
    assert torch.allclose(targets[0], torch.ones(3, 32, 32), atol=0.01)  # over white
    assert targets[2].min() > 0.9  # only the white center is kept
    wide_target, _ = load_targets([tmp_path / "wide.png"], (16, 32))  # a non-square model
    assert wide_target.shape == (1, 3, 16, 32)


def test_target_errors_and_names(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="missing.png: no such file or folder"):
        find_targets([tmp_path / "missing.png"])
    with pytest.raises(ValueError, match="folder without image files"):
        find_targets([tmp_path / "empty"])
    with pytest.raises(ValueError, match="bad.png is not an image Pillow can read"):
        load_targets([tmp_path / "bad.png"], (32, 32))
    assert target_names(["a/x.png", "b/x.jpg", "c/my cat.png", "x-2.png"]) == \
        ["x", "x-2", "my_cat", "x-2-2"]


# --- .npz files of ws and WLatents -------------------------------------------------------------


def test_projected_w_file_round_trip(tmp_path, G):
    ws = G.mapping(seed_latents([1, 2], G.z_dim)).detach()
    path = save_projected_w(tmp_path / "p.npz", ws, names=["cat", "dog"],
                            targets=["in/cat.png", "in/dog.png"], distance=[0.1, 0.2],
                            meta={"model": "tiny", "space": "w"})
    data = np.load(path, allow_pickle=False)
    assert data["w"].dtype == np.float32 and data["w"].shape == (2, G.num_ws, G.w_dim)
    assert list(data["targets"]) == ["in/cat.png", "in/dog.png"]
    meta = json.loads(str(data["meta"]))
    assert meta["format"] == "pixelfold-projected-w" and meta["model"] == "tiny"
    latents = load_projected_w(path)
    assert list(latents) == ["cat", "dog"] and torch.equal(latents.ws, ws)
    assert latents[1:].labels == ("dog",)
    # NVlabs' file: w only, (1, num_ws, w_dim)
    np.savez(tmp_path / "nv.npz", w=ws[:1].numpy())
    assert list(load_projected_w(tmp_path / "nv.npz")) == ["w0000"]


def test_projected_w_file_errors(tmp_path, G):
    (tmp_path / "text.npz").write_text("hello")
    np.save(tmp_path / "array.npy", np.zeros((1, 9, 64)))
    (tmp_path / "array.npz").write_bytes((tmp_path / "array.npy").read_bytes())
    np.savez(tmp_path / "objects.npz", w=np.array([{"a": 1}], dtype=object))
    np.savez(tmp_path / "no_w.npz", z=np.zeros((1, 64)))
    np.savez(tmp_path / "ints.npz", w=np.zeros((1, 9, 64), dtype=np.int64))
    nan = np.zeros((1, 9, 64), dtype=np.float32)
    nan[0, 0, 0] = np.nan
    np.savez(tmp_path / "nan.npz", w=nan)
    for name, match in (("text.npz", r"not a zip archive"),
                        ("array.npz", r"a single \.npy array"),
                        ("objects.npz", "pickled objects, which are never loaded"),
                        ("no_w.npz", r"no 'w' array \(arrays: z\)"),
                        ("ints.npz", "'w' must be floats"),
                        ("nan.npz", "1 NaN or infinite values")):
        with pytest.raises(ValueError, match=match):
            load_projected_w(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_projected_w(tmp_path / "missing.npz")
    other = WLatents(torch.zeros(1, 5, 7), source="other.npz")
    with pytest.raises(ValueError, match=r"other\.npz: latents of shape \(1, 5, 7\) do not fit "
                                         r"the model 'pixelfolder-tiny-32', which takes \(9, "
                                         r"64\)"):
        generate_images(G, other)


def test_wlatents_stand_in_for_seeds(G):
    ws = G.mapping(seed_latents([1, 2, 3], G.z_dim)).detach()
    latents = WLatents(ws, ["a", "b", "c"])
    torch.testing.assert_close(generate_images(G, latents), generate_images(G, [1, 2, 3]))
    truncated = G.mapping(seed_latents([1, 2, 3], G.z_dim), truncation_psi=0.5)
    torch.testing.assert_close(generate_images(G, latents, truncation_psi=0.5),
                               G.synthesis(truncated, noise_mode="const").clamp(-1, 1))
    torch.testing.assert_close(stage_images(G, latents), stage_images(G, [1, 2, 3]))
    # one w per image (N, w_dim) is broadcast to every layer
    torch.testing.assert_close(generate_images(G, WLatents(ws[:, 0])),
                               generate_images(G, [1, 2, 3]))
    frames = interpolation_frames(G, latents, 3, space="w")
    torch.testing.assert_close(frames, interpolation_frames(G, [1, 2, 3], 3, space="w"))
    with pytest.raises(ValueError, match="have no z"):
        interpolation_frames(G, latents, 3, space="z")
    for labels, match in ((["a", "a", "b"], "not all different"), (["a b", "c", "d"],
                                                                   "may only hold"),
                          (["a"], "1 labels for 3 latents")):
        with pytest.raises(ValueError, match=match):
            WLatents(ws, labels)


def test_interpolation_in_w_of_projected_ws_follows_every_layer(G):
    a, b = torch.randn(2, 1, G.num_ws, G.w_dim).unbind(0)
    frames = interpolation_frames(G, WLatents(torch.cat([a, b])), 3, space="w")
    middle = G.synthesis((a + b) / 2, noise_mode="const").clamp(-1, 1)
    torch.testing.assert_close(frames[1:2], middle, rtol=1e-4, atol=1e-4)


# --- the command line ----------------------------------------------------------------------------


def test_cli_project_writes_everything_and_generate_reproduces_it(capsys, tmp_path, G, saved,
                                                                  known):
    _write_targets(tmp_path, known[1], ["one", "two"])
    out = tmp_path / "out"
    code = main(["project", saved, "--target", str(tmp_path / "one.png"), "--target",
                 str(tmp_path / "two.png"), "--out", str(out), "--distance", "mse",
                 "--num-steps", "20", "--w-avg-samples", "500", "--save-video", "gif",
                 "--video-every", "10", "--tune-steps", "2", "--batch-size", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "one: mse distance" in captured.out and "note:" not in captured.err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["generator_tuned", "projected_w.npz"] + [
        f"{n}.{kind}" for n in ("one", "two")
        for kind in ("target.png", "proj.png", "compare.png", "tuned.png", "proj.gif")])
    with Image.open(out / "one.compare.png") as im:
        assert im.size == (3 * 32, 32)  # target | projection | tuned
    with Image.open(out / "one.proj.gif") as im:
        assert im.n_frames == 2 and im.size == (64, 32)
    data = np.load(out / "projected_w.npz", allow_pickle=False)
    assert data["w"].shape == (2, G.num_ws, G.w_dim) and list(data["names"]) == ["one", "two"]
    meta = json.loads(str(data["meta"]))
    assert meta["space"] == "w" and meta["num_steps"] == 20 and meta["distance"] == "mse"
    assert meta["model"] == saved and meta["tuned_model"] == "generator_tuned"
    assert load_generator(out / "generator_tuned").num_ws == G.num_ws
    # the file is accepted wherever seeds are; generate renders the projection again
    assert main(["generate", saved, "--seeds", str(out / "projected_w.npz"), "--out",
                 str(tmp_path / "again")]) == 0
    assert np.array_equal(_pixels(tmp_path / "again" / "one.png"), _pixels(out / "one.proj.png"))
    for argv in (["mix", saved, "--rows", str(out / "projected_w.npz"), "--cols", "3,4"],
                 ["stages", saved, "--seeds", str(out / "projected_w.npz")],
                 ["interpolate", saved, "--seeds", str(out / "projected_w.npz")],
                 ["edit", saved, "--seeds", str(out / "projected_w.npz")]):
        assert main(argv + ["--out", str(tmp_path / f"{argv[0]}.png")]) == 0, argv
    capsys.readouterr()


def test_cli_project_with_lpips_resizes_other_sizes(capsys, tmp_path, lpips_files):
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (30, 50, 3), np.uint8)).save(
        tmp_path / "photo.jpg")
    out = tmp_path / "out"
    code = main(["project", PRESET, "--target", str(tmp_path), "--out", str(out), "--num-steps",
                 "2", "--w-avg-samples", "100", "--space", "wplus", "--lpips-weights",
                 lpips_files[0], "--vgg16-weights", lpips_files[1]])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "photo.jpg is 50x30: center-cropped to the model's aspect ratio and resized to " \
           "32x32 (Lanczos)" in captured.err
    assert "photo: lpips distance" in captured.out
    data = np.load(out / "projected_w.npz", allow_pickle=False)
    assert not np.array_equal(data["w"][0, 0], data["w"][0, 1])  # wplus


def test_cli_project_errors_write_nothing(capsys, tmp_path, no_hub_cache, known):
    _write_targets(tmp_path, known[1][:1], ["t"])
    out = tmp_path / "out"
    base = ["project", PRESET, "--target", str(tmp_path / "t.png"), "--out", str(out)]
    for extra, match in (
        ([], "--lpips-weights PATH"),  # offline without LPIPS weights: before any work
        (["--num-steps", "0"], "--num-steps must be >= 1, got 0"),
        (["--tune-steps", "-1"], "--tune-steps must be >= 0"),
        (["--lr", "0"], "--lr must be a finite number > 0"),
    ):
        assert main(base + extra) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and match in err and "Traceback" not in err, err
    assert main(["project", PRESET, "--target", str(tmp_path / "nope.png"), "--out", str(out),
                 "--distance", "mse"]) == 2
    assert "--target " in capsys.readouterr().err
    assert not out.exists()
