"""Metrics of class-conditional generators: over all classes, and per class (intra-class FID).

A conditional generator needs a class for every image it makes.
[`ClassConditioned`][pixelfold.metrics.conditional.ClassConditioned] gives it one (a fixed
class, or classes drawn per image from given weights) and looks like an unconditional generator
to the metrics, so everything of [`compute_metrics`][pixelfold.metrics.compute_metrics] applies
to it. A conditional generator handed to the metrics as it is gets classes drawn uniformly.

[`compute_class_metrics`][pixelfold.metrics.conditional.compute_class_metrics] computes:

* **per class** (intra-class FID, as in the class-conditional GAN literature): the images of
  class ``k`` against the real images labelled ``k``, for every class, and their mean;
* **over all classes**: images whose classes are drawn from the real data's label
  distribution (as StyleGAN2-ADA's metrics do) against all the real images.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from ..utils import DataError
from .report import MetricsReport

__all__ = ["ClassConditioned", "ClassMetrics", "compute_class_metrics"]


class ClassConditioned(nn.Module):
    """A class-conditional generator with its classes chosen, as the metrics see it:
    ``forward(z, truncation_psi=..., noise_mode=...)`` makes images of the chosen classes.

    Args:
        generator: a conditional [`Generator`][pixelfold.models.Generator] (``c_dim > 0``).
        classes: an int (every image of that class), a sequence of ``c_dim`` non-negative
            weights (each image's class drawn from them: counts of the real data, or
            probabilities) or ``None`` (drawn uniformly). Draws use torch's global generator,
            which [`GeneratorSource`][pixelfold.metrics.GeneratorSource] reseeds, so the same
            seed gives the same classes.

    Raises:
        DataError: an unconditional generator, a class out of range, or weights that are not
            ``c_dim`` non-negative numbers with a positive sum.
    """

    def __init__(self, generator: nn.Module, classes: int | Sequence[float] | None = None
                 ) -> None:
        super().__init__()
        c_dim = int(getattr(generator, "c_dim", 0))
        if c_dim < 1:
            raise DataError(f"{type(generator).__name__} is not class-conditional (c_dim 0): "
                            f"it needs no classes")
        self.generator = generator
        self.num_classes = c_dim
        self.z_dim = generator.z_dim
        self.resolution = generator.resolution
        self.spec = getattr(generator, "spec", None)
        self.c_dim = 0  # it chooses the classes itself
        self.fixed: int | None = None
        self.weights: torch.Tensor | None = None
        if isinstance(classes, int) and not isinstance(classes, bool):
            if not 0 <= classes < c_dim:
                raise DataError(f"class {classes} is out of range: the generator has {c_dim} "
                                f"classes (0 to {c_dim - 1})")
            self.fixed = classes
        else:
            weights = torch.ones(c_dim) if classes is None else torch.as_tensor(
                [float(w) for w in classes], dtype=torch.float64)
            if weights.shape != (c_dim,) or not bool(torch.isfinite(weights).all()) \
                    or bool((weights < 0).any()) or not float(weights.sum()) > 0:
                raise DataError(f"class weights must be {c_dim} non-negative numbers with a "
                                f"positive sum, got {list(classes or [])[:12]}")
            self.weights = weights.double()

    def labels(self, n: int, device: torch.device | str) -> torch.Tensor:
        """The classes of ``n`` images, ``(n,)`` integers on ``device``."""
        if self.fixed is not None:
            return torch.full((n,), self.fixed, dtype=torch.long, device=device)
        assert self.weights is not None
        return torch.multinomial(self.weights, n, replacement=True).to(device)

    def forward(self, z: torch.Tensor, c: Any = None, truncation_psi: float = 1.0,
                truncation_cutoff: int | None = None, noise_mode: str = "random",
                **kwargs: Any) -> torch.Tensor:
        """Images of ``z`` with the chosen classes (``c`` must be ``None``: the classes are
        this wrapper's)."""
        if c is not None:
            raise DataError("ClassConditioned chooses the classes itself: call it without c")
        return self.generator(z, self.labels(z.shape[0], z.device),
                              truncation_psi=truncation_psi,
                              truncation_cutoff=truncation_cutoff, noise_mode=noise_mode,
                              **kwargs)

    def describe(self) -> str:
        """The classes, for reports: ``"class 3 ('cat')"`` or the drawing rule."""
        names = getattr(self.spec, "class_names", ()) or ()
        if self.fixed is not None:
            name = names[self.fixed] if names else str(self.fixed)
            return f"class {self.fixed}" + (f" ({name!r})" if name != str(self.fixed) else "")
        assert self.weights is not None
        if bool((self.weights == self.weights[0]).all()):
            return f"uniform over {self.num_classes} classes"
        return f"drawn from the real label distribution over {self.num_classes} classes"


@dataclass
class ClassMetrics:
    """Metrics of a conditional generator over all classes and per class.

    Attributes:
        overall: over all classes (generated classes drawn from the real label distribution).
        per_class: one report per class, by class name, in class order.
        class_column: the label column of the real data.
    """

    overall: MetricsReport
    per_class: dict[str, MetricsReport] = field(default_factory=dict)
    class_column: str = "label"

    def mean(self) -> dict[str, float]:
        """The mean of each per-class value over the classes (``"fid"``: the mean
        intra-class FID)."""
        keys = sorted({k for r in self.per_class.values() for k in r.metrics()})
        return {k: float(np.mean([r.metrics()[k] for r in self.per_class.values()
                                  if k in r.metrics()])) for k in keys}

    def to_dict(self) -> dict[str, Any]:
        """``{"overall": ..., "per_class": {name: ...}, "mean_per_class": ...}``,
        JSON-serializable."""
        return {"class_column": self.class_column, "overall": self.overall.to_dict(),
                "per_class": {k: r.to_dict() for k, r in self.per_class.items()},
                "mean_per_class": self.mean()}

    def __str__(self) -> str:
        values = sorted({k for r in [self.overall, *self.per_class.values()]
                         for k in r.metrics() if not k.endswith("_std")})
        width = max([len(n) for n in self.per_class] + [len("all classes"), 5])
        lines = [f"{'class':<{width}}  " + "  ".join(f"{v:>12}" for v in values)]

        def row(name: str, metrics: dict[str, float]) -> str:
            return f"{name:<{width}}  " + "  ".join(
                f"{metrics[v]:>12.4f}" if v in metrics else f"{'-':>12}" for v in values)

        lines += [row(name, r.metrics()) for name, r in self.per_class.items()]
        if self.per_class:
            lines.append(row("mean", self.mean()))
        lines.append(row("all classes", self.overall.metrics()))
        return "\n".join(lines)


def _labelled_dataset(real: Any, resolution: int, split: str) -> Any:
    """The real images as a ``datasets.Dataset`` (with its labels)."""
    import datasets

    from ..training.data import digits_dataset, load_image_dataset

    if isinstance(real, str) and real == "digits":
        return digits_dataset(resolution)
    data = load_image_dataset(real, split=split)
    if not isinstance(data, datasets.Dataset):
        raise DataError("per-class metrics need a map-style dataset (not a streamed one)")
    return data


def compute_class_metrics(
    generator: nn.Module | str | os.PathLike,
    real: Any,
    *,
    class_column: str | None = None,
    classes: Sequence[int] | None = None,
    fid: bool = True,
    kid: bool = False,
    num_gen: int = 10_000,
    num_real: int = 50_000,
    split: str = "train",
    overall: bool = True,
    **kwargs: Any,
) -> ClassMetrics:
    """FID (and KID) of a class-conditional generator per class and over all classes.

    Args:
        generator: a conditional generator (a module, a ``save_pretrained`` folder or a Hub
            id).
        real: the labelled real images: ``"digits"``, an image folder with one subfolder per
            class, a ``save_to_disk`` folder, a Hub id or a ``datasets.Dataset``.
        class_column: their label column (see
            [`dataset_classes`][pixelfold.training.data.dataset_classes]; ``None``: found).
        classes: the class indices to evaluate one by one (default: all).
        fid: compute FID.
        kid: compute KID.
        num_gen: generated images per class, and over all classes.
        num_real: real images at most, per class and over all classes.
        split: the dataset split.
        overall: also compute the metrics over all classes.
        **kwargs: passed to [`compute_metrics`][pixelfold.metrics.compute_metrics]
            (``inception_weights``, ``batch_size``, ``device``, ``seed``, ``truncation_psi``,
            ``noise_mode``, ``resize_filter``, ``cache_dir``, ``progress``, ...).

    Returns:
        A [`ClassMetrics`][pixelfold.metrics.conditional.ClassMetrics]; each report's
        protocol records the classes in ``fidelity.classes``.

    Raises:
        DataError: an unconditional generator, real data without labels, a number of
            classes other than the generator's (both are named), or a class without real
            images.
    """
    from ..training.data import dataset_classes
    from .fidelity import compute_metrics
    from .sources import _generator_resolution, as_generator

    G = as_generator(generator)
    if not getattr(G, "c_dim", 0):
        raise DataError(f"{getattr(getattr(G, 'spec', None), 'name', None) or 'the generator'} "
                        f"is unconditional: per-class metrics need a class-conditional model")
    data = _labelled_dataset(real, _generator_resolution(G), split)
    info = dataset_classes(data, class_column)
    if info.num_classes != G.c_dim:
        raise DataError(f"the real images have {info.num_classes} classes (column "
                        f"{info.column!r}) but the generator has {G.c_dim}")
    labels = np.asarray(data[info.column], dtype=np.int64)
    wanted = list(range(G.c_dim)) if classes is None else [int(k) for k in classes]
    for k in wanted:
        if not 0 <= k < G.c_dim:
            raise DataError(f"class {k} is out of range: the generator has {G.c_dim} classes")
    names = G.class_names if hasattr(G, "class_names") else info.names

    def report(model: ClassConditioned, images: Any) -> MetricsReport:
        out = compute_metrics(model, images, fid=fid, kid=kid, prc=False, isc=False,
                              num_gen=num_gen, num_real=num_real, **kwargs)
        out.protocol["fidelity"]["classes"] = model.describe()
        out.protocol["fidelity"]["class_column"] = info.column
        return out

    per_class: dict[str, MetricsReport] = {}
    for k in wanted:
        rows = np.flatnonzero(labels == k)
        if rows.size == 0:
            raise DataError(f"class {k} ({names[k]!r}) has no real images in column "
                            f"{info.column!r}")
        per_class[names[k]] = report(ClassConditioned(G, k), data.select(rows.tolist()))
    all_classes = report(ClassConditioned(G, info.counts), data) if overall else \
        MetricsReport()
    return ClassMetrics(overall=all_classes, per_class=per_class, class_column=info.column)
