"""Per-pixel noise injection with a learned strength (StyleGAN2)."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

__all__ = ["NOISE_MODES", "NoiseInjection", "NoiseMode", "check_noise_mode", "set_noise_skipping"]

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

    Skipping zero-strength noise (``skip_zero_strength=True``, off by default): when the
    strength is exactly 0 nothing is drawn or added, which leaves the output unchanged (``x +
    0 * n == x``) but draws fewer numbers from the global random generator, so whatever is drawn
    after the forward (the next latents, say) differs from a run without skipping. It only
    applies when no gradient is being recorded for the strength (a layer skipped during training
    would never get a gradient and stay at 0 forever), never inside ``torch.compile`` (the test
    is data-dependent), and it reads the strength on the host, a device sync on GPUs. The choice
    depends only on the strength, which is saved with the weights, so a resumed run makes the
    same choices and stays exact; the trainer leaves skipping off. Turn it on for a model with
    [`set_noise_skipping`][pixelfold.layers.noise.set_noise_skipping]; ``noise_mode="none"``
    skips every noise layer whatever its strength.

    Args:
        resolution: ``(H, W)`` (or an int for square) of the constant noise image; without it,
            ``"const"`` mode is unavailable.
        skip_zero_strength: skip drawing and adding noise while the strength is exactly 0
            (outside autograd and compilation), see above.
    """

    def __init__(
        self,
        resolution: int | tuple[int, int] | None = None,
        *,
        skip_zero_strength: bool = False,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.skip_zero_strength = skip_zero_strength
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
        *,
        gain: float = 1.0,
        inplace: bool = False,
    ) -> torch.Tensor:
        """Add scaled noise to ``x`` ``(B, C, H, W)``: ``x + gain * strength * noise``.

        Args:
            x: features.
            noise_mode: ``"random"``, ``"const"`` or ``"none"``.
            noise: explicit noise broadcastable to ``(B, 1, H, W)``; overrides ``noise_mode``.
            gain: multiplies the strength (a fused block's activation gain, folded in).
            inplace: add into ``x`` itself when the result has its shape: for a caller's own
                fresh output that no autograd node saved.
        """
        noise = self.noise_image(x, noise_mode, noise)
        if noise is None:
            return x
        strength = self.weight if gain == 1.0 else self.weight * gain
        noise = noise.to(x.dtype)
        if inplace and torch.broadcast_shapes(x.shape, noise.shape) == x.shape:
            return x.addcmul_(noise, strength.to(x.dtype))
        return x + strength.to(x.dtype) * noise

    def is_skipping(self) -> bool:
        """Whether a call now would skip zero-strength noise (see the class docs)."""
        if not self.skip_zero_strength or torch.compiler.is_compiling():
            return False
        if self.weight.requires_grad and torch.is_grad_enabled():
            return False
        if self.weight.device.type == "meta":
            return False
        return not bool(self.weight.detach().any())

    def noise_image(
        self,
        x: torch.Tensor,
        noise_mode: NoiseMode = "random",
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor | None:
        """The noise image that ``forward`` scales by the strength and adds to ``x``, or ``None``
        when nothing is added (``noise_mode="none"``, or zero-strength noise being skipped).
        Fused blocks use it to add the noise inside their own epilogue.

        Args:
            x: features ``(B, C, H, W)`` (only the shape, device and dtype are used).
            noise_mode: ``"random"``, ``"const"`` or ``"none"``.
            noise: explicit noise, returned as is (``noise_mode`` is not consulted).
        """
        if noise is None:
            check_noise_mode(noise_mode)
            if noise_mode == "none" or self.is_skipping():
                return None
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
        return noise

    def extra_repr(self) -> str:
        res = None if self.noise_const is None else tuple(self.noise_const.shape[2:])
        return f"resolution={res}" + (", skip_zero_strength=True" if self.skip_zero_strength
                                      else "")


def set_noise_skipping(module: nn.Module, enabled: bool = True) -> int:
    """Set ``skip_zero_strength`` on every [`NoiseInjection`][pixelfold.layers.NoiseInjection]
    inside ``module`` (a generator, say) and return how many there are.

    Skipping changes how many numbers inference draws from the global random generator, not
    its output; it never applies while training (see ``NoiseInjection``).

    Args:
        module: any module.
        enabled: turn skipping on or off.
    """
    layers = [m for m in module.modules() if isinstance(m, NoiseInjection)]
    for layer in layers:
        layer.skip_zero_strength = enabled
    return len(layers)
