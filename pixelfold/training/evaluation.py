"""Metrics during training: evaluate the EMA generator every N kimg, log every evaluation,
keep the best generator.

[`TrainingMetrics`][pixelfold.training.evaluation.TrainingMetrics] runs the metrics of
`pixelfold.metrics` (the ones `pixelfold eval` runs, with the same
protocol) on the EMA generator against the training data:

* the metric networks' weights are found (local files, environment variables, caches) when the
  run starts, so a run that cannot evaluate fails before training, not after the first
  evaluation;
* the features of the real images are computed once and cached on disk, keyed on the dataset,
  the image subset, the resolution, the resize filter and the weights (the metrics' feature
  cache), under ``$PIXELFOLD_CACHE/metrics`` (default ``~/.cache/pixelfold/metrics``);
* each evaluation is appended to ``metrics.jsonl`` (step, kimg, values, protocol; the file is
  rewritten atomically, so a full disk never costs an earlier line), logged to the trackers
  as ``metrics/<name>``, and compared with the best so far: the best EMA generator by
  ``best_metric`` is kept as ``generator_ema-best/``.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..utils.errors import ConfigError
from ..utils.files import atomic_write_text

__all__ = [
    "HIGHER_IS_BETTER",
    "TRAIN_METRICS",
    "TrainingMetrics",
    "default_cache_dir",
    "parse_metrics",
    "read_metrics_log",
]

TRAIN_METRICS = ("fid", "kid", "pr", "is", "ppl", "fd-dinov2")
"""The metrics a run can compute (``pr`` is precision and recall, ``is`` the Inception
score), as `pixelfold eval --metrics` names them."""

_VALUES = {"fid": ("fid",), "kid": ("kid", "kid_std"), "pr": ("precision", "recall"),
           "is": ("inception_score", "inception_score_std"), "ppl": ("ppl", "ppl_std"),
           "fd-dinov2": ("fd_dinov2",)}
HIGHER_IS_BETTER = frozenset({"precision", "recall", "inception_score"})
"""Report values for which larger is better; for the others (FID, KID, PPL, FD-DINOv2)
smaller is."""


def parse_metrics(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"fid,kid"`` -> ``("fid", "kid")``, each checked against
    [`TRAIN_METRICS`][pixelfold.training.evaluation.TRAIN_METRICS]; ``None`` or ``""`` -> ``()``.

    Raises:
        ConfigError: an unknown metric name (the message lists the choices).
    """
    if text is None:
        return ()
    names = [n.strip().lower() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    bad = [n for n in names if n not in TRAIN_METRICS]
    if bad:
        raise ConfigError(f"--metrics {','.join(names)}: unknown metric(s) {', '.join(bad)}; "
                          f"choose from {', '.join(TRAIN_METRICS)}")
    return tuple(dict.fromkeys(names))


def default_cache_dir() -> Path:
    """Where real-image features are cached: ``$PIXELFOLD_CACHE/metrics``, else
    ``$XDG_CACHE_HOME/pixelfold/metrics``, else ``~/.cache/pixelfold/metrics``."""
    root = os.environ.get("PIXELFOLD_CACHE")
    if root:
        return Path(root).expanduser() / "metrics"
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "pixelfold" / "metrics"


def read_metrics_log(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The evaluations of a ``metrics.jsonl``, oldest first.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a line that is not a JSON object (its number is named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no metrics log at {path}")
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}, line {number}: not JSON ({exc})") from None
        if not isinstance(row, dict):
            raise ValueError(f"{path}, line {number}: not a JSON object")
        rows.append(row)
    return rows


@dataclass
class TrainingMetrics:
    """Evaluates a generator during training (see the module's description).

    Args:
        metrics: names from [`TRAIN_METRICS`][pixelfold.training.evaluation.TRAIN_METRICS].
        real: the real images (what [`compute_metrics`][pixelfold.metrics.compute_metrics]
            takes: a Hub id, a folder, ``"digits"``, a ``datasets.Dataset``).
        best_metric: the report value that picks the best generator (``"fid"``,
            ``"kid"``, ``"precision"``, ``"inception_score"``, ...); default: the first
            value of the first metric.
        num_gen: generated images per evaluation.
        num_real: real images at most.
        batch_size: images per batch of generation and feature extraction.
        seed: seed of the latents (the same every evaluation, so evaluations compare).
        resize_filter: filter that resizes the real images to the generator's resolution.
        weights: local weights files by argument name (``inception_weights``,
            ``vgg16_weights``, ``lpips_weights``, ``dinov2_weights``; ``None`` values: the
            environment variables, then the caches).
        cache_dir: where real-image features are cached (default
            [`default_cache_dir`][pixelfold.training.evaluation.default_cache_dir]).
    """

    metrics: tuple[str, ...]
    real: Any
    best_metric: str | None = None
    num_gen: int = 10_000
    num_real: int = 50_000
    batch_size: int = 64
    seed: int = 0
    resize_filter: str = "box"
    weights: dict[str, str | None] = field(default_factory=dict)
    cache_dir: Path | None = None

    def __post_init__(self) -> None:
        self.metrics = parse_metrics(self.metrics)
        if not self.metrics:
            raise ConfigError("TrainingMetrics needs at least one metric")
        values = [v for m in self.metrics for v in _VALUES[m] if not v.endswith("_std")]
        if self.best_metric is None:
            self.best_metric = values[0]
        elif self.best_metric not in values:
            raise ConfigError(f"--best-metric {self.best_metric!r} is not computed by "
                              f"--metrics {','.join(self.metrics)} (it gives "
                              f"{', '.join(values)})")
        if self.cache_dir is None:
            self.cache_dir = default_cache_dir()

    @property
    def higher_is_better(self) -> bool:
        """Whether a larger ``best_metric`` is better."""
        return self.best_metric in HIGHER_IS_BETTER

    def is_better(self, value: float, best: float | None) -> bool:
        """Whether ``value`` beats ``best`` (``None``: nothing yet)."""
        if best is None:
            return True
        return value > best if self.higher_is_better else value < best

    def check_weights(self) -> None:
        """Find every weights file the metrics need, now.

        Raises:
            MissingWeightsError: a file is neither given nor cached and cannot be downloaded
                (offline); the message names the flag and the environment variable.
        """
        from ..metrics.weights import (
            DINOV2_WEIGHTS,
            INCEPTION_WEIGHTS,
            LPIPS_WEIGHTS,
            VGG16_WEIGHTS,
            local_weights,
            resolve_weights,
        )

        needed = []
        if {"fid", "kid", "is"} & set(self.metrics):
            needed.append(INCEPTION_WEIGHTS)
        if {"pr", "ppl"} & set(self.metrics):
            needed.append(VGG16_WEIGHTS)
        if "ppl" in self.metrics:
            needed.append(LPIPS_WEIGHTS)
        for spec in needed:
            resolve_weights(spec, self.weights.get(spec.argument), progress=False)
        if "fd-dinov2" in self.metrics and local_weights(
                DINOV2_WEIGHTS, self.weights.get(DINOV2_WEIGHTS.argument)) is None:
            import timm.models

            from ..metrics.fd_dinov2 import DINOV2_MODEL, _hub_weights

            _hub_weights(DINOV2_MODEL, timm.models.get_pretrained_cfg(DINOV2_MODEL))

    def evaluate(self, generator: nn.Module, device: torch.device) -> Any:
        """The [`MetricsReport`][pixelfold.metrics.MetricsReport] of ``generator``."""
        from .. import metrics as M

        common = dict(batch_size=self.batch_size, device=device, seed=self.seed,
                      progress=False)
        w = self.weights
        report = None
        fidelity = [m for m in self.metrics if m in ("fid", "kid", "pr", "is")]
        if fidelity:
            report = M.compute_metrics(
                generator, self.real, fid="fid" in fidelity, kid="kid" in fidelity,
                prc="pr" in fidelity, isc="is" in fidelity, num_gen=self.num_gen,
                num_real=self.num_real, inception_weights=w.get("inception_weights"),
                vgg16_weights=w.get("vgg16_weights"), resize_filter=self.resize_filter,
                cache_dir=self.cache_dir, **common)
        if "fd-dinov2" in self.metrics:
            part = M.compute_fd_dinov2(generator, self.real, num_gen=self.num_gen,
                                       num_real=self.num_real,
                                       dinov2_weights=w.get("dinov2_weights"),
                                       resize_filter=self.resize_filter, **common)
            report = part if report is None else report.merge(part)
        if "ppl" in self.metrics:
            part = M.compute_ppl(generator, num_samples=self.num_gen,
                                 lpips_weights=w.get("lpips_weights"),
                                 vgg16_weights=w.get("vgg16_weights"), **common)
            report = part if report is None else report.merge(part)
        return report

    def append(self, log: Path, *, step: int, kimg: float, report: Any, seconds: float,
               extra: dict[str, float] | None = None) -> dict[str, Any]:
        """Add one evaluation to the log ``log`` (``metrics.jsonl``), atomically; returns
        the row: step, kimg, metric values, ``extra`` (the trainer's ``augment/p`` and
        ``augment/rt``), seconds, time and protocol."""
        row = {"step": step, "kimg": round(kimg, 3), "metrics": report.metrics(),
               **({"training": dict(extra)} if extra else {}),
               "seconds": round(seconds, 2), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
               "protocol": report.to_dict()["protocol"]}
        previous = log.read_text() if log.is_file() else ""
        if previous and not previous.endswith("\n"):
            previous += "\n"
        atomic_write_text(log, previous + json.dumps(row, default=str) + "\n")
        return row


def steps_between(every_kimg: float | None, checkpointing_steps: int, batch_total: int) -> int:
    """Optimizer steps between evaluations: every ``every_kimg`` thousand images, or with
    every checkpoint when ``None``."""
    if every_kimg is None:
        return checkpointing_steps
    return max(1, math.ceil(every_kimg * 1000 / batch_total))
