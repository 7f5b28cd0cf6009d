"""Seeds, latents and interpolation between them.

A seed ``s`` names the latent ``torch.randn(1, z_dim, generator=torch.Generator().manual_seed(s))``,
as NVlabs' scripts do, so ``seed 7`` is the same ``z`` on every machine and device.
[`WLatents`][pixelfold.tools.WLatents] stands in for seeds with given per-layer latents ``ws``
(projected images, edits): the image functions accept either.
"""

from __future__ import annotations

import bisect
import itertools
import re
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, overload

import torch

from ..utils.errors import ConfigError

if TYPE_CHECKING:
    from ..models import Generator

__all__ = ["MAX_SEED", "SeedList", "WLatents", "lerp", "parse_seeds", "seed_latents", "slerp"]

MAX_SEED = 2**32 - 1
"""Largest seed accepted by [`parse_seeds`][pixelfold.tools.parse_seeds] (NVlabs' limit)."""

_ITEM = re.compile(r"^(\d+)(?:-(\d+))?$")


class SeedList(Sequence[int]):
    """An ordered list of seeds held as ranges, so that ``"0-4294967295"`` takes a few bytes.

    It is a ``Sequence[int]``: ``len``, indexing, iteration and slicing (a slice with step 1
    is another ``SeedList``) never build the whole list; it compares equal to a list of the
    same seeds. What is held in memory for the seeds (images, frames, latents) is checked by
    the functions that hold it.

    Args:
        ranges: the seeds, as consecutive ranges.
    """

    def __init__(self, ranges: Sequence[range]) -> None:
        self._ranges = tuple(r for r in ranges if len(r))
        self._starts: list[int] = []
        total = 0
        for r in self._ranges:
            self._starts.append(total)
            total += len(r)
        self._len = total

    def __len__(self) -> int:
        return self._len

    @overload
    def __getitem__(self, index: int) -> int: ...

    @overload
    def __getitem__(self, index: slice) -> SeedList: ...

    def __getitem__(self, index: int | slice) -> int | SeedList:
        if isinstance(index, slice):
            start, stop, step = index.indices(self._len)
            if step != 1:
                return SeedList([range(self[i], self[i] + 1)
                                 for i in range(start, stop, step)])
            return self._span(start, max(start, stop))
        i = index.__index__()
        if i < 0:
            i += self._len
        if not 0 <= i < self._len:
            raise IndexError(f"seed index {index} out of range for {self._len} seeds")
        k = bisect.bisect_right(self._starts, i) - 1
        return self._ranges[k][i - self._starts[k]]

    def _span(self, start: int, stop: int) -> SeedList:
        parts = []
        for r, first in zip(self._ranges, self._starts, strict=True):
            lo, hi = max(start - first, 0), min(stop - first, len(r))
            if lo < hi:
                parts.append(r[lo:hi])
        return SeedList(parts)

    def __iter__(self) -> Iterator[int]:
        return itertools.chain.from_iterable(self._ranges)

    def _runs(self) -> list[tuple[int, int]]:
        """The seeds as maximal runs of consecutive integers ``(first, stop)``."""
        runs: list[tuple[int, int]] = []
        for r in self._ranges:
            if r.step != 1:
                runs.extend((s, s + 1) for s in r)
            elif runs and runs[-1][1] == r.start:
                runs[-1] = (runs[-1][0], r.stop)
            else:
                runs.append((r.start, r.stop))
        return runs

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SeedList):  # by runs: billions of seeds compare at once
            return len(self) == len(other) and self._runs() == other._runs()
        if not isinstance(other, (list, tuple, range)):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]  # compares like a list

    def __repr__(self) -> str:
        if self._len <= 16:
            return repr(list(self))
        text = ",".join(f"{r.start}" if len(r) == 1 else f"{r.start}-{r.stop - 1}"
                        for r in self._ranges)
        return f"SeedList({text!r}, {self._len:,d} seeds)"


_LABEL = re.compile(r"^[\w.+-]+$")


class WLatents(Sequence[str]):
    """Given per-layer latents ``ws``, accepted wherever the image functions of
    ``pixelfold.tools`` take seeds (``generate_images``, ``iter_images``,
    ``style_mix_images``, ``stage_images``, ``interpolation_frames`` in w space,
    ``edit_images``): their ``ws`` are used as the mapping of a seed would be, truncation
    included (``w_avg + psi (w - w_avg)``; ``psi = 1`` leaves them as they are).

    It is a ``Sequence`` of labels (one per latent, used in figures and file names, e.g. the
    names of projected images); slicing gives another ``WLatents``. Read a projection with
    [`load_projected_w`][pixelfold.tools.load_projected_w].

    Args:
        ws: ``(N, num_ws, w_dim)`` per-layer latents, or ``(N, w_dim)`` for one ``w`` per image
            (broadcast to every layer); any float dtype and device (they are moved to the
            generator's).
        labels: one label per latent, letters, digits and ``._+-`` only, all different
            (default ``w0000``, ``w0001``, ...).
        source: where they come from (a file name), for messages.

    Raises:
        ConfigError: ``ws`` is not a non-empty 2-D or 3-D floating-point tensor, holds NaN or
            infinity, or the labels do not fit.
    """

    def __init__(self, ws: torch.Tensor, labels: Sequence[str] | None = None, *,
                 source: str | None = None) -> None:
        where = source or "ws"
        if not isinstance(ws, torch.Tensor) or not ws.is_floating_point() \
                or ws.ndim not in (2, 3) or ws.shape[0] == 0 or 0 in ws.shape:
            shape = tuple(ws.shape) if isinstance(ws, torch.Tensor) else type(ws).__name__
            raise ConfigError(f"{where}: expected latents of shape (N, num_ws, w_dim) or (N, "
                              f"w_dim) with N >= 1 as floats, got {shape}")
        if not bool(torch.isfinite(ws).all()):
            bad = int((~torch.isfinite(ws)).sum())
            raise ConfigError(f"{where}: the latents hold {bad:,d} NaN or infinite values")
        labels = [f"w{i:04d}" for i in range(ws.shape[0])] if labels is None \
            else [str(label) for label in labels]
        if len(labels) != ws.shape[0]:
            raise ConfigError(f"{where}: {len(labels)} labels for {ws.shape[0]} latents")
        bad_labels = [label for label in labels if not _LABEL.match(label)]
        if bad_labels:
            raise ConfigError(f"{where}: label {bad_labels[0]!r} may only hold letters, digits "
                              f"and ._+-")
        if len(set(labels)) != len(labels):
            raise ConfigError(f"{where}: the labels are not all different")
        self.ws = ws.detach()
        self.labels = tuple(labels)
        self.source = source

    def __len__(self) -> int:
        return self.ws.shape[0]

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> WLatents: ...

    def __getitem__(self, index: int | slice) -> str | WLatents:
        if isinstance(index, slice):
            return WLatents(self.ws[index], self.labels[index], source=self.source)
        return self.labels[index]

    def for_generator(self, G: Generator) -> torch.Tensor:
        """The latents as ``(N, num_ws, w_dim)`` on ``G``'s device and in its dtype.

        Raises:
            ConfigError: their shape does not fit ``G`` (the message names both).
        """
        ws = self.ws
        if ws.ndim == 2:
            ws = ws[:, None].expand(-1, G.num_ws, -1)
        if tuple(ws.shape[1:]) != (G.num_ws, G.w_dim):
            raise ConfigError(
                f"{self.source or 'ws'}: latents of shape {tuple(self.ws.shape)} do not fit "
                f"the model {G.spec.name!r}, which takes ({G.num_ws}, {G.w_dim}) per image "
                f"(num_ws, w_dim); were they made with another model?")
        param = next(G.parameters())
        return ws.to(param.device, param.dtype)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, WLatents):
            return NotImplemented
        return self.labels == other.labels and self.ws.shape == other.ws.shape \
            and bool(torch.equal(self.ws.cpu(), other.ws.cpu()))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        where = f", source={self.source!r}" if self.source else ""
        return f"WLatents({len(self)} latents of {tuple(self.ws.shape[1:])}{where})"


def parse_seeds(text: str) -> SeedList:
    """Parse a seed list such as ``"0-15"``, ``"1,5,9"`` or ``"0-3,10"``.

    Ranges are inclusive; order and repeats are kept. The result is a
    [`SeedList`][pixelfold.tools.SeedList] (a ``Sequence[int]`` that holds the ranges, not
    every seed), so ``"0-4294967295"`` is parsed at once.

    Raises:
        ConfigError: (a ``ValueError``) empty text, a part that is not ``N`` or ``A-B``,
            ``B < A``, or a seed above [`MAX_SEED`][pixelfold.tools.MAX_SEED].

    Example:
        >>> parse_seeds("0-3,10")
        [0, 1, 2, 3, 10]
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("empty seed list; expected e.g. '0-15', '1,5,9' or '0-3,10'")
    ranges: list[range] = []
    for part in text.split(","):
        m = _ITEM.match(part.strip())
        if m is None:
            raise ConfigError(f"bad seeds {text!r}: {part.strip()!r} is not N or A-B with "
                              f"non-negative integers (e.g. '0-15', '1,5,9', '0-3,10')")
        start = int(m.group(1))
        stop = int(m.group(2)) if m.group(2) is not None else start
        if stop < start:
            raise ConfigError(f"bad seeds {text!r}: range {part.strip()!r} ends before it "
                              f"starts")
        if stop > MAX_SEED:
            raise ConfigError(f"bad seeds {text!r}: seeds must be <= {MAX_SEED}, got {stop}")
        ranges.append(range(start, stop + 1))
    return SeedList(ranges)


def seed_latents(seeds: Sequence[int], z_dim: int) -> torch.Tensor:
    """The latents ``(len(seeds), z_dim)`` of ``seeds`` (float32, on the CPU).

    Args:
        seeds: integer seeds.
        z_dim: latent width (``G.z_dim``).
    """
    if not len(seeds):
        raise ValueError("seed_latents needs at least one seed")
    return torch.cat([torch.randn(1, z_dim, generator=torch.Generator().manual_seed(int(s)))
                      for s in seeds])


def lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float) -> torch.Tensor:
    """Linear interpolation ``a + t (b - a)``; ``t`` broadcasts against ``a``."""
    return torch.lerp(a, b, torch.as_tensor(t, dtype=a.dtype, device=a.device))


def slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor | float, *,
          eps: float = 1e-7) -> torch.Tensor:
    """Spherical interpolation along the last dimension.

    The directions move along the great circle between ``a / |a|`` and ``b / |b|`` at a
    constant angular speed (the angle ``omega`` between them, weights
    ``sin((1 - t) omega) / sin(omega)`` and ``sin(t omega) / sin(omega)``) while the norm goes
    linearly from ``|a|`` to ``|b|``; the end points are ``a`` and ``b``. Two Gaussian
    latents of the same width have nearly the same norm, so the path stays where latents are
    likely, where a plain lerp passes through vectors about ``1 / sqrt(2)`` as long. Nearly
    parallel directions fall back to lerp.

    Args:
        a: start, ``(..., D)``.
        b: end, same shape.
        t: position(s) in ``[0, 1]``; a tensor broadcasts against ``a[..., :1]``.
        eps: below this ``sin(omega)`` the directions count as parallel.
    """
    t = torch.as_tensor(t, dtype=a.dtype, device=a.device)
    if t.ndim and t.shape[-1] != 1:
        t = t[..., None]
    na, nb = a.norm(dim=-1, keepdim=True), b.norm(dim=-1, keepdim=True)
    ua, ub = a / na.clamp_min(1e-30), b / nb.clamp_min(1e-30)
    omega = torch.arccos((ua * ub).sum(-1, keepdim=True).clamp(-1.0, 1.0))
    sin = torch.sin(omega)
    parallel = sin.abs() < eps
    if bool(parallel.all()):
        return torch.lerp(a, b, t)
    safe = torch.where(parallel, torch.ones_like(sin), sin)
    direction = (torch.sin((1 - t) * omega) * ua + torch.sin(t * omega) * ub) / safe
    return torch.where(parallel, torch.lerp(a, b, t), direction * torch.lerp(na, nb, t))
