"""Class labels of conditional models: integer classes or one-hot / soft vectors, checked.

A class-conditional generator or discriminator takes its labels ``c`` either as integer class
indices ``(B,)`` or as vectors ``(B, c_dim)`` (one-hot, or soft mixtures of classes);
[`label_vectors`][pixelfold.layers.label_vectors] turns both into the float vectors the
label embeddings read, after checking them: a conditional model called without labels, a class
out of range or a wrong shape is one error naming the value.
"""

from __future__ import annotations

import torch

from ..utils.errors import ConfigError

__all__ = ["LabelError", "label_vectors"]


class LabelError(ConfigError):
    """Labels that do not fit a model: missing for a conditional model, given to an
    unconditional one, a class out of range or a wrong shape (a ``ValueError``)."""


def label_vectors(c: torch.Tensor | None, c_dim: int, batch: int, *, owner: str,
                  like: torch.Tensor) -> torch.Tensor | None:
    """Labels as float vectors ``(batch, c_dim)`` in the dtype and on the device of ``like``.

    Args:
        c: integer class indices ``(batch,)`` (or a plain int, one class for the whole batch),
            or float vectors ``(batch, c_dim)`` (one-hot or soft); ``None`` for an
            unconditional model.
        c_dim: the number of classes of the model (0: unconditional).
        batch: the batch size the labels must have.
        owner: who takes them, in messages (``"the generator"``).
        like: a weight of the model (dtype and device of the result).

    Returns:
        ``None`` when ``c_dim == 0`` (and ``c`` is ``None``), else the vectors.

    Raises:
        LabelError: ``c`` missing for a conditional model, given to an unconditional one, a
            class outside ``[0, c_dim)``, a shape other than ``(batch,)`` / ``(batch,
            c_dim)``. Vectors are not checked further (no device synchronization): their
            values are the caller's.
    """
    if c_dim == 0:
        if c is not None:
            raise LabelError(f"{owner} is unconditional (c_dim 0) but was given class labels "
                             f"c: call it without c")
        return None
    if c is None:
        raise LabelError(f"{owner} is class-conditional ({c_dim} classes): give the labels c, "
                         f"class indices (B,) in [0, {c_dim - 1}] or vectors (B, {c_dim})")
    if isinstance(c, bool) or not isinstance(c, (int, torch.Tensor)):
        raise LabelError(f"{owner} takes labels c as a tensor (or an int class), got a "
                         f"{type(c).__name__}")
    if isinstance(c, int):
        c = torch.full((batch,), c, dtype=torch.long, device=like.device)
    if c.dtype == torch.bool:
        raise LabelError(f"{owner} takes labels c as integer classes or float vectors, got "
                         f"a bool tensor")
    if not c.is_floating_point() and not c.is_complex():
        if c.ndim != 1 or c.shape[0] != batch:
            raise LabelError(f"{owner} expects class indices c of shape ({batch},), got "
                             f"{tuple(c.shape)}")
        if not torch.compiler.is_compiling() and c.numel():
            lo, hi = int(c.min()), int(c.max())
            if lo < 0 or hi >= c_dim:
                bad = lo if lo < 0 else hi
                raise LabelError(f"class {bad} is out of range: {owner} has {c_dim} classes "
                                 f"(0 to {c_dim - 1})")
        return torch.nn.functional.one_hot(c.to(like.device).long(), c_dim).to(like.dtype)
    if c.is_complex() or c.ndim != 2 or tuple(c.shape) != (batch, c_dim):
        raise LabelError(f"{owner} expects label vectors c of shape ({batch}, {c_dim}), got "
                         f"{tuple(c.shape)} {c.dtype}")
    return c.to(like.device, like.dtype)
