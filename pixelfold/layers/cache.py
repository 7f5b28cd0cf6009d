"""A tensor computed from a module's own weights, kept between inference calls.

Used by [`SynthesisStage`][pixelfold.models.SynthesisStage] for its style-free input (the
positional encoding through the 1x1 input layers), which is the same for every call until the
weights change.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["InferenceCache"]


class InferenceCache:
    """One tensor computed without autograd from some source tensors, reused until one of them
    changes.

    The cached value is dropped explicitly by
    [`clear`][pixelfold.layers.cache.InferenceCache.clear]: the owner calls it from its
    ``_apply`` (``.to()``, ``.cuda()``, ``.half()``, ``.to(memory_format=...)``), and
    [`attach`][pixelfold.layers.cache.InferenceCache.attach] makes every ``load_state_dict``
    call it; and implicitly when a source tensor is replaced or changed in place (an optimizer
    step): each tensor's storage address and version counter are part of the key. While
    autograd records, while ``torch.compile`` traces, and when a source has no version counter
    (it was created under ``torch.inference_mode``) nothing is cached: the value is computed on
    every call.
    """

    def __init__(self) -> None:
        self._key: tuple[Any, tuple[tuple[int, int], ...]] | None = None
        self.value: torch.Tensor | None = None

    @staticmethod
    def attach(owner: nn.Module, attribute: str) -> None:
        """Clear ``owner.<attribute>`` (an ``InferenceCache``) after every
        ``load_state_dict`` that reaches ``owner``; the owner's ``_apply`` must call
        ``clear()`` itself (a method, so that copies of the module clear their own cache)."""
        owner.register_load_state_dict_post_hook(_ClearAfterLoad(attribute))

    def clear(self) -> None:
        """Drop the cached value."""
        self._key = None
        self.value = None

    def get(self, compute: Callable[[], torch.Tensor],
            sources: Callable[[], Iterable[torch.Tensor]], key: Any = None) -> torch.Tensor:
        """The cached value, or ``compute()`` (stored when caching applies).

        Args:
            compute: computes the value.
            sources: the tensors the value depends on.
            key: what else the value depends on (compared with ``==``; e.g. a coordinate
                window): another key recomputes it, and the new value replaces the old.
        """
        if torch.is_grad_enabled() or torch.compiler.is_compiling():
            return compute()
        tensors = list(sources())
        if any(t.is_inference() for t in tensors):
            return compute()
        full_key = (key, tuple((t.data_ptr(), t._version) for t in tensors))
        if self.value is None or full_key != self._key:
            self.value, self._key = compute(), full_key
        return self.value


class _ClearAfterLoad:
    """A ``load_state_dict`` post-hook that clears the module's cache named ``attribute``
    (a class, not a closure: a deep copy of the module gets a hook that clears its own)."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute

    def __call__(self, module: nn.Module, incompatible_keys: Any) -> None:
        getattr(module, self.attribute).clear()
