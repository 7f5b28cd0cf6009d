"""[`MetricsReport`][pixelfold.metrics.report.MetricsReport]: the numbers and the protocol
behind them."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..utils import DataError, NonFiniteError

__all__ = ["GENERATION_FIELDS", "UNCOMPARED_FIELDS", "MetricsReport", "protocol_differences"]

UNCOMPARED_FIELDS = frozenset({
    # what is evaluated: the point of a comparison is that these differ
    "generator", "generated_source", "generated_subset", "generated_statistics",
    "generated_statistics_sha256", "generated_statistics_metadata",
    # where and how long it ran, and local paths (the files' SHA-256 are compared)
    "device", "seconds", "estimated_seconds", "inception_weights", "vgg16_weights",
    "lpips_weights", "dinov2_weights", "real_statistics",
})
"""Protocol fields [`protocol_differences`][pixelfold.metrics.report.protocol_differences]
ignores: the identity of the evaluated images, the device, durations and file paths."""

GENERATION_FIELDS = frozenset({"seed", "truncation_psi", "noise_mode", "quantization",
                               "generated_preprocessing", "generated_resize_filter"})
"""Fields describing how the generated images were made; compared only when both reports
have them (a generator and a folder of images can be compared)."""

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

    @classmethod
    def load(cls, path: str | os.PathLike) -> MetricsReport:
        """Read a report written with
        [`to_json`][pixelfold.metrics.report.MetricsReport.to_json] (``pixelfold eval
        --json-out``).

        Raises:
            FileNotFoundError: no such file.
            DataError: not JSON, or not a report (the message names the file).
            NonFiniteError: a value is NaN or infinite.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no report file at {path}" if not path.is_dir() else
                                    f"{path} is a folder; expected a report .json file")
        try:
            data = json.loads(path.read_text())
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{path} is not a metrics report: not JSON ({exc})") from None
        names = {f.name for f in fields(cls)} - {"protocol"}
        if not (isinstance(data, dict) and isinstance(data.get("metrics"), dict)
                and isinstance(data.get("protocol", {}), dict)):
            raise DataError(f"{path} is not a metrics report: expected a JSON object with "
                            f"'metrics' and 'protocol' (as pixelfold eval --json-out writes)")
        unknown = sorted(set(data["metrics"]) - names)
        bad = sorted(k for k, v in data["metrics"].items()
                     if k in names and not isinstance(v, (int, float)))
        if unknown or bad:
            what = f"unknown metrics {unknown}" if unknown else f"non-numbers in {bad}"
            raise DataError(f"{path} is not a metrics report: {what}")
        try:
            return cls.from_dict(data)
        except NonFiniteError as exc:
            raise NonFiniteError(f"{path}: {exc}") from None

    def compare(self, other: MetricsReport, *, allow: set[str] | frozenset[str] = frozenset()
                ) -> str:
        """A table of the metrics of both reports and their difference (``other - self``).

        Raises:
            ValueError: the protocols of the metrics both reports hold differ in fields other
                than ``allow`` (the message names every field and both values), or the
                reports share no metric.
        """
        shared = [name for name in self.metrics() if name in other.metrics()]
        if not shared:
            raise ValueError(f"the reports share no metric ({sorted(self.metrics())} and "
                             f"{sorted(other.metrics())})")
        differences = protocol_differences(self, other, allow=allow)
        if differences:
            raise ValueError("the protocols differ in " + "; ".join(differences)
                             + ": numbers computed differently are not comparable")
        rows = [("metric", "A", "B", "B - A")]
        for name, (label, spread, fmt) in _ROWS.items():
            a, b = getattr(self, name), getattr(other, name)
            if a is None and b is None:
                continue
            diff = format(b - a, "+" + fmt) if a is not None and b is not None else "-"
            rows.append((label, _cell(self, name, spread, fmt), _cell(other, name, spread, fmt),
                         diff))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
                 for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

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


def _cell(report: MetricsReport, name: str, spread: str | None, fmt: str) -> str:
    value = getattr(report, name)
    if value is None:
        return "-"
    spread_value = getattr(report, spread) if spread else None
    return format(value, fmt) + (f" ± {format(spread_value, fmt)}"
                                 if spread_value is not None else "")


def _short_value(value: Any) -> str:
    text = json.dumps(value, default=str, sort_keys=True) if not isinstance(value, str) \
        else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def protocol_differences(a: MetricsReport, b: MetricsReport, *,
                         allow: set[str] | frozenset[str] = frozenset()) -> list[str]:
    """Where the protocols of two reports differ, for the groups (``"fidelity"``, ``"ppl"``,
    ``"fd_dinov2"``) both reports have, as ``"group.field (A vs B)"`` strings.

    Every field is compared except
    [`UNCOMPARED_FIELDS`][pixelfold.metrics.report.UNCOMPARED_FIELDS] (what was evaluated,
    the device, durations, paths whose SHA-256 is compared) and ``allow`` (field names, or
    ``group.field``); [`GENERATION_FIELDS`][pixelfold.metrics.report.GENERATION_FIELDS] only
    when both reports have them. A field present in one report only is a difference (``absent``).
    """
    out = []
    for group in sorted(set(a.protocol) & set(b.protocol)):
        pa, pb = a.protocol[group], b.protocol[group]
        pa, pb = json.loads(json.dumps(pa, default=str)), json.loads(json.dumps(pb, default=str))
        for key in sorted(set(pa) | set(pb)):
            if key in UNCOMPARED_FIELDS or key in allow or f"{group}.{key}" in allow:
                continue
            if key in GENERATION_FIELDS and (key not in pa or key not in pb):
                continue
            va = _short_value(pa[key]) if key in pa else "absent"
            vb = _short_value(pb[key]) if key in pb else "absent"
            if key not in pa or key not in pb or pa[key] != pb[key]:
                out.append(f"{group}.{key} ({va} vs {vb})")
    return out
