"""Parameter and multiply-accumulate (MAC) counts of generators, per image.

MACs are counted at the ATen level with ``torch.utils.flop_counter.FlopCounterMode``, so
every convolution and matrix product is seen, including the grouped and batched convolutions
inside ModConv and the style/demodulation matmuls. ``MACs = FLOPs / 2``. Reshapes (fold,
unfold, pixel shuffle) and element-wise ops cost 0, as in the paper's counting.

Transposed convolutions are counted per *input* position (``in * out * k * k`` for each input
pixel), which is the arithmetic actually performed; counters that count them per output
position (as the PixelFolder paper's DeConv ablation numbers do) report about 4x more for them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["ModuleCost", "count_macs", "count_params", "module_costs", "profile_table"]


def count_params(module: nn.Module, *, trainable_only: bool = False) -> int:
    """Number of parameters (shared parameters counted once).

    Args:
        module: any module.
        trainable_only: count only parameters with ``requires_grad``.
    """
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    return total


def _generator_inputs(generator: nn.Module, batch_size: int) -> torch.Tensor:
    z_dim = getattr(generator, "z_dim", None)
    if z_dim is None:
        raise ValueError(f"count_macs needs a generator with a z_dim attribute, got "
                         f"{type(generator).__name__}")
    device = next(generator.parameters()).device
    return torch.randn(batch_size, z_dim, device=device)


def _flop_counts(generator: nn.Module, batch_size: int,
                 noise_mode: str) -> dict[str, dict[str, int]]:
    z = _generator_inputs(generator, batch_size)
    counter = FlopCounterMode(display=False)
    was_training = generator.training
    generator.eval()
    try:
        with counter:  # not under no_grad: the module tracker hooks need autograd views
            generator(z, noise_mode=noise_mode)
    finally:
        generator.train(was_training)
    return {name: dict(ops) for name, ops in counter.get_flop_counts().items()}


def count_macs(generator: nn.Module, *, batch_size: int = 1, noise_mode: str = "random") -> int:
    """Multiply-accumulates per image of ``generator(z)`` (mapping network included).

    The paper's convention is batch 1 (the default). At larger batches the per-image figure is
    lower for generators whose style-free stage inputs (Fourier features and 1x1 input
    layers) are computed once per batch. Put the generator on the ``meta`` device to count
    without computing anything.

    Args:
        generator: a [`Generator`][pixelfold.models.Generator] (anything with ``z_dim`` and a
            ``forward(z, noise_mode=...)``).
        batch_size: batch used for the measurement; the result is divided by it.
        noise_mode: passed to the generator.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    counts = _flop_counts(generator, batch_size, noise_mode)
    root = next((v for k, v in counts.items() if k == "Global"), {})
    return sum(root.values()) // 2 // batch_size


@dataclass
class ModuleCost:
    """Parameters and MACs (per image) of one submodule."""

    name: str
    params: int
    macs: int


def module_costs(generator: nn.Module, *, depth: int = 3, batch_size: int = 1,
                 noise_mode: str = "random") -> list[ModuleCost]:
    """Per-module parameters and MACs, for submodules up to ``depth`` levels deep.

    Args:
        generator: the model to profile.
        depth: how many levels of submodule names to list (``synthesis.stages.0`` is 3).
        batch_size: batch used for the measurement.
        noise_mode: passed to the generator.
    """
    counts = _flop_counts(generator, batch_size, noise_mode)
    root_name = type(generator).__name__

    def flops_of(name: str, module: nn.Module) -> int:
        if not name:
            return sum(counts.get("Global", {}).values())
        key = f"{root_name}.{name}"
        if key in counts:
            return sum(counts[key].values())
        # containers such as ModuleList are never called: add up their children
        return sum(flops_of(f"{name}.{child}", sub) for child, sub in module.named_children())

    rows = []
    for name, module in generator.named_modules():
        if name.count(".") >= depth:
            continue
        rows.append(ModuleCost(name or "(total)", count_params(module),
                               flops_of(name, module) // 2 // batch_size))
    return rows


def profile_table(generator: nn.Module, *, depth: int = 2, batch_size: int = 1,
                  noise_mode: str = "random") -> str:
    """A plain-text table of [`module_costs`][pixelfold.metrics.profile.module_costs]."""
    rows = module_costs(generator, depth=depth, batch_size=batch_size, noise_mode=noise_mode)
    width = max(len(r.name) for r in rows)
    lines = [f"{'module':<{width}}  {'params':>12}  {'GMACs':>9}"]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {r.params:>12,d}  {r.macs / 1e9:>9.3f}")
    return "\n".join(lines)
