"""Comparisons (issue 14): a folder or dataset of generated images in place of a generator,
statistics on either side, KID with few images, the duration estimate, the protocol's resize
and versions, and reports compared only under the same protocol (``eval --compare``).

The feature networks are a stand-in (``tests/metrics_helpers.py``): these tests check which
images reach the network and what is done with its features, not Inception's numbers."""

from __future__ import annotations

import json
import logging
import math

import numpy as np
import pytest
import torch
from PIL import Image

from pixelfold.metrics import (
    GeneratorSource,
    MetricsReport,
    compute_inception_statistics,
    compute_metrics,
    kid_subsets,
    protocol_differences,
    save_statistics,
)
from pixelfold.metrics import fidelity as fidelity_mod
from pixelfold.models import Generator

from .metrics_helpers import install_stand_in

N = 12


@pytest.fixture
def stand_in_networks(monkeypatch, tmp_path):
    return install_stand_in(monkeypatch, tmp_path)


@pytest.fixture(scope="module")
def generator() -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Generator.from_preset("pixelfolder-tiny-32").eval()


@pytest.fixture(scope="module")
def samples(generator, tmp_path_factory):
    """The N images ``compute_metrics(generator, num_gen=N, batch_size=5)`` sees, as PNG files
    (lossless: the same uint8 pixels)."""
    folder = tmp_path_factory.mktemp("samples")
    source = GeneratorSource(generator, num_images=N, batch_size=5, seed=0)
    index = 0
    for batch in source:
        for image in batch:
            Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{index:04d}.png")
            index += 1
    return folder


class UInt8Images(torch.utils.data.Dataset):
    def __init__(self, folder):
        self.files = sorted(folder.glob("*.png"))

    def __len__(self):
        return len(self.files)

    def __getitem__(self, i):
        return torch.from_numpy(np.asarray(Image.open(self.files[i])).copy()).permute(2, 0, 1)


def _kw(weights, **more):
    return dict(num_gen=N, num_real=N, batch_size=5, inception_weights=weights["inception"],
                vgg16_weights=weights["vgg16"], progress=False) | more


# ---- the generated side: a generator, images, statistics --------------------------------------


def test_a_folder_of_generated_images_gives_the_generators_numbers(
        generator, samples, stand_in_networks):
    from_model = compute_metrics(generator, "digits", isc=True, **_kw(stand_in_networks))
    from_folder = compute_metrics(samples, "digits", isc=True, **_kw(stand_in_networks))
    from_dataset = compute_metrics(UInt8Images(samples), "digits", isc=True,
                                   **_kw(stand_in_networks))
    assert set(from_model.metrics()) == {"fid", "kid", "precision", "recall",
                                         "inception_score", "inception_score_std"}
    for report in (from_folder, from_dataset):
        for name, value in from_model.metrics().items():
            assert getattr(report, name) == pytest.approx(value, rel=1e-9, abs=1e-12), name
    p = from_folder.protocol["fidelity"]
    assert p["generated_source"] == str(samples.resolve()) and p["num_generated"] == N
    assert p["resolution"] == 32 and p["generated_resize_filter"] == "box"
    assert "generator" not in p and "truncation_psi" not in p
    assert from_dataset.protocol["fidelity"]["generated_source"] == "UInt8Images"
    # the generator's report says how its images were made
    q = from_model.protocol["fidelity"]
    assert q["noise_mode"] == "random" and q["truncation_psi"] == 1.0
    # at most num_gen of a larger set: a random subset drawn with the seed
    fewer = compute_metrics(samples, "digits", kid=False, prc=False,
                            **_kw(stand_in_networks, num_gen=8))
    assert fewer.protocol["fidelity"]["generated_subset"] == "random 8 of 12 (seed 0)"


def test_two_image_folders_meet_at_the_generated_side(samples, stand_in_networks, tmp_path):
    big = tmp_path / "big"
    big.mkdir()
    for i, file in enumerate(sorted(samples.glob("*.png"))):  # the same images at 64x64
        Image.open(file).resize((64, 64), Image.NEAREST).save(big / f"{i:04d}.png")
    kw = _kw(stand_in_networks, kid=False, prc=False)
    native = compute_metrics(big, samples, **kw)
    assert native.protocol["fidelity"]["resolution"] == 64  # the generated images' own side
    # at 32x32, box-filtered nearest-upsampled images are the originals: FID of a set with
    # itself
    down = compute_metrics(big, samples, resolution=32, **kw)
    assert down.fid == pytest.approx(0.0, abs=1e-8)


def test_statistics_on_both_sides_need_no_network(generator, samples, stand_in_networks,
                                                  tmp_path, monkeypatch):
    kw = _kw(stand_in_networks, kid=False, prc=False)
    images = compute_metrics(samples, "digits", **kw)
    stats_kw = dict(inception_weights=stand_in_networks["inception"], batch_size=5,
                    progress=False)
    gen_stats = compute_inception_statistics(samples, resolution=None, **stats_kw)
    assert gen_stats.metadata["resolution"] == 32
    assert "299x299" in gen_stats.metadata["inception_input"]
    assert gen_stats.metadata["torch"] == torch.__version__
    real_stats = compute_inception_statistics("digits", resolution=32, num_real=N, **stats_kw)
    gen_path = save_statistics(tmp_path / "gen.npz", gen_stats)
    real_path = save_statistics(tmp_path / "real.npz", real_stats)

    def no_weights(*args, **kwargs):
        raise AssertionError("FID between two statistics files needs no network")

    with monkeypatch.context() as patch:
        patch.setattr(fidelity_mod, "resolve_weights", no_weights)
        both = compute_metrics(gen_path, real_path, kid=False, prc=False, progress=False)
    assert both.fid == pytest.approx(images.fid, rel=1e-9)
    p = both.protocol["fidelity"]
    assert p["generated_statistics"] == str(gen_path) and p["num_generated"] == N
    assert len(p["generated_statistics_sha256"]) == 64 and p["resolution"] == 32
    stand_in = stand_in_networks
    # statistics on the generated side only, against real images
    mixed = compute_metrics(gen_path, "digits", **_kw(stand_in, kid=False, prc=False))
    assert mixed.fid == pytest.approx(images.fid, rel=1e-9)
    with pytest.raises(ValueError, match="KID and precision/recall need generated images"):
        compute_metrics(gen_path, "digits", **_kw(stand_in))
    with pytest.raises(ValueError, match="Inception score needs generated images"):
        compute_metrics(gen_path, real_path, kid=False, prc=False, isc=True)
    with pytest.raises(ValueError, match="generated statistics were computed at 32x32"):
        compute_metrics(gen_path, "digits", resolution=64, **_kw(stand_in, kid=False,
                                                                  prc=False))
    gen_stats.metadata.pop("resolution")
    bare = save_statistics(tmp_path / "bare.npz", gen_stats)
    with pytest.raises(ValueError, match="do not record their resolution: pass resolution"):
        compute_metrics(bare, "digits", **_kw(stand_in, kid=False, prc=False))


def test_generated_folders_that_cannot_be_read(stand_in_networks, tmp_path):
    from pixelfold.utils import DataError

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match=r"the generated images .*empty: it is empty; expected "
                                        r"a folder of images"):
        compute_metrics(empty, "digits", **_kw(stand_in_networks))
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "a.txt").write_text("no image\n")
    with pytest.raises(DataError, match=r"it holds 1 files, none an image \(a\.txt\)"):
        compute_metrics(notes, "digits", **_kw(stand_in_networks))
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "a.png").write_text("not a png\n")
    with pytest.raises(DataError, match=r"the generated images \S*fake"):
        compute_metrics(fake, "digits", **_kw(stand_in_networks))
    with pytest.raises(DataError, match="is a file"):
        compute_metrics(fake / "a.png", "digits", **_kw(stand_in_networks))


# ---- KID with few images -----------------------------------------------------------------------


def test_kid_subsets_for_few_images():
    assert kid_subsets(50_000, 50_000) == (100, 1000, None)
    assert kid_subsets(5000, 1000) == (100, 1000, "every subset holds all 1000 real images: "
                                                  "kid_std measures the subsampling of the "
                                                  "generated images only")
    count, size, note = kid_subsets(500, 500)
    assert (count, size) == (1, 500) and "no spread" in note and "e.g. 250" in note
    assert kid_subsets(500, 800)[:2] == (100, 500)
    assert "all 500 generated images" in kid_subsets(500, 800)[2]
    assert kid_subsets(500, 500, 250) == (100, 250, None)
    with pytest.raises(ValueError, match="larger than the 500 generated images"):
        kid_subsets(500, 800, 600)
    with pytest.raises(ValueError, match="at least 2 images"):
        kid_subsets(1, 500)
    with pytest.raises(ValueError, match="kid_subsets must be >= 1"):
        kid_subsets(100, 100, subsets=0)


def test_kid_of_few_images_has_no_spread_unless_subsets_are_smaller(
        samples, stand_in_networks):
    from torch_fidelity.metric_kid import kid_features_to_metric

    whole = compute_metrics(samples, "digits", fid=False, prc=False, **_kw(stand_in_networks))
    assert whole.kid_std is None and "±" not in str(whole)
    assert whole.protocol["fidelity"]["kid"].startswith("1 subset of 12 images")
    # the one value is the unbiased MMD² of all the images
    net = stand_in_networks["built"][-1]
    gen = torch.cat([net(b)[0] for b in torch.utils.data.DataLoader(UInt8Images(samples), 6)])
    from pixelfold.metrics import RealImages

    real = RealImages("digits", 32, max_images=N)
    real_features = net(torch.stack([real[i] for i in range(N)]))[0]
    expected = kid_features_to_metric(gen, real_features, kid_subsets=1, kid_subset_size=N,
                                      verbose=False)["kernel_inception_distance_mean"]
    assert whole.kid == pytest.approx(float(expected), rel=1e-5)  # float32 features, other batches
    halves = compute_metrics(samples, "digits", fid=False, prc=False, kid_subset_size=6,
                             **_kw(stand_in_networks))
    assert halves.kid_std is not None and halves.kid_std > 0
    assert halves.protocol["fidelity"]["kid"].startswith("100 subsets of 6 images")
    assert "kid_note" not in halves.protocol["fidelity"]


# ---- the duration estimate ---------------------------------------------------------------------


def test_a_long_run_is_announced_before_it_starts(samples, stand_in_networks, caplog):
    kw = _kw(stand_in_networks, kid=False, prc=False, batch_size=1)  # 12 + 12 batches
    with caplog.at_level(logging.WARNING, logger="pixelfold.metrics.fidelity"):
        report = compute_metrics(samples, "digits", warn_after=0.0, **kw)
    warnings = [r.getMessage() for r in caplog.records if "will take about" in r.getMessage()]
    assert len(warnings) == 1 and "\n" not in warnings[0]
    assert "on cpu (timed on two batches of 1 images)" in warnings[0]
    assert report.protocol["fidelity"]["estimated_seconds"] > 0
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="pixelfold.metrics.fidelity"):
        compute_metrics(samples, "digits", warn_after=3600.0, **kw)
        quiet = compute_metrics(samples, "digits", warn_after=None, **kw)
        short = compute_metrics(samples, "digits", warn_after=0.0, **kw | {"batch_size": 5})
    assert not [r for r in caplog.records if "will take about" in r.getMessage()]
    assert "estimated_seconds" not in quiet.protocol["fidelity"]
    assert "estimated_seconds" not in short.protocol["fidelity"]  # 6 batches: not timed


def test_the_estimate_adds_up_the_timed_batches(generator, monkeypatch):
    from pixelfold.metrics.fidelity import _estimate_seconds, _Net

    from .metrics_helpers import StandInFeatures

    monkeypatch.setattr(fidelity_mod, "_timed", lambda fn, device: (1.0, fn()))
    monkeypatch.setattr(fidelity_mod.os, "cpu_count", lambda: 1)  # 2 loader workers
    monkeypatch.setattr(fidelity_mod, "_FEW_BATCHES", 2)
    source = GeneratorSource(generator, num_images=100, batch_size=10)

    class Real(torch.utils.data.Dataset):
        def __len__(self):
            return 50

        def __getitem__(self, i):
            return torch.zeros(3, 32, 32, dtype=torch.uint8)

    nets = [_Net("a", ["2048"], StandInFeatures("a", ["2048"]), "", True),
            _Net("b", ["fc2_relu"], StandInFeatures("b", ["fc2_relu"]), "", True)]
    # 10 generated batches x (1 s making + 2 x 1 s networks) + 5 real batches x
    # (1 s loading / 2 workers + 2 x 1 s)
    with source.running():
        assert _estimate_seconds(source, Real(), nets, 10, torch.device("cpu")) == \
            pytest.approx(10 * 3 + 5 * 2.5)
        nets[1].real_features = {"fc2_relu": torch.zeros(50, 16)}  # cached: not extracted
        assert _estimate_seconds(source, Real(), nets, 10, torch.device("cpu")) == \
            pytest.approx(10 * 3 + 5 * 1.5)


# ---- reports: compared only under the same protocol --------------------------------------------


def _report(fid=10.0, **changes):
    protocol = {"generator": "pixelfolder-256", "resolution": 256, "num_generated": 50000,
                "seed": 0, "truncation_psi": 1.0, "noise_mode": "random",
                "quantization": "uint8 by rounding", "real_source": "ffhq", "num_real": 50000,
                "inception_input": "299x299 bilinear", "inception_weights": "/a/inc.pth",
                "inception_weights_sha256": "ab" * 32, "kid": "100 subsets of 1000 images",
                "device": "cuda", "seconds": 300.0, "torch": "2.14.1", "pixelfold": "0.1.0"}
    protocol.update(changes)
    for key in [k for k, v in protocol.items() if v is None]:
        del protocol[key]
    return MetricsReport(fid=fid, kid=0.002, kid_std=0.0001, protocol={"fidelity": protocol})


def test_reports_compare_under_the_same_protocol_only():
    a = _report()
    # what is evaluated, where, how long, and file paths may differ
    b = _report(fid=8.5, generator="cips-256", device="cpu", seconds=9000.0,
                inception_weights="/other/inc.pth")
    table = a.compare(b)
    assert table.splitlines()[0].split() == ["metric", "A", "B", "B", "-", "A"]
    assert "-1.5000" in table and "0.002000 ± 0.000100" in table
    c = _report(noise_mode="const", num_real=10000, pixelfold="0.2.0", inception_input=None)
    assert protocol_differences(a, c) == [
        "fidelity.inception_input ('299x299 bilinear' vs absent)",
        "fidelity.noise_mode ('random' vs 'const')",
        "fidelity.num_real (50000 vs 10000)",
        "fidelity.pixelfold ('0.1.0' vs '0.2.0')",
    ]
    with pytest.raises(ValueError, match=r"^the protocols differ in fidelity\.inception_input "
                                         r".*: numbers computed differently are not "
                                         r"comparable$"):
        a.compare(c)
    allowed = a.compare(c, allow={"noise_mode", "fidelity.num_real", "pixelfold",
                                  "inception_input"})
    assert "FID" in allowed
    # a folder of images against a generator: the generation settings are not compared
    folder = _report(generator=None, seed=None, truncation_psi=None, noise_mode=None,
                     quantization=None, generated_source="/samples",
                     generated_preprocessing="RGB, 256, box")
    assert protocol_differences(a, folder) == []
    with pytest.raises(ValueError, match="share no metric"):
        a.compare(MetricsReport(ppl=100.0, protocol={"ppl": {}}))


def test_report_files_are_read_with_errors_naming_them(tmp_path):
    from pixelfold.utils import DataError, NonFiniteError

    good = tmp_path / "a.json"
    good.write_text(_report().to_json())
    assert MetricsReport.load(good) == _report()
    cases = {"text.json": "not json", "list.json": "[1, 2]",
             "other.json": json.dumps({"metrics": {"accuracy": 0.9}}),
             "strings.json": json.dumps({"metrics": {"fid": "low"}})}
    for name, text in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(DataError, match=rf"{name} is not a metrics report"):
            MetricsReport.load(tmp_path / name)
    (tmp_path / "nan.json").write_text('{"metrics": {"fid": NaN}, "protocol": {}}')
    with pytest.raises(NonFiniteError, match=r"nan\.json: FID came out nan"):
        MetricsReport.load(tmp_path / "nan.json")
    with pytest.raises(FileNotFoundError, match="no report file"):
        MetricsReport.load(tmp_path / "missing.json")


# ---- the `pixelfold eval` command --------------------------------------------------------------


def test_cli_eval_compare(tmp_path, capsys):
    from pixelfold.cli import main

    a, b, c = tmp_path / "a.json", tmp_path / "b.json", tmp_path / "c.json"
    a.write_text(_report().to_json())
    b.write_text(_report(fid=12.25, generator="cips-256").to_json())
    c.write_text(_report(noise_mode="const", truncation_psi=0.7).to_json())
    assert main(["eval", "--compare", str(a), str(b)]) == 0
    out = capsys.readouterr().out
    assert "+2.2500" in out and f"A: {a}" in out
    assert main(["eval", "--compare", str(a), str(c)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("pixelfold eval: error: ")
    assert "fidelity.noise_mode ('random' vs 'const'); fidelity.truncation_psi (1.0 vs 0.7)" \
        in err and "--allow-different" in err
    assert main(["eval", "--compare", str(a), str(c), "--allow-different",
                 "noise_mode,truncation_psi"]) == 0
    capsys.readouterr()
    assert main(["eval", "pixelfolder-tiny-32", "--compare", str(a), str(b)]) == 2
    assert "not MODEL" in capsys.readouterr().err
    assert main(["eval", "--real", "digits"]) == 2
    assert "MODEL is required" in capsys.readouterr().err


def test_cli_eval_of_a_folder_of_images(samples, stand_in_networks, tmp_path, capsys):
    from pixelfold.cli import main

    out = tmp_path / "report.json"
    assert main(["eval", str(samples), "--real", "digits", "--metrics", "fid,kid",
                 "--num-gen", str(N), "--num-real", str(N), "--batch-size", "5",
                 "--inception-weights", stand_in_networks["inception"],
                 "--json-out", str(out)]) == 0
    data = json.loads(out.read_text())
    assert math.isfinite(data["metrics"]["fid"]) and "kid_std" not in data["metrics"]
    assert data["protocol"]["fidelity"]["generated_source"] == str(samples.resolve())
    capsys.readouterr()
    assert main(["eval", str(samples), "--metrics", "ppl"]) == 2
    assert "ppl walks a generator's latent space" in capsys.readouterr().err


def test_cli_eval_help_states_the_noise_default_it_uses(capsys):
    from pixelfold.cli import build_parser

    args = build_parser().parse_args(["eval", "pixelfolder-tiny-32", "--real", "digits"])
    assert args.noise_mode == "random"
    eval_parser = build_parser()._subparsers._group_actions[0].choices["eval"]
    noise = next(a for a in eval_parser._actions if a.dest == "noise_mode")
    assert noise.default == "random" and "(default: random" in noise.help
