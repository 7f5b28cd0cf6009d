"""Helpers for comparing implementations of pixelfold's layers and models (the tests, the
benchmarks and ``benchmarks/check_device.py`` use them)."""

from __future__ import annotations

import torch
from torch import nn

from .noise import NoiseInjection

__all__ = ["trained_like"]


def trained_like(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give zero-initialized parameters (noise strengths, biases) non-zero values, as training
    would, so that comparisons of implementations exercise every term (in place; returns
    ``module``).

    Every noise strength becomes 0.3 and every all-zero ``bias`` ``N(0, 0.2²)`` from ``seed``.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(0.3)
        for name, p in module.named_parameters():
            if name.endswith("bias") and not p.any():
                p.copy_(0.2 * torch.randn(p.shape, generator=gen).to(p))
    return module
