"""The trainer's own step against the authors' training step: ``GANTrainer.train_step`` on its
real data path beside the same step math run with the authors' generator and discriminator.

* ``trainer``: a [`GANTrainer`][pixelfold.training.GANTrainer] built from a ``TrainConfig``
  exactly as ``pixelfold train`` builds one (Accelerate, the preset's generator, the residual
  discriminator), training on an image folder written to a temporary directory (PNG files at
  the model's resolution): every step reads and decodes its batch through the trainer's
  ``DataLoader``, flips it (``hflip``, the authors' only augmentation), moves it to the device
  and hands it to D, then updates the EMA copy, as a real run does. Nothing is set by hand
  beyond the config (``--mixed-precision no``, ``style_mixing_prob 0`` and no path-length
  regularization, as the authors train).
* ``authors``: the same math with the authors' PixelFolder generator and residual StyleGAN2
  discriminator, as their training loop runs it (rosinality's ``train.py``, on which their code
  is built): ``tests/reference/authors_pixelfold.py`` and ``authors_discriminator.py``, plain
  PyTorch re-implementations of their modules (their two CUDA ops, ``upfirdn2d`` and
  ``fused_leaky_relu``, as the plain-PyTorch versions: padded depthwise convolution,
  ``leaky_relu(x + b) * sqrt(2)``), NCHW. D step: ``G(z)`` with G frozen, softplus losses on
  ``D(fake)`` and ``D(real)``, backward, Adam; every 16th step the lazy R1 step (``D(real)``
  with reals requiring grad, ``gamma / 2 * |grad|^2 * 16``, a double backward, Adam); G step
  with D frozen (``requires_grad(D, False)``); the EMA update. Its reals are ready-made NCHW
  tensors of the same images (its data loading is not timed, which can only favour it).

Both sides use the preset's architecture at the same size, Adam with the lazy-regularization
correction, fresh noise in every noise layer, float32. One step of each kind is timed per round,
round-robin (trainer, authors, trainer, authors, ...) in one process, after a warm-up round:
a step without R1 and a step with R1 (the trainer's step counter is set to a multiple of
``d_reg_interval`` for the latter, which is all that decides whether it runs R1). A real run
does R1 on one step in 16, so the row that counts is the amortized step,
``(15 * plain + R1 step) / 16``, per round; the table gives the median over rounds.

The trainer turns on its CPU memory cache (``TrainConfig.cpu_memory_cache``, as ``pixelfold
train`` does; ``--cpu-memory-cache off`` leaves glibc's default ``malloc``). The setting is
process-wide, so the authors' side runs with the same allocator: only the code differs. Each
side's floating-point work per step is counted once (``torch.utils.flop_counter``, an untimed
step of each kind), which shows that the two do the same math and what rate each reaches.

Generator inference (``--inference``, on by default): ``G(z)`` of the authors' generator against
pixelfold's at batch 4 (``torch.inference_mode``, fresh noise, noise strengths 0.1 on both),
interleaved in the same run.

Run from the repository root (about 5 minutes at 256 with 3 rounds on 2 CPU cores)::

    python benchmarks/trainer_step.py --threads 2
    python benchmarks/trainer_step.py --quick   # a tiny 32x32 model, to check the script
"""

from __future__ import annotations

import argparse
import copy
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks._common import (  # noqa: E402
    NOISE_STRENGTH,
    format_table,
    interleaved_timings,
    machine_info,
    set_noise_strength,
    summarize,
    write_json,
)
from pixelfold.models import presets  # noqa: E402
from pixelfold.training import TrainConfig  # noqa: E402
from pixelfold.training.losses import lazy_adam_params  # noqa: E402
from tests.reference.authors_discriminator import AuthorsDiscriminator  # noqa: E402
from tests.reference.authors_pixelfold import STAGES as AUTHORS_STAGES  # noqa: E402
from tests.reference.authors_pixelfold import AuthorsPixelFolder  # noqa: E402

R1_GAMMA = 10.0
R1_INTERVAL = 16
AUTHORS_SIZES = tuple(AUTHORS_STAGES)  # the sizes the authors' generator has
G_INTERVAL = 4  # the authors' code corrects G's Adam for an interval of 4 (REFERENCE.md)


def write_image_folder(folder: Path, count: int, size: int, seed: int) -> None:
    """``count`` smooth random RGB PNGs of ``size`` x ``size`` (upsampled noise, so that the
    PNG decoder does real work and the images are not constant)."""
    from PIL import Image

    gen = torch.Generator().manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        low = torch.rand(1, 3, max(size // 8, 2), max(size // 8, 2), generator=gen)
        img = F.interpolate(low, size=(size, size), mode="bilinear", align_corners=False)[0]
        array = (img.permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()
        Image.fromarray(array).save(folder / f"{i:04d}.png")


class TrainerSide:
    """``GANTrainer.train_step`` on an image folder, as ``pixelfold train`` runs it."""

    def __init__(self, preset: str, batch: int, data: Path, out: Path, seed: int,
                 cpu_memory_cache: bool = True) -> None:
        from pixelfold.training import GANTrainer

        size = presets.get(preset).resolution
        config = TrainConfig(
            output_dir=str(out), dataset=str(data), preset=preset, resolution=size,
            batch_size=batch, lr=0.002, betas=(0.0, 0.99), r1_gamma=R1_GAMMA,
            d_reg_interval=R1_INTERVAL, g_reg_interval=G_INTERVAL, style_mixing_prob=0.0,
            pl_weight=0.0, hflip=True, augment="none", mixed_precision="no", seed=seed,
            report_to="none", progress_bar=False, num_workers=0,
            cpu_memory_cache=cpu_memory_cache)
        self.trainer = GANTrainer(config)
        set_noise_strength(self.trainer.G, NOISE_STRENGTH)
        self.trainer.G_train.train()
        self.trainer.D_ddp.train()

    def step(self, r1: bool) -> None:
        state = self.trainer.state
        # R1 runs when step % d_reg_interval == 0: choose which kind this step is
        state.step = (state.step // R1_INTERVAL + 1) * R1_INTERVAL + (0 if r1 else 1)
        self.trainer.train_step()


class AuthorsSide:
    """The authors' step math (rosinality's ``train.py`` loop) with their G and D."""

    def __init__(self, size: int, batch: int, reals: list[torch.Tensor], seed: int) -> None:
        torch.manual_seed(seed)
        self.G = AuthorsPixelFolder(size)
        self.D = AuthorsDiscriminator(size)
        set_noise_strength(self.G, NOISE_STRENGTH)
        self.G_ema = copy.deepcopy(self.G).eval().requires_grad_(False)
        g_lr, g_betas = lazy_adam_params(0.002, (0.0, 0.99), G_INTERVAL)
        d_lr, d_betas = lazy_adam_params(0.002, (0.0, 0.99), R1_INTERVAL)
        self.opt_G = torch.optim.Adam(self.G.parameters(), lr=g_lr, betas=g_betas)
        self.opt_D = torch.optim.Adam(self.D.parameters(), lr=d_lr, betas=d_betas)
        self.batch, self.reals, self.index = batch, reals, 0
        self.ema_decay = 0.5 ** (32 / (10 * 1000))
        self.flip_gen = torch.Generator().manual_seed(seed + 1)

    def _real(self) -> torch.Tensor:
        real = self.reals[self.index % len(self.reals)]
        self.index += 1
        flip = torch.rand(real.shape[0], generator=self.flip_gen) < 0.5
        return torch.where(flip[:, None, None, None], real.flip(-1), real)

    def step(self, r1: bool) -> None:
        G, D = self.G, self.D
        real = self._real()
        # D: logistic loss on fakes (G frozen) and reals
        G.requires_grad_(False)  # the authors' requires_grad(G, False)
        D.requires_grad_(True)
        fake = G(torch.randn(self.batch, G.style_dim), noise_mode="random")
        d_loss = F.softplus(D(fake)).mean() + F.softplus(-D(real)).mean()
        D.zero_grad()
        d_loss.backward()
        self.opt_D.step()
        if r1:  # lazy R1: a gradient of a gradient through D
            real = real.detach().requires_grad_(True)
            real_pred = D(real)
            (grad,) = torch.autograd.grad(real_pred.sum(), real, create_graph=True)
            penalty = grad.pow(2).reshape(grad.shape[0], -1).sum(1).mean()
            D.zero_grad()
            (R1_GAMMA / 2 * penalty * R1_INTERVAL + 0 * real_pred[0]).sum().backward()
            self.opt_D.step()
        # G: non-saturating loss through the frozen D
        G.requires_grad_(True)
        D.requires_grad_(False)
        fake = G(torch.randn(self.batch, G.style_dim), noise_mode="random")
        g_loss = F.softplus(-D(fake)).mean()
        G.zero_grad()
        g_loss.backward()
        self.opt_G.step()
        with torch.no_grad():  # EMA of the weights (the authors' accumulate())
            for p_ema, p in zip(self.G_ema.parameters(), G.parameters(), strict=True):
                p_ema.lerp_(p, 1 - self.ema_decay)


def load_reals(folder: Path, batch: int, count: int) -> list[torch.Tensor]:
    """The folder's images as NCHW batches in [-1, 1] (what the authors' loader yields)."""
    import numpy as np
    from PIL import Image

    images = []
    for path in sorted(folder.glob("*.png"))[:count]:
        array = torch.from_numpy(np.asarray(Image.open(path).convert("RGB")).copy())
        images.append(array.permute(2, 0, 1).float() / 127.5 - 1)
    return [torch.stack(images[i:i + batch]) for i in range(0, len(images) - batch + 1, batch)]


def count_flops(step: Any) -> float:
    """Floating-point operations of one call of ``step`` (forward and backward passes), in
    GFLOP, by the formulas of ``torch.utils.flop_counter`` (convolutions and matrix products).
    A plain dispatch mode rather than ``FlopCounterMode``, whose per-module tracking fails on
    ``autograd.grad`` with respect to a leaf (R1's images)."""
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import flop_registry

    class Counter(TorchDispatchMode):
        total = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[override]
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            formula = flop_registry.get(func._overloadpacket)
            if formula is not None:
                self.total += formula(*args, **kwargs, out_val=out)
            return out

    with Counter() as counter:
        step()
    return counter.total / 1e9


def conv_peak_gflops(iters: int = 5) -> float:
    """The rate of the fastest kernel of these steps on this machine, in GFLOP/s: oneDNN's
    forward 3x3 convolution at a discriminator shape (512 -> 512 channels, 64x64, batch 2,
    channels-last), median of ``iters`` calls. A step can reach it only where all of its work
    ran at that rate, so ``GFLOP per step / this`` bounds the step time from below."""
    x = torch.randn(2, 512, 64, 64).contiguous(memory_format=torch.channels_last)
    w = torch.randn(512, 512, 3, 3).contiguous(memory_format=torch.channels_last)
    gflop = 2 * x.shape[0] * 512 * 512 * 9 * 64 * 64 / 1e9
    with torch.no_grad():
        F.conv2d(x, w, padding=1)
        times = []
        for _ in range(iters):
            t0 = time.perf_counter()
            F.conv2d(x, w, padding=1)
            times.append(time.perf_counter() - t0)
    return gflop / statistics.median(times)


def time_inference(preset: str, size: int, batch: int, iters: int, seed: int
                   ) -> dict[str, dict[str, float]]:
    """``G(z)`` of the authors' generator and pixelfold's, interleaved."""
    from benchmarks.generator import build_generator

    ours = build_generator(preset, torch.device("cpu"), seed)
    theirs = AuthorsPixelFolder(size).eval().requires_grad_(False)
    set_noise_strength(theirs, NOISE_STRENGTH)
    z = torch.randn(batch, ours.z_dim)

    def run_ours() -> None:
        with torch.inference_mode():
            ours(z, noise_mode="random")

    def run_theirs() -> None:
        with torch.inference_mode():
            theirs(z, noise_mode="random")

    times = interleaved_timings({"authors": run_theirs, "pixelfold": run_ours}, iters, 1,
                                torch.device("cpu"))
    return {k: summarize(v) for k, v in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="pixelfolder-256",
                        help="generator preset (default pixelfolder-256; the authors' side "
                             "needs one of their sizes, 256/512/1024, or --quick)")
    parser.add_argument("--batch-size", type=int, default=2, help="images per step (default 2)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="timed rounds (each: one plain and one R1 step per side)")
    parser.add_argument("--inference-batch", type=int, default=4,
                        help="batch of the inference rows (default 4; 0 skips them)")
    parser.add_argument("--inference-iters", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu-memory-cache", choices=("on", "off"), default="on",
                        help="the trainer's CPU memory cache, process-wide, so for both sides "
                             "(default on, as pixelfold train runs)")
    parser.add_argument("--json-out", default=None, help="where to write the results as JSON")
    parser.add_argument("--quick", action="store_true",
                        help="check the script: pixelfolder-tiny-32, the trainer alone (the "
                             "authors' generator has no 32x32 model), one round")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    logging.getLogger("accelerate").setLevel(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.preset, args.rounds, args.inference_batch = "pixelfolder-tiny-32", 1, 0
    size = presets.get(args.preset).resolution
    size = size[0] if isinstance(size, tuple) else size
    info = machine_info(torch.device("cpu"))
    print(f"# {info['cpu']}, {info['cpu_cores_visible']} cores visible, "
          f"{info['torch_threads']} torch threads, torch {info['torch']}")
    print(f"# {args.preset} at {size}x{size}, batch {args.batch_size}, float32, CPU; "
          f"{args.rounds} round(s) after a warm-up round; CPU memory cache "
          f"{args.cpu_memory_cache}\n")

    with tempfile.TemporaryDirectory(prefix="pixelfold-bench-") as tmp:
        data = Path(tmp) / "images"
        n_images = max(4 * args.batch_size, 8)
        write_image_folder(data, n_images, size, args.seed)
        sides: dict[str, Any] = {}
        if size in AUTHORS_SIZES:
            sides["authors"] = AuthorsSide(size, args.batch_size,
                                           load_reals(data, args.batch_size, n_images), args.seed)
        sides["trainer"] = TrainerSide(args.preset, args.batch_size, data, Path(tmp) / "run",
                                       args.seed, cpu_memory_cache=args.cpu_memory_cache == "on")
        fns: dict[str, Any] = {}
        for name, side in sides.items():
            fns[f"{name} plain"] = (lambda s: lambda: s.step(False))(side)
            fns[f"{name} R1"] = (lambda s: lambda: s.step(True))(side)
        flops = {name: count_flops(fn) for name, fn in fns.items()}
        t0 = time.perf_counter()
        times = interleaved_timings(fns, args.rounds, 1, torch.device("cpu"))
        wall = time.perf_counter() - t0

    rows, table = [], []
    amortized: dict[str, list[float]] = {}
    step_gflop: dict[str, float] = {}
    for name in sides:
        plain, r1 = times[f"{name} plain"], times[f"{name} R1"]
        amortized[name] = [((R1_INTERVAL - 1) * p + r) / R1_INTERVAL
                           for p, r in zip(plain, r1, strict=True)]
        step_gflop[name] = ((R1_INTERVAL - 1) * flops[f"{name} plain"]
                            + flops[f"{name} R1"]) / R1_INTERVAL
    base = statistics.median(amortized["authors"]) if "authors" in amortized else None
    for name in sides:
        row = {"side": name, "plain": summarize(times[f"{name} plain"]),
               "r1": summarize(times[f"{name} R1"]), "amortized": summarize(amortized[name]),
               "gflop_plain": flops[f"{name} plain"], "gflop_r1": flops[f"{name} R1"],
               "gflop_amortized": step_gflop[name]}
        med = row["amortized"]["median_ms"]
        if base is not None:
            row["speedup_vs_authors"] = base * 1e3 / med
        rows.append(row)
        table.append([name, f"{row['plain']['median_ms']:,.0f}", f"{row['r1']['median_ms']:,.0f}",
                      f"{med:,.0f}", f"{row['amortized']['min_ms']:,.0f}-"
                      f"{row['amortized']['max_ms']:,.0f}",
                      f"{args.batch_size / (med / 1e3):.2f}",
                      f"{step_gflop[name]:,.0f}", f"{step_gflop[name] / med * 1e3:,.0f}",
                      f"{row['speedup_vs_authors']:.2f}x" if "speedup_vs_authors" in row
                      else "-"])
    print(format_table(["side", "step ms (no R1)", "step ms (R1)", "amortized ms/step",
                        "range", "images/s", "GFLOP/step", "GFLOP/s", "vs authors"], table))
    print(f"\n(training rounds: {wall:.0f} s)")
    peak = conv_peak_gflops()
    bound = {name: step_gflop[name] / peak * 1e3 for name in sides}
    print(f"fastest kernel (3x3 conv forward, 512 ch, 64x64, batch 2): {peak:,.0f} GFLOP/s; "
          f"every FLOP of a step at that rate: "
          + ", ".join(f"{name} {ms:,.0f} ms" for name, ms in bound.items())
          + (f" (the authors' step / the trainer's bound: "
             f"{base * 1e3 / bound['trainer']:.2f}x)" if base is not None else ""))
    inference = None
    if args.inference_batch and size in AUTHORS_SIZES:
        inference = time_inference(args.preset, size, args.inference_batch,
                                   args.inference_iters, args.seed)
        base_inf = inference["authors"]["median_ms"]
        print()
        print(format_table(
            ["generator", "ms/batch", "range", "images/s", "vs authors"],
            [[name, f"{t['median_ms']:,.0f}", f"{t['min_ms']:,.0f}-{t['max_ms']:,.0f}",
              f"{args.inference_batch / (t['median_ms'] / 1e3):.2f}",
              f"{base_inf / t['median_ms']:.2f}x"] for name, t in inference.items()]))
    if hasattr(os, "getloadavg"):
        info["load_average_1min_at_end"] = round(os.getloadavg()[0], 2)
    write_json(args.json_out, {"benchmark": "trainer_step", "machine": info,
                               "settings": vars(args), "training": rows,
                               "inference": inference, "r1_interval": R1_INTERVAL,
                               "conv_peak_gflops": peak, "bound_ms_at_peak": bound,
                               "amortized": "(15 * plain + R1 step) / 16, per round"})


if __name__ == "__main__":
    main()
