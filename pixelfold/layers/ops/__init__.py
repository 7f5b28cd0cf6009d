"""The ops that have a fast path, each twice: a readable definition and a fast implementation.

* [`reference`][pixelfold.layers.ops.reference]: the definitions, a few lines each, written as
  the papers state them (StyleGAN2's modulated convolution, the ``upfirdn2d`` resampling
  filter, a convolution, bias + scaled leaky ReLU). The tests compare everything against them.
* ``modconv_fast``, ``upfirdn_fast``, ``conv_fast``, ``bias_act_fast``: the same functions,
  computed with fewer passes over memory and cheaper gradients of gradients (equal to float
  rounding).

Which one runs is chosen per call by ``impl=`` (``"ref"`` or ``"fast"``) on the public ops of
``pixelfold.layers`` (``modulated_conv2d``, ``upfirdn2d``, ``filter2d``,
``upsample2d``, ``conv2d``, ``bias_leaky_relu``), and for everything at once (a whole model)
by [`use_impl`][pixelfold.layers.use_impl]:

    >>> import torch
    >>> from pixelfold.layers import StyledConv2d, use_impl
    >>> block = StyledConv2d(4, 4, 3, 8)
    >>> x, w = torch.randn(2, 4, 5, 5), torch.randn(2, 8)
    >>> with use_impl("ref"):
    ...     ref = block(x, w, noise_mode="none")
    >>> torch.allclose(block(x, w, noise_mode="none"), ref, atol=1e-5)
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

__all__ = ["IMPLS", "Impl", "get_impl", "resolve_impl", "use_impl"]

Impl = Literal["ref", "fast"]
"""``"ref"``: the readable definitions of [`reference`][pixelfold.layers.ops.reference];
``"fast"``: the fast implementations (the default)."""

IMPLS: tuple[str, ...] = ("ref", "fast")


class _State:
    """The process-wide default of ``impl``: a plain attribute, so that ``torch.compile``
    reads it as a constant (and recompiles when it changes)."""

    impl: str = "fast"


_STATE = _State()


def _check(impl: str) -> str:
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    return impl


def get_impl() -> str:
    """The implementation that ops called without ``impl=`` use now (``"fast"`` unless inside
    [`use_impl`][pixelfold.layers.use_impl])."""
    return _STATE.impl


def resolve_impl(impl: str | None) -> str:
    """``impl`` checked, or the current default for ``None``.

    Raises:
        ValueError: ``impl`` is neither ``"ref"``, ``"fast"`` nor ``None``.
    """
    return _STATE.impl if impl is None else _check(impl)


@contextmanager
def use_impl(impl: Impl) -> Iterator[None]:
    """Run every op called without ``impl=`` inside the block with ``impl``: ``"ref"`` for the
    readable definitions (what the tests compare against; slower), ``"fast"`` for the fast
    paths. The setting is process-wide (as StyleGAN3's ``conv2d_gradfix.enabled``) and is
    restored on exit, also after an exception.

    Args:
        impl: ``"ref"`` or ``"fast"``.

    Raises:
        ValueError: another ``impl``.
    """
    _check(impl)
    before = _STATE.impl
    _STATE.impl = impl
    try:
        yield
    finally:
        _STATE.impl = before
