"""Gaussian feature statistics and the Fréchet distance between them.

FID and FD-DINOv2 are the same formula in two feature spaces: fit a Gaussian (mean ``mu``,
covariance ``sigma``) to the features of each image set and take

``FD = ||mu1 - mu2||² + tr(S1 + S2 - 2 (S1 S2)^½)``.

Everything here works in float64. Statistics of a real dataset can be saved to an ``.npz`` file
(arrays ``mu`` and ``sigma``, the layout other FID tools use, plus a description of how they
were computed) and reused instead of the images.
"""

from __future__ import annotations

import json
import os
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..utils import DataError, NonFiniteError
from .weights import file_sha256

__all__ = [
    "FeatureStatistics",
    "StatisticsAccumulator",
    "feature_statistics",
    "frechet_distance",
    "load_statistics",
    "save_statistics",
    "statistics_protocol",
    "trace_sqrt_product",
]


def _as_float64(array: Any) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().double().numpy()
    return np.asarray(array, dtype=np.float64)


@dataclass
class FeatureStatistics:
    """Mean and covariance of the features of an image set, with how they were obtained.

    Args:
        mu: mean, shape ``(D,)``.
        sigma: covariance, shape ``(D, D)`` (unbiased, ``N - 1`` normalization).
        num_images: how many images the statistics summarize (0 when unknown).
        feature_extractor: name of the feature space, e.g. ``"inception-v3-compat/2048"``
            (``"unknown"`` for files written by other tools).
        metadata: anything else that defines the protocol (resolution, resize filter, source,
            weights file...); must be JSON-serializable.

    Raises:
        ValueError: shapes other than ``(D,)`` and ``(D, D)``.
        NonFiniteError: ``mu`` or ``sigma`` holds NaN or infinity.
    """

    mu: np.ndarray
    sigma: np.ndarray
    num_images: int = 0
    feature_extractor: str = "unknown"
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.mu = _as_float64(self.mu)
        self.sigma = _as_float64(self.sigma)
        d = self.mu.shape[0] if self.mu.ndim == 1 else -1
        if self.mu.ndim != 1 or self.sigma.shape != (d, d):
            raise ValueError(f"statistics need mu of shape (D,) and sigma of shape (D, D), got "
                             f"{self.mu.shape} and {self.sigma.shape}")
        for name in ("mu", "sigma"):
            bad = int((~np.isfinite(getattr(self, name))).sum())
            if bad:
                raise NonFiniteError(f"the statistics' {name} holds {bad} non-finite "
                                     f"value{'s' if bad > 1 else ''} (NaN or infinity) of "
                                     f"{getattr(self, name).size}")

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.mu.shape[0])

    def frechet_distance(self, other: FeatureStatistics) -> float:
        """[`frechet_distance`][pixelfold.metrics.statistics.frechet_distance] to ``other``."""
        return frechet_distance(self.mu, self.sigma, other.mu, other.sigma)


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance of ``features`` (``(N, D)`` array or tensor), in float64."""
    x = _as_float64(features)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"features must be (N, D) with N >= 2, got shape {x.shape}")
    return x.mean(axis=0), np.cov(x, rowvar=False)


class StatisticsAccumulator:
    """Running sums for mean and covariance, so that features need not be kept in memory.

    ``add(features)`` batch by batch, then ``mu_sigma()``. Sums are float64 on the CPU.
    """

    def __init__(self) -> None:
        self.count = 0
        self._sum: torch.Tensor | None = None
        self._outer: torch.Tensor | None = None

    def add(self, features: torch.Tensor) -> None:
        """Add a ``(B, D)`` batch of features."""
        x = features.detach().to("cpu", torch.float64)
        if x.ndim != 2:
            raise ValueError(f"features must be (B, D), got shape {tuple(x.shape)}")
        if self._sum is None:
            self._sum = torch.zeros(x.shape[1], dtype=torch.float64)
            self._outer = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float64)
        self._sum += x.sum(0)
        self._outer += x.T @ x
        self.count += x.shape[0]

    def mu_sigma(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean and unbiased covariance of everything added."""
        if self._sum is None or self._outer is None or self.count < 2:
            raise ValueError(f"need at least 2 feature vectors, got {self.count}")
        n = self.count
        mu = self._sum / n
        sigma = (self._outer - n * torch.outer(mu, mu)) / (n - 1)
        return mu.numpy(), sigma.numpy()


def trace_sqrt_product(sigma1: np.ndarray, sigma2: np.ndarray) -> float:
    """``tr((S1 S2)^½)`` for symmetric positive semi-definite ``S1``, ``S2``.

    A pivoted Cholesky factorization ``S1 = P L Lᵀ Pᵀ`` (LAPACK ``dpstrf``, which also finds the
    rank ``r`` of the covariance of fewer samples than dimensions, ``L`` being ``D x r``) turns
    ``S1 S2`` into the symmetric ``Lᵀ Pᵀ S2 P L`` with the same non-zero eigenvalues, so the
    trace is the sum of the square roots of the eigenvalues of an ``r x r`` symmetric matrix:
    real, stable, and fast when ``r`` is small.
    """
    from scipy.linalg import lapack

    factor, pivots, rank, info = lapack.dpstrf(np.ascontiguousarray(sigma1), lower=1)
    if info < 0:
        raise ValueError(f"pivoted Cholesky failed (LAPACK info {info})")
    if rank == 0:
        return 0.0
    lower = np.tril(factor)[:, :rank]
    order = pivots - 1
    middle = lower.T @ sigma2[np.ix_(order, order)] @ lower
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    return float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
    """Fréchet distance between the Gaussians ``N(mu1, sigma1)`` and ``N(mu2, sigma2)``.

    ``||mu1 - mu2||² + tr(S1) + tr(S2) - 2 tr((S1 S2)^½)``, in float64, with the trace of the
    square root from [`trace_sqrt_product`][pixelfold.metrics.statistics.trace_sqrt_product].

    Args:
        mu1: mean of the first set, ``(D,)``.
        sigma1: covariance of the first set, ``(D, D)``.
        mu2: mean of the second set.
        sigma2: covariance of the second set.
    """
    mu1, mu2 = _as_float64(mu1), _as_float64(mu2)
    sigma1, sigma2 = _as_float64(sigma1), _as_float64(sigma2)
    if mu1.shape != mu2.shape or mu1.ndim != 1:
        raise ValueError(f"means must be vectors of the same size, got {mu1.shape} and "
                         f"{mu2.shape}")
    d = mu1.shape[0]
    if sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f"covariances must be ({d}, {d}), got {sigma1.shape} and "
                         f"{sigma2.shape}")
    sigma1, sigma2 = (sigma1 + sigma1.T) / 2, (sigma2 + sigma2.T) / 2
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2)
                 - 2 * trace_sqrt_product(sigma1, sigma2))


def save_statistics(path: str | os.PathLike, statistics: FeatureStatistics) -> Path:
    """Write ``statistics`` to an ``.npz`` file (arrays ``mu``, ``sigma``, ``num_images``,
    ``feature_extractor`` and ``metadata`` as a JSON string). Returns the path written.

    The ``.npz`` suffix is added when missing (as ``numpy.savez`` does).
    """
    path = Path(path)
    if path.suffix != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, mu=statistics.mu, sigma=statistics.sigma,
             num_images=np.int64(statistics.num_images),
             feature_extractor=np.str_(statistics.feature_extractor),
             metadata=np.str_(json.dumps(statistics.metadata, sort_keys=True)))
    return path


def _array(data: Any, name: str, path: Path) -> np.ndarray:
    """Array ``name`` of the open ``.npz`` ``data``, with one-line errors naming ``path``."""
    try:
        array = data[name]
    except ValueError as exc:  # object arrays: pickled Python objects
        raise DataError(f"{path}: array {name!r} cannot be read without unpickling Python "
                        f"objects, which pixelfold does not do ({exc})") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise DataError(f"{path}: array {name!r} is truncated or damaged "
                        f"({type(exc).__name__}: {exc})") from None
    return array


def _numbers(array: np.ndarray, name: str, path: Path) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise DataError(f"{path}: array {name!r} holds {array.dtype} values, not numbers")
    array = array.astype(np.float64)
    bad = int((~np.isfinite(array)).sum())
    if bad:
        raise NonFiniteError(f"{path}: array {name!r} holds {bad} non-finite "
                             f"value{'s' if bad > 1 else ''} (NaN or infinity) of {array.size}; "
                             f"statistics must be finite")
    return array


def load_statistics(path: str | os.PathLike) -> FeatureStatistics:
    """Read statistics written by
    [`save_statistics`][pixelfold.metrics.statistics.save_statistics], or any ``.npz`` with
    ``mu`` and ``sigma`` arrays (e.g. from other FID tools: their feature extractor is then
    ``"unknown"``).

    The file is read with ``numpy.load(allow_pickle=False)`` (no Python objects), and every
    array is checked: numbers, finite, shapes ``(D,)`` and ``(D, D)``.

    Raises:
        FileNotFoundError: no such file.
        DataError: not an ``.npz`` archive, truncated, arrays missing, of other shapes or not
            numbers, metadata that is not JSON (the message names the file and the array).
        NonFiniteError: ``mu`` or ``sigma`` holds NaN or infinity.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no statistics file at {path}")
    try:
        data = np.load(path, allow_pickle=False)
    except ValueError:  # neither a zip nor a .npy array: numpy takes it for a pickle
        raise DataError(f"{path} is not a statistics file: expected a NumPy .npz archive with "
                        f"arrays mu and sigma, and this file is not an .npz archive") from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"{path} is not a readable statistics file: the .npz archive is "
                        f"truncated or damaged ({type(exc).__name__}: {exc})") from None
    if not isinstance(data, np.lib.npyio.NpzFile):
        raise DataError(f"{path} holds a single array ({getattr(data, 'shape', '?')}), not a "
                        f"statistics .npz archive with arrays mu and sigma")
    with data:
        missing = {"mu", "sigma"} - set(data.files)
        if missing:
            raise DataError(f"{path} is not a statistics file: it lacks {sorted(missing)} "
                            f"(has {data.files})")
        mu = _numbers(_array(data, "mu", path), "mu", path)
        sigma = _numbers(_array(data, "sigma", path), "sigma", path)
        extra: dict[str, Any] = {}
        try:
            if "num_images" in data.files:
                extra["num_images"] = int(_array(data, "num_images", path))
            if "feature_extractor" in data.files:
                extra["feature_extractor"] = str(_array(data, "feature_extractor", path))
            if "metadata" in data.files:
                extra["metadata"] = json.loads(str(_array(data, "metadata", path)))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, DataError):
                raise
            raise DataError(f"{path}: its num_images, feature_extractor or metadata cannot be "
                            f"read ({type(exc).__name__}: {exc})") from None
    if not isinstance(extra.get("metadata", {}), dict):
        raise DataError(f"{path}: its metadata is not a JSON object")
    try:
        return FeatureStatistics(mu=mu, sigma=sigma, **extra)
    except ValueError as exc:
        raise DataError(f"{path}: {exc}") from None


def statistics_protocol(stats: FeatureStatistics, given: Any, side: str) -> dict[str, Any]:
    """The protocol entries of statistics used as one ``side`` (``"generated"`` or
    ``"real"``) of a metric: where they came from (``given``: a file path, or the
    ``FeatureStatistics`` object itself), the file's SHA-256, the image count and the
    metadata they were saved with."""
    entry: dict[str, Any] = {f"{side}_statistics": str(given)
                             if not isinstance(given, FeatureStatistics)
                             else "FeatureStatistics"}
    if not isinstance(given, FeatureStatistics):
        entry[f"{side}_statistics_sha256"] = file_sha256(given)
    entry[f"num_{side}"] = stats.num_images
    entry[f"{side}_statistics_metadata"] = stats.metadata
    return entry
