"""FID, KID, precision/recall and Inception score of a generator, built on torch-fidelity.

[`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics] hands torch-fidelity the
generator (as a generative input whose images are quantized to uint8 by rounding) and the real
images (decoded like the training data, at the generator's resolution), and returns a
[`MetricsReport`][pixelfold.metrics.report.MetricsReport] with the numbers and the protocol: image
counts, seeds, resize filter, quantization, feature extractors and the exact weights files.

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
import os
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils import atomic_write_bytes, load_tensor_file, non_finite
from .networks import fidelity_extractor, read_fidelity_weights
from .report import MetricsReport
from .sources import (
    GeneratorSource,
    RealImages,
    RealInput,
    as_generator,
    describe_real,
    is_statistics,
    resolve_device,
    resolve_real,
)
from .statistics import FeatureStatistics, feature_statistics, frechet_distance
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
    "compute_inception_statistics",
    "compute_metrics",
]

logger = logging.getLogger(__name__)

INCEPTION = "inception-v3-compat"
"""torch-fidelity's name of its TensorFlow-compatible Inception-v3."""
INCEPTION_FEATURES = "inception-v3-compat/2048"
"""Feature space of FID statistics (the 2048-d pool features)."""

_KID_SUBSETS = 100
_KID_SUBSET_SIZE = 1000
_ISC_SPLITS = 10
_PRC_NEIGHBORHOOD = 3

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


def _check_statistics(stats: FeatureStatistics, expected: str, resolution: int) -> None:
    if stats.feature_extractor not in ("unknown", expected):
        raise ValueError(f"the real statistics are in the {stats.feature_extractor!r} feature "
                         f"space; this metric needs {expected!r}")
    stats_resolution = stats.metadata.get("resolution")
    if stats_resolution is not None and int(stats_resolution) != resolution:
        raise ValueError(f"the real statistics were computed at {stats_resolution}x"
                         f"{stats_resolution}, the generator makes {resolution}x{resolution} "
                         f"images")


def _cache_name(real: RealImages, resolution: int, weights_sha: str) -> str:
    key = json.dumps({**real.describe(), "resolution": resolution, "weights": weights_sha},
                     sort_keys=True)
    return "pixelfold-real-" + hashlib.sha256(key.encode()).hexdigest()[:20]


def compute_metrics(
    generator: nn.Module | str | os.PathLike,
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
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> MetricsReport:
    """FID, KID, precision/recall and IS of ``generator`` against ``real``.

    The paper's protocol is the default: 50,000 generated images against up to 50,000 real
    ones, no truncation, Inception-v3 (TF 2015-12-05 weights) features. KID uses 100 subsets
    of ``min(1000, num_gen, num_real)`` images; precision/recall the 3rd nearest neighbour;
    IS 10 splits.

    Args:
        generator: a [`Generator`][pixelfold.models.Generator], a preset name, a
            ``save_pretrained`` folder or a Hub id.
        real: the real images (a Hub id, a local image folder, a ``save_to_disk`` folder,
            ``"digits"``, a ``datasets.Dataset``, a torch dataset of uint8 images), or
            precomputed Inception statistics (a
            [`FeatureStatistics`][pixelfold.metrics.statistics.FeatureStatistics] or an
            ``.npz`` path: FID and IS only). Not needed for IS alone.
        fid: compute FID.
        kid: compute KID.
        prc: compute precision and recall.
        isc: compute the Inception score.
        num_gen: number of generated images.
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
        seed: seed of the latents, of the generator's noise, of the real subset and of KID's
            subsets.
        truncation_psi: truncation of the generator (1: none).
        noise_mode: noise of the generator: ``"random"``, ``"const"`` or ``"none"``.
        resize_filter: filter that resizes the real images to the generator's resolution.
        cache_dir: if given, the real features are cached there (one ``.safetensors`` file per
            feature extractor), keyed on the real source, subset, resolution, filter and the
            weights' SHA-256 (not on the image files' contents).
        progress: show progress bars and torch-fidelity's messages.

    Returns:
        A [`MetricsReport`][pixelfold.metrics.report.MetricsReport]; its ``protocol["fidelity"]``
        records how the numbers were computed.

    Raises:
        MissingWeightsError: offline without a local weights file (the message names the
            argument, the CLI flag and the environment variable).
        ValueError: a weights file that is not the network's tensors (TorchScript, pickled
            objects, text, another network, NaN: the message names the file), real statistics
            that do not fit, or other bad arguments.
    """
    import torch_fidelity
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
    if paired and is_statistics(real) and (kid or prc):
        raise ValueError("KID and precision/recall need real images, not precomputed "
                         "statistics: pass kid=False, prc=False, or the real dataset")
    prc_inception = prc and prc_feature_extractor == INCEPTION
    use_inception = fid or kid or isc or prc_inception
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
    source = GeneratorSource(as_generator(generator), num_images=num_gen,
                             batch_size=batch_size, seed=seed, truncation_psi=truncation_psi,
                             noise_mode=noise_mode, device=dev)
    real_data: Any = None
    if paired:
        real_data = resolve_real(real, source.resolution, max_images=num_real,
                                 resize_filter=resize_filter, seed=seed)
    stats = real_data if isinstance(real_data, FeatureStatistics) else None
    if stats is not None:
        _check_statistics(stats, INCEPTION_FEATURES, source.resolution)

    protocol: dict[str, Any] = source.describe()
    if stats is not None:
        protocol["real_statistics"] = str(real) if not isinstance(real, FeatureStatistics) \
            else "FeatureStatistics"
        protocol["num_real"] = stats.num_images
        protocol["real_statistics_metadata"] = stats.metadata
    elif real_data is not None:
        protocol.update(describe_real(real_data))
        protocol["real_resize_filter"] = resize_filter
    if inception_path is not None:
        protocol["feature_extractor"] = (f"{INCEPTION} (torch-fidelity): 2048-d pool features "
                                         f"for FID/KID, unbiased logits for IS")
        protocol.update(_weights_entry(INCEPTION_WEIGHTS, inception_path))
    if vgg_path is not None:
        protocol.update(_weights_entry(VGG16_WEIGHTS, vgg_path))
    kid_size = min(_KID_SUBSET_SIZE, num_gen, len(real_data)) if kid else 0
    if kid:
        protocol["kid"] = (f"{_KID_SUBSETS} subsets of {kid_size} images, polynomial kernel "
                           f"(x.y/d + 1)^3, unbiased MMD²")
    if prc:
        space = "VGG16 fc2 (after ReLU)" if use_vgg else "Inception 2048-d pool"
        protocol["precision_recall"] = (f"{space} features, {_PRC_NEIGHBORHOOD}rd nearest "
                                        f"neighbour radii")
    if isc:
        protocol["inception_score"] = f"{_ISC_SPLITS} splits"
    protocol["device"] = str(dev)
    protocol["torch_fidelity"] = torch_fidelity.__version__

    common: dict[str, Any] = dict(cuda=dev.type == "cuda", batch_size=batch_size,
                                  rng_seed=seed, verbose=progress, cache=False)
    values: dict[str, float] = {}
    with source.running(), _fidelity_context(dev):
        if use_inception:
            layers = (["2048"] if fid or kid or prc_inception else []) \
                + (["logits_unbiased"] if isc else [])
            needs_real = (fid or kid or prc_inception) and stats is None
            gen, real_features = _features(INCEPTION, layers, inception_tensors, source,
                                           real_data if needs_real else None, common,
                                           cache_dir, protocol.get("inception_weights_sha256"))
            if isc:
                values.update(_collect(isc_featuresdict_to_metric(
                    gen, "logits_unbiased", isc_splits=_ISC_SPLITS, rng_seed=seed,
                    verbose=progress)))
            if fid:
                mu, sigma = feature_statistics(gen["2048"])
                if stats is not None:
                    if stats.dim != mu.shape[0]:
                        raise ValueError(f"the real statistics have {stats.dim} features, "
                                         f"Inception gives {mu.shape[0]}")
                    real_mu, real_sigma = stats.mu, stats.sigma
                else:
                    real_mu, real_sigma = feature_statistics(real_features["2048"])
                values["fid"] = frechet_distance(mu, sigma, real_mu, real_sigma)
            if kid:
                values.update(_collect(kid_featuresdict_to_metric(
                    gen, real_features, "2048", kid_subsets=_KID_SUBSETS,
                    kid_subset_size=kid_size, rng_seed=seed, verbose=progress)))
            if prc_inception:
                values.update(_collect(prc_featuresdict_to_metric(
                    gen, real_features, "2048", prc_neighborhood=_PRC_NEIGHBORHOOD,
                    verbose=progress)))
        if use_vgg:
            gen, real_features = _features("vgg16", ["fc2_relu"], vgg_tensors, source,
                                           real_data, common, cache_dir,
                                           protocol.get("vgg16_weights_sha256"))
            values.update(_collect(prc_featuresdict_to_metric(
                gen, real_features, "fc2_relu", prc_neighborhood=_PRC_NEIGHBORHOOD,
                verbose=progress)))
    protocol["seconds"] = round(time.perf_counter() - started, 2)
    return MetricsReport(**values, protocol={"fidelity": protocol})


def _features(name: str, layers: list[str], weights: dict[str, torch.Tensor] | None,
              source: GeneratorSource, real: Any, common: dict[str, Any],
              cache_dir: str | os.PathLike | None,
              weights_sha: str | None) -> tuple[dict[str, torch.Tensor], Any]:
    """Features of the generated images and (unless ``real`` is ``None``) of the real ones,
    extracted by torch-fidelity's network ``name`` with the verified ``weights``."""
    from torch_fidelity.utils import extract_featuresdict_from_input_id_cached

    assert weights is not None
    extractor = fidelity_extractor(name, layers, weights, cuda=common["cuda"],
                                   verbose=common["verbose"])
    with source.seeded():
        gen = extract_featuresdict_from_input_id_cached(
            1, extractor, input1=source.fidelity_model(),
            input1_model_num_samples=len(source), **common)
    real_features = None
    if real is not None:
        cache = None
        if cache_dir is not None and isinstance(real, RealImages):
            cache = Path(cache_dir) / (f"{_cache_name(real, source.resolution, weights_sha or '')}"
                                       f"-{name}-features.safetensors")
            real_features = _cached_features(cache, layers, len(real))
        if real_features is None:
            real_features = extract_featuresdict_from_input_id_cached(1, extractor, input1=real,
                                                                      **common)
            if cache is not None:
                _save_features(cache, real_features, layers)
    return gen, real_features


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
    resolution: int,
    num_real: int = 50_000,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    inception_weights: str | os.PathLike | None = None,
    resize_filter: str = "box",
    seed: int = 0,
    progress: bool = True,
) -> FeatureStatistics:
    """Inception statistics (mean and covariance of the 2048-d features) of real images, to
    save with [`save_statistics`][pixelfold.metrics.statistics.save_statistics] and pass later as
    ``compute_metrics(G, "stats.npz", kid=False, prc=False)``.

    Args:
        real: the real images (as ``real`` of
            [`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics]).
        resolution: the generator resolution the images are resized to.
        num_real: at most this many images (a random subset drawn with ``seed``).
        batch_size: images per batch.
        device: where to run (``None``: CUDA when available).
        inception_weights: local Inception-v3 weights file (see
            [`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics]).
        resize_filter: resize filter of the real images.
        seed: seed of the subset.
        progress: show progress bars.
    """
    import torch_fidelity
    from torch_fidelity.utils import extract_featuresdict_from_input_id_cached

    weights = resolve_weights(INCEPTION_WEIGHTS, inception_weights, progress=progress)
    tensors = read_fidelity_weights(INCEPTION, weights)
    data = resolve_real(real, resolution, max_images=num_real, resize_filter=resize_filter,
                        seed=seed)
    if isinstance(data, FeatureStatistics):
        raise ValueError("compute_inception_statistics needs images, got statistics")
    dev = resolve_device(device)
    with _fidelity_context(dev):
        extractor = fidelity_extractor(INCEPTION, ["2048"], tensors, cuda=dev.type == "cuda",
                                       verbose=progress)
        features = extract_featuresdict_from_input_id_cached(
            1, extractor, input1=data, cuda=dev.type == "cuda", batch_size=batch_size,
            verbose=progress, cache=False)
    mu, sigma = feature_statistics(features["2048"])
    metadata = {**describe_real(data), "resolution": resolution, "resize_filter": resize_filter,
                **_weights_entry(INCEPTION_WEIGHTS, weights),
                "torch_fidelity": torch_fidelity.__version__}
    return FeatureStatistics(mu, sigma, num_images=len(data),
                             feature_extractor=INCEPTION_FEATURES, metadata=metadata)
