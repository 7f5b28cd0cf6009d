"""FID, KID, precision/recall and Inception score of a generator or of an image set, built on
torch-fidelity.

[`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics] hands torch-fidelity the
generated side (a generator as a generative input whose images are quantized to uint8 by
rounding, or a folder or dataset of generated images) and the real images (decoded like the
training data, at the generator's resolution), and returns a
[`MetricsReport`][pixelfold.metrics.report.MetricsReport] with the numbers and the protocol: image
counts, seeds, resize filters, quantization, feature extractors, the exact weights files and
the versions of torch, torch-fidelity and pixelfold. Either side may also be precomputed
Inception statistics (FID only).

Everything that defines the numbers is torch-fidelity's: its Inception-v3 with the TensorFlow
2015-12-05 weights (the network behind published FIDs, PixelFolder's included) for FID, KID
and IS, its VGG16 for precision/recall (as Kynkäänniemi et al. define it), its batching of the
generator and of the real images, its feature cache, and its KID, precision/recall and IS
estimators. The steps of ``torch_fidelity.calculate_metrics`` are called one by one so that each
feature set is extracted once and FID goes through
[`frechet_distance`][pixelfold.metrics.statistics.frechet_distance] (the same formula, in
float64, with a pivoted Cholesky factorization and a symmetric eigendecomposition), the function
that also compares saved statistics: FID against images and FID against their saved statistics
are one computation.

The weights files are read by pixelfold, not by torch-fidelity: tensors only, checked against
the network (names, shapes, finiteness), then handed to torch-fidelity's extractors as an
in-memory file of those tensors (see [`pixelfold.metrics.networks`][pixelfold.metrics.networks]).
The real features cached with ``cache_dir`` are safetensors files, read back the same way.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.spec import format_resolution
from ..utils import atomic_write_bytes, load_tensor_file, non_finite
from .networks import fidelity_extractor, read_fidelity_weights
from .report import MetricsReport
from .sources import (
    GeneratedInput,
    GeneratorSource,
    RealImages,
    RealInput,
    _normal_resolution,
    describe_real,
    image_resolution,
    is_statistics,
    resolve_device,
    resolve_generated,
    resolve_real,
)
from .statistics import (
    FeatureStatistics,
    feature_statistics,
    frechet_distance,
    statistics_protocol,
)
from .weights import (
    INCEPTION_WEIGHTS,
    VGG16_WEIGHTS,
    WeightsFile,
    file_sha256,
    resolve_weights,
)

__all__ = [
    "INCEPTION",
    "INCEPTION_FEATURES",
    "INCEPTION_INPUT",
    "VGG16_INPUT",
    "compute_inception_statistics",
    "compute_metrics",
    "kid_subsets",
    "versions",
]

logger = logging.getLogger(__name__)

INCEPTION = "inception-v3-compat"
"""torch-fidelity's name of its TensorFlow-compatible Inception-v3."""
INCEPTION_FEATURES = "inception-v3-compat/2048"
"""Feature space of FID statistics (the 2048-d pool features)."""
INCEPTION_INPUT = ("uint8 images resized to 299x299 by torch-fidelity (bilinear, as TensorFlow "
                   "1.x resize_bilinear: interpolate_bilinear_2d_like_tensorflow1x, "
                   "align_corners=False), then (x - 128) / 128")
"""How torch-fidelity's Inception-v3 sees an image (written into every report that uses it)."""
VGG16_INPUT = ("uint8 images resized to 224x224 by torch-fidelity (bilinear, as TensorFlow 1.x "
               "resize_bilinear), normalized with ImageNet's mean and std")
"""How torch-fidelity's VGG16 (precision/recall) sees an image."""

_KID_SUBSETS = 100
_KID_SUBSET_SIZE = 1000
_ISC_SPLITS = 10
_PRC_NEIGHBORHOOD = 3
_PROBE_MIN_BATCHES = 20  # the duration estimate costs two batches: only for longer runs

# torch-fidelity result key -> MetricsReport attribute
_KEYS = {
    "frechet_inception_distance": "fid",
    "kernel_inception_distance_mean": "kid",
    "kernel_inception_distance_std": "kid_std",
    "precision": "precision",
    "recall": "recall",
    "inception_score_mean": "inception_score",
    "inception_score_std": "inception_score_std",
}


def _collect(result: dict[str, Any]) -> dict[str, float]:
    return {_KEYS[k]: float(v) for k, v in result.items() if k in _KEYS}


def versions() -> dict[str, str]:
    """The versions that define the numbers: ``{"torch": ..., "torch_fidelity": ...,
    "pixelfold": ...}`` (written into every report)."""
    import torch_fidelity

    from .. import __version__

    return {"torch": torch.__version__, "torch_fidelity": torch_fidelity.__version__,
            "pixelfold": __version__}


def kid_subsets(num_gen: int, num_real: int, subset_size: int | None = None,
                subsets: int = _KID_SUBSETS) -> tuple[int, int, str | None]:
    """KID's subset count and size for ``num_gen`` generated and ``num_real`` real images.

    The size is ``min(1000, num_gen, num_real)`` unless given, as in torch-fidelity, clean-fid
    and StyleGAN2-ADA. When it equals both counts (at most 1,000 images on each side, the same
    number), every subset would be all the images, so the 100 values would be one value and
    their spread zero: KID is then computed once, on all the images, with no standard
    deviation (clean-fid and StyleGAN2-ADA report none either). When it equals one count only,
    every subset holds all the images of that side, and the spread measures the subsampling of
    the other side alone.

    Returns:
        ``(subsets, subset_size, note)``: ``note`` says what the spread means when it is not
        the usual one (``None`` otherwise).

    Raises:
        ValueError: a subset size below 2 or above the smaller count, or ``subsets < 1``.
    """
    smaller = min(num_gen, num_real)
    size = min(_KID_SUBSET_SIZE, smaller) if subset_size is None else int(subset_size)
    if subsets < 1:
        raise ValueError(f"kid_subsets must be >= 1, got {subsets}")
    if size < 2:
        raise ValueError(f"KID needs subsets of at least 2 images; got a subset size of {size} "
                         f"({num_gen} generated, {num_real} real images)")
    if size > smaller:
        raise ValueError(f"kid_subset_size {size} is larger than the {smaller} "
                         f"{'generated' if num_gen <= num_real else 'real'} images")
    whole_gen, whole_real = size == num_gen, size == num_real
    if whole_gen and whole_real:
        return 1, size, (f"every subset of {size} images would hold all {num_gen} generated "
                         f"and all {num_real} real images, so KID is computed once on all of "
                         f"them and has no spread (no kid_std; a smaller kid_subset_size, "
                         f"e.g. {max(2, size // 2)}, gives a spread over subsets of that size)")
    if whole_gen or whole_real:
        side, other = ("generated", "real") if whole_gen else ("real", "generated")
        return subsets, size, (f"every subset holds all {size} {side} images: kid_std measures "
                               f"the subsampling of the {other} images only")
    return subsets, size, None


@contextmanager
def _fidelity_context(device: torch.device) -> Iterator[None]:
    """torch-fidelity moves its networks with ``.cuda()``: make that mean ``device``. Its data
    loaders always ask for 4 workers, which torch warns about on smaller machines: hush that."""
    with torch.cuda.device(device) if device.type == "cuda" else nullcontext(), \
            warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This DataLoader will create")
        yield


def _weights_entry(spec: WeightsFile, path: Path) -> dict[str, str]:
    return {spec.argument: str(path), f"{spec.argument}_sha256": file_sha256(path)}


def _check_statistics(stats: FeatureStatistics, expected: str, resolution: int | None,
                      side: str) -> None:
    if stats.feature_extractor not in ("unknown", expected):
        raise ValueError(f"the {side} statistics are in the {stats.feature_extractor!r} "
                         f"feature space; this metric needs {expected!r}")
    stats_resolution = stats.metadata.get("resolution")
    if stats_resolution is not None and resolution is not None \
            and _normal_resolution(stats_resolution) != _normal_resolution(resolution):
        raise ValueError(f"the {side} statistics were computed at "
                         f"{format_resolution(stats_resolution)}, the generated images are "
                         f"{format_resolution(resolution)}")


def _check_statistics_pair(gen: FeatureStatistics, real: FeatureStatistics) -> None:
    """Two sets of statistics compared with each other must come from one network."""
    if gen.dim != real.dim:
        raise ValueError(f"the generated statistics have {gen.dim} features, the real ones "
                         f"{real.dim}")
    a = gen.metadata.get("inception_weights_sha256")
    b = real.metadata.get("inception_weights_sha256")
    if a and b and a != b:
        raise ValueError(f"the generated and real statistics were computed with different "
                         f"Inception weights (SHA-256 {a[:12]}... and {b[:12]}...)")


def _cache_name(real: RealImages, resolution: int, weights_sha: str) -> str:
    key = json.dumps({**real.describe(), "resolution": resolution, "weights": weights_sha},
                     sort_keys=True)
    return "pixelfold-real-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def _resolution_of(gen: Any, resolution: int | None, real: RealInput) -> int | None:
    """The side both image sets are compared at: the generator's, the generated images',
    the generated statistics' (or ``resolution``)."""
    if isinstance(gen, GeneratorSource):
        return gen.resolution
    if isinstance(gen, FeatureStatistics):
        found = gen.metadata.get("resolution")
        if resolution is None and found is None and real is not None \
                and not is_statistics(real):
            raise ValueError("the generated statistics do not record their resolution: pass "
                             "resolution=... (the side the real images are resized to)")
        return int(resolution if resolution is not None else found) \
            if (resolution is not None or found is not None) else None
    return image_resolution(gen)


def compute_metrics(
    generator: GeneratedInput,
    real: RealInput = None,
    *,
    fid: bool = True,
    kid: bool = True,
    prc: bool = True,
    isc: bool = False,
    num_gen: int = 50_000,
    num_real: int = 50_000,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    inception_weights: str | os.PathLike | None = None,
    vgg16_weights: str | os.PathLike | None = None,
    prc_feature_extractor: str = "vgg16",
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "random",
    resize_filter: str = "box",
    resolution: int | None = None,
    kid_subset_size: int | None = None,
    kid_subset_count: int = _KID_SUBSETS,
    cache_dir: str | os.PathLike | None = None,
    warn_after: float | None = 600.0,
    progress: bool = True,
) -> MetricsReport:
    """FID, KID, precision/recall and IS of ``generator`` (or of generated images) against
    ``real``.

    The paper's protocol is the default: 50,000 generated images against up to 50,000 real
    ones, no truncation, Inception-v3 (TF 2015-12-05 weights) features. KID uses 100 subsets
    of ``min(1000, num_gen, num_real)`` images (see
    [`kid_subsets`][pixelfold.metrics.fidelity.kid_subsets] for 1,000 images or fewer);
    precision/recall the 3rd nearest neighbour; IS 10 splits.

    Before the work starts, a run of 20 batches or more times two batches (generation and
    every feature network) and, when the whole run would take longer than ``warn_after``
    seconds (10 minutes), logs one warning with the estimate (50,000 + 50,000 images take
    hours on a CPU).

    Args:
        generator: the generated side: a [`Generator`][pixelfold.models.Generator], a preset
            name, a ``save_pretrained`` folder or a Hub model id; or generated images (a
            folder of images, a ``save_to_disk`` folder, a ``datasets.Dataset``, a torch
            dataset of uint8 images); or their Inception statistics (a
            [`FeatureStatistics`][pixelfold.metrics.statistics.FeatureStatistics] or an
            ``.npz`` path: FID only). A folder is a model when it holds ``config.json``.
        real: the real images (a Hub id, a local image folder, a ``save_to_disk`` folder,
            ``"digits"``, a ``datasets.Dataset``, a torch dataset of uint8 images), or
            precomputed Inception statistics (a
            [`FeatureStatistics`][pixelfold.metrics.statistics.FeatureStatistics] or an
            ``.npz`` path: FID and IS only). Not needed for IS alone.
        fid: compute FID.
        kid: compute KID.
        prc: compute precision and recall.
        isc: compute the Inception score.
        num_gen: number of generated images (at most this many of a set of images: a random
            subset, drawn with ``seed``, of a larger one).
        num_real: at most this many real images (a random subset, drawn with ``seed``, of a
            larger dataset).
        batch_size: images per batch (generation and feature extraction).
        device: where to run (``None``: CUDA when available, else CPU).
        inception_weights: local Inception-v3 weights file (``None``: the environment variable
            ``PIXELFOLD_INCEPTION_WEIGHTS``, else downloaded once into the torch hub cache).
        vgg16_weights: local VGG16 weights file for precision/recall (``None``:
            ``PIXELFOLD_VGG16_WEIGHTS``, else downloaded).
        prc_feature_extractor: ``"vgg16"`` (Kynkäänniemi et al., the default) or
            ``"inception-v3-compat"`` (precision/recall in Inception space).
        seed: seed of the latents, of the generator's noise, of the subsets of image sets and
            of KID's subsets.
        truncation_psi: truncation of the generator (1: none).
        noise_mode: noise of the generator: ``"random"``, ``"const"`` or ``"none"``.
        resize_filter: filter that resizes images read from files (real and generated) to
            the common resolution.
        resolution: the side both sets are compared at when the generated side is images or
            statistics (``None``: the generated images' own side, or the statistics'
            recorded one). With a generator it is the generator's.
        kid_subset_size: images per KID subset (``None``: ``min(1000, num_gen, num_real)``).
        kid_subset_count: number of KID subsets.
        cache_dir: if given, the real features are cached there (one ``.safetensors`` file per
            feature extractor), keyed on the real source, subset, resolution, filter and the
            weights' SHA-256 (not on the image files' contents).
        warn_after: warn when the estimated duration exceeds this many seconds (``None``: no
            estimate, no warning).
        progress: show progress bars and torch-fidelity's messages.

    Returns:
        A [`MetricsReport`][pixelfold.metrics.report.MetricsReport]; its ``protocol["fidelity"]``
        records how the numbers were computed.

    Raises:
        MissingWeightsError: offline without a local weights file (the message names the
            argument, the CLI flag and the environment variable).
        ValueError: a weights file that is not the network's tensors (TorchScript, pickled
            objects, text, another network, NaN: the message names the file), statistics that
            do not fit, KID/precision/recall/IS asked of statistics, or other bad arguments.
        DataError: a folder of images without images, images that cannot be decoded.
    """
    from torch_fidelity.metric_isc import isc_featuresdict_to_metric
    from torch_fidelity.metric_kid import kid_featuresdict_to_metric
    from torch_fidelity.metric_prc import prc_featuresdict_to_metric

    if not (fid or kid or prc or isc):
        raise ValueError("nothing to compute: fid, kid, prc and isc are all False")
    if prc_feature_extractor not in ("vgg16", INCEPTION):
        raise ValueError(f"prc_feature_extractor must be 'vgg16' or {INCEPTION!r}, got "
                         f"{prc_feature_extractor!r}")
    paired = fid or kid or prc
    if paired and real is None:
        raise ValueError("FID, KID and precision/recall compare with real images: pass "
                         "real=... (or fid=kid=prc=False for the Inception score alone)")
    gen_stats_given = is_statistics(generator)
    real_stats_given = paired and is_statistics(real)
    for side, given in (("generated", gen_stats_given), ("real", real_stats_given)):
        if given and (kid or prc):
            raise ValueError(f"KID and precision/recall need {side} images, not precomputed "
                             f"statistics: pass kid=False, prc=False, or the {side} images")
    if gen_stats_given and isc:
        raise ValueError("the Inception score needs generated images, not their statistics: "
                         "pass isc=False, or the generated images")
    prc_inception = prc and prc_feature_extractor == INCEPTION
    # statistics on both sides: FID without any network
    use_inception = isc or kid or prc_inception or (fid and not (gen_stats_given
                                                                 and real_stats_given))
    use_vgg = prc and not prc_inception
    started = time.perf_counter()
    # the weights first: offline without them, fail before loading anything big
    inception_path = resolve_weights(INCEPTION_WEIGHTS, inception_weights, progress=progress) \
        if use_inception else None
    vgg_path = resolve_weights(VGG16_WEIGHTS, vgg16_weights, progress=progress) \
        if use_vgg else None
    # read and verified by pixelfold (tensors only) before anything else is loaded
    inception_tensors = read_fidelity_weights(INCEPTION, inception_path) \
        if inception_path is not None else None
    vgg_tensors = read_fidelity_weights("vgg16", vgg_path) if vgg_path is not None else None
    dev = resolve_device(device)
    gen = resolve_generated(generator, num_images=num_gen, batch_size=batch_size, seed=seed,
                            truncation_psi=truncation_psi, noise_mode=noise_mode, device=dev,
                            resolution=resolution, resize_filter=resize_filter)
    side = _resolution_of(gen, resolution, real if paired else None)
    real_data: Any = None
    if paired:
        real_data = resolve_real(real, side, max_images=num_real,
                                 resize_filter=resize_filter, seed=seed,
                                 image_channels=getattr(gen, "image_channels", 3))
        if side is None and not isinstance(real_data, FeatureStatistics):
            side = image_resolution(real_data)
    gen_stats = gen if isinstance(gen, FeatureStatistics) else None
    stats = real_data if isinstance(real_data, FeatureStatistics) else None
    if gen_stats is not None:
        _check_statistics(gen_stats, INCEPTION_FEATURES, side, "generated")
    if stats is not None:
        _check_statistics(stats, INCEPTION_FEATURES, side, "real")
    if gen_stats is not None and stats is not None:
        _check_statistics_pair(gen_stats, stats)

    protocol: dict[str, Any] = {}
    if isinstance(gen, GeneratorSource):
        protocol.update(gen.describe())
    elif gen_stats is not None:
        protocol["resolution"] = side
        protocol.update(statistics_protocol(gen_stats, generator, "generated"))
    else:
        protocol["resolution"] = side
        protocol.update(describe_real(gen, "generated"))
        protocol["generated_resize_filter"] = resize_filter
    if stats is not None:
        protocol.update(statistics_protocol(stats, real, "real"))
    elif real_data is not None:
        protocol.update(describe_real(real_data))
        protocol["real_resize_filter"] = resize_filter
    if inception_path is not None:
        protocol["feature_extractor"] = (f"{INCEPTION} (torch-fidelity): 2048-d pool features "
                                         f"for FID/KID, unbiased logits for IS")
        protocol["inception_input"] = INCEPTION_INPUT
        protocol.update(_weights_entry(INCEPTION_WEIGHTS, inception_path))
    if vgg_path is not None:
        protocol["vgg16_input"] = VGG16_INPUT
        protocol.update(_weights_entry(VGG16_WEIGHTS, vgg_path))
    kid_count, kid_size, kid_note = (kid_subsets(len(gen), len(real_data), kid_subset_size,
                                                 kid_subset_count) if kid else (0, 0, None))
    if kid:
        protocol["kid"] = (f"{kid_count} subset{'s' if kid_count > 1 else ''} of {kid_size} "
                           f"images, polynomial kernel (x.y/d + 1)^3, unbiased MMD²")
        if kid_note:
            protocol["kid_note"] = kid_note
    if prc:
        space = "VGG16 fc2 (after ReLU)" if use_vgg else "Inception 2048-d pool"
        protocol["precision_recall"] = (f"{space} features, {_PRC_NEIGHBORHOOD}rd nearest "
                                        f"neighbour radii")
    if isc:
        protocol["inception_score"] = f"{_ISC_SPLITS} splits"
    protocol["device"] = str(dev)
    protocol.update(versions())

    common: dict[str, Any] = dict(cuda=dev.type == "cuda", batch_size=batch_size,
                                  rng_seed=seed, verbose=progress, cache=False)
    values: dict[str, float] = {}
    running = gen.running() if isinstance(gen, GeneratorSource) else nullcontext()
    with running, _fidelity_context(dev):
        inception_layers = (["2048"] if fid or kid or prc_inception else []) \
            + (["logits_unbiased"] if isc else [])
        nets: list[_Net] = []
        if use_inception:
            assert inception_tensors is not None
            needs_real = (fid or kid or prc_inception) and stats is None
            nets.append(_Net(INCEPTION, inception_layers, fidelity_extractor(
                INCEPTION, inception_layers, inception_tensors, cuda=common["cuda"],
                verbose=progress), protocol.get("inception_weights_sha256", ""), needs_real))
        if use_vgg:
            assert vgg_tensors is not None
            nets.append(_Net("vgg16", ["fc2_relu"], fidelity_extractor(
                "vgg16", ["fc2_relu"], vgg_tensors, cuda=common["cuda"], verbose=progress),
                protocol.get("vgg16_weights_sha256", ""), True))
        for net in nets:
            if net.needs_real and cache_dir is not None and isinstance(real_data, RealImages):
                net.cache = Path(cache_dir) / (f"{_cache_name(real_data, side or 0, net.sha)}"
                                               f"-{net.name}-features.safetensors")
                net.real_features = _cached_features(net.cache, net.layers, len(real_data))
        if nets and warn_after is not None:
            estimate = _estimate_seconds(gen, real_data, nets, batch_size, dev)
            if estimate is not None:
                protocol["estimated_seconds"] = float(f"{estimate:.3g}")
                if estimate > warn_after:
                    logger.warning(
                        "this evaluation will take about %s on %s (timed on two batches of "
                        "%d images); a GPU, fewer images or saved real statistics make it "
                        "shorter", _duration(estimate), dev, batch_size)
        features: dict[str, tuple[dict[str, torch.Tensor], Any]] = {}
        for net in nets:
            gen_features = _extract(net.extractor, gen, common) if gen_stats is None else {}
            real_features = net.real_features
            if net.needs_real and real_features is None:
                real_features = _extract(net.extractor, real_data, common)
                if net.cache is not None:
                    _save_features(net.cache, real_features, net.layers)
            features[net.name] = (gen_features, real_features)
        if INCEPTION in features:
            gen_f, real_f = features[INCEPTION]
            if isc:
                values.update(_collect(isc_featuresdict_to_metric(
                    gen_f, "logits_unbiased", isc_splits=_ISC_SPLITS, rng_seed=seed,
                    verbose=progress)))
            if kid:
                values.update(_collect(kid_featuresdict_to_metric(
                    gen_f, real_f, "2048", kid_subsets=kid_count,
                    kid_subset_size=kid_size, rng_seed=seed, verbose=progress)))
                if kid_count == 1:
                    values.pop("kid_std", None)  # one subset: no spread to report
            if prc_inception:
                values.update(_collect(prc_featuresdict_to_metric(
                    gen_f, real_f, "2048", prc_neighborhood=_PRC_NEIGHBORHOOD,
                    verbose=progress)))
        if fid:
            if gen_stats is not None:
                mu, sigma = gen_stats.mu, gen_stats.sigma
            else:
                mu, sigma = feature_statistics(features[INCEPTION][0]["2048"])
            if stats is not None:
                if stats.dim != mu.shape[0]:
                    raise ValueError(f"the real statistics have {stats.dim} features, "
                                     f"Inception gives {mu.shape[0]}")
                real_mu, real_sigma = stats.mu, stats.sigma
            else:
                real_mu, real_sigma = feature_statistics(features[INCEPTION][1]["2048"])
            values["fid"] = frechet_distance(mu, sigma, real_mu, real_sigma)
        if "vgg16" in features:
            gen_f, real_f = features["vgg16"]
            values.update(_collect(prc_featuresdict_to_metric(
                gen_f, real_f, "fc2_relu", prc_neighborhood=_PRC_NEIGHBORHOOD,
                verbose=progress)))
    protocol["seconds"] = round(time.perf_counter() - started, 2)
    return MetricsReport(**values, protocol={"fidelity": protocol})


class _Net:
    """A feature network of one evaluation, with what it extracts and its real cache."""

    def __init__(self, name: str, layers: list[str], extractor: nn.Module, sha: str,
                 needs_real: bool) -> None:
        self.name = name
        self.layers = layers
        self.extractor = extractor
        self.sha = sha
        self.needs_real = needs_real
        self.cache: Path | None = None
        self.real_features: dict[str, torch.Tensor] | None = None


_FEW_BATCHES = 4  # a dataset of at most this many batches is read without loader workers


def _loader_workers(data: Any, batch_size: int) -> int:
    """torch-fidelity's data-loader workers for ``data`` (none for a few batches: starting
    the workers would cost more than they save)."""
    if len(data) <= _FEW_BATCHES * batch_size:
        return 1
    return min(4, 2 * (os.cpu_count() or 1))


def _extract(extractor: nn.Module, images: Any, common: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Features of a generator source (its seeded generative input) or of a uint8 dataset,
    extracted by torch-fidelity."""
    from torch_fidelity.utils import extract_featuresdict_from_input_id_cached

    if isinstance(images, GeneratorSource):
        with images.seeded():
            return extract_featuresdict_from_input_id_cached(
                1, extractor, input1=images.fidelity_model(),
                input1_model_num_samples=len(images), **common)
    few = _loader_workers(images, common["batch_size"]) == 1
    return extract_featuresdict_from_input_id_cached(1, extractor, input1=images,
                                                     save_cpu_ram=few, **common)


def _timed(fn: Callable[[], Any], device: torch.device) -> tuple[float, Any]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def _image_batch(data: torch.utils.data.Dataset, count: int) -> torch.Tensor:
    return torch.stack([data[i] for i in range(min(count, len(data)))])  # type: ignore[arg-type]


@torch.no_grad()
def _estimate_seconds(gen: Any, real: Any, nets: list[_Net], batch_size: int,
                      device: torch.device) -> float | None:
    """The duration of the feature extraction, from timing one batch of everything (after an
    untimed one, so that first-call costs do not count), or ``None`` for runs of fewer than
    ``_PROBE_MIN_BATCHES`` batches."""
    gen_batches = math.ceil(len(gen) / batch_size) if not isinstance(gen, FeatureStatistics) \
        else 0
    real_nets = [n for n in nets if n.needs_real and n.real_features is None]
    real_batches = math.ceil(len(real) / batch_size) if real_nets else 0
    if gen_batches * len(nets) + real_batches * len(real_nets) < _PROBE_MIN_BATCHES:
        return None
    if isinstance(gen, FeatureStatistics):
        make, images = 0.0, _image_batch(real, batch_size)
    elif isinstance(gen, GeneratorSource):
        z = next(gen.latents()).to(device)
        with gen.seeded():
            gen.images(z)
            make, images = _timed(lambda: gen.images(z), device)
    else:
        _image_batch(gen, batch_size)
        make, images = _timed(lambda: _image_batch(gen, batch_size), device)
        make /= _loader_workers(gen, batch_size)
    images = images.to(device)
    per_net = {}
    for net in nets:
        net.extractor(images)
        per_net[net.name], _ = _timed(lambda net=net: net.extractor(images), device)
    total = gen_batches * (make + sum(per_net.values()))
    if real_nets:
        load, _ = _timed(lambda: _image_batch(real, batch_size), device)
        total += real_batches * (load / _loader_workers(real, batch_size)
                                 + sum(per_net[n.name] for n in real_nets))
    return total


def _duration(seconds: float) -> str:
    if seconds >= 5400:
        return f"{seconds / 3600:.1f} hours"
    if seconds >= 90:
        return f"{seconds / 60:.0f} minutes"
    return f"{seconds:.0f} seconds"


def _cached_features(path: Path, layers: list[str], count: int) -> dict[str, torch.Tensor] | None:
    """The features cached in ``path`` (a safetensors file, read as tensors only), or ``None``
    when there is no usable cache (absent, unreadable, other layers or image count, NaN)."""
    if not path.is_file():
        return None
    try:
        cached = load_tensor_file(path, what="cached features")
    except ValueError as exc:
        logger.warning("ignoring the feature cache %s (%s); computing the features again",
                       path, exc)
        return None
    features = {layer: cached[layer] for layer in layers if layer in cached}
    if len(features) != len(layers) or any(f.ndim < 1 or f.shape[0] != count
                                           for f in features.values()) or non_finite(features):
        logger.warning("ignoring the feature cache %s (not the features of these %d images); "
                       "computing them again", path, count)
        return None
    return features


def _save_features(path: Path, features: dict[str, torch.Tensor], layers: list[str]) -> None:
    from safetensors.torch import save

    data = save({layer: features[layer].detach().cpu().contiguous() for layer in layers})
    atomic_write_bytes(path, data)


def compute_inception_statistics(
    real: RealInput,
    *,
    resolution: int | None,
    num_real: int = 50_000,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    inception_weights: str | os.PathLike | None = None,
    resize_filter: str = "box",
    seed: int = 0,
    progress: bool = True,
) -> FeatureStatistics:
    """Inception statistics (mean and covariance of the 2048-d features) of an image set, to
    save with [`save_statistics`][pixelfold.metrics.statistics.save_statistics] and pass later,
    on either side, as ``compute_metrics(G, "stats.npz", kid=False, prc=False)`` or
    ``compute_metrics("samples.npz", "real.npz", kid=False, prc=False)``.

    Args:
        real: the images (as ``real`` of
            [`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics]): real images, or a
            folder of generated ones.
        resolution: the generator resolution the images are resized to (``None``: the
            images' own side).
        num_real: at most this many images (a random subset drawn with ``seed``).
        batch_size: images per batch.
        device: where to run (``None``: CUDA when available).
        inception_weights: local Inception-v3 weights file (see
            [`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics]).
        resize_filter: resize filter of the images.
        seed: seed of the subset.
        progress: show progress bars.
    """
    weights = resolve_weights(INCEPTION_WEIGHTS, inception_weights, progress=progress)
    tensors = read_fidelity_weights(INCEPTION, weights)
    data = resolve_real(real, resolution, max_images=num_real, resize_filter=resize_filter,
                        seed=seed)
    if isinstance(data, FeatureStatistics):
        raise ValueError("compute_inception_statistics needs images, got statistics")
    resolution = image_resolution(data) if resolution is None else resolution
    dev = resolve_device(device)
    with _fidelity_context(dev):
        extractor = fidelity_extractor(INCEPTION, ["2048"], tensors, cuda=dev.type == "cuda",
                                       verbose=progress)
        features = _extract(extractor, data, dict(cuda=dev.type == "cuda",
                                                  batch_size=batch_size, verbose=progress,
                                                  cache=False))
    mu, sigma = feature_statistics(features["2048"])
    metadata = {**describe_real(data), "resolution": resolution, "resize_filter": resize_filter,
                "inception_input": INCEPTION_INPUT, **_weights_entry(INCEPTION_WEIGHTS, weights),
                **versions()}
    return FeatureStatistics(mu, sigma, num_images=len(data),
                             feature_extractor=INCEPTION_FEATURES, metadata=metadata)
