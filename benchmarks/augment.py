"""Cost of the discriminator-input augmentation against a discriminator step.

Times, interleaved (A B C ... A B C ...) in one process, the median over repetitions of:

* ``D fwd+bwd``: ``pixelfold.models.Discriminator(DiscriminatorSpec(resolution=R))`` forward
  and backward (into its parameters) on a batch, the unit of the table;
* ``ADA p=...``: [`AugmentPipe`][pixelfold.training.augment.AugmentPipe] with the ``bgc``
  pipeline, forward and backward with respect to its input, at a few strengths (the geometric
  padding, hence the cost, grows with how far the transforms reach, and every repetition
  draws new parameters from a seeded generator);
* ``DiffAugment``: the ``color,translation,cutout`` policy, forward and backward.

Each row gives the median time and its fraction of the D step. Run from the repository root::

    python benchmarks/augment.py --threads 2
    python benchmarks/augment.py --device cuda --batch-size 32
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import (  # noqa: E402
    format_table,
    interleaved_timings,
    machine_info,
    summarize,
    write_json,
)
from pixelfold.models import Discriminator, DiscriminatorSpec  # noqa: E402
from pixelfold.training.augment import AugmentPipe, DiffAugment  # noqa: E402


def augment_step(module: torch.nn.Module, images: torch.Tensor, grad: torch.Tensor,
                 seed: int) -> Callable[[], None]:
    """Forward and backward of an augmentation, with new parameters on every call."""
    generator = torch.Generator().manual_seed(seed)

    def run() -> None:
        x = images.detach().requires_grad_(True)
        module(x, generator).backward(grad)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--strengths", default="0.2,0.6,1.0",
                        help="comma-separated ADA strengths p to time")
    parser.add_argument("--iters", type=int, default=5, help="timed repetitions (median)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed repetitions first")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json-out", default=None, help="where to write the results as JSON")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)

    size, batch = args.resolution, args.batch_size
    gen = torch.Generator().manual_seed(args.seed)
    images = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1).to(device)
    grad = torch.randn(batch, 3, size, size, generator=gen).to(device)
    D = Discriminator(DiscriminatorSpec(resolution=size)).to(device)

    def d_step() -> None:
        D(images).sum().backward()
        D.zero_grad(set_to_none=True)

    fns: dict[str, Callable[[], None]] = {"D fwd+bwd": d_step}
    for p in (float(v) for v in args.strengths.split(",")):
        fns[f"ADA bgc p={p:g}"] = augment_step(AugmentPipe.from_preset("bgc", p=p).to(device),
                                               images, grad, args.seed)
    fns["DiffAugment"] = augment_step(DiffAugment("color,translation,cutout"), images, grad,
                                      args.seed)

    times = interleaved_timings(fns, args.iters, args.warmup, device)
    base = summarize(times["D fwd+bwd"])["median_ms"]
    rows, results = [], {}
    for name, seconds in times.items():
        stats = summarize(seconds)
        results[name] = {**stats, "fraction_of_d_step": stats["median_ms"] / base}
        rows.append([name, f"{stats['median_ms']:.1f}", f"{stats['min_ms']:.1f}",
                     f"{stats['max_ms']:.1f}", f"{stats['median_ms'] / base:.3f}"])
    info = machine_info(device)
    print(f"{size}x{size}, batch {batch}, float32, {info['device']}, torch {info['torch']}, "
          f"{info['torch_threads']} threads, {args.iters} interleaved repetitions\n")
    print(format_table(["forward + backward", "median ms", "min ms", "max ms",
                        "fraction of D step"], rows))
    write_json(args.json_out, {"machine": info, "resolution": size, "batch_size": batch,
                               "iters": args.iters, "results": results})


if __name__ == "__main__":
    main()
