"""The adaptive augmentation strength of ADA (Karras et al. 2020).

The overfitting heuristic is ``r_t = E[sign(D(real))]``, the mean sign of the discriminator's
logits on real images over the last ``interval`` training steps: near 0 when D cannot tell
training reals from generated images, near 1 when it has memorized them. Every ``interval``
steps the strength moves by a fixed step towards the target:

    p <- clamp(p + sign(r_t - target) * batch_total * interval / (ada_kimg * 1000), 0, 1)

so that ``p`` can go from 0 to 1 in ``ada_kimg`` thousand real images. NVlabs' defaults:
``target = 0.6``, ``interval = 4``, ``ada_kimg = 500``; ``batch_total`` is the number of real
images of one step over all processes.

Differences from NVlabs' training loop, both small: NVlabs clamp ``p`` below at 0 only (a
``p`` above 1 applies every transform with multiplier 1 anyway, but takes longer to come back
down), and also adjust after the very first step; here ``p`` stays in ``[0, 1]`` and the first
adjustment comes after ``interval`` steps.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch

from ...utils.errors import CheckpointError, ConfigError, NonFiniteError

__all__ = ["AdaController"]

_STATE_KEYS = ("p", "rt", "steps", "sign_sum", "count", "adjustments")


def _sum_dtype(device: torch.device) -> torch.dtype:
    """float64 (exact for any realistic number of signs), float32 where float64 is missing."""
    return torch.float32 if device.type == "mps" else torch.float64


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"AdaController: {name} must be an integer >= {low}, got {value!r}")
    return value


def _check_float(name: str, value: Any, low: float, high: float, *, open_: bool) -> float:
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value)
          and ((low < value < high) if open_ else (low <= value <= high)))
    if not ok:
        span = f"({low:g}, {high:g})" if open_ else f"[{low:g}, {high:g}]"
        raise ConfigError(f"AdaController: {name} must be in {span}, got {value!r}")
    return float(value)


class AdaController:
    """Adapts ADA's augmentation strength ``p`` from the signs of D's logits on reals.

    Usage, once per training step (the D step that sees reals)::

        ada.observe(real_logits)               # local sums; no device synchronization
        if ada.step(reduce=sum_over_processes):  # every `interval`-th call: adjust p
            augment_pipe.p = ada.p
            log(ada.rt, ada.p)

    With several processes every process calls ``step`` at the same steps and passes a
    ``reduce`` that sums a tensor over processes, e.g. ``lambda t:
    accelerator.reduce(t, reduction="sum")``; the controllers then stay identical. A trainer
    that reduces by itself can instead read
    [`pending`][pixelfold.training.augment.AdaController.pending], all-reduce it and call
    [`adjust`][pixelfold.training.augment.AdaController.adjust].

    Args:
        target: the value of ``r_t`` to hold, in ``(0, 1)`` (NVlabs: 0.6).
        ada_kimg: thousands of real images over which ``p`` can go from 0 to 1 (NVlabs: 500).
        interval: steps between adjustments (NVlabs: 4).
        batch_total: real images per step, over all processes.
        p: the initial strength in ``[0, 1]``.

    Attributes:
        p: the current strength.
        rt: ``r_t`` of the last adjustment (``None`` before the first).
        adjustments: how many adjustments happened.

    Raises:
        ConfigError: a setting out of range (the message names it and its value).
    """

    def __init__(self, *, target: float = 0.6, ada_kimg: float = 500, interval: int = 4,
                 batch_total: int, p: float = 0.0) -> None:
        self.target = _check_float("target", target, 0.0, 1.0, open_=True)
        self.ada_kimg = _check_float("ada_kimg", ada_kimg, 0.0, math.inf, open_=True)
        self.interval = _check_int("interval", interval, 1)
        self.batch_total = _check_int("batch_total", batch_total, 1)
        self.p = _check_float("p", p, 0.0, 1.0, open_=False)
        self.rt: float | None = None
        self.adjustments = 0
        self._steps = 0
        # since the last adjustment: the sum of the signs (a tensor on the logits' device)
        # and the number of logits
        self._sign_sum: torch.Tensor | None = None
        self._count = 0

    @property
    def step_size(self) -> float:
        """How much one adjustment moves ``p``: ``batch_total * interval / (ada_kimg * 1000)``."""
        return self.batch_total * self.interval / (self.ada_kimg * 1000)

    def observe(self, real_logits: torch.Tensor) -> None:
        """Add ``sum(sign(real_logits))`` (kept on the logits' device: nothing is synchronized)
        and the number of logits to the local sums."""
        logits = real_logits.detach()
        signs = logits.sign().sum(dtype=_sum_dtype(logits.device))
        if self._sign_sum is not None:
            signs = signs + self._sign_sum.to(signs.device)
        self._sign_sum = signs
        self._count += logits.numel()

    def pending(self, device: torch.device | str | None = None) -> torch.Tensor:
        """The local ``(sign sum, count)`` since the last adjustment as a tensor of 2 floats,
        on ``device`` (default: the observed logits' device), ready for a sum all-reduce."""
        if self._sign_sum is None:
            return torch.zeros(2, dtype=torch.float64, device=device)
        signs = self._sign_sum if device is None else self._sign_sum.to(device)
        return torch.stack([signs, torch.full_like(signs, float(self._count))])

    def step(self, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> bool:
        """Count one training step; every ``interval``-th call, sum the observations (through
        ``reduce`` when given: a function that sums a tensor over processes) and adjust ``p``.

        Returns:
            Whether ``p`` was adjusted (and ``rt`` updated) by this call.
        """
        self._steps += 1
        if self._steps < self.interval:
            return False
        totals = self.pending()
        if reduce is not None:
            totals = reduce(totals)
        sign_sum, count = (float(v) for v in totals.tolist())
        self._steps = 0
        self._sign_sum, self._count = None, 0
        return self.adjust(sign_sum, count)

    def adjust(self, sign_sum: float, count: float) -> bool:
        """Apply NVlabs' rule to already reduced totals: ``r_t = sign_sum / count``, then move
        ``p`` by ``sign(r_t - target) * step_size`` and clamp it to ``[0, 1]``.

        Returns:
            ``False`` (and no change) when ``count`` is 0, else ``True``.

        Raises:
            NonFiniteError: ``sign_sum`` is NaN or infinite (D produced NaN logits).
        """
        if not math.isfinite(sign_sum):
            raise NonFiniteError(f"ADA: the sum of sign(D(real)) is {sign_sum} (non-finite "
                                 f"logits); p stays {self.p}")
        if count <= 0:
            return False
        self.rt = sign_sum / count
        direction = (self.rt > self.target) - (self.rt < self.target)
        self.p = min(max(self.p + direction * self.step_size, 0.0), 1.0)
        self.adjustments += 1
        return True

    def state_dict(self) -> dict[str, Any]:
        """Plain numbers only (JSON-serializable): ``p``, ``rt`` (``None`` before the first
        adjustment), the steps since the last adjustment, the pending sign sum and count, and
        the number of adjustments. Reading the pending sums synchronizes with their device."""
        sign_sum, count = (float(v) for v in self.pending().tolist())
        return {"p": self.p, "rt": self.rt, "steps": self._steps, "sign_sum": sign_sum,
                "count": count, "adjustments": self.adjustments}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what [`state_dict`][pixelfold.training.augment.AdaController.state_dict]
        returned (the settings come from the constructor).

        Raises:
            CheckpointError: a missing or unknown key, or a value of the wrong type or range.
        """
        if not isinstance(state, Mapping):
            raise CheckpointError(f"ADA state must be a mapping, got {type(state).__name__}")
        missing = [k for k in _STATE_KEYS if k not in state]
        unknown = sorted(set(state) - set(_STATE_KEYS))
        if missing or unknown:
            raise CheckpointError(f"ADA state: missing keys {missing}, unknown keys {unknown}")

        def number(key: str) -> float:
            value = state[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not math.isfinite(value):
                raise CheckpointError(f"ADA state: {key} must be a finite number, got {value!r}")
            return float(value)

        p, sign_sum, count = number("p"), number("sign_sum"), number("count")
        if not 0.0 <= p <= 1.0:
            raise CheckpointError(f"ADA state: p must be in [0, 1], got {p!r}")
        steps, adjustments = state["steps"], state["adjustments"]
        for key, value in (("steps", steps), ("adjustments", adjustments)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise CheckpointError(f"ADA state: {key} must be an integer >= 0, got {value!r}")
        rt = None if state["rt"] is None else number("rt")
        if count != int(count) or count < 0:
            raise CheckpointError(f"ADA state: count must be an integer >= 0, got {count!r}")
        self.p, self.rt, self._steps, self.adjustments = p, rt, steps, adjustments
        self._count = int(count)
        self._sign_sum = None if count == 0 else torch.tensor(sign_sum, dtype=torch.float64)

    def __repr__(self) -> str:
        return (f"AdaController(target={self.target}, ada_kimg={self.ada_kimg:g}, "
                f"interval={self.interval}, batch_total={self.batch_total}, p={self.p:.4f}, "
                f"rt={self.rt})")
