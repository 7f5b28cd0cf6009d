"""Generator inference speed: pixelfold's fast path against the straightforward implementation,
PixelFolder against CIPS, and peak memory of a 1024x1024 image.

Rows of the table, per preset (same weights, same noise draws):

* ``reference``: ``benchmarks/reference_impl.py``, i.e. the model under ``use_impl("ref")``
  (per-sample grouped ModConv, zero-insertion FIR upsampling, separate noise / bias /
  activation operations, NCHW, ``torch.no_grad``);
* ``fast``: ``G(z)`` as pixelfold runs it by default (channels-last layout), under
  ``torch.inference_mode``;
* ``fast + compile`` (``--compile``): the same under ``torch.compile(fullgraph=True)``;
* ``convolutions alone`` (PixelFolder presets): every ``F.conv2d`` call of one fast forward
  (the 3x3 ModConvs, the 1x1 input and merge convs), replayed as plain convolutions of random
  tensors with the same shapes, layout and dtype: a floor for what the whole generator can
  reach on this machine (its ToRGB matrix products, mapping network and element-wise work are
  left out);
* ablations (``--ablations``): the fast path in NCHW, with zero-strength noise skipped, with
  ``noise_mode="none"``, and with the style-free stage inputs recomputed on every call instead
  of cached.

Noise strengths are set to 0.1 (a trained model's are non-zero; a fresh model's are exactly 0,
which would let ``skip_zero_strength`` flatter the fast path), and every variant draws fresh
noise for every noise layer (``noise_mode="random"``).

Peak memory (``--memory-preset``, default ``pixelfolder-1024`` at batch 1): on CPU each
implementation runs in a fresh child process and the table reports its peak resident set size
(``VmHWM`` of ``/proc/self/status``: Python, torch, the weights and the forward pass) and the
part added by the forward pass (the high-water mark is reset just before it, through
``/proc/self/clear_refs``, and the resident size at that moment subtracted); on CUDA,
``torch.cuda.max_memory_allocated`` and the part above the memory allocated before.

Run from the repository root::

    python benchmarks/generator.py --device cpu --threads 2
    python benchmarks/generator.py --device cpu --threads 2 --dtype bfloat16
    python benchmarks/generator.py --device cuda --dtype bfloat16 --compile --batch-size 64
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    DTYPES,
    NOISE_STRENGTH,
    add_common_args,
    apply_cpu_memory_cache,
    autocast,
    current_rss_bytes,
    format_table,
    interleaved_timings,
    machine_info,
    mib,
    peak_rss_bytes,
    reset_peak_rss,
    set_noise_strength,
    summarize,
    synchronize,
    write_json,
)
from benchmarks.reference_impl import reference_generator  # noqa: E402
from pixelfold.layers.noise import set_noise_skipping  # noqa: E402
from pixelfold.metrics import count_macs  # noqa: E402
from pixelfold.models import Generator  # noqa: E402

PAPER_IMS = {"pixelfolder-256": 77.7, "cips-256": 11.0}  # images/s on the paper's GPU


def build_generator(name: str, device: torch.device, seed: int,
                    noise_strength: float = NOISE_STRENGTH,
                    memory_format: torch.memory_format = torch.channels_last) -> Generator:
    """A seeded generator with non-zero noise strengths, in eval mode (channels-last, as
    pixelfold builds it, unless ``memory_format`` says otherwise)."""
    torch.manual_seed(seed)
    G = Generator.from_preset(name, memory_format=memory_format).eval().requires_grad_(False)
    set_noise_strength(G, noise_strength)
    return G.to(device)


def gmacs_per_image(name: str) -> float:
    with torch.device("meta"):
        G = Generator.from_preset(name)
    return count_macs(G) / 1e9


class _ConvRecorder(torch.overrides.TorchFunctionMode):
    """Records the arguments of every ``F.conv2d`` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[dict[str, Any]] = []

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        kwargs = kwargs or {}
        if func is F.conv2d:
            x, w = args[0], args[1]
            names = ("bias", "stride", "padding", "dilation", "groups")
            opts = dict(zip(names, args[2:], strict=False))
            opts.update(kwargs)
            opts.pop("bias", None)
            self.calls.append({"x": tuple(x.shape), "w": tuple(w.shape), **opts})
        return func(*args, **kwargs)


def conv_calls(G: Generator, z: torch.Tensor) -> list[dict[str, Any]]:
    """Shapes and options of every 2-D convolution of one forward of ``G``."""
    recorder = _ConvRecorder()
    with torch.inference_mode(), recorder:
        G(z)
    return recorder.calls


def convs_only(calls: list[dict[str, Any]], device: torch.device, dtype: torch.dtype,
               channels_last: bool) -> Callable[[], None]:
    """The same convolutions on random data: plain ``F.conv2d``, nothing else."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    data = [(torch.randn(c["x"], device=device, dtype=dtype).contiguous(memory_format=fmt),
             torch.randn(c["w"], device=device, dtype=dtype).contiguous(memory_format=fmt),
             {k: v for k, v in c.items() if k not in ("x", "w")}) for c in calls]

    def run() -> None:
        with torch.inference_mode():
            for x, w, opts in data:
                F.conv2d(x, w, **opts)

    return run


def time_preset(name: str, args: argparse.Namespace, device: torch.device,
                dtype: torch.dtype) -> list[dict[str, Any]]:
    batch = args.batch_size
    channels_last = not args.no_channels_last
    G_ref = build_generator(name, device, args.seed, memory_format=torch.contiguous_format)
    G = build_generator(name, device, args.seed, memory_format=torch.channels_last
                        if channels_last else torch.contiguous_format)
    z = torch.randn(batch, G.z_dim, generator=torch.Generator().manual_seed(args.seed)).to(device)

    def fast(model: Callable[..., torch.Tensor], noise_mode: str = "random"
             ) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            with torch.inference_mode(), autocast(device, dtype):
                return model(z, noise_mode=noise_mode)
        return run

    def reference() -> torch.Tensor:
        with torch.no_grad(), autocast(device, dtype):
            return reference_generator(G_ref, z)

    fns: dict[str, Callable[[], Any]] = {}
    if not args.no_reference:
        fns["reference"] = reference
    fns["fast"] = fast(G)
    compile_s = None
    if args.compile:
        mode = args.compile_mode or ("reduce-overhead" if device.type == "cuda" else None)
        G_c = torch.compile(G, fullgraph=True, mode=mode)
        t0 = time.perf_counter()
        fast(G_c)()
        synchronize(device)
        compile_s = time.perf_counter() - t0
        fns["fast + compile"] = fast(G_c)
    if name.startswith("pixelfolder"):
        fns["convolutions alone"] = convs_only(
            conv_calls(G, z), device, torch.bfloat16 if dtype != torch.float32 else dtype,
            channels_last)
    if args.ablations:
        G_nchw = build_generator(name, device, args.seed,
                                 memory_format=torch.contiguous_format)
        fns["fast, NCHW layout"] = fast(G_nchw)
        G_skip = build_generator(name, device, args.seed, noise_strength=0.0,
                                 memory_format=torch.channels_last if channels_last
                                 else torch.contiguous_format)
        set_noise_skipping(G_skip, True)
        fns["fast, zero-strength noise skipped"] = fast(G_skip)
        fns["fast, noise_mode='none'"] = fast(G, "none")
        uncached = fast(G)

        def recomputed() -> torch.Tensor:
            for stage in G.synthesis.stages:  # drop the cached style-free stage inputs
                stage._input_cache.clear()
            return uncached()
        fns["fast, style-free inputs recomputed"] = recomputed

    times = interleaved_timings(fns, args.iters, args.warmup, device)
    macs = gmacs_per_image(name)
    ref_ms = summarize(times["reference"])["median_ms"] if "reference" in times else None
    rows = []
    for variant, secs in times.items():
        stats = summarize(secs)
        row: dict[str, Any] = {"preset": name, "variant": variant, "batch_size": batch,
                               "dtype": args.dtype, "device": str(device),
                               "channels_last": channels_last and "NCHW" not in variant,
                               **stats,
                               "images_per_s": batch / (stats["median_ms"] / 1e3)}
        if variant != "convolutions alone":
            row["gmacs_per_image"] = macs
            row["achieved_gflops"] = 2 * macs * batch / (stats["median_ms"] / 1e3)
            if ref_ms is not None:
                row["speedup_vs_reference"] = ref_ms / stats["median_ms"]
        if variant == "fast + compile":
            row["compile_s"] = compile_s
        if name in PAPER_IMS and variant == "fast":
            row["paper_images_per_s_gpu"] = PAPER_IMS[name]
        rows.append(row)
    return rows


# ---------------------------------------------------------------- peak memory


def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run in a fresh process: build, then one forward; report peak memory."""
    device = torch.device(spec["device"])
    dtype = DTYPES[spec["dtype"]]
    apply_cpu_memory_cache(spec.get("cpu_memory_cache"))
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    fmt = (torch.channels_last if spec["impl"] == "fast" and spec["channels_last"]
           else torch.contiguous_format)
    G = build_generator(spec["preset"], device, spec["seed"], memory_format=fmt)
    z = torch.randn(spec["batch_size"], G.z_dim, device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    if device.type == "cpu":
        reset_peak_rss()
        before = current_rss_bytes() or peak_rss_bytes()
    else:
        before = torch.cuda.memory_allocated(device)
    t0 = time.perf_counter()
    if spec["impl"] == "fast":
        with torch.inference_mode(), autocast(device, dtype):
            out = G(z)
    else:
        with torch.no_grad(), autocast(device, dtype):
            out = reference_generator(G, z)
    synchronize(device)
    seconds = time.perf_counter() - t0
    if device.type == "cpu":
        peak = peak_rss_bytes()
        result = {"peak_rss_bytes": peak, "forward_increase_bytes": peak - before}
    else:
        peak = torch.cuda.max_memory_allocated(device)
        result = {"peak_allocated_bytes": peak, "forward_increase_bytes": peak - before}
    return {**spec, **result, "first_forward_s": seconds, "output_shape": list(out.shape)}


def measure_memory(args: argparse.Namespace, device: torch.device) -> list[dict[str, Any]]:
    rows = []
    for impl in ("fast", "reference"):
        spec = {"preset": args.memory_preset, "batch_size": 1, "impl": impl,
                "device": str(device), "dtype": args.dtype, "seed": args.seed,
                "channels_last": not args.no_channels_last, "threads": args.threads,
                "cpu_memory_cache": args.cpu_memory_cache}
        if device.type == "cuda":
            rows.append(memory_child(spec))
            torch.cuda.empty_cache()
            continue
        proc = subprocess.run([sys.executable, __file__, "--memory-child", json.dumps(spec)],
                              capture_output=True, text=True, check=False,
                              env={**os.environ, "PYTHONWARNINGS": "ignore"})
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("MEMORY_RESULT ")]
        if proc.returncode or not lines:
            raise RuntimeError(f"memory child failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
        rows.append(json.loads(lines[-1][len("MEMORY_RESULT "):]))
    return rows


# ---------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--batch-size", type=int, default=None, help="default 4 (--quick: 1)")
    parser.add_argument("--presets", default="pixelfolder-256,cips-256",
                        help="comma-separated preset names")
    parser.add_argument("--no-reference", action="store_true",
                        help="skip the straightforward implementation")
    parser.add_argument("--ablations", action="store_true",
                        help="also time the fast path in NCHW and with noise skipped")
    parser.add_argument("--memory-preset", default="pixelfolder-1024",
                        help="preset whose batch-1 peak memory is measured ('' to skip)")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_child is not None:
        print("MEMORY_RESULT " + json.dumps(memory_child(json.loads(args.memory_child))))
        return
    apply_cpu_memory_cache(args.cpu_memory_cache)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.batch_size is None:
        args.batch_size = 1 if args.quick else 4
    if args.iters is None:
        args.iters = 2 if args.quick else 5
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes, as pixelfold's trainer does
    dtype = DTYPES[args.dtype]
    presets_list = [p.strip() for p in args.presets.split(",") if p.strip()]

    info = machine_info(device)
    print(f"# {info['cpu']}, {info['cpu_cores_visible']} cores visible, "
          f"{info['torch_threads']} torch threads, torch {info['torch']}"
          + (f", {info['gpu']}" if "gpu" in info else ""))
    print(f"# batch {args.batch_size}, {args.dtype}"
          + (" (autocast)" if dtype != torch.float32 else "")
          + f", median of {args.iters} interleaved runs after {args.warmup} warm-up\n")

    rows: list[dict[str, Any]] = []
    for name in presets_list:
        rows += time_preset(name, args, device, dtype)

    table = []
    for r in rows:
        table.append([r["preset"], r["variant"], f"{r['median_ms']:,.0f}",
                      f"{r['min_ms']:,.0f}-{r['max_ms']:,.0f}", f"{r['images_per_s']:.2f}",
                      f"{r['achieved_gflops']:.0f}" if "achieved_gflops" in r else "-",
                      f"{r['speedup_vs_reference']:.2f}x" if "speedup_vs_reference" in r
                      else "-"])
    print(format_table(["preset", "variant", "ms/batch", "range", "images/s", "GFLOP/s",
                        "vs reference"], table))

    ratios: dict[str, Any] = {}
    by = {(r["preset"], r["variant"]): r for r in rows}
    for variant in ("fast", "fast + compile", "reference"):
        a, b = by.get(("pixelfolder-256", variant)), by.get(("cips-256", variant))
        if a and b:
            ratios[f"pixelfolder-256 / cips-256 images/s ({variant})"] = (
                a["images_per_s"] / b["images_per_s"])
    if ("pixelfolder-256", "fast") in by and ("cips-256", "fast") in by:
        ratios["paper (GPU)"] = PAPER_IMS["pixelfolder-256"] / PAPER_IMS["cips-256"]
        ratios["MACs cips-256 / pixelfolder-256"] = (by[("cips-256", "fast")]["gmacs_per_image"]
                                                     / by[("pixelfolder-256", "fast")]
                                                     ["gmacs_per_image"])
    if ratios:
        print()
        print(format_table(["ratio", "value"], [[k, f"{v:.2f}x"] for k, v in ratios.items()]))

    memory: list[dict[str, Any]] = []
    if args.memory_preset:
        memory = measure_memory(args, device)
        key = "peak_rss_bytes" if device.type == "cpu" else "peak_allocated_bytes"
        print()
        print(format_table(
            ["preset", "impl", "batch", "peak memory" + (" (RSS)" if device.type == "cpu"
                                                          else " (allocated)"),
             "added by the forward", "first forward"],
            [[m["preset"], m["impl"], m["batch_size"], mib(m[key]),
              mib(m["forward_increase_bytes"]), f"{m['first_forward_s']:.1f} s"]
             for m in memory]))

    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    write_json(args.json_out, {"benchmark": "generator", "machine": info,
                               "settings": {k: v for k, v in vars(args).items()
                                            if k != "memory_child"},
                               "results": rows, "ratios": ratios, "memory": memory})


if __name__ == "__main__":
    main()
