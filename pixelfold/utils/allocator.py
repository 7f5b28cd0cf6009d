"""Keeping freed CPU memory in the process for reuse, as a caching allocator does.

PyTorch allocates CPU tensors with the C library's ``malloc``. glibc serves every block above
its mmap threshold (at most 32 MiB; the activations of a 256x256 discriminator at batch 2 are
33-67 MiB each) with a fresh ``mmap`` and gives it back to the kernel on ``free``, so each new
large tensor starts as untouched pages that fault in one at a time on first write. A training
step allocates and frees gigabytes this way, and on virtual machines a page fault is expensive:
measured on 2 cores of an AMD EPYC VM, ``torch.add`` of two 67 MiB tensors took 21-44 ms into a
fresh tensor against 6 ms into an existing one, and a residual discriminator's forward+backward
at 256, batch 2, 3.3-3.9 s against 2.6-2.8 s with freed memory kept (``benchmarks/`` has the
step-level numbers).

[`enable_cpu_memory_cache`][pixelfold.utils.allocator.enable_cpu_memory_cache] makes glibc keep
what is freed: no ``mmap`` for large blocks (they come from the heap, ``M_MMAP_MAX = 0``) and no
trimming of its top (``M_TRIM_THRESHOLD = -1``), so a step reuses the pages of the previous one,
the behaviour of the CUDA caching allocator and of jemalloc or tcmalloc (which Intel's and
PyTorch's CPU launch tooling preload for the same reason). glibc's own ``mallopt`` is used
rather than a preloaded allocator because it needs nothing installed and can be set from inside
a running process. The cost: the process keeps its peak memory until it exits (measured: peak
RSS +7% for that discriminator step). The setting is process-wide, applies to allocations made
after it, and is inherited by forked data-loader workers; it cannot be undone (glibc has no way
back to its dynamic thresholds) and does nothing on other C libraries (macOS, Windows, musl),
where it returns ``False``.

For a process started from the shell, glibc reads the same settings from the environment:
``GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=18446744073709551615``.
The trainer enables it for CPU runs (``TrainConfig.cpu_memory_cache``, on by default).
"""

from __future__ import annotations

import ctypes
import platform
import sys
from collections.abc import Callable

__all__ = ["cpu_memory_cache_enabled", "enable_cpu_memory_cache"]

_M_TRIM_THRESHOLD = -1  # glibc's mallopt parameter numbers (malloc.h)
_M_MMAP_MAX = -4

_enabled = False


def _glibc_mallopt() -> Callable[[int, int], int] | None:
    """glibc's ``mallopt`` of this process, or ``None`` on another C library."""
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return None
    try:
        libc = ctypes.CDLL(None)  # the C library already loaded into the process
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return None
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    return mallopt


def enable_cpu_memory_cache() -> bool:
    """Keep freed CPU memory in the process for reuse (glibc ``malloc``: large blocks from the
    heap instead of ``mmap``, no trimming); see the module description for why and what it
    costs. Idempotent.

    Returns:
        ``True`` when the setting is in effect (now or from an earlier call), ``False`` where
        the C library is not glibc and nothing was changed.
    """
    global _enabled
    if _enabled:
        return True
    mallopt = _glibc_mallopt()
    if mallopt is None:
        return False
    # mallopt returns 1 on success; M_TRIM_THRESHOLD -1 turns trimming off
    if mallopt(_M_MMAP_MAX, 0) != 1 or mallopt(_M_TRIM_THRESHOLD, -1) != 1:
        return False
    _enabled = True
    return True


def cpu_memory_cache_enabled() -> bool:
    """Whether [`enable_cpu_memory_cache`][pixelfold.utils.allocator.enable_cpu_memory_cache]
    has taken effect in this process."""
    return _enabled
