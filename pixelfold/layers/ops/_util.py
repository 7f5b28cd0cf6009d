"""Small predicates the fast implementations share."""

from __future__ import annotations

import torch

__all__ = ["channels_last", "may_write_in_place"]


def may_write_in_place(*tensors: torch.Tensor | None) -> bool:
    """True when an epilogue may overwrite the freshly computed output: eager mode and no
    autograd graph through the operands (in-place updates would otherwise be recorded)."""
    if torch.compiler.is_compiling():
        return False
    if not torch.is_grad_enabled():
        return True
    return not any(t is not None and t.requires_grad for t in tensors)


def channels_last(t: torch.Tensor) -> bool:
    """Strictly channels-last (not also contiguous, as tensors with H = W = 1 are)."""
    return t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
