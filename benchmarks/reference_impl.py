"""The straightforward implementation that the benchmarks compare pixelfold's fast paths
against: pixelfold's own models run under
[`use_impl("ref")`][pixelfold.layers.use_impl], i.e. every op with a fast path runs its
readable definition from ``pixelfold/layers/ops/reference.py``:

* ModConv: per-sample modulated and demodulated weights, one grouped convolution with
  ``groups=B`` (StyleGAN2's ``fused_modconv``), for every kernel size and batch size;
* FIR resampling (the RGB skip upsampling of ToRGB, the blurs of the discriminator and of the
  upsampling ModConv): zero insertion, an explicit padded copy, a depthwise convolution over
  every sample, then decimation by slicing;
* noise, bias, leaky ReLU and the ``sqrt(2)`` gain as separate operations; plain
  ``F.conv2d`` (autograd's own double backward).

The benchmarks run it on NCHW models. The noise is drawn from the global generator in the
same order and with the same shapes as the fast path, so with the same seed both see the same
noise and their outputs can be compared directly. The tests compare against the package's
reference directly (``tests/test_fast_paths.py``).
"""

from __future__ import annotations

import torch
from torch import nn

from pixelfold.layers import use_impl
from pixelfold.layers.testing import trained_like
from pixelfold.models import Discriminator, Generator

__all__ = ["reference_discriminator", "reference_generator", "reference_synthesis",
           "trained_like"]


def reference_synthesis(synthesis: nn.Module, ws: torch.Tensor,
                        noise_mode: str = "random") -> torch.Tensor:
    """``G.synthesis(ws, noise_mode)`` with the readable definitions."""
    with use_impl("ref"):
        return synthesis(ws, noise_mode=noise_mode)


def reference_generator(G: Generator, z: torch.Tensor, truncation_psi: float = 1.0,
                        noise_mode: str = "random") -> torch.Tensor:
    """``G(z, truncation_psi=..., noise_mode=...)`` with the readable definitions."""
    with use_impl("ref"):
        return G(z, truncation_psi=truncation_psi, noise_mode=noise_mode)


def reference_discriminator(D: Discriminator, images: torch.Tensor) -> torch.Tensor:
    """``D(images)`` with the readable definitions (every blur an explicit pad and a
    full-resolution depthwise convolution)."""
    with use_impl("ref"):
        return D(images)
