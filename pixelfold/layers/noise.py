"""Per-pixel noise injection with a learned strength (StyleGAN2)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["NOISE_MODES", "NoiseInjection", "NoiseMode", "check_noise_mode"]

NoiseMode = Literal["random", "const", "none"]
"""Noise of [`NoiseInjection`][pixelfold.layers.NoiseInjection]: fresh ``"random"`` noise on
every call, the stored ``"const"`` noise image, or ``"none"``."""
NOISE_MODES: tuple[str, ...] = ("random", "const", "none")
"""The valid values of [`NoiseMode`][pixelfold.layers.NoiseMode], for run-time checks."""


def check_noise_mode(noise_mode: str) -> str:
    """Return ``noise_mode`` if it is one of [`NOISE_MODES`][pixelfold.layers.NOISE_MODES], else
    raise ``ValueError``."""
    if noise_mode not in NOISE_MODES:
        raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
    return noise_mode


class NoiseInjection(nn.Module):
    """Add ``strength * n`` to the input, with ``n`` a single-channel noise image.

    ``strength`` is one learned scalar initialized to 0, so a fresh layer is the identity.

    Noise modes (``forward(x, noise_mode=...)``):

    * ``"random"``: fresh ``N(0, 1)`` noise of shape ``(B, 1, H, W)`` on every call;
    * ``"const"``: a fixed noise image stored in the buffer ``noise_const`` (drawn once at
      construction, saved with the weights), which makes the output deterministic;
    * ``"none"``: no noise at all.

    An explicit ``noise`` tensor, broadcastable to ``(B, 1, H, W)``, overrides the mode.

    Args:
        resolution: ``(H, W)`` (or an int for square) of the constant noise image; without it,
            ``"const"`` mode is unavailable.
    """

    def __init__(
        self,
        resolution: int | tuple[int, int] | None = None,
        *,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, device=device, dtype=dtype))
        if resolution is None:
            self.noise_const: torch.Tensor | None = None
        else:
            h, w = (resolution, resolution) if isinstance(resolution, int) else resolution
            if h < 1 or w < 1:
                raise ValueError(f"resolution must be positive, got {resolution!r}")
            self.register_buffer("noise_const", torch.randn(1, 1, h, w, device=device,
                                                            dtype=dtype))

    def forward(
        self,
        x: torch.Tensor,
        noise_mode: NoiseMode = "random",
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Add scaled noise to ``x`` ``(B, C, H, W)``.

        Args:
            x: features.
            noise_mode: ``"random"``, ``"const"`` or ``"none"``.
            noise: explicit noise broadcastable to ``(B, 1, H, W)``; overrides ``noise_mode``.
        """
        if noise is None:
            check_noise_mode(noise_mode)
            if noise_mode == "none":
                return x
            if noise_mode == "const":
                if self.noise_const is None:
                    raise ValueError(
                        "noise_mode='const' needs NoiseInjection(resolution=...) to hold a "
                        "constant noise image; this layer was built without one"
                    )
                if tuple(self.noise_const.shape[2:]) != tuple(x.shape[2:]):
                    raise ValueError(
                        f"constant noise is {tuple(self.noise_const.shape[2:])} but the input is "
                        f"{tuple(x.shape[2:])} (shape {tuple(x.shape)})"
                    )
                noise = self.noise_const
            else:
                noise = torch.randn(x.shape[0], 1, x.shape[2], x.shape[3], device=x.device,
                                    dtype=x.dtype)
        return x + self.weight.to(x.dtype) * noise.to(x.dtype)

    def extra_repr(self) -> str:
        res = None if self.noise_const is None else tuple(self.noise_const.shape[2:])
        return f"resolution={res}"
