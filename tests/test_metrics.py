"""Image-quality metrics, offline on the CPU: randomly initialized Inception, VGG16, LPIPS and
ViT networks saved to temporary files stand in for the pretrained ones, so every code path
(local weights files, torch-fidelity calls, statistics files) runs without a download. The math
(Fréchet distance, KID, PPL trimming) is checked against independent computations."""

from __future__ import annotations

import json
import math
import urllib.error
from unittest import mock

import numpy as np
import pytest
import scipy.linalg
import torch
from PIL import Image
from torch import nn

from pixelfold.metrics import (
    FeatureStatistics,
    GeneratorSource,
    MetricsReport,
    MissingWeightsError,
    RealImages,
    compute_dinov2_statistics,
    compute_fd_dinov2,
    compute_inception_statistics,
    compute_metrics,
    compute_ppl,
    feature_statistics,
    frechet_distance,
    load_dinov2,
    load_statistics,
    resolve_weights,
    save_statistics,
    to_uint8,
    trim_percentiles,
)
from pixelfold.metrics import weights as weights_mod
from pixelfold.metrics.statistics import StatisticsAccumulator
from pixelfold.models import Generator

N_IMAGES = 12  # generated and real images per fidelity run: tiny, so that the file stays fast


# ---- fixtures: small random networks saved as "pretrained" files -----------------------------


@pytest.fixture(scope="module")
def generator() -> Generator:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        return Generator.from_preset("pixelfolder-tiny-32").eval()


@pytest.fixture(scope="module")
def inception_file(tmp_path_factory) -> str:
    """torch-fidelity's Inception-v3 with random weights; batch norms calibrated on a few
    random images so that the features neither vanish nor explode."""
    import torch_fidelity.feature_extractor_inceptionv3 as inception

    with mock.patch.object(inception, "load_state_dict_from_url", lambda *a, **k: {}), \
            mock.patch.object(inception.FeatureExtractorInceptionV3, "load_state_dict",
                              lambda self, *a, **k: None), torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = inception.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
        for module in net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # cumulative average over the calibration batch
        net.train()
        with torch.no_grad():
            net(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8))
    path = tmp_path_factory.mktemp("weights") / "inception-random.pth"
    torch.save(net.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def vit_file(tmp_path_factory) -> str:
    import timm

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = timm.create_model("vit_tiny_patch16_224", pretrained=False, num_classes=0)
    path = tmp_path_factory.mktemp("vit") / "vit-tiny-random.pth"
    torch.save(model.state_dict(), path)
    return str(path)


@pytest.fixture(scope="module")
def fidelity_report(generator, inception_file) -> MetricsReport:
    return compute_metrics(generator, "digits", isc=True, num_gen=N_IMAGES, num_real=N_IMAGES,
                           batch_size=10, inception_weights=inception_file,
                           prc_feature_extractor="inception-v3-compat", progress=False)


@pytest.fixture
def no_hub_cache(tmp_path, monkeypatch):
    """An empty torch hub cache and no weights environment variables."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    for spec in (weights_mod.INCEPTION_WEIGHTS, weights_mod.VGG16_WEIGHTS,
                 weights_mod.LPIPS_WEIGHTS, weights_mod.DINOV2_WEIGHTS):
        monkeypatch.delenv(spec.env, raising=False)


# ---- quantization and sources ------------------------------------------------------------------


def test_to_uint8_rounds():
    x = torch.tensor([-1.0, 0.0, 1.0, -3.0, 3.0])
    assert to_uint8(x).tolist() == [0, 128, 255, 0, 255]  # 0 -> 127.5 -> 128 (half to even)
    # rounding, not truncation: 0.6 of a level above -1 is level 1, 0.4 is level 0
    step = 1 / 127.5
    assert to_uint8(torch.tensor([-1 + 0.4 * step, -1 + 0.6 * step])).tolist() == [0, 1]
    levels = torch.arange(256)
    assert torch.equal(to_uint8(levels.float() / 127.5 - 1).long(), levels)
    assert to_uint8(torch.zeros(2, 3, 4, 4)).dtype == torch.uint8


def test_generator_source_matches_torch_fidelity_latents(generator):
    from torch_fidelity.noise import random_normal

    source = GeneratorSource(generator, num_images=7, batch_size=3, seed=5, device="cpu")
    rng = np.random.RandomState(5)
    expected = [random_normal(rng, (n, generator.z_dim)) for n in (3, 3, 1)]
    for got, want in zip(source.latents(), expected, strict=True):
        assert torch.equal(got, want)


def test_generator_source_is_reproducible_and_restores_state(generator):
    generator.train()
    source = GeneratorSource(generator, num_images=5, batch_size=2, seed=1, device="cpu")
    first = torch.cat(list(source))
    second = torch.cat(list(source))
    assert first.dtype == torch.uint8 and first.shape == (5, 3, 32, 32)
    assert torch.equal(first, second)  # random noise too, reseeded on every pass
    assert generator.training
    generator.eval()


def test_real_images_are_uint8_and_subsampled():
    real = RealImages("digits", 16, max_images=10, seed=3)
    assert len(real) == 10 and real.num_available == 1797
    image = real[0]
    assert image.dtype == torch.uint8 and image.shape == (3, 16, 16)
    assert real.describe()["real_subset"] == "random 10 of 1797 (seed 3)"
    assert RealImages("digits", 16, max_images=10, seed=3).indices == real.indices


class _Uint8Images(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 30

    def __getitem__(self, i: int) -> torch.Tensor:
        return torch.full((3, 8, 8), i, dtype=torch.uint8)


def test_foreign_datasets_and_statistics_paths_are_recognized(tmp_path):
    from pixelfold.metrics.sources import describe_real, resolve_real

    capped = resolve_real(_Uint8Images(), 8, max_images=10, seed=0)
    assert len(capped) == 10
    assert describe_real(capped) == {"real_source": "_Uint8Images", "num_real": 10,
                                     "real_subset": "random 10 of 30 (seed 0)"}
    assert isinstance(resolve_real(_Uint8Images(), 8, max_images=None), _Uint8Images)
    stats = FeatureStatistics(np.zeros(2), np.eye(2))
    assert resolve_real(stats, 8, max_images=1) is stats
    path = save_statistics(tmp_path / "s.npz", stats)
    assert isinstance(resolve_real(str(path), 8, max_images=1), FeatureStatistics)


# ---- Fréchet distance and statistics -----------------------------------------------------------


def _random_spd(rng: np.random.Generator, d: int) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T + 0.1 * np.eye(d)


def test_frechet_distance_of_a_set_with_itself_is_zero():
    features = np.random.default_rng(0).standard_normal((300, 16)) * 3 + 1
    mu, sigma = feature_statistics(features)
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_frechet_distance_matches_closed_form():
    rng = np.random.default_rng(1)
    d = 6
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    s1, s2 = _random_spd(rng, d), _random_spd(rng, d)
    # independent: ||mu1 - mu2||² + tr(S1 + S2 - 2 (S1 S2)^½) with scipy's sqrtm ...
    covmean = scipy.linalg.sqrtm(s1 @ s2).real
    expected = np.sum((mu1 - mu2) ** 2) + np.trace(s1 + s2 - 2 * covmean)
    # ... and with the eigenvalues of the non-symmetric S1 S2
    eig = np.linalg.eigvals(s1 @ s2)
    expected_eig = np.sum((mu1 - mu2) ** 2) + np.trace(s1) + np.trace(s2) \
        - 2 * np.sqrt(eig.astype(complex)).real.sum()
    got = frechet_distance(mu1, s1, mu2, s2)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got == pytest.approx(expected_eig, rel=1e-9)
    # symmetric, zero on identical Gaussians
    assert frechet_distance(mu2, s2, mu1, s1) == pytest.approx(got, rel=1e-9)
    assert abs(frechet_distance(mu1, s1, mu1, s1)) < 1e-9


def test_frechet_distance_of_rank_deficient_covariances():
    # fewer samples than dimensions, as with small test sets: rank-deficient covariances
    rng = np.random.default_rng(7)
    a = feature_statistics(rng.standard_normal((10, 64)))
    b = feature_statistics(rng.standard_normal((15, 64)) + 0.5)
    eig = np.linalg.eigvals(a[1] @ b[1])
    expected = np.sum((a[0] - b[0]) ** 2) + np.trace(a[1]) + np.trace(b[1]) \
        - 2 * np.sqrt(eig.astype(complex)).real.sum()
    assert frechet_distance(*a, *b) == pytest.approx(expected, rel=1e-6)
    assert abs(frechet_distance(*a, *a)) < 1e-9 * np.trace(a[1])


def test_frechet_distance_agrees_with_torch_fidelitys_fid():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(6)
    a = feature_statistics(rng.standard_normal((200, 32)))
    b = feature_statistics(rng.standard_normal((200, 32)) * 1.5 + 0.2)
    theirs = fid_statistics_to_metric({"mu": a[0], "sigma": a[1]}, {"mu": b[0], "sigma": b[1]},
                                      verbose=False)["frechet_inception_distance"]
    assert frechet_distance(*a, *b) == pytest.approx(theirs, rel=1e-9)


def test_frechet_distance_of_samples_approaches_the_population_value():
    rng = np.random.default_rng(2)
    mu1, mu2 = np.array([0.0, 1.0, -1.0]), np.array([0.5, 0.0, -1.5])
    s1 = np.diag([1.0, 2.0, 0.5])
    s2 = np.array([[1.5, 0.3, 0.0], [0.3, 1.0, 0.2], [0.0, 0.2, 0.8]])
    population = np.sum((mu1 - mu2) ** 2) + np.trace(
        s1 + s2 - 2 * scipy.linalg.sqrtm(s1 @ s2).real)
    x1 = rng.multivariate_normal(mu1, s1, size=100_000)
    x2 = rng.multivariate_normal(mu2, s2, size=100_000)
    sample = frechet_distance(*feature_statistics(x1), *feature_statistics(x2))
    assert sample == pytest.approx(population, abs=0.03)


def test_statistics_accumulator_matches_numpy():
    x = torch.randn(50, 8, dtype=torch.float64) * 2 + 3
    acc = StatisticsAccumulator()
    for chunk in x.split(7):
        acc.add(chunk)
    mu, sigma = acc.mu_sigma()
    np.testing.assert_allclose(mu, x.mean(0).numpy(), rtol=1e-12)
    np.testing.assert_allclose(sigma, np.cov(x.numpy(), rowvar=False), rtol=1e-10)


def test_statistics_file_round_trip(tmp_path):
    mu, sigma = feature_statistics(np.random.default_rng(3).standard_normal((40, 5)))
    stats = FeatureStatistics(mu, sigma, num_images=40, feature_extractor="x/5",
                              metadata={"resolution": 32})
    path = save_statistics(tmp_path / "stats", stats)
    assert path.suffix == ".npz"
    loaded = load_statistics(path)
    np.testing.assert_array_equal(loaded.mu, mu)
    np.testing.assert_array_equal(loaded.sigma, sigma)
    assert (loaded.num_images, loaded.feature_extractor, loaded.metadata) == (40, "x/5",
                                                                              {"resolution": 32})
    # a bare mu/sigma file, as other FID tools write
    np.savez(tmp_path / "other.npz", mu=mu, sigma=sigma)
    assert load_statistics(tmp_path / "other.npz").feature_extractor == "unknown"
    np.savez(tmp_path / "bad.npz", mean=mu)
    with pytest.raises(ValueError, match="lacks"):
        load_statistics(tmp_path / "bad.npz")


# ---- KID: torch-fidelity's estimator against an independent one --------------------------------


def _mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² with the cubic polynomial kernel k(a, b) = (a.b / d + 1)^3."""
    d, m = x.shape[1], x.shape[0]
    kxx, kyy, kxy = ((x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3)
    off = lambda k: (k.sum() - np.trace(k)) / (m * (m - 1))
    return float(off(kxx) + off(kyy) - 2 * kxy.mean())


def test_kid_matches_an_independent_mmd_and_is_unbiased():
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 8))
    y = rng.standard_normal((40, 8)) + 0.3
    # one subset of all the samples: a permutation, which MMD does not see
    kid = kid_features_to_metric(torch.from_numpy(x), torch.from_numpy(y), kid_subsets=1,
                                 kid_subset_size=40, verbose=False)
    assert kid["kernel_inception_distance_mean"] == pytest.approx(_mmd2_unbiased(x, y),
                                                                  rel=1e-9)
    # same distribution: the unbiased estimator averages to 0 (the biased one would not)
    values = np.array([_mmd2_unbiased(rng.standard_normal((30, 8)),
                                      rng.standard_normal((30, 8))) for _ in range(300)])
    assert abs(values.mean()) < 3 * values.std() / np.sqrt(len(values))
    tf = [kid_features_to_metric(torch.from_numpy(rng.standard_normal((30, 8))),
                                 torch.from_numpy(rng.standard_normal((30, 8))),
                                 kid_subsets=1, kid_subset_size=30,
                                 verbose=False)["kernel_inception_distance_mean"]
          for _ in range(300)]
    assert abs(np.mean(tf)) < 3 * np.std(tf) / np.sqrt(len(tf))


# ---- FID / KID / precision-recall / IS through torch-fidelity ----------------------------------


def test_compute_metrics_reports_numbers_and_protocol(fidelity_report, inception_file):
    r = fidelity_report
    assert math.isfinite(r.fid) and r.fid >= 0
    # 12 + 12 images: every KID subset would be all of them, so one value and no spread
    assert math.isfinite(r.kid) and r.kid_std is None
    assert 0 <= r.precision <= 1 and 0 <= r.recall <= 1
    assert r.inception_score >= 1
    assert r.ppl is None and r.fd_dinov2 is None
    p = r.protocol["fidelity"]
    assert p["num_generated"] == N_IMAGES and p["num_real"] == N_IMAGES
    assert p["quantization"].startswith("uint8 by rounding")
    assert p["real_resize_filter"] == "box"
    assert p["real_source"].startswith("digits")
    assert p["inception_weights"] == inception_file
    assert p["inception_weights_sha256"] == weights_mod.file_sha256(inception_file)
    assert "inception-v3-compat" in p["feature_extractor"]
    assert p["kid"].startswith(f"1 subset of {N_IMAGES} images")
    assert "no spread" in p["kid_note"]
    assert "299x299" in p["inception_input"] and "bilinear" in p["inception_input"]
    assert p["torch"] == torch.__version__ and p["pixelfold"] and p["torch_fidelity"]
    data = json.loads(r.to_json())
    assert data["metrics"]["fid"] == r.fid
    assert MetricsReport.from_dict(data).fid == r.fid
    text = str(r)
    for label in ("FID", "KID", "precision", "recall", "IS", "inception_weights"):
        assert label in text


def test_fid_against_saved_statistics_equals_fid_against_images(
        generator, inception_file, fidelity_report, tmp_path):
    stats = compute_inception_statistics("digits", resolution=32, num_real=N_IMAGES,
                                         batch_size=10, inception_weights=inception_file,
                                         progress=False)
    assert stats.feature_extractor == "inception-v3-compat/2048" and stats.dim == 2048
    path = save_statistics(tmp_path / "digits32.npz", stats)
    report = compute_metrics(generator, path, kid=False, prc=False, num_gen=N_IMAGES,
                             batch_size=10, inception_weights=inception_file, progress=False)
    # same images, same features, same computation
    assert report.fid == pytest.approx(fidelity_report.fid, rel=1e-6)
    assert report.protocol["fidelity"]["real_statistics"] == str(path)
    with pytest.raises(ValueError, match="KID and precision/recall need real images"):
        compute_metrics(generator, path, inception_weights=inception_file, progress=False)
    stats.metadata["resolution"] = 64
    with pytest.raises(ValueError, match="64"):
        compute_metrics(generator, stats, kid=False, prc=False, num_gen=4,
                        inception_weights=inception_file, progress=False)


def test_compute_metrics_argument_errors(generator):
    with pytest.raises(ValueError, match="nothing to compute"):
        compute_metrics(generator, "digits", fid=False, kid=False, prc=False)
    with pytest.raises(ValueError, match="real"):
        compute_metrics(generator, None)
    with pytest.raises(ValueError, match="prc_feature_extractor"):
        compute_metrics(generator, "digits", prc_feature_extractor="clip")


# ---- weights: local files, environment variables, offline errors -------------------------------


def test_weights_urls_are_torch_fidelitys_and_torchvisions():
    import torchvision
    from torch_fidelity.feature_extractor_inceptionv3 import URL_INCEPTION_V3
    from torch_fidelity.sample_similarity_lpips import URL_VGG16_LPIPS

    assert weights_mod.INCEPTION_WEIGHTS.url == URL_INCEPTION_V3
    assert weights_mod.LPIPS_WEIGHTS.url == URL_VGG16_LPIPS
    assert weights_mod.VGG16_WEIGHTS.url == torchvision.models.VGG16_Weights.IMAGENET1K_V1.url


def test_weights_from_argument_or_environment(no_hub_cache, monkeypatch, tmp_path):
    spec = weights_mod.INCEPTION_WEIGHTS
    file = tmp_path / "w.pth"
    file.write_bytes(b"x")
    assert resolve_weights(spec, file) == file
    monkeypatch.setenv(spec.env, str(file))
    assert resolve_weights(spec) == file
    monkeypatch.setenv(spec.env, str(tmp_path / "missing.pth"))
    with pytest.raises(FileNotFoundError, match=spec.env):
        resolve_weights(spec)


def _assert_names_both_ways(message: str, spec) -> None:
    assert spec.flag in message and spec.env in message and f"{spec.argument}=" in message


def test_offline_without_inception_weights_says_how_to_give_them(
        generator, no_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as info:
        compute_metrics(generator, "digits", num_gen=4, num_real=4, progress=False)
    _assert_names_both_ways(str(info.value), weights_mod.INCEPTION_WEIGHTS)
    assert "HF_HUB_OFFLINE" in str(info.value)


def test_failed_download_says_how_to_give_weights(no_hub_cache, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    for spec in (weights_mod.INCEPTION_WEIGHTS, weights_mod.VGG16_WEIGHTS,
                 weights_mod.LPIPS_WEIGHTS):
        with pytest.raises(MissingWeightsError) as info:
            resolve_weights(spec, progress=False)
        _assert_names_both_ways(str(info.value), spec)
        assert "Name or service not known" in str(info.value)


def test_offline_without_lpips_or_dinov2_weights(generator, no_hub_cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(MissingWeightsError) as info:
        compute_ppl(generator, num_samples=2, progress=False)
    _assert_names_both_ways(str(info.value), weights_mod.LPIPS_WEIGHTS)
    monkeypatch.setattr("pixelfold.metrics.fd_dinov2._cached_on_hub", lambda repo: None)
    with pytest.raises(MissingWeightsError) as info:
        load_dinov2()
    _assert_names_both_ways(str(info.value), weights_mod.DINOV2_WEIGHTS)


# ---- PPL ---------------------------------------------------------------------------------------


def test_trim_percentiles_matches_sorting():
    v = np.random.default_rng(5).standard_normal(1000)
    s = np.sort(v)
    lo, hi = s[math.floor(0.01 * 999)], s[math.ceil(0.99 * 999)]
    np.testing.assert_array_equal(trim_percentiles(v), v[(v >= lo) & (v <= hi)])
    assert trim_percentiles(v).size == 982  # sorted indices 9..990
    assert trim_percentiles(np.arange(5.0)).tolist() == [0, 1, 2, 3, 4]
    with pytest.raises(ValueError):
        trim_percentiles(v, 50, 10)


@pytest.mark.skipif(tuple(int(p) for p in np.__version__.split(".")[:2]) < (2, 4),
                    reason="numpy < 2.4 still accepts interpolation=")
def test_numpy_removed_the_argument_torch_fidelity_ppl_uses():
    # why compute_ppl trims with its own trim_percentiles
    with pytest.raises(TypeError):
        np.percentile(np.arange(10.0), 1, interpolation="lower")


class _LinearGenerator(nn.Module):
    """image = A (M z): PPL is exactly computable. Records the latents given to mapping."""

    z_dim, num_ws, resolution = 4, 2, 4

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(0)
        self.M = nn.Parameter(torch.randn(3, 4, generator=gen))
        self.A = nn.Parameter(torch.randn(3 * 4 * 4, 3, generator=gen) * 0.01)
        self.seen: list[torch.Tensor] = []

    def mapping(self, z, truncation_psi=1.0):
        self.seen.append(z.clone())
        return (z @ self.M.T)[:, None].repeat(1, self.num_ws, 1)

    def synthesis(self, ws, noise_mode="const"):
        return (ws[:, 0] @ self.A.T).view(-1, 3, 4, 4)


def _squared_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ((a.double() - b.double()) ** 2).flatten(1).sum(1)


def test_ppl_of_a_linear_generator_matches_the_closed_form():
    G = _LinearGenerator()
    eps = 1e-2
    report = compute_ppl(G, num_samples=200, batch_size=64, epsilon=eps, quantize=False,
                         similarity=_squared_distance, device="cpu", progress=False)
    # independent: the mapping saw [z_a; z_b] per batch; pixels are (x + 1) * 127.5
    lengths = []
    for z in G.seen:
        za, zb = z.double().chunk(2)
        diff = (zb - za) @ G.M.detach().double().T @ G.A.detach().double().T * 127.5
        lengths.append((diff ** 2).sum(1) / eps ** 2)
    lengths = np.concatenate([x.numpy() for x in lengths])
    assert report.ppl == pytest.approx(trim_percentiles(lengths).mean(), rel=1e-5)
    assert report.protocol["ppl"]["num_kept"] == trim_percentiles(lengths).size
    # linear: the same pairs give the same lengths in W space, at any epsilon and any t
    same = dict(num_samples=200, batch_size=200, quantize=False, similarity=_squared_distance,
                device="cpu", progress=False)
    z_end = compute_ppl(_LinearGenerator(), space="z", epsilon=eps, **same).ppl
    assert compute_ppl(_LinearGenerator(), space="w", epsilon=eps, **same).ppl == \
        pytest.approx(z_end, rel=1e-5)
    assert compute_ppl(_LinearGenerator(), space="z", epsilon=1e-1, **same).ppl == \
        pytest.approx(z_end, rel=1e-4)
    assert compute_ppl(_LinearGenerator(), space="w", sampling="full", epsilon=eps,
                       **same).protocol["ppl"]["sampling"].startswith("full")


def test_ppl_with_lpips_from_local_files(generator, lpips_files):
    lpips, vgg = lpips_files
    hub_dir = torch.hub.get_dir()
    kwargs = dict(num_samples=6, batch_size=3, epsilon=0.5, lpips_weights=lpips,
                  vgg16_weights=vgg, device="cpu", progress=False)
    report = compute_ppl(generator, noise_mode="random", **kwargs)
    assert torch.hub.get_dir() == hub_dir  # the temporary hub cache is gone
    assert math.isfinite(report.ppl) and report.ppl > 0
    p = report.protocol["ppl"]
    assert p["space"] == "Z" and p["sampling"] == "end (t = 0)"
    assert p["lpips_weights"] == lpips and p["vgg16_weights"] == vgg
    assert p["similarity"].startswith("lpips-vgg16")
    assert "shared" in p["noise_mode"]
    # seeded: the same number again; the shared noise makes "random" a smooth path
    assert compute_ppl(generator, noise_mode="random", **kwargs).ppl == report.ppl


def test_ppl_argument_errors(generator):
    with pytest.raises(ValueError, match="space"):
        compute_ppl(generator, space="x")
    with pytest.raises(ValueError, match="sampling"):
        compute_ppl(generator, sampling="middle")
    with pytest.raises(ValueError, match="slerp"):
        compute_ppl(generator, space="w", interpolation="slerp")


# ---- FD-DINOv2 ---------------------------------------------------------------------------------


def test_fd_dinov2_with_a_tiny_vit(generator, vit_file, tmp_path):
    kwargs = dict(model_name="vit_tiny_patch16_224", dinov2_weights=vit_file, image_size=64)
    report = compute_fd_dinov2(generator, "digits", num_gen=12, num_real=12, batch_size=6,
                               device="cpu", progress=False, **kwargs)
    # independent: the same images through the same network, then numpy statistics
    extractor = load_dinov2("vit_tiny_patch16_224", weights=vit_file, image_size=64)
    source = GeneratorSource(generator, num_images=12, batch_size=6, device="cpu")
    gen = torch.cat([extractor(b) for b in source])
    real = RealImages("digits", 32, max_images=12)
    real_features = extractor(torch.stack([real[i] for i in range(len(real))]))
    assert gen.shape == (12, 192)
    expected = frechet_distance(*feature_statistics(gen), *feature_statistics(real_features))
    assert report.fd_dinov2 == pytest.approx(expected, rel=1e-6)
    p = report.protocol["fd_dinov2"]
    assert p["dinov2_weights"] == vit_file and "64x64, bicubic" in p["image_size"]
    # through a statistics file
    stats = compute_dinov2_statistics("digits", resolution=32, num_real=12, batch_size=6,
                                      device="cpu", progress=False, **kwargs)
    assert stats.feature_extractor == "timm:vit_tiny_patch16_224@64"
    path = save_statistics(tmp_path / "dino.npz", stats)
    again = compute_fd_dinov2(generator, path, num_gen=12, batch_size=6, device="cpu",
                              progress=False, **kwargs)
    assert again.fd_dinov2 == pytest.approx(report.fd_dinov2, rel=1e-6)
    # the same generated images from a folder of PNG files (lossless): the same number
    folder = tmp_path / "samples"
    folder.mkdir()
    for i, image in enumerate(torch.cat(list(source))):
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(folder / f"{i:03d}.png")
    from_folder = compute_fd_dinov2(folder, path, num_gen=12, batch_size=6, device="cpu",
                                    progress=False, **kwargs)
    assert from_folder.fd_dinov2 == pytest.approx(report.fd_dinov2, rel=1e-6)
    assert from_folder.protocol["fd_dinov2"]["generated_source"] == str(folder.resolve())
    assert from_folder.protocol["fd_dinov2"]["torch"] == torch.__version__
    with pytest.raises(ValueError, match="feature space"):
        compute_fd_dinov2(generator, path, num_gen=4, device="cpu", progress=False,
                          model_name="vit_tiny_patch16_224", dinov2_weights=vit_file)


# ---- reports -----------------------------------------------------------------------------------


def test_reports_merge_and_print():
    a = MetricsReport(fid=3.77, precision=0.683, recall=0.526,
                      protocol={"fidelity": {"num_generated": 50000}})
    b = MetricsReport(ppl=197.0, ppl_std=10.0, protocol={"ppl": {"space": "Z"}})
    merged = a.merge(b)
    assert merged.metrics() == {"fid": 3.77, "precision": 0.683, "recall": 0.526, "ppl": 197.0,
                                "ppl_std": 10.0}
    assert set(merged.protocol) == {"fidelity", "ppl"}
    text = str(merged)
    assert "3.7700" in text and "197.00 ± 10.00" in text and "protocol (ppl):" in text
    assert MetricsReport.from_dict(json.loads(merged.to_json())) == merged


# ---- the `pixelfold eval` command ------------------------------------------------------------


def test_cli_eval_with_local_weights(inception_file, tmp_path, capsys):
    from pixelfold.cli import main

    out = tmp_path / "report.json"
    code = main(["eval", "pixelfolder-tiny-32", "--real", "digits", "--metrics", "fid,kid",
                 "--num-gen", str(N_IMAGES), "--num-real", str(N_IMAGES), "--batch-size", "6",
                 "--inception-weights", inception_file, "--json-out", str(out)])
    assert code == 0
    data = json.loads(out.read_text())
    assert data["metrics"]["fid"] >= 0 and "kid" in data["metrics"]
    assert data["protocol"]  # the protocol travels with the numbers
    text = capsys.readouterr().out
    assert "FID" in text or "fid" in text


def test_cli_eval_errors(no_hub_cache, monkeypatch, capsys):
    from pixelfold.cli import main

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.delenv("PIXELFOLD_INCEPTION_WEIGHTS", raising=False)
    assert main(["eval", "pixelfolder-tiny-32", "--real", "digits", "--metrics", "fid",
                 "--num-gen", "4", "--num-real", "4"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "--inception-weights" in err and "PIXELFOLD_INCEPTION_WEIGHTS" in err
    assert main(["eval", "pixelfolder-tiny-32", "--metrics", "fid"]) == 2
    assert "--real is required" in capsys.readouterr().err
    assert main(["eval", "pixelfolder-tiny-32", "--real", "digits", "--metrics", "fid,lpips"]) == 2
    assert "choose from fid, kid, pr, is, ppl, fd-dinov2" in capsys.readouterr().err
