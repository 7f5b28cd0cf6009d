"""Curves of a training run: its metrics and ADA's strength against kimg.

[`plot_metrics`][pixelfold.tools.plots.plot_metrics] reads ``metrics.jsonl`` (written by the
trainer at every evaluation, see [`pixelfold.training.evaluation`][pixelfold.training.evaluation])
and draws one panel per metric (FID, KID, ...) and, for ADA runs, one for ``p`` and ``r_t``,
against thousands of images shown to the discriminator. The best value of the best metric is
marked. Drawn with matplotlib (the ``docs`` extra), which must be installed.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

__all__ = ["plot_metrics"]

_LABELS = {"fid": "FID", "kid": "KID", "precision": "precision", "recall": "recall",
           "inception_score": "Inception score", "ppl": "PPL", "fd_dinov2": "FD-DINOv2",
           "augment/p": "ADA p", "augment/rt": "ADA r_t"}


def _series(rows: list[dict[str, Any]]) -> dict[str, list[tuple[float, float]]]:
    """Metric (and ADA) name -> (kimg, value) points, the last evaluation of a step winning
    (a resumed run evaluates steps again)."""
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        by_step[int(row["step"])] = row
    out: dict[str, list[tuple[float, float]]] = {}
    for step in sorted(by_step):
        row = by_step[step]
        values = {k: v for k, v in row.get("metrics", {}).items() if not k.endswith("_std")}
        values.update(row.get("training", {}))
        for name, value in values.items():
            out.setdefault(name, []).append((float(row["kimg"]), float(value)))
    return out


def plot_metrics(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, *,
                 metrics: list[str] | None = None, best: str | None = None) -> Path:
    """Draw the metrics of the run in ``run_dir`` against kimg and write a PNG.

    Args:
        run_dir: a run's output folder (holding ``metrics.jsonl``), or the file itself.
        out: the PNG to write (default: ``RUN_DIR/metrics.png``).
        metrics: the values to draw (default: every metric in the log, then ADA's ``p`` and
            ``r_t`` when present).
        best: the value whose best point is marked (default: the run's ``best.metric`` from
            ``trainer_state.json``, else FID when logged).

    Returns:
        The path written.

    Raises:
        FileNotFoundError: no ``metrics.jsonl`` (the run computed no metrics: train with
            ``--metrics``).
        ValueError: the log is not valid, or a requested value is not in it.
        ImportError: matplotlib is not installed.
    """
    import json

    from ..training.evaluation import HIGHER_IS_BETTER, read_metrics_log
    from .figures import save_image

    run = Path(run_dir)
    log = run if run.is_file() else run / "metrics.jsonl"
    if not log.is_file():
        raise FileNotFoundError(f"{run} has no metrics.jsonl: the run computed no metrics "
                                f"(train with --metrics fid)")
    rows = read_metrics_log(log)
    if not rows:
        raise ValueError(f"{log} holds no evaluation yet")
    series = _series(rows)
    names = metrics or [n for n in series if not n.startswith("augment/")]
    unknown = [n for n in names if n not in series]
    if unknown:
        raise ValueError(f"{log} has no {', '.join(unknown)} (it has {', '.join(series)})")
    ada = [n for n in ("augment/p", "augment/rt") if n in series] if metrics is None else []
    if best is None:
        state = log.parent / "trainer_state.json"
        try:
            best = json.loads(state.read_text()).get("best", {}).get("metric")
        except (OSError, ValueError, AttributeError):
            best = None
        best = best or ("fid" if "fid" in series else None)
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:
        raise ImportError("plotting needs matplotlib: pip install matplotlib (or the docs "
                          "extra, pip install 'pixelfold[docs]')") from None
    panels = len(names) + (1 if ada else 0)
    fig, axes = plt.subplots(panels, 1, figsize=(6.4, 2.2 * panels + 0.4), sharex=True,
                             squeeze=False)
    for ax, name in zip(axes[:, 0], names, strict=False):
        kimg, values = zip(*series[name], strict=True)
        ax.plot(kimg, values, marker="o", markersize=3, linewidth=1.5)
        ax.set_ylabel(_LABELS.get(name, name))
        ax.grid(alpha=0.3)
        if name == best:
            pick = max if name in HIGHER_IS_BETTER else min
            k, v = pick(series[name], key=lambda kv: kv[1])
            ax.scatter([k], [v], s=60, facecolors="none", edgecolors="C3", zorder=3)
            ax.annotate(f"best {v:.4g} at {k:g} kimg", (k, v), textcoords="offset points",
                        xytext=(6, 6), fontsize=8, color="C3")
    if ada:
        ax = axes[-1, 0]
        for name, style in zip(ada, ("-", "--"), strict=False):
            kimg, values = zip(*series[name], strict=True)
            ax.plot(kimg, values, style, label=_LABELS[name], linewidth=1.5)
        ax.set_ylabel("ADA")
        ax.set_ylim(-0.05, 1.05)
        ax.legend(fontsize=8, loc="best")
        ax.grid(alpha=0.3)
    axes[-1, 0].set_xlabel("kimg (thousands of real images shown to D)")
    fig.suptitle(f"{log.parent.name}: {len(series[names[0]])} evaluations", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    from PIL import Image

    buffer.seek(0)
    target = Path(out) if out is not None else log.parent / "metrics.png"
    with Image.open(buffer) as image:
        save_image(image.convert("RGB"), target)
    return target
