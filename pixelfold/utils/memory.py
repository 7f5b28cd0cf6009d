"""How much memory there is, and refusing work that cannot fit before allocating it.

[`check_fits`][pixelfold.utils.memory.check_fits] compares an estimate (bytes) with what the
device can still give (``MemAvailable`` of ``/proc/meminfo`` or psutil on the CPU,
``torch.cuda.mem_get_info`` on CUDA) and raises a
[`MemoryLimitError`][pixelfold.utils.errors.MemoryLimitError] with both numbers, so that a
setting asking for terabytes fails at once with a message instead of swapping or being killed.
"""

from __future__ import annotations

import os

import torch

from .errors import MemoryLimitError

__all__ = ["available_memory", "check_fits", "format_bytes"]


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes the device can still allocate (``None`` when unknown). ``PIXELFOLD_MEMORY_LIMIT``
    (bytes) caps the answer, for tests and shared machines."""
    device = torch.device(device)
    found: int | None = None
    if device.type == "cuda":
        try:
            found = int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            found = None
    elif device.type == "meta":
        return None
    else:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        found = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            found = None
        if found is None:
            try:
                import psutil

                found = int(psutil.virtual_memory().available)
            except ImportError:
                found = None
    limit = os.environ.get("PIXELFOLD_MEMORY_LIMIT")
    if limit:
        found = min(found, int(limit)) if found is not None else int(limit)
    return found


def check_fits(nbytes: float, what: str, *, device: str | torch.device = "cpu",
               hint: str = "") -> None:
    """Raise [`MemoryLimitError`][pixelfold.utils.errors.MemoryLimitError] if ``nbytes`` (an
    estimate) exceed the memory ``device`` has available. ``what`` names the request
    (``"--seeds 0-4294967295 as one grid"``), ``hint`` says what to do instead."""
    free = available_memory(device)
    if free is None or nbytes <= free:
        return
    dev = torch.device(device)
    raise MemoryLimitError(f"{what} needs about {format_bytes(nbytes)} but {dev.type} has "
                           f"{format_bytes(free)} available" + (f"; {hint}" if hint else ""))
