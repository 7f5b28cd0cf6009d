"""Bad inputs to the metrics: weights files that would run code when unpickled, that are not
tensors or not the network's, NaN weights and statistics, folders without images. Each fails
with one line naming the file, before any heavy work, and nothing in a file is executed.

The weights files are broadcast zeros with the names and shapes of the network (from
``tests/reliability/cases_metrics.py``): verified, never run. Where a network runs, it is the
random Inception-v3 of ``tests/test_metrics.py``'s approach, or a stand-in extractor."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from pixelfold.metrics import (
    FeatureStatistics,
    MetricsReport,
    compute_fd_dinov2,
    compute_metrics,
    compute_ppl,
    load_dinov2,
    load_statistics,
    networks,
)
from pixelfold.metrics import fidelity as fidelity_mod
from pixelfold.metrics import weights as weights_mod
from pixelfold.models import Generator
from pixelfold.utils import DataError, NonFiniteError, PixelfoldError, load_tensor_file
from tests.reliability.cases_metrics import (
    Evil,
    network_zeros,
    write_evil,
    write_torchscript,
    write_zeros,
)

SPECS = {"inception": weights_mod.INCEPTION_WEIGHTS, "vgg16": weights_mod.VGG16_WEIGHTS,
         "lpips": weights_mod.LPIPS_WEIGHTS, "dinov2": weights_mod.DINOV2_WEIGHTS}


@pytest.fixture(scope="module")
def generator() -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Generator.from_preset("pixelfolder-tiny-32").eval()


@pytest.fixture(scope="module")
def zeros(tmp_path_factory) -> dict[str, Path]:
    """Valid-looking weights files (broadcast zeros) of the Inception, VGG16 and LPIPS."""
    folder = tmp_path_factory.mktemp("zeros")
    return {name: write_zeros(folder / f"{name}.pth", name)
            for name in ("inception", "vgg16", "lpips")}


@pytest.fixture(autouse=True)
def _offline_empty_cache(tmp_path, monkeypatch):
    """No weights but the ones a test gives: an empty torch hub cache, no environment
    variables, downloads off."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    for spec in SPECS.values():
        monkeypatch.delenv(spec.env, raising=False)


def _one_line_error(capsys, *names: object) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    assert last.startswith("pixelfold eval: error: "), err
    assert "Traceback" not in err, err
    for name in names:
        assert str(name) in last, (name, last)
    return last


def _eval(*args: str) -> int:
    from pixelfold.cli import main

    return main(["eval", "pixelfolder-tiny-32", "--num-gen", "2", "--num-real", "2",
                 "--batch-size", "2", *map(str, args)])


# ---- the marker-file test: nothing from a weights file runs ----------------------------------

# (network, CLI arguments besides the file, the file's flag)
_CLI = {
    "inception": (["--real", "digits", "--metrics", "fid"], "--inception-weights"),
    "vgg16": (["--real", "digits", "--metrics", "pr"], "--vgg16-weights"),
    "lpips": (["--metrics", "ppl", "--ppl-samples", "2"], "--lpips-weights"),
    "dinov2": (["--real", "digits", "--metrics", "fd-dinov2"], "--dinov2-weights"),
}


def _api(network: str, generator, path, zeros) -> None:
    """The Python call that reads ``path`` as the weights of ``network``."""
    common = dict(num_gen=2, num_real=2, batch_size=2, device="cpu", progress=False)
    if network == "inception":
        compute_metrics(generator, "digits", kid=False, prc=False, inception_weights=path,
                        **common)
    elif network == "vgg16":
        compute_metrics(generator, "digits", fid=False, kid=False, vgg16_weights=path,
                        **common)
    elif network == "lpips":
        compute_ppl(generator, num_samples=2, batch_size=2, lpips_weights=path,
                    vgg16_weights=zeros["vgg16"], device="cpu", progress=False)
    else:
        compute_fd_dinov2(generator, "digits", dinov2_weights=path, **common)


@pytest.fixture(params=["bare", "in-state-dict"])
def evil(request, tmp_path):
    """``(network -> crafted pickle, marker)``: ``{"x": payload}``, or the payload as one tensor
    of an otherwise valid-looking state dict of that network."""
    marker = tmp_path / "code-ran"

    def make(network: str) -> Path:
        inner = None if request.param == "bare" else network
        return write_evil(tmp_path / f"evil-{network}.pth", marker, inner)

    return make, marker


@pytest.mark.parametrize("network", list(_CLI))
def test_cli_never_runs_code_from_weights(network, evil, zeros, capsys):
    make, marker = evil
    path = make(network)
    args, flag = _CLI[network]
    extra = ["--vgg16-weights", zeros["vgg16"]] if network == "lpips" else []
    assert _eval(*args, flag, path, *extra) == 2
    assert not marker.exists()
    line = _one_line_error(capsys, path, "pickled Python objects besides tensors")
    assert SPECS[network].network in line


@pytest.mark.parametrize("network", list(_CLI))
def test_environment_variable_never_runs_code(network, evil, zeros, monkeypatch, capsys):
    make, marker = evil
    path = make(network)
    monkeypatch.setenv(SPECS[network].env, str(path))
    args, _ = _CLI[network]
    extra = ["--vgg16-weights", zeros["vgg16"]] if network == "lpips" else []
    assert _eval(*args, *extra) == 2
    assert not marker.exists()
    _one_line_error(capsys, path, "pickled Python objects")


@pytest.mark.parametrize("network", list(_CLI))
def test_python_api_never_runs_code(network, evil, generator, zeros):
    make, marker = evil
    path = make(network)
    with pytest.raises(ValueError, match="pickled Python objects") as info:
        _api(network, generator, path, zeros)
    assert not marker.exists()
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_vgg16_for_lpips_never_runs_code(evil, generator, zeros):
    make, marker = evil
    path = make("vgg16")
    with pytest.raises(ValueError, match="as the VGG16 weights: it holds pickled"):
        compute_ppl(generator, num_samples=2, lpips_weights=zeros["lpips"], vgg16_weights=path,
                    device="cpu", progress=False)
    assert not marker.exists()


def test_hub_cache_files_go_through_the_same_check(evil, generator, tmp_path):
    # a poisoned file in the torch hub cache, under the name a download would have
    make, marker = evil
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    make("inception").rename(cache / weights_mod.INCEPTION_WEIGHTS.filename)
    with pytest.raises(ValueError, match="pickled Python objects"):
        compute_metrics(generator, "digits", kid=False, prc=False, num_gen=2, num_real=2,
                        progress=False)
    assert not marker.exists()


def test_statistics_with_pickled_objects_never_run_code(tmp_path, capsys, zeros):
    marker = tmp_path / "code-ran"
    np.savez(tmp_path / "stats.npz", mu=np.array([Evil(marker)], dtype=object),
             sigma=np.eye(1))
    assert _eval("--real", tmp_path / "stats.npz", "--metrics", "fid", "--inception-weights",
                 zeros["inception"]) == 2
    assert not marker.exists()
    _one_line_error(capsys, tmp_path / "stats.npz", "array 'mu' cannot be read without "
                    "unpickling")


# ---- weights files that are not the network's tensors ---------------------------------------


def test_text_file_as_weights(tmp_path, capsys):
    path = tmp_path / "inception.pth"
    path.write_text("hello\n")
    assert _eval("--real", "digits", "--metrics", "fid", "--inception-weights", path) == 2
    _one_line_error(capsys, path, "it is a text file")


def test_torchscript_file_as_weights(tmp_path, capsys):
    path = write_torchscript(tmp_path / "inception.pt")
    assert _eval("--real", "digits", "--metrics", "fid", "--inception-weights", path) == 2
    _one_line_error(capsys, path, "is a TorchScript archive (a saved program), not a state dict")


def test_wrong_networks_state_dict(zeros, capsys):
    assert _eval("--real", "digits", "--metrics", "fid", "--inception-weights",
                 zeros["vgg16"]) == 2
    line = _one_line_error(capsys, zeros["vgg16"])
    n = len([k for k in networks.inception_shapes() if not k.endswith("num_batches_tracked")])
    assert f"is not the Inception-v3 weights: it lacks {n} of the {n} tensors " \
           f"(Conv2d_1a_3x3.conv.weight, " in line
    assert "and has 32 others (features.0.weight, " in line


def test_missing_and_extra_tensors_are_counted(tmp_path, generator):
    state = network_zeros("inception")
    del state["fc.weight"], state["fc.bias"]
    state["head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(weights_mod.WeightsError) as info:
        compute_metrics(generator, "digits", kid=False, prc=False, num_gen=2, num_real=2,
                        inception_weights=tmp_path / "w.pth", progress=False)
    n = len([k for k in networks.inception_shapes() if not k.endswith("num_batches_tracked")])
    assert str(info.value) == (f"{tmp_path / 'w.pth'} is not the Inception-v3 weights: it lacks "
                               f"2 of the {n} tensors (fc.weight, fc.bias) and has 1 others "
                               f"(head.weight)")


def test_a_tensor_of_the_wrong_shape(tmp_path, generator, zeros):
    state = network_zeros("lpips")
    state["lin2.model.1.weight"] = torch.zeros(1, 255, 1, 1)
    torch.save(state, tmp_path / "lpips.pth")
    with pytest.raises(weights_mod.WeightsError, match=r"lpips\.pth is not the LPIPS "
                       r"linear-layer weights: tensor lin2\.model\.1\.weight has shape "
                       r"\(1, 255, 1, 1\), the network's is \(1, 256, 1, 1\)"):
        compute_ppl(generator, num_samples=2, lpips_weights=tmp_path / "lpips.pth",
                    vgg16_weights=zeros["vgg16"], device="cpu", progress=False)


def test_nan_weights_name_the_tensor_and_the_file(tmp_path, capsys):
    path = write_zeros(tmp_path / "inception.pth", "inception", nan_in="Mixed_6b.branch1x1.conv"
                       ".weight")
    assert _eval("--real", "digits", "--metrics", "fid", "--inception-weights", path) == 2
    _one_line_error(capsys, path, "hold non-finite values (NaN or infinity): "
                    "Mixed_6b.branch1x1.conv.weight")


def test_infinite_vgg16_weights(tmp_path, generator):
    state = network_zeros("vgg16")
    state["features.28.bias"] = torch.full((512,), math.inf)
    torch.save(state, tmp_path / "vgg.pth")
    with pytest.raises(NonFiniteError, match=r"VGG16 weights in \S*vgg\.pth hold non-finite "
                       r"values \(NaN or infinity\): features\.28\.bias \(512 of 512\)"):
        compute_metrics(generator, "digits", fid=False, kid=False, num_gen=2, num_real=2,
                        vgg16_weights=tmp_path / "vgg.pth", progress=False)


def test_safetensors_weights_are_read(tmp_path):
    from safetensors.torch import save_file

    state = {k: v.contiguous() for k, v in network_zeros("lpips").items()}
    save_file(state, tmp_path / "lpips.safetensors")
    save_file(state, tmp_path / "lpips-named-like-torch.pth")  # recognized by its content
    for name in ("lpips.safetensors", "lpips-named-like-torch.pth"):
        got = networks.read_lpips_weights(tmp_path / name)
        assert got.keys() == state.keys()
        assert all(torch.equal(got[k], state[k]) for k in state)


@pytest.mark.parametrize("content, reason", [
    (b"", "the file is empty"),
    (b"\x00\xff\xfe\x01binary" * 20, "it is neither a PyTorch (.pt, .pth) nor a safetensors"),
    ("truncated", "the file is truncated or damaged"),
])
def test_unreadable_weights_files(tmp_path, content, reason):
    path = tmp_path / "w.pth"
    if content == "truncated":
        torch.save(network_zeros("lpips"), path)
        path.write_bytes(path.read_bytes()[:300])
    else:
        path.write_bytes(content)
    with pytest.raises(ValueError) as info:
        load_tensor_file(path, what="LPIPS weights")
    assert str(info.value).startswith(f"cannot read {path} as the LPIPS weights: {reason}")


def test_missing_weights_error_is_a_pixelfold_error():
    assert issubclass(weights_mod.MissingWeightsError, PixelfoldError)
    assert issubclass(weights_mod.MissingWeightsError, RuntimeError)
    assert issubclass(weights_mod.WeightsError, ValueError)


# ---- DINOv2 through timm ---------------------------------------------------------------------


def test_dinov2_nan_text_and_wrong_network(tmp_path, zeros):
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = timm.create_model("vit_tiny_patch16_224", pretrained=False,
                                  num_classes=0).state_dict()
    state["blocks.3.mlp.fc1.weight"][0, 0] = math.nan
    torch.save(state, tmp_path / "vit.pth")
    kwargs = dict(model_name="vit_tiny_patch16_224", image_size=64)
    with pytest.raises(NonFiniteError, match=r"DINOv2 weights in \S*vit\.pth hold non-finite "
                       r"values \(NaN or infinity\): blocks\.3\.mlp\.fc1\.weight \(1 of "):
        load_dinov2(weights=tmp_path / "vit.pth", **kwargs)
    (tmp_path / "vit.txt").write_text("a ViT\n")
    with pytest.raises(ValueError, match="vit.txt as the DINOv2 weights: it is a text file"):
        load_dinov2(weights=tmp_path / "vit.txt", **kwargs)
    with pytest.raises(weights_mod.WeightsError, match=r"vgg16\.pth is not the DINOv2 "
                       r"\(vit_tiny_patch16_224\) weights: it lacks \d+ of the \d+ tensors "
                       r"\(cls_token, pos_embed, .*\) and has 32 others \(features\.0\.weight"):
        load_dinov2(weights=zeros["vgg16"], **kwargs)


def test_dinov2_loads_strictly_and_keeps_no_copy(tmp_path):
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        state = timm.create_model("vit_tiny_patch16_224", pretrained=False,
                                  num_classes=1000).state_dict()
    full = dict(state)
    del state["blocks.11.norm2.weight"]  # a missing tensor is an error, not a random layer
    torch.save(state, tmp_path / "vit.pth")
    with pytest.raises(weights_mod.WeightsError, match=r"lacks 1 of the \d+ tensors "
                       r"\(blocks\.11\.norm2\.weight\)"):
        load_dinov2("vit_tiny_patch16_224", weights=tmp_path / "vit.pth", image_size=224)
    torch.save(full, tmp_path / "vit.pth")  # a classifier head is dropped (num_classes=0)
    extractor = load_dinov2("vit_tiny_patch16_224", weights=tmp_path / "vit.pth",
                            image_size=224)
    loaded = extractor.model.state_dict()
    assert all(torch.equal(loaded[k], full[k]) for k in loaded)
    assert "state_dict" not in extractor.model.pretrained_cfg


def test_dinov2_offline_hub_file_is_verified(tmp_path, monkeypatch):
    # a Hugging Face cache file goes through the same reading as a given one
    marker = tmp_path / "code-ran"
    path = write_evil(tmp_path / "pytorch_model.bin", marker)
    monkeypatch.setattr("pixelfold.metrics.fd_dinov2._cached_on_hub", lambda repo: str(path))
    with pytest.raises(ValueError, match="pytorch_model.bin as the DINOv2 weights: it holds "
                       "pickled"):
        load_dinov2("vit_tiny_patch16_224", image_size=224)
    assert not marker.exists()


# ---- the networks hold exactly the file's tensors -------------------------------------------


def test_torch_fidelity_networks_hold_the_verified_tensors(tmp_path):
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v.clone()
             for k, v in network_zeros("lpips").items()}
    vgg = {k: torch.randn(v.shape, generator=gen) * 0.01 if k.startswith("features")
           else v for k, v in network_zeros("vgg16").items()}
    torch.save(state, tmp_path / "lpips.pth")
    torch.save(vgg, tmp_path / "vgg.pth")
    lpips = networks.lpips_network(networks.read_lpips_weights(tmp_path / "lpips.pth"),
                                   networks.read_fidelity_weights("vgg16", tmp_path / "vgg.pth"),
                                   resize=None, dtype=None)
    got = lpips.state_dict()
    assert all(torch.equal(got[k], state[k]) for k in state)
    for i, index in ((1, 0), (2, 5), (5, 28)):  # slices of VGG16's features
        assert torch.equal(got[f"net.slice{i}.{index}.weight"], vgg[f"features.{index}.weight"])
    extractor = networks.fidelity_extractor(
        "vgg16", ["fc2_relu"], networks.read_fidelity_weights("vgg16", tmp_path / "vgg.pth"),
        cuda=False, verbose=False)
    got = extractor.model.state_dict()
    assert all(torch.equal(got[k], vgg[k]) for k in got)


def test_skeleton_shapes_are_torch_fidelitys():
    import torchvision
    from torch_fidelity.sample_similarity_lpips import NetLinLayer

    shapes = networks.inception_shapes()
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["fc.weight"] == (1008, 2048)
    assert networks.vgg16_shapes() == {k: tuple(v.shape) for k, v in
                                       torchvision.models.vgg16().state_dict().items()}
    assert networks.lpips_shapes()["lin3.model.1.weight"] == \
        tuple(NetLinLayer(512, use_dropout=True).state_dict()["model.1.weight"].shape)


# ---- statistics files ------------------------------------------------------------------------


def test_nan_statistics_are_refused_naming_the_array(tmp_path, capsys, zeros):
    sigma = np.eye(2048)
    sigma[3, 4] = np.inf
    np.savez(tmp_path / "stats.npz", mu=np.zeros(2048), sigma=sigma)
    assert _eval("--real", tmp_path / "stats.npz", "--metrics", "fid", "--inception-weights",
                 zeros["inception"]) == 2
    _one_line_error(capsys, tmp_path / "stats.npz", "array 'sigma' holds 1 non-finite value "
                    "(NaN or infinity) of 4194304")
    with pytest.raises(NonFiniteError, match="the statistics' mu holds 2 non-finite values"):
        FeatureStatistics(np.array([np.nan, np.nan, 0.0]), np.eye(3))


def test_garbage_statistics_file(tmp_path, capsys, zeros):
    path = tmp_path / "stats.npz"
    path.write_bytes(b"\x00garbage" * 50)
    assert _eval("--real", path, "--metrics", "fid", "--inception-weights",
                 zeros["inception"]) == 2
    _one_line_error(capsys, path, "is not a statistics file: expected a NumPy .npz archive")


@pytest.mark.parametrize("kind, message", [
    ("truncated", "the .npz archive is truncated or damaged"),
    ("npy", "holds a single array"),
    ("strings", "array 'mu' holds <U1 values, not numbers"),
    ("shapes", "statistics need mu of shape (D,) and sigma of shape (D, D)"),
    ("metadata", "its num_images, feature_extractor or metadata cannot be read"),
])
def test_unusable_statistics_files(tmp_path, kind, message):
    path = tmp_path / "stats.npz"
    if kind == "truncated":
        np.savez(path, mu=np.zeros(64), sigma=np.eye(64))
        path.write_bytes(path.read_bytes()[:1000])
    elif kind == "npy":
        with open(path, "wb") as f:
            np.save(f, np.zeros(3))
    elif kind == "strings":
        np.savez(path, mu=np.array(["a", "b"]), sigma=np.eye(2))
    elif kind == "shapes":
        np.savez(path, mu=np.zeros(3), sigma=np.eye(4))
    else:
        np.savez(path, mu=np.zeros(2), sigma=np.eye(2), metadata=np.str_("{not json"))
    with pytest.raises(DataError) as info:
        load_statistics(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "\n" not in str(info.value)


# ---- real images -----------------------------------------------------------------------------


def test_folder_without_images(tmp_path, capsys, zeros):
    folder = tmp_path / "notes"
    folder.mkdir()
    for i in range(4):
        (folder / f"n{i}.txt").write_text("x")
    assert _eval("--real", folder, "--metrics", "fid", "--inception-weights",
                 zeros["inception"]) == 2
    _one_line_error(capsys, folder, "it holds 4 files, none an image (n0.txt, n1.txt, n2.txt, "
                    "...); expected a folder of images")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert _eval("--real", empty, "--metrics", "fid", "--inception-weights",
                 zeros["inception"]) == 2
    _one_line_error(capsys, empty, "it is empty")


def test_folder_of_undecodable_images(tmp_path, capsys, zeros):
    folder = tmp_path / "fake"
    folder.mkdir()
    for i in range(2):
        (folder / f"{i}.jpg").write_bytes(b"not a jpeg")
    assert _eval("--real", folder, "--metrics", "fid", "--inception-weights",
                 zeros["inception"]) == 2
    _one_line_error(capsys, folder, "none of the 2 images of the dataset could be read")


# ---- no NaN result is ever reported ----------------------------------------------------------


def test_reports_refuse_non_finite_values():
    with pytest.raises(NonFiniteError, match="FID came out nan, not a finite number"):
        MetricsReport(fid=math.nan)
    with pytest.raises(NonFiniteError, match="the standard deviation of KID came out inf"):
        MetricsReport(kid=0.1, kid_std=math.inf)
    assert "FID" in str(MetricsReport(fid=1.0))


def test_ppl_of_nan_distances_is_an_error(generator):
    def nan_distance(a, b):
        return torch.full((a.shape[0],), math.nan)

    with pytest.raises(NonFiniteError, match="4 of 4 path lengths are not finite"):
        compute_ppl(generator, num_samples=4, batch_size=2, similarity=nan_distance,
                    device="cpu", progress=False)


# ---- the real-feature cache: safetensors, never torch-fidelity's pickles ---------------------


def _stand_in_class() -> type:
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase

    class StandIn(FeatureExtractorBase):
        """A fast stand-in for torch-fidelity's Inception: colour statistics as features."""

        def __init__(self, layers: list[str]) -> None:
            super().__init__("inception-v3-compat", layers)
            self.calls = 0

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return ("2048",)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            self.calls += 1
            x = x.float()
            return (torch.cat([x.mean((2, 3)), x.std((2, 3)), x.amax((2, 3))], 1),)

    return StandIn


def test_feature_cache_is_safetensors_and_never_unpickled(generator, zeros, tmp_path,
                                                          monkeypatch):
    made = []
    stand_in_class = _stand_in_class()

    def stand_in(name, layers, tensors, *, cuda, verbose):
        assert tensors.keys() == networks.inception_shapes().keys()  # the verified weights
        made.append(stand_in_class(layers))
        return made[-1]

    monkeypatch.setattr(fidelity_mod, "fidelity_extractor", stand_in)
    cache = tmp_path / "cache"
    cache.mkdir()
    marker = tmp_path / "code-ran"
    for name in ("x-inception-v3-compat-features-2048.pt", "cached.pt"):
        write_evil(cache / name, marker)
    kwargs = dict(kid=False, prc=False, num_gen=6, num_real=6, batch_size=3,
                  inception_weights=zeros["inception"], cache_dir=cache, progress=False)
    first = compute_metrics(generator, "digits", **kwargs)
    files = sorted(p.name for p in cache.glob("*.safetensors"))
    assert len(files) == 1 and files[0].endswith("-inception-v3-compat-features.safetensors")
    second = compute_metrics(generator, "digits", **kwargs)
    assert second.fid == first.fid
    assert made[1].calls == 2  # the generated images only: the real features came from cache
    (cache / files[0]).write_text("damaged")  # a broken cache is recomputed, not an error
    assert compute_metrics(generator, "digits", **kwargs).fid == first.fid
    assert not marker.exists()
