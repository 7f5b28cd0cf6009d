"""Training-step speed and peak memory: pixelfold's fast path against the straightforward
implementation, for a generator preset and the residual discriminator at its resolution.

One step is what ``pixelfold.training.GANTrainer`` (like the authors' trainer) runs on a
lazy-R1 step, the most expensive kind (R1 runs on every 16th step):

1. D step: ``fake = G(z)`` without gradients; logistic loss on ``D(real)`` and ``D(fake)``;
   backward; Adam step.
2. R1 step: ``D(real)`` with reals requiring grad; ``r1_penalty`` (``gamma = 10``, interval
   16: the loss is ``penalty * 10 / 2 * 16``); backward, i.e. a double backward through D;
   Adam step.
3. G step: ``D(G(z))`` with D frozen; non-saturating loss; backward; Adam step.

Implementations, each with its own copy of the same seeded weights:

* ``reference``: ``benchmarks/reference_impl.py`` (``use_impl("ref")``) for G and D (grouped
  ModConv, zero-insertion and padded-copy FIR filters, separate element-wise operations), NCHW;
* ``fast``: pixelfold's modules as they run by default, G and D in channels-last layout;
  ``--compile`` wraps G and the D passes without R1 in ``torch.compile`` (the R1 pass needs a
  double backward, which compiled graphs do not support, so it runs eagerly on the same D).

Each batch size runs in a fresh child process (on CPU), so that its memory is its own. Peak
memory is that of the fast path: on CPU the resident-set high-water mark (``VmHWM`` of
``/proc/self/status``) over its warm-up steps, which include the creation of the gradients and
the Adam states, reported both as the whole process and as the part added on top of the
resident size after building the models; on CUDA ``torch.cuda.max_memory_allocated``. Batch
sizes listed in ``--reference-batch-sizes`` also time the reference, interleaved with the fast
path in the same process (A B A B ...), and report the speed-up.

Run from the repository root::

    python benchmarks/train_step.py --threads 2
    python benchmarks/train_step.py --device cuda --dtype bfloat16 --batch-sizes 8,16,32
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    DTYPES,
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
from benchmarks.reference_impl import reference_discriminator, reference_generator  # noqa: E402
from pixelfold.models import Discriminator, DiscriminatorSpec, Generator  # noqa: E402
from pixelfold.training import (  # noqa: E402
    discriminator_loss,
    generator_loss,
    lazy_r1_loss,
    r1_penalty,
)

R1_GAMMA = 10.0
R1_INTERVAL = 16


class Setup:
    """G, D, their Adam optimizers and the step function of one implementation."""

    def __init__(self, impl: str, preset: str, batch: int, device: torch.device,
                 dtype: torch.dtype, seed: int, channels_last: bool, compile_: bool) -> None:
        fast = impl == "fast"
        fmt = torch.channels_last if fast and channels_last else torch.contiguous_format
        torch.manual_seed(seed)
        G = Generator.from_preset(preset, memory_format=fmt)
        set_noise_strength(G)
        D = Discriminator(DiscriminatorSpec(resolution=G.resolution[0]), memory_format=fmt)
        G, D = G.to(device), D.to(device)
        self.G, self.D = G, D
        self.opt_G = torch.optim.Adam(G.parameters(), lr=0.002, betas=(0.0, 0.99))
        self.opt_D = torch.optim.Adam(D.parameters(), lr=0.002, betas=(0.0, 0.99))
        gen = torch.Generator().manual_seed(seed + 1)
        self.reals = torch.randn(batch, 3, *G.resolution, generator=gen).clamp(-1, 1).to(
            device).contiguous(memory_format=fmt)
        self.z = [torch.randn(batch, G.z_dim, generator=gen).to(device) for _ in range(2)]
        self.device, self.dtype = device, dtype
        self.phases: list[tuple[float, float, float]] = []  # seconds of D, R1, G per step
        self.gen: Callable[[torch.Tensor], torch.Tensor]
        self.disc: Callable[[torch.Tensor], torch.Tensor]
        self.disc_r1: Callable[[torch.Tensor], torch.Tensor]
        if fast:
            self.gen, self.disc, self.disc_r1 = G, D, D
            if compile_:
                self.gen = torch.compile(G, fullgraph=True)
                self.disc = torch.compile(D, fullgraph=True)
        else:
            self.gen = lambda z: reference_generator(G, z)
            self.disc = self.disc_r1 = lambda x: reference_discriminator(D, x)

    def step(self) -> None:
        """D step, lazy-R1 step, G step: what ``GANTrainer.train_step`` runs on an R1 step."""
        D = self.D
        t0 = time.perf_counter()
        D.requires_grad_(True)
        # D: logistic loss on reals and (detached) fakes
        with torch.no_grad(), autocast(self.device, self.dtype):
            fake = self.gen(self.z[0])
        with autocast(self.device, self.dtype):
            loss_d = discriminator_loss(self.disc(self.reals), self.disc(fake))
        loss_d.backward()
        self.opt_D.step()
        self.opt_D.zero_grad(set_to_none=True)
        synchronize(self.device)
        t1 = time.perf_counter()
        # D: R1 on the reals (a gradient of a gradient), its own optimizer step
        reals = self.reals.detach().requires_grad_(True)
        with autocast(self.device, self.dtype):
            logits = self.disc_r1(reals)
        lazy_r1_loss(r1_penalty(reals, logits), R1_GAMMA, R1_INTERVAL).backward()
        self.opt_D.step()
        self.opt_D.zero_grad(set_to_none=True)
        synchronize(self.device)
        t2 = time.perf_counter()
        # G: non-saturating loss through the frozen D
        D.requires_grad_(False)
        with autocast(self.device, self.dtype):
            loss_g = generator_loss(self.disc(self.gen(self.z[1])))
        loss_g.backward()
        self.opt_G.step()
        self.opt_G.zero_grad(set_to_none=True)
        synchronize(self.device)
        self.phases.append((t1 - t0, t2 - t1, time.perf_counter() - t2))


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """One batch size: the fast path's memory, then interleaved timings."""
    device = torch.device(spec["device"])
    dtype = DTYPES[spec["dtype"]]
    apply_cpu_memory_cache(spec.get("cpu_memory_cache"))
    if spec.get("threads"):
        torch.set_num_threads(spec["threads"])
    batch = spec["batch_size"]

    def make(impl: str) -> Setup:
        return Setup(impl, spec["preset"], batch, device, dtype, spec["seed"],
                     spec["channels_last"], spec["compile"] and impl == "fast")

    fast = make("fast")
    if device.type == "cuda":
        synchronize(device)
        before = torch.cuda.memory_allocated(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        before = current_rss_bytes() or peak_rss_bytes()
        reset_peak_rss()
    t0 = time.perf_counter()
    fast.step()  # first step: gradients and Adam states are created (and graphs compiled)
    synchronize(device)
    first_step_s = time.perf_counter() - t0
    for _ in range(max(spec["warmup"] - 1, 0)):
        fast.step()
    synchronize(device)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated(device)
        memory = {"peak_allocated_bytes": peak, "steps_increase_bytes": peak - before}
    else:
        peak = peak_rss_bytes()
        memory = {"peak_rss_bytes": peak, "steps_increase_bytes": peak - before}
    fns = {"fast": fast.step}
    if spec["reference"]:
        ref = make("reference")
        ref.step()
        fns = {"reference": ref.step, "fast": fast.step}
    setups = {"fast": fast} if not spec["reference"] else {"fast": fast, "reference": ref}
    for setup in setups.values():
        setup.phases.clear()
    times = interleaved_timings(fns, spec["iters"], max(spec["warmup"] - 1, 0), device)
    phases = {}
    for impl, setup in setups.items():
        timed = setup.phases[-spec["iters"]:]
        phases[impl] = {name: 1e3 * statistics.median(p[i] for p in timed)
                        for i, name in enumerate(("d_ms", "r1_ms", "g_ms"))}
    return {**spec, **memory, "first_fast_step_s": first_step_s,
            "timings": {k: summarize(v) for k, v in times.items()}, "phases": phases}


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    if spec["device"].startswith("cuda"):
        result = child(spec)
        torch.cuda.empty_cache()
        return result
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"})
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("STEP_RESULT ")]
    if proc.returncode or not lines:
        raise RuntimeError(f"child {spec} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("STEP_RESULT "):])


def parse_sizes(text: str) -> list[int]:
    return [int(v) for v in text.split(",") if v.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_common_args(parser)
    parser.add_argument("--batch-sizes", "--batch-size", dest="batch_sizes", default=None,
                        help="comma-separated batch sizes (default 1,2,4; --quick: 1,2)")
    parser.add_argument("--reference-batch-sizes", default=None,
                        help="batch sizes that also time the reference (default 2; --quick: "
                             "1; '' for none)")
    parser.add_argument("--presets", default="pixelfolder-256",
                        help="comma-separated generator presets (D matches the resolution)")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child is not None:
        print("STEP_RESULT " + json.dumps(child(json.loads(args.child))))
        return
    apply_cpu_memory_cache(args.cpu_memory_cache)
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = parse_sizes(args.batch_sizes or ("1,2" if args.quick else "1,2,4"))
    ref_sizes = parse_sizes(args.reference_batch_sizes if args.reference_batch_sizes is not None
                            else ("1" if args.quick else "2"))
    iters = args.iters or (2 if args.quick else 3)
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes, as pixelfold's trainer does
    info = machine_info(device)
    print(f"# {info['cpu']}, {info['cpu_cores_visible']} cores visible, "
          f"{info['torch_threads']} torch threads, torch {info['torch']}"
          + (f", {info['gpu']}" if "gpu" in info else ""))
    print(f"# {args.dtype}" + (" (autocast)" if args.dtype != "float32" else "")
          + f", D step + R1 step + G step, median of {iters} after {args.warmup} "
            "warm-up\n")

    results = []
    for preset in [p.strip() for p in args.presets.split(",") if p.strip()]:
        for batch in sizes:
            spec = {"preset": preset, "batch_size": batch, "device": str(device),
                    "dtype": args.dtype, "seed": args.seed, "iters": iters,
                    "warmup": max(args.warmup, 1), "threads": args.threads,
                    "cpu_memory_cache": args.cpu_memory_cache,
                    "channels_last": not args.no_channels_last, "compile": args.compile,
                    "reference": batch in ref_sizes}
            results.append(run_child(spec))

    rows = []
    table = []
    for r in results:
        t = r["timings"]
        for impl in [k for k in ("reference", "fast") if k in t]:
            row = {"preset": r["preset"], "batch_size": r["batch_size"], "impl": impl,
                   "dtype": r["dtype"], "compile": r["compile"] and impl == "fast", **t[impl],
                   "images_per_s": r["batch_size"] / (t[impl]["median_ms"] / 1e3),
                   "phases_ms": r["phases"][impl]}
            if impl == "fast":
                row.update({k: r[k] for k in ("peak_rss_bytes", "peak_allocated_bytes",
                                              "steps_increase_bytes", "first_fast_step_s")
                            if k in r})
                if "reference" in t:
                    row["speedup_vs_reference"] = (t["reference"]["median_ms"]
                                                   / t["fast"]["median_ms"])
            rows.append(row)
            peak = row.get("peak_rss_bytes", row.get("peak_allocated_bytes"))
            table.append([row["preset"], row["batch_size"],
                          impl + (" + compile" if row["compile"] else ""),
                          f"{row['median_ms']:,.0f}", f"{row['min_ms']:,.0f}-"
                          f"{row['max_ms']:,.0f}", f"{row['images_per_s']:.2f}",
                          mib(peak), mib(row.get("steps_increase_bytes")),
                          f"{row['speedup_vs_reference']:.2f}x"
                          if "speedup_vs_reference" in row else "-"])
    print(format_table(["preset", "batch", "impl", "ms/step", "range", "images/s",
                        "peak memory" + (" (RSS)" if device.type == "cpu" else " (allocated)"),
                        "added by the steps", "vs reference"], table))
    print()
    print(format_table(
        ["preset", "batch", "impl", "D step ms", "R1 step ms", "G step ms"],
        [[r["preset"], r["batch_size"], r["impl"] + (" + compile" if r["compile"] else ""),
          *(f"{r['phases_ms'][k]:,.0f}" for k in ("d_ms", "r1_ms", "g_ms"))] for r in rows]))
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    write_json(args.json_out, {"benchmark": "train_step", "machine": info,
                               "settings": {**{k: v for k, v in vars(args).items()
                                               if k != "child"},
                                            "batch_sizes": sizes,
                                            "reference_batch_sizes": ref_sizes,
                                            "iters": iters},
                               "results": rows})


if __name__ == "__main__":
    main()
