"""Minibatch standard deviation (ProGAN / StyleGAN2 discriminators)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["MinibatchStdDev"]


class MinibatchStdDev(nn.Module):
    """Append the standard deviation across groups of samples as extra feature maps.

    The batch is split into groups of ``group_size`` samples (sample ``n`` belongs to group
    ``n mod (B / group_size)``); within each group the per-feature standard deviation is
    averaged over ``C / num_channels`` channels and all pixels, giving ``num_channels``
    scalars that are broadcast as constant maps and concatenated:
    ``(B, C, H, W) -> (B, C + num_channels, H, W)``.

    Args:
        group_size: samples per group; clipped to the batch size, which must be divisible by
            the result.
        num_channels: number of statistics (StyleGAN2: 1).
        eps: added to the variance before the square root.
    """

    def __init__(self, group_size: int = 4, num_channels: int = 1, eps: float = 1e-8) -> None:
        super().__init__()
        if group_size < 1 or num_channels < 1:
            raise ValueError(f"MinibatchStdDev needs group_size and num_channels >= 1, "
                             f"got {group_size}, {num_channels}")
        self.group_size = group_size
        self.num_channels = num_channels
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        f = self.num_channels
        if b % g:
            raise ValueError(f"MinibatchStdDev(group_size={self.group_size}) needs the batch "
                             f"size divisible by {g}, got {b}")
        if c % f:
            raise ValueError(f"MinibatchStdDev(num_channels={f}) needs channels divisible by "
                             f"{f}, got {c}")
        y = x.reshape(g, -1, f, c // f, h, w)
        y = (y - y.mean(0)).square().mean(0)
        y = (y + self.eps).sqrt().mean([2, 3, 4])  # (B / g, f)
        y = y.reshape(-1, f, 1, 1).repeat(g, 1, h, w)
        return torch.cat([x, y.to(x.dtype)], dim=1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}, num_channels={self.num_channels}"
