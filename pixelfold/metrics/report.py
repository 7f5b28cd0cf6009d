"""[`MetricsReport`][pixelfold.metrics.report.MetricsReport]: the numbers and the protocol
behind them."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, fields
from typing import Any

from ..utils import NonFiniteError

__all__ = ["MetricsReport"]

# attribute -> (label in tables, attribute of its spread or None, format)
_ROWS: dict[str, tuple[str, str | None, str]] = {
    "fid": ("FID", None, ".4f"),
    "kid": ("KID", "kid_std", ".6f"),
    "precision": ("precision", None, ".4f"),
    "recall": ("recall", None, ".4f"),
    "inception_score": ("IS", "inception_score_std", ".4f"),
    "ppl": ("PPL", "ppl_std", ".2f"),
    "fd_dinov2": ("FD-DINOv2", None, ".3f"),
}


def _label(name: str) -> str:
    """How an attribute is called in messages: ``"FID"``, ``"the standard deviation of KID"``."""
    for attr, (label, spread, _) in _ROWS.items():
        if name == attr:
            return label
        if name == spread:
            return f"the standard deviation of {label}"
    return name


@dataclass
class MetricsReport:
    """Metric values (``None`` when not computed) and the protocol that produced them.

    Every value is a finite number: a NaN or infinite result raises
    ``pixelfold.utils.NonFiniteError`` naming it instead of being reported.

    ``protocol`` maps a group (``"fidelity"`` for FID/KID/precision/recall/IS, ``"ppl"``,
    ``"fd_dinov2"``) to the settings of that computation: image counts, seeds, quantization,
    resize filter, feature extractor and the exact weights file (path and SHA-256). Reports of
    separate calls combine with [`merge`][pixelfold.metrics.report.MetricsReport.merge].

    Attributes:
        fid: Fréchet Inception distance.
        kid: kernel Inception distance (mean over subsets; unbiased MMD², cubic kernel).
        kid_std: standard deviation of KID over subsets.
        precision: improved precision (Kynkäänniemi et al. 2019).
        recall: improved recall.
        inception_score: Inception score (mean over splits).
        inception_score_std: its standard deviation over splits.
        ppl: perceptual path length (mean after discarding the 1% tails).
        ppl_std: standard deviation of the kept path lengths.
        fd_dinov2: Fréchet distance in DINOv2 feature space.
        protocol: how each group of numbers was computed.
    """

    fid: float | None = None
    kid: float | None = None
    kid_std: float | None = None
    precision: float | None = None
    recall: float | None = None
    inception_score: float | None = None
    inception_score_std: float | None = None
    ppl: float | None = None
    ppl_std: float | None = None
    fd_dinov2: float | None = None
    protocol: dict[str, dict[str, Any]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in self.metrics().items():
            if not math.isfinite(value):
                raise NonFiniteError(f"{_label(name)} came out {value}, not a finite number, so "
                                     f"it is not reported")

    def metrics(self) -> dict[str, float]:
        """The computed values, by attribute name."""
        return {f.name: getattr(self, f.name) for f in fields(self)
                if f.name != "protocol" and getattr(self, f.name) is not None}

    def merge(self, other: MetricsReport) -> MetricsReport:
        """A report with the values and protocol groups of both (``other`` wins on overlap)."""
        values = {**self.metrics(), **other.metrics()}
        return MetricsReport(**values, protocol={**self.protocol, **other.protocol})

    def to_dict(self) -> dict[str, Any]:
        """``{"metrics": {...}, "protocol": {...}}``, JSON-serializable."""
        return {"metrics": self.metrics(), "protocol": json.loads(json.dumps(
            self.protocol, default=str))}

    def to_json(self, indent: int | None = 2) -> str:
        """[`to_dict`][pixelfold.metrics.report.MetricsReport.to_dict] as JSON text."""
        return json.dumps(self.to_dict(), indent=indent, default=str)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricsReport:
        """Inverse of [`to_dict`][pixelfold.metrics.report.MetricsReport.to_dict]."""
        return cls(**data.get("metrics", {}), protocol=data.get("protocol", {}))

    def __str__(self) -> str:
        lines = []
        for name, (label, spread, fmt) in _ROWS.items():
            value = getattr(self, name)
            if value is None:
                continue
            text = format(value, fmt)
            spread_value = getattr(self, spread) if spread else None
            if spread_value is not None:
                text += f" ± {format(spread_value, fmt)}"
            lines.append((label, text))
        width = max([len(label) for label, _ in lines] + [len("metric")])
        out = [f"{'metric':<{width}}  value", f"{'-' * width}  {'-' * 16}"]
        out += [f"{label:<{width}}  {text}" for label, text in lines]
        for group, settings in self.protocol.items():
            out.append("")
            out.append(f"protocol ({group}):")
            key_width = max((len(k) for k in settings), default=0)
            out += [f"  {key:<{key_width}}  {value}" for key, value in settings.items()]
        return "\n".join(out)
