"""Reversible pixel folding: stack each ``factor x factor`` patch of pixels into channels.

Folding is the space-to-depth rearrangement PixelFolder uses to run 3x3 convolutions on a large
pixel tensor at a fraction of its resolution; unfolding is its exact inverse. Both are pure
permutations of tensor elements (no arithmetic), written as einops patterns.

``"pixelfolder"`` order (the authors' code, needed to load their weights):

    fold:   b c (h p1) (w p2) -> b (p1 p2 c) h w
    unfold: b (p1 p2 c) h w -> b c (h p1) (w p2)

``"pixel_shuffle"`` order (``torch.nn.functional.pixel_unshuffle`` / ``pixel_shuffle``):

    fold:   b c (h p1) (w p2) -> b (c p1 p2) h w
    unfold: b (c p1 p2) h w -> b c (h p1) (w p2)
"""

from __future__ import annotations

from typing import Literal

import torch
from einops import rearrange
from einops.layers.torch import Rearrange
from torch import nn

from ..utils.spec import check_int

__all__ = [
    "ChannelOrder",
    "PixelFold",
    "PixelUnfold",
    "fold_pattern",
    "pixel_fold",
    "pixel_unfold",
    "unfold_pattern",
]

ChannelOrder = Literal["pixelfolder", "pixel_shuffle"]
"""How folded channels are ordered: ``"pixelfolder"`` packs them ``(p1 p2 c)`` (the authors'
layout, needed to load their weights); ``"pixel_shuffle"`` packs them ``(c p1 p2)`` like
``torch.nn.functional.pixel_unshuffle``."""

_PACKED = {"pixelfolder": "(p1 p2 c)", "pixel_shuffle": "(c p1 p2)"}


def _check_order(channel_order: str) -> str:
    if channel_order not in _PACKED:
        raise ValueError(
            f"channel_order must be one of {sorted(_PACKED)}, got {channel_order!r}"
        )
    return _PACKED[channel_order]


def _check_factor(factor: int) -> int:
    return check_int(factor, "factor")


def fold_pattern(channel_order: ChannelOrder = "pixelfolder") -> str:
    """The einops pattern of [`pixel_fold`][pixelfold.layers.pixel_fold] for ``channel_order``."""
    return f"b c (h p1) (w p2) -> b {_check_order(channel_order)} h w"


def unfold_pattern(channel_order: ChannelOrder = "pixelfolder") -> str:
    """The einops pattern of [`pixel_unfold`][pixelfold.layers.pixel_unfold] for
    ``channel_order``."""
    return f"b {_check_order(channel_order)} h w -> b c (h p1) (w p2)"


def _not_a_tensor(layer: str, x: object) -> TypeError:
    return TypeError(f"{layer} expects a torch.Tensor (B, C, H, W), got a {type(x).__name__}")


# The checks take list[int] and use plain f-strings so that they also run inside
# torch.jit.script (where they surface as torch.jit.Error carrying the same message). The
# isinstance checks before them are resolved when scripting (the input is typed Tensor).
def _validate_fold(shape: list[int], factor: int) -> None:
    if len(shape) != 4:
        raise ValueError(
            f"PixelFold({factor}) expects a 4-D (B, C, H, W) tensor, got shape {shape}"
        )
    if shape[2] % factor != 0 or shape[3] % factor != 0:
        raise ValueError(
            f"PixelFold({factor}) needs H and W divisible by {factor}, "
            f"got {shape[2]}x{shape[3]} (shape {shape})"
        )


def _validate_unfold(shape: list[int], factor: int) -> None:
    if len(shape) != 4:
        raise ValueError(
            f"PixelUnfold({factor}) expects a 4-D (B, C, H, W) tensor, got shape {shape}"
        )
    if shape[1] % (factor * factor) != 0:
        raise ValueError(
            f"PixelUnfold({factor}) needs channels divisible by {factor * factor}, "
            f"got {shape[1]} (shape {shape})"
        )


def pixel_fold(
    x: torch.Tensor, factor: int = 2, channel_order: ChannelOrder = "pixelfolder"
) -> torch.Tensor:
    """Fold ``factor x factor`` pixel patches into channels.

    ``(B, C, H, W) -> (B, C * factor**2, H / factor, W / factor)``. Exact inverse of
    [`pixel_unfold`][pixelfold.layers.pixel_unfold] with the same ``factor`` and ``channel_order``.

    Args:
        x: input of shape ``(B, C, H, W)``; H and W must be divisible by ``factor``.
        factor: patch side length.
        channel_order: ``"pixelfolder"`` stacks ``(p1 p2 c)`` (the authors' layout);
            ``"pixel_shuffle"`` stacks ``(c p1 p2)`` like ``F.pixel_unshuffle``.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: on a non-4-D input or H/W not divisible by ``factor``.
    """
    if not isinstance(x, torch.Tensor):
        raise _not_a_tensor("pixel_fold", x)
    pattern = fold_pattern(channel_order)
    _validate_fold(list(x.shape), _check_factor(factor))
    return rearrange(x, pattern, p1=factor, p2=factor)


def pixel_unfold(
    x: torch.Tensor, factor: int = 2, channel_order: ChannelOrder = "pixelfolder"
) -> torch.Tensor:
    """Unfold channels back into ``factor x factor`` pixel patches.

    ``(B, C * factor**2, H, W) -> (B, C, H * factor, W * factor)``. Exact inverse of
    [`pixel_fold`][pixelfold.layers.pixel_fold] with the same ``factor`` and ``channel_order``.

    Args:
        x: input of shape ``(B, C', H, W)``; C' must be divisible by ``factor**2``.
        factor: patch side length.
        channel_order: ``"pixelfolder"`` reads channels as ``(p1 p2 c)``;
            ``"pixel_shuffle"`` as ``(c p1 p2)`` like ``F.pixel_shuffle``.

    Raises:
        TypeError: ``x`` is not a tensor.
        ValueError: on a non-4-D input or channels not divisible by ``factor**2``.
    """
    if not isinstance(x, torch.Tensor):
        raise _not_a_tensor("pixel_unfold", x)
    pattern = unfold_pattern(channel_order)
    _validate_unfold(list(x.shape), _check_factor(factor))
    return rearrange(x, pattern, p1=factor, p2=factor)


class PixelFold(nn.Module):
    """Fold ``factor x factor`` pixel patches into channels (space-to-depth).

    ``(B, C, H, W) -> (B, C * factor**2, H / factor, W / factor)``, the einops pattern
    ``b c (h p1) (w p2) -> b (p1 p2 c) h w`` by default. Parameter-free and an exact
    permutation of elements: ``PixelFold(f).inverse()`` is ``PixelUnfold(f)`` with the same
    channel order and undoes it bit for bit.

    Args:
        factor: patch side length (default 2, as in PixelFolder).
        channel_order: ``"pixelfolder"`` (the authors' ``(p1 p2 c)`` layout) or
            ``"pixel_shuffle"`` (``(c p1 p2)``, same as ``torch.nn.PixelUnshuffle``).

    Examples:
        >>> fold = PixelFold(2)
        >>> fold(torch.randn(1, 3, 8, 8)).shape
        torch.Size([1, 12, 4, 4])
    """

    def __init__(self, factor: int = 2, *, channel_order: ChannelOrder = "pixelfolder") -> None:
        super().__init__()
        self.factor = _check_factor(factor)
        self.channel_order = channel_order
        self.pattern = fold_pattern(channel_order)
        self.rearrange = Rearrange(self.pattern, p1=factor, p2=factor)

    def inverse(self) -> PixelUnfold:
        """The layer that undoes this one: ``PixelUnfold`` with the same factor and order."""
        return PixelUnfold(self.factor, channel_order=self.channel_order)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"PixelFold expects a torch.Tensor (B, C, H, W), got a "
                            f"{type(x).__name__}")
        _validate_fold(list(x.shape), self.factor)
        return self.rearrange(x)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, channel_order={self.channel_order!r}"


class PixelUnfold(nn.Module):
    """Unfold channels back into ``factor x factor`` pixel patches (depth-to-space).

    ``(B, C * factor**2, H, W) -> (B, C, H * factor, W * factor)``, the einops pattern
    ``b (p1 p2 c) h w -> b c (h p1) (w p2)`` by default: the exact inverse of
    [`PixelFold`][pixelfold.layers.PixelFold] with the same factor and channel order.

    Args:
        factor: patch side length (default 2, as in PixelFolder).
        channel_order: ``"pixelfolder"`` (the authors' ``(p1 p2 c)`` layout) or
            ``"pixel_shuffle"`` (``(c p1 p2)``, same as ``torch.nn.PixelShuffle``).

    Examples:
        >>> unfold = PixelUnfold(2)
        >>> unfold(torch.randn(1, 12, 4, 4)).shape
        torch.Size([1, 3, 8, 8])
    """

    def __init__(self, factor: int = 2, *, channel_order: ChannelOrder = "pixelfolder") -> None:
        super().__init__()
        self.factor = _check_factor(factor)
        self.channel_order = channel_order
        self.pattern = unfold_pattern(channel_order)
        self.rearrange = Rearrange(self.pattern, p1=factor, p2=factor)

    def inverse(self) -> PixelFold:
        """The layer that undoes this one: ``PixelFold`` with the same factor and order."""
        return PixelFold(self.factor, channel_order=self.channel_order)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"PixelUnfold expects a torch.Tensor (B, C, H, W), got a "
                            f"{type(x).__name__}")
        _validate_unfold(list(x.shape), self.factor)
        return self.rearrange(x)

    def extra_repr(self) -> str:
        return f"factor={self.factor}, channel_order={self.channel_order!r}"
