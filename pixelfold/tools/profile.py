"""Speed and memory of a generator: parameters, GMACs, images per second, peak memory.

What is measured:

- ``params``, ``params_mapping``, ``params_synthesis``:
  [`count_params`][pixelfold.metrics.count_params] of the generator and its two parts.
- ``gmacs``: [`count_macs`][pixelfold.metrics.count_macs] per image at batch 1 (the paper's
  convention), counted on a copy of the architecture built on the ``meta`` device, so it
  takes no time and no memory whatever the model size.
- with ``convention="paper"`` also ``params_paper`` and ``gmacs_paper``: the same counts in
  the PixelFolder paper's convention (see
  [`pixelfold.metrics.profile`][pixelfold.metrics.profile]), which differ from pixelfold's
  for PixelFolder layouts (the authors' unused merge convolution) and for upsampling ModConvs
  (counted per output position, without their blur).
- ``images_per_s``: ``batch_size`` divided by the median time of ``iters`` forward passes
  ``G(z)`` (mapping + synthesis) under ``torch.inference_mode``, after ``warmup`` untimed
  passes; on CUDA each pass is bracketed by ``torch.cuda.synchronize``.
- ``peak_memory_mb`` (``memory_measure`` says which):

    - CUDA: ``torch.cuda.max_memory_allocated`` over the warm-up and timed passes (weights,
      inputs and activations: everything the caching allocator handed out), in MiB.
    - CPU on Linux: the increase of the process's peak resident set size (``VmHWM``, reset
      through ``/proc/self/clear_refs`` before the passes) over the resident set size with
      the model already loaded: activations and allocator buffers, not the weights.
    - CPU elsewhere: the increase of ``ru_maxrss`` (``resource.getrusage``), a lower bound
      since the lifetime peak cannot be reset.
    - other devices: ``None``.
"""

from __future__ import annotations

import copy
import os
import statistics
import time
from pathlib import Path
from typing import Any

import torch

from ..metrics import count_params
from ..metrics.profile import CONVENTIONS, Convention, mac_breakdown
from ..models import Generator, load_generator
from ..utils.errors import ConfigError
from .device import resolve_device
from .images import check_batch_memory

__all__ = ["DTYPES", "current_rss_bytes", "format_profile", "peak_rss_bytes", "profile_generator",
           "reset_peak_rss"]

DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "bfloat16": torch.bfloat16,
    "float16": torch.float16,
}
"""dtype names accepted by [`profile_generator`][pixelfold.tools.profile_generator]."""

_MIB = 2**20


def _status_bytes(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    except (OSError, ValueError, IndexError):
        return None
    return None


def current_rss_bytes() -> int | None:
    """Resident set size of this process now (Linux ``VmRSS``), or ``None`` elsewhere."""
    return _status_bytes("VmRSS")


def peak_rss_bytes() -> int:
    """High-water mark of this process's resident set size: Linux ``VmHWM`` (resettable with
    [`reset_peak_rss`][pixelfold.tools.profile.reset_peak_rss]), elsewhere ``ru_maxrss``."""
    hwm = _status_bytes("VmHWM")
    if hwm is not None:
        return hwm
    import resource
    import sys

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux >= 4.0, writing 5 to
    ``/proc/self/clear_refs``); ``False`` where that is not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return _status_bytes("VmHWM") is not None
    except OSError:
        return False


class _PeakMemory:
    """Peak memory of the code run inside ``with``; ``.mb`` and ``.measure`` afterwards."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mb: float | None = None
        self.measure = "not measured on this device"

    def __enter__(self) -> _PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.device.type == "cpu":
            self._proc = reset_peak_rss()
            self._base = (current_rss_bytes() or 0) if self._proc else peak_rss_bytes()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = torch.cuda.max_memory_allocated(self.device) / _MIB
            self.measure = "cuda max_memory_allocated: weights + activations"
        elif self.device.type == "cpu":
            peak = peak_rss_bytes()
            if self._proc:
                self.measure = "cpu peak RSS (VmHWM) increase over the loaded model"
            else:
                self.measure = "cpu ru_maxrss increase, a lower bound"
            self.mb = max(0, peak - self._base) / _MIB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def profile_generator(
    model: str | os.PathLike | Generator,
    *,
    batch_size: int = 1,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype = torch.float32,
    warmup: int = 2,
    iters: int = 5,
    noise_mode: str = "const",
    seed: int = 0,
    threads: int | None = None,
    convention: Convention = "pixelfold",
) -> dict[str, Any]:
    """Parameters, GMACs per image, images per second and peak memory of a generator.

    See the module documentation for exactly what each number measures.

    Args:
        model: a [`Generator`][pixelfold.models.Generator] (left untouched: a copy is moved
            when ``device`` or ``dtype`` differ from its own), or a preset name or
            ``save_pretrained`` folder (see `pixelfold.models.load_generator`).
        batch_size: images per timed forward pass.
        device: where to time it (default: the generator's device, else CUDA when available,
            else CPU).
        dtype: ``"float32"``, ``"bfloat16"``, ``"float16"`` or a ``torch.dtype``.
        warmup: untimed passes first.
        iters: timed passes; the median is reported.
        noise_mode: passed to the generator.
        seed: seed of the latents (and of the weights of a preset).
        threads: CPU threads during the timing (``torch.set_num_threads``, restored
            afterwards; default: leave torch's setting). CPU timings suffer much from other
            busy processes; one thread is the most robust to them.
        convention: ``"pixelfold"`` (default) or ``"paper"``, which adds ``params_paper`` and
            ``gmacs_paper``, the counts in the PixelFolder paper's convention, next to
            pixelfold's own.

    Returns:
        a JSON-serializable dict with keys ``model``, ``device``, ``dtype``, ``batch_size``,
        ``params``, ``params_mapping``, ``params_synthesis``, ``gmacs``, ``images_per_s``,
        ``seconds_per_batch``, ``warmup``, ``iters``, ``threads``, ``peak_memory_mb`` and
        ``memory_measure`` (and, with ``convention="paper"``, ``convention``,
        ``params_paper`` and ``gmacs_paper``).

    Raises:
        ValueError: bad batch size, counts, device, dtype or convention.
        FileNotFoundError: ``model`` names no folder or preset.
        MemoryLimitError: a batch of ``batch_size`` does not fit on the device (estimated
            before anything is allocated).
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size!r}")
    if threads is not None and threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads!r}")
    if convention not in CONVENTIONS:
        raise ConfigError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    if warmup < 0 or iters < 1:
        raise ConfigError(f"need warmup >= 0 and iters >= 1, got warmup={warmup!r}, "
                          f"iters={iters!r}")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ConfigError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        dtype = DTYPES[dtype]
    if isinstance(model, Generator):
        dev = resolve_device(device if device is not None else model.device)
        G = model
        if G.device != dev or next(G.parameters()).dtype != dtype:
            G = copy.deepcopy(model).to(dev, dtype)
        name = model.spec.name or type(model).__name__
    else:
        dev = resolve_device(device)
        G = load_generator(model, device=dev, seed=seed).to(dtype)
        name = str(model)
    G.eval()
    check_batch_memory(G, batch_size)

    with torch.device("meta"):
        G_meta = Generator(G.spec)
    breakdown = mac_breakdown(G_meta, batch_size=1)
    macs = breakdown.total
    paper: dict[str, Any] = {}
    if convention == "paper":
        paper = {"convention": "paper",
                 "params_paper": count_params(G_meta, convention="paper"),
                 "gmacs_paper": breakdown.count("paper") / 1e9}

    z = torch.randn(batch_size, G.z_dim, generator=torch.Generator().manual_seed(seed))
    z = z.to(dev, dtype)
    times = []
    default_threads = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        with torch.inference_mode(), _PeakMemory(dev) as memory:
            for _ in range(warmup):
                G(z, noise_mode=noise_mode)
            for _ in range(iters):
                _sync(dev)
                start = time.perf_counter()
                G(z, noise_mode=noise_mode)
                _sync(dev)
                times.append(time.perf_counter() - start)
        used_threads = torch.get_num_threads()
    finally:
        torch.set_num_threads(default_threads)
    median = statistics.median(times)
    return {
        "model": name,
        "device": str(dev),
        "dtype": str(dtype).removeprefix("torch."),
        "batch_size": batch_size,
        "params": count_params(G),
        "params_mapping": count_params(G.mapping),
        "params_synthesis": count_params(G.synthesis),
        "gmacs": macs / 1e9,
        "images_per_s": batch_size / median,
        "seconds_per_batch": median,
        "warmup": warmup,
        "iters": iters,
        "threads": used_threads if dev.type == "cpu" else None,
        "peak_memory_mb": memory.mb,
        "memory_measure": memory.measure,
        **paper,
    }


def format_profile(result: dict[str, Any]) -> str:
    """The dict of [`profile_generator`][pixelfold.tools.profile_generator] as a plain-text
    table."""
    device = f"{result['device']} ({result['dtype']}"
    if result.get("threads"):
        device += f", {result['threads']} thread{'s' if result['threads'] != 1 else ''}"
    device += ")"
    memory = ("n/a" if result["peak_memory_mb"] is None
              else f"{result['peak_memory_mb']:,.1f} MiB ({result['memory_measure']})")
    rows = [
        ("model", result["model"]),
        ("device", device),
        ("batch size", str(result["batch_size"])),
        ("params (mapping)", f"{result['params_mapping']:,d}"),
        ("params (synthesis)", f"{result['params_synthesis']:,d}"),
        ("params (total)", f"{result['params']:,d}"),
        ("GMACs / image", f"{result['gmacs']:,.3f} (batch 1)"),
    ]
    if "gmacs_paper" in result:
        rows += [
            ("params (paper)", f"{result['params_paper']:,d} (the paper's convention)"),
            ("GMACs (paper)", f"{result['gmacs_paper']:,.3f} (the paper's convention)"),
        ]
    rows += [
        ("images / s", f"{result['images_per_s']:,.2f} (median of {result['iters']} batches "
                       f"after {result['warmup']} warm-up)"),
        ("peak memory", memory),
    ]
    width = max(len(k) for k, _ in rows)
    return "\n".join(f"{k:<{width}}  {v}" for k, v in rows)
