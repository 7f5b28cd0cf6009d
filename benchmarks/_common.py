"""Shared helpers of the benchmark scripts: machine description, interleaved timing, peak memory,
table printing and JSON output."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch

# peak-memory helpers: the same as `pixelfold profile` uses, re-exported for the scripts
from pixelfold.tools.profile import (  # noqa: F401
    current_rss_bytes,
    peak_rss_bytes,
    reset_peak_rss,
)

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}

#: Noise strength the benchmarks give every noise layer: a trained model's are non-zero, a fresh
#: model's exactly 0 (which would let zero-strength skipping flatter the fast path).
NOISE_STRENGTH = 0.1


def set_noise_strength(model: torch.nn.Module, value: float = NOISE_STRENGTH) -> None:
    """Every noise strength of ``model`` set to ``value``: pixelfold's ``NoiseInjection``
    modules, and parameters named ``noise.weight`` (the authors' generator)."""
    from pixelfold.layers import NoiseInjection

    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, NoiseInjection):
                m.weight.fill_(value)
        for name, p in model.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(value)


def cpu_model() -> str:
    """The ``model name`` line of ``/proc/cpuinfo`` (what ``lscpu`` prints), or the platform."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_info(device: torch.device) -> dict[str, Any]:
    """What ran the benchmark: CPU model, cores, threads, torch version, GPU name, load."""
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cpu_cores_visible": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": str(device),
    }
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_start"] = round(os.getloadavg()[0], 2)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def add_common_args(parser: Any) -> None:
    """Arguments both scripts share."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--dtype", default="float32", choices=sorted(DTYPES),
                        help="float32, or bfloat16 through torch.autocast (weights stay float32)")
    parser.add_argument("--compile", action="store_true",
                        help="also time the fast path under torch.compile(fullgraph=True)")
    parser.add_argument("--compile-mode", default=None,
                        help="torch.compile mode (default: 'reduce-overhead', i.e. CUDA graphs, "
                             "on CUDA; the default mode on CPU)")
    parser.add_argument("--iters", type=int, default=None, help="timed repetitions (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--no-channels-last", action="store_true",
                        help="run the fast path in NCHW layout instead of pixelfold's default "
                             "channels-last")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-memory-cache", choices=("on", "off"), default="off",
                        help="keep freed CPU memory for reuse, as pixelfold's trainer does on "
                             "a CPU (pixelfold.utils.enable_cpu_memory_cache; default off, as "
                             "a plain process runs and as the earlier rows were measured)")
    parser.add_argument("--json-out", default=None, help="where to write the results as JSON")
    parser.add_argument("--quick", action="store_true", help="a smaller, faster run")


def apply_cpu_memory_cache(setting: str | None) -> None:
    """``--cpu-memory-cache on``: turn the cache on in this process (children get the setting
    in their spec and call this themselves)."""
    if setting == "on":
        from pixelfold.utils import enable_cpu_memory_cache

        enable_cpu_memory_cache()


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved_timings(fns: dict[str, Callable[[], Any]], iters: int, warmup: int,
                        device: torch.device) -> dict[str, list[float]]:
    """Time each function ``iters`` times, round-robin (A B A B ...), so that a change of load
    on a shared machine hits every variant alike. Returns the seconds of every repetition."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
            synchronize(device)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            synchronize(device)
            t0 = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - t0)
    return times


def summarize(seconds: Sequence[float]) -> dict[str, float]:
    """Median, minimum and maximum of repeated timings, in milliseconds."""
    return {"median_ms": 1e3 * statistics.median(seconds), "min_ms": 1e3 * min(seconds),
            "max_ms": 1e3 * max(seconds), "repeats": len(seconds)}


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    """``torch.autocast`` for bfloat16, nothing for float32."""
    if dtype == torch.float32:
        yield
    else:
        with torch.autocast(device.type, dtype=dtype):
            yield


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured Markdown table (readable as plain text too)."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["| " + " | ".join(c.ljust(w) for c, w in zip(cells[0], widths, strict=True)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"
              for r in cells[1:]]
    return "\n".join(lines)


def write_json(path: str | None, data: dict[str, Any]) -> None:
    if path is None:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=2) + "\n")
    print(f"\nwrote {out}")


def mib(n: int | None) -> str:
    return "-" if n is None else f"{n / 2**20:,.0f} MiB"
