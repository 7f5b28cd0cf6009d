"""Correctness of pixelfold's fast paths on one device: the checks of tests/test_fast_paths.py
that matter most, runnable where the test suite does not run (a GPU machine).

Every check compares the fast path with the straightforward implementation (pixelfold's
readable definitions, ``use_impl("ref")``, through ``benchmarks/reference_impl.py``; or
``F.conv2d`` / ``upfirdn2d(..., impl="ref")``) on the same device, in float32
with TF32 turned off, and prints one row: the largest error relative to the largest reference
value, the tolerance and PASS or FAIL. The exit status is 1 if any check fails.

Run from the repository root::

    python benchmarks/check_device.py --device cuda
    python benchmarks/check_device.py --device cpu --no-compile   # the same checks on CPU
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._common import format_table, machine_info, write_json  # noqa: E402
from benchmarks.reference_impl import (  # noqa: E402
    reference_discriminator,
    reference_generator,
    trained_like,
)
from pixelfold.layers import conv2d, filter2d, upfirdn2d  # noqa: E402
from pixelfold.models import Discriminator, DiscriminatorSpec, Generator  # noqa: E402


def rel_error(a: Iterable[torch.Tensor | None], b: Iterable[torch.Tensor | None]) -> float:
    """Largest ``max|x - y| / max|y|`` over pairs of tensors (``None`` must pair with
    ``None``)."""
    worst = 0.0
    for x, y in zip(a, b, strict=True):
        if (x is None) != (y is None):
            return float("inf")
        if x is None or y is None:
            continue
        x, y = x.detach().double(), y.detach().double()
        worst = max(worst, ((x - y).abs().max() / y.abs().max().clamp_min(1e-12)).item())
    return worst


def generator(name: str, device: torch.device) -> Generator:
    torch.manual_seed(0)
    return trained_like(Generator.from_preset(name)).to(device)  # type: ignore[return-value]


def check_generator(name: str, batch: int, device: torch.device) -> float:
    G = generator(name, device)
    z = torch.randn(batch, G.z_dim, device=device)
    with torch.no_grad():
        return rel_error([G(z, noise_mode="const")],
                         [reference_generator(G, z, noise_mode="const")])


def check_generator_gradients(name: str, device: torch.device) -> float:
    G = generator(name, device)
    z = torch.randn(2, G.z_dim, device=device)
    params = list(G.parameters())
    fast = torch.autograd.grad(G(z, noise_mode="const").square().mean(), params,
                               allow_unused=True)
    ref = torch.autograd.grad(reference_generator(G, z, noise_mode="const").square().mean(),
                              params, allow_unused=True)
    return rel_error(fast, ref)


def check_layouts(name: str, device: torch.device) -> float:
    G = generator(name, device)
    H = copy.deepcopy(G).to(memory_format=torch.contiguous_format)
    z = torch.randn(3, G.z_dim, device=device)
    with torch.no_grad():
        return rel_error([G(z, noise_mode="const")], [H(z, noise_mode="const")])


def check_discriminator_r1(resolution: int, device: torch.device) -> tuple[float, float]:
    """D's logits, input gradient and R1's parameter gradients, fast and reference, each
    against a float64 run of the fast path. A deep discriminator at initialization is
    ill-conditioned in float32 (its input gradient cancels to a few percent of its terms), so
    the fast path passes when its error is at most 4x the reference's own float32 error (and
    always below 1e-4). Returns ``(error, tolerance)``."""
    torch.manual_seed(0)
    channels = {r: 64 for r in (4, 8, 16, 32, 64, 128, 256) if r <= resolution}
    D = trained_like(Discriminator(DiscriminatorSpec(resolution=resolution,
                                                     channels=channels))).to(device)
    x = torch.randn(4, 3, resolution, resolution, device=device)

    def run(model: torch.nn.Module, fn: Callable[[torch.Tensor], torch.Tensor],
            inputs: torch.Tensor) -> list[torch.Tensor | None]:
        xs = inputs.clone().requires_grad_(True)
        logits = fn(xs)
        (grad,) = torch.autograd.grad(logits.sum(), xs, create_graph=True)
        second = torch.autograd.grad(grad.square().sum(), list(model.parameters()),
                                     allow_unused=True)
        return [logits, grad, *second]

    fast = run(D, D, x)
    reference = run(D, lambda t: reference_discriminator(D, t), x)
    D64 = copy.deepcopy(D).double()
    truth = run(D64, D64, x.double())
    return rel_error(fast, truth), max(1e-4, 4 * rel_error(reference, truth))


def check_conv2d(device: torch.device) -> float:
    torch.manual_seed(0)
    worst = 0.0
    for stride, padding in ((1, 1), (2, 0)):
        x = torch.randn(2, 8, 17, 16, device=device)
        w = torch.randn(16, 8, 3, 3, device=device)
        b = torch.randn(16, device=device)
        results = []
        for fn in (conv2d, F.conv2d):
            xs, ws, bs = (t.clone().requires_grad_(True) for t in (x, w, b))
            y = fn(xs, ws, bs, stride=stride, padding=padding)
            (gx,) = torch.autograd.grad(y.square().sum(), xs, create_graph=True)
            results.append([y, gx, *torch.autograd.grad(gx.pow(3).sum(), [xs, ws, bs])])
        worst = max(worst, rel_error(*results))
    return worst


def check_strided_filter(device: torch.device) -> float:
    torch.manual_seed(0)
    k = torch.tensor([[1.0, 3, 3, 1]], device=device)
    k = (k.t() @ k) / 64
    x = torch.randn(2, 8, 17, 16, device=device)
    results = []
    for fn in (lambda t: filter2d(t, k, (1, 1), down=2),
               lambda t: upfirdn2d(t, k, down=2, padding=(1, 1), impl="ref")):
        xs = x.clone().requires_grad_(True)
        y = fn(xs)
        (g,) = torch.autograd.grad(y.square().sum(), xs, create_graph=True)
        (h,) = torch.autograd.grad(g.pow(3).sum(), xs)
        results.append([y, g, h])
    return rel_error(*results)


def check_bfloat16(name: str, device: torch.device) -> float:
    G = generator(name, device).eval()
    z = torch.randn(4, G.z_dim, device=device)
    with torch.inference_mode():
        ref = G(z, noise_mode="const")
        with torch.autocast(device.type, dtype=torch.bfloat16):
            out = G(z, noise_mode="const")
    return rel_error([out], [ref])


def check_compile(name: str, device: torch.device) -> float:
    torch._dynamo.reset()
    G = generator(name, device).eval()
    z = torch.randn(4, G.z_dim, device=device)
    compiled = torch.compile(G, fullgraph=True)
    with torch.no_grad():
        return rel_error([compiled(z, noise_mode="const")], [G(z, noise_mode="const")])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the torch.compile check (slow to compile on a CPU)")
    parser.add_argument("--large", action="store_true",
                        help="also check pixelfolder-256 and a 256 discriminator")
    parser.add_argument("--json-out", default=None)
    args = parser.parse_args()
    device = torch.device(args.device)
    # exact float32 arithmetic: TF32 would make every comparison on an Ampere+ GPU loose
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False

    # each check returns its error, or (error, tolerance) when the tolerance is measured
    checks: list[tuple[str, Callable[[], float | tuple[float, float]], float]] = []
    for name in ("pixelfolder-tiny-32", "cips-tiny-32", "pixelfolder-tiny-64"):
        for batch in (1, 3):
            checks.append((f"{name} batch {batch}: fast == reference",
                           lambda n=name, b=batch: check_generator(n, b, device), 1e-4))
    checks += [
        ("pixelfolder-tiny-32 gradients: fast == reference",
         lambda: check_generator_gradients("pixelfolder-tiny-32", device), 1e-3),
        ("pixelfolder-tiny-32: channels-last == NCHW",
         lambda: check_layouts("pixelfolder-tiny-32", device), 1e-4),
        ("discriminator 32 + R1 parameter gradients vs float64 (tolerance: 4x reference)",
         lambda: check_discriminator_r1(32, device), 0.0),
        ("conv2d == F.conv2d to second order", lambda: check_conv2d(device), 1e-4),
        ("strided filter2d == upfirdn2d to second order",
         lambda: check_strided_filter(device), 1e-4),
        ("pixelfolder-tiny-64: bfloat16 autocast close to float32",
         lambda: check_bfloat16("pixelfolder-tiny-64", device), 5e-2),
    ]
    if args.large:
        checks += [
            ("pixelfolder-256 batch 2: fast == reference",
             lambda: check_generator("pixelfolder-256", 2, device), 1e-3),
            ("pixelfolder-256 gradients: fast == reference",
             lambda: check_generator_gradients("pixelfolder-256", device), 1e-3),
            ("discriminator 256 + R1 parameter gradients vs float64 (tolerance: 4x "
             "reference)", lambda: check_discriminator_r1(256, device), 0.0),
        ]
    if not args.no_compile:
        checks.append(("pixelfolder-tiny-64: torch.compile(fullgraph=True) == eager",
                       lambda: check_compile("pixelfolder-tiny-64", device), 1e-4))

    info = machine_info(device)
    print(f"# {info.get('gpu', info['cpu'])}, torch {info['torch']}, device {device}\n")
    rows: list[list[Any]] = []
    results = []
    failed = 0
    for label, fn, tol in checks:
        t0 = time.perf_counter()
        try:
            value = fn()
            err: float | None
            err, tol = value if isinstance(value, tuple) else (value, tol)
            ok = err <= tol
            note = ""
        except Exception as exc:  # a crash is a failed check, reported with its message
            err, ok, note = None, False, f"{type(exc).__name__}: {exc}"[:200]
        failed += not ok
        seconds = time.perf_counter() - t0
        rows.append([label, "-" if err is None else f"{err:.1e}", f"{tol:.1e}",
                     "PASS" if ok else "FAIL", f"{seconds:.1f}"])
        results.append({"check": label, "relative_error": err, "tolerance": tol, "ok": ok,
                        "seconds": seconds, "error": note})
        if note:
            print(f"{label}: {note}", file=sys.stderr)
    print(format_table(["check", "max rel. error", "tolerance", "result", "s"], rows))
    print(f"\n{len(checks) - failed} of {len(checks)} checks passed")
    write_json(args.json_out, {"benchmark": "check_device", "machine": info,
                               "results": results})
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
