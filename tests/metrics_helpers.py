"""A fast stand-in for torch-fidelity's feature networks, for tests of what pixelfold does
around them (which images reach the network, statistics, subsets, protocols, estimates).

torch-fidelity's Inception-v3 costs seconds per dozen images on a CPU; the tests that need
its numbers are in ``tests/test_metrics.py``. ``StandInFeatures`` is a torch-fidelity feature
extractor (same interface: uint8 images in, a tuple of features out) that pools the image to
8x8 and projects it with a fixed random matrix: different images give different features, the
same images the same ones, in microseconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch_fidelity.feature_extractor_base import FeatureExtractorBase

FEATURES = {"2048": 32, "logits_unbiased": 10, "fc2_relu": 16}
"""Layer name -> dimension of the stand-in's features."""


class StandInFeatures(FeatureExtractorBase):
    """uint8 ``(B, 3, H, W)`` -> features of ``FEATURES``' dimensions, a fixed function."""

    def __init__(self, name: str, features_list: list[str]) -> None:
        super().__init__(name, features_list)
        gen = torch.Generator().manual_seed(0)
        self.projections = {layer: torch.randn(3 * 8 * 8, dim, generator=gen)
                            for layer, dim in FEATURES.items()}
        self.calls = 0

    @staticmethod
    def get_provided_features_list() -> tuple[str, ...]:
        return tuple(FEATURES)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        assert x.dtype == torch.uint8 and x.ndim == 4 and x.shape[1] == 3
        self.calls += 1
        pooled = F.adaptive_avg_pool2d(x.float() / 255, 8).flatten(1)
        return tuple(torch.tanh(pooled @ self.projections[layer].to(x.device))
                     for layer in self.features_list)


def install_stand_in(monkeypatch: Any, folder: Path) -> dict[str, Any]:
    """Replace the networks of ``compute_metrics`` by ``StandInFeatures`` (with pytest's
    ``monkeypatch``); returns the paths of weights files that pass pixelfold's checks
    (broadcast zeros of the right names and shapes, written into ``folder``: the stand-in
    ignores them) as ``{"inception": ..., "vgg16": ...}``, and the networks built so far as
    ``"built"``."""
    from pixelfold.metrics import fidelity

    from .reliability.cases_metrics import write_zeros

    built: list[StandInFeatures] = []

    def extractor(name, layers, tensors, *, cuda, verbose):
        net = StandInFeatures(name, layers)
        built.append(net)
        return net

    monkeypatch.setattr(fidelity, "fidelity_extractor", extractor)
    files: dict[str, Any] = {kind: str(write_zeros(folder / f"{kind}-zeros.pth", kind))
                             for kind in ("inception", "vgg16")}
    files["built"] = built
    return files
