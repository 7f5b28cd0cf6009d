"""Parameter and multiply-accumulate (MAC) counts of generators, per image.

MACs are counted at the ATen level with ``torch.utils.flop_counter.FlopCounterMode``, so
every convolution and matrix product is seen, including the grouped and batched convolutions
inside ModConv and the style/demodulation matmuls. ``MACs = FLOPs / 2``. Reshapes (fold,
unfold, pixel shuffle) and element-wise ops cost 0, as in the paper's counting.

Two counting conventions (``convention=``) differ only where a model has what they count
differently:

- ``"pixelfold"`` (default): what is computed. A transposed convolution costs
  ``in * out * k * k`` per *input* position, the FIR blur after it is counted like any
  convolution, and only the parameters a model has are counted.
- ``"paper"``: how the PixelFolder paper counts. The transposed convolution of an upsampling
  ModConv costs ``in * out * k * k`` per *output* position (the resolution after its blur,
  four times as many for a stride-2 upsampling), and the blur is not counted; parameters
  include the merge convolution the authors' code builds for the first stage of a
  multi-stage generator and never uses. The derivation, row by row of the paper's ablation
  table, is on the documentation's Presets page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["CONVENTIONS", "Convention", "MacBreakdown", "ModuleCost", "count_macs",
           "count_params", "mac_breakdown", "module_costs", "profile_table",
           "unused_merge_params"]

Convention = Literal["pixelfold", "paper"]
"""A counting convention: ``"pixelfold"`` (what is computed and built) or ``"paper"`` (the
PixelFolder paper's counting); see the module documentation."""

CONVENTIONS: tuple[str, ...] = ("pixelfold", "paper")
"""The accepted values of ``convention``."""


def _check_convention(convention: Any) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


def unused_merge_params(generator: nn.Module) -> int:
    """Parameters of the merge convolution that the authors' code builds for the first stage
    and never uses (524,800 for their 256, 512 and 1024 models), for the same layout.

    It is a 1x1 convolution with bias from ``stage-0 reduced width + block input width`` to
    the block input width, built by the authors' code whenever its later stages merge by
    concatenation. pixelfold does not build it; the paper's parameter counts include it.

    Args:
        generator: a [`Generator`][pixelfold.models.Generator]; anything without a multi-stage
            ``spec`` whose second stage merges by concatenation gives 0.
    """
    spec = getattr(generator, "spec", None)
    stages = getattr(spec, "stages", ())
    if len(stages) < 2 or getattr(stages[1], "merge", None) != "concat":
        return 0
    block_in = spec.block_input_channels(0)  # type: ignore[union-attr]
    return (stages[0].reduced_channels + block_in) * block_in + block_in


def count_params(module: nn.Module, *, trainable_only: bool = False,
                 convention: Convention = "pixelfold") -> int:
    """Number of parameters (shared parameters counted once).

    Args:
        module: any module.
        trainable_only: count only parameters with ``requires_grad``.
        convention: ``"pixelfold"`` (the parameters ``module`` has) or ``"paper"`` (plus
            [`unused_merge_params`][pixelfold.metrics.profile.unused_merge_params], as the
            paper counts PixelFolder generators).

    Raises:
        ValueError: an unknown ``convention``.
    """
    _check_convention(convention)
    seen: set[int] = set()
    total = 0
    for p in module.parameters():
        if id(p) in seen or (trainable_only and not p.requires_grad):
            continue
        seen.add(id(p))
        total += p.numel()
    if convention == "paper":
        total += unused_merge_params(module)
    return total


def _generator_inputs(generator: nn.Module, batch_size: int) -> torch.Tensor:
    z_dim = getattr(generator, "z_dim", None)
    if z_dim is None:
        raise ValueError(f"count_macs needs a generator with a z_dim attribute, got "
                         f"{type(generator).__name__}")
    device = next(generator.parameters()).device
    return torch.randn(batch_size, z_dim, device=device)


@dataclass
class _UpConv:
    """Shapes seen by one call of an upsampling ModConv: ``(B, in, H, W) -> (B, out, H', W')``."""

    name: str
    batch: int
    in_channels: int
    out_channels: int
    kernel_taps: int
    in_pixels: int
    out_pixels: int


def _flop_counts(generator: nn.Module, batch_size: int, noise_mode: str
                 ) -> tuple[dict[str, dict[Any, int]], list[_UpConv]]:
    """ATen FLOPs by module name (``FlopCounterMode``'s keys) and the upsampling ModConvs run."""
    from ..layers import ModulatedConv2d

    z = _generator_inputs(generator, batch_size)
    counter = FlopCounterMode(display=False)
    calls: list[_UpConv] = []

    def record(name: str):
        def hook(module: ModulatedConv2d, args: tuple[Any, ...], out: torch.Tensor) -> None:
            x = args[0]
            calls.append(_UpConv(name, x.shape[0], module.in_channels, module.out_channels,
                                 module.kernel_size**2, x.shape[2] * x.shape[3],
                                 out.shape[2] * out.shape[3]))
        return hook

    handles = [m.register_forward_hook(record(name)) for name, m in generator.named_modules()
               if isinstance(m, ModulatedConv2d) and m.up == 2]
    was_training = generator.training
    generator.eval()
    try:
        with counter:  # not under no_grad: the module tracker hooks need autograd views
            generator(z, noise_mode=noise_mode)
    finally:
        generator.train(was_training)
        for h in handles:
            h.remove()
    return {name: dict(ops) for name, ops in counter.get_flop_counts().items()}, calls


@dataclass
class MacBreakdown:
    """Multiply-accumulates per image of a generator, with the part where the counting
    conventions differ: the upsampling ModConvs' transposed convolutions and blurs.

    Attributes:
        total: everything, in pixelfold's convention (what
            [`count_macs`][pixelfold.metrics.profile.count_macs] returns by default).
        transposed_per_input: the transposed convolutions counted per input position
            (``in * out * k * k * H * W``), as ``total`` counts them.
        transposed_per_output: the same convolutions counted per output position
            (``H' * W'``, the resolution after the blur), as the paper counts them.
        blur: the FIR blurs after them, which ``total`` counts and the paper does not.
    """

    total: int
    transposed_per_input: int
    transposed_per_output: int
    blur: int

    def count(self, convention: Convention = "pixelfold", *, per_output: bool | None = None,
              with_blur: bool | None = None) -> int:
        """The total in ``convention``, or with the two choices made separately.

        Args:
            convention: ``"pixelfold"`` (per input position, blur counted) or ``"paper"``
                (per output position, blur not counted).
            per_output: override the convention's choice for the transposed convolutions.
            with_blur: override the convention's choice for the blurs.

        Raises:
            ValueError: an unknown ``convention``.
        """
        paper = _check_convention(convention) == "paper"
        per_output = paper if per_output is None else per_output
        with_blur = (not paper) if with_blur is None else with_blur
        total = self.total
        if per_output:
            total += self.transposed_per_output - self.transposed_per_input
        if not with_blur:
            total -= self.blur
        return total


def mac_breakdown(generator: nn.Module, *, batch_size: int = 1,
                  noise_mode: str = "random") -> MacBreakdown:
    """[`count_macs`][pixelfold.metrics.profile.count_macs] with the upsampling ModConvs'
    transposed convolutions (per input and per output position) and blurs apart, from one
    counted forward pass: every convention's total (all the same for a model without
    upsampling ModConvs).

    Args:
        generator: as for [`count_macs`][pixelfold.metrics.profile.count_macs].
        batch_size: batch used for the measurement; the results are divided by it.
        noise_mode: passed to the generator.

    Raises:
        ValueError: ``batch_size < 1``.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    counts, calls = _flop_counts(generator, batch_size, noise_mode)
    root = next((v for k, v in counts.items() if k == "Global"), {})
    per_in = per_out = 0
    for c in calls:
        per_position = c.batch * c.in_channels * c.out_channels * c.kernel_taps
        per_in += per_position * c.in_pixels
        per_out += per_position * c.out_pixels
    root_name = type(generator).__name__
    blur = sum(sum(counts.get(f"{root_name}.{name}.blur", {}).values()) // 2
               for name in {c.name for c in calls})
    b = batch_size
    return MacBreakdown(sum(root.values()) // 2 // b, per_in // b, per_out // b, blur // b)


def count_macs(generator: nn.Module, *, batch_size: int = 1, noise_mode: str = "random",
               convention: Convention = "pixelfold") -> int:
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
        convention: ``"pixelfold"`` (what is computed: a transposed convolution per input
            position, its blur included) or ``"paper"`` (the PixelFolder paper's: the
            transposed convolution of each upsampling ModConv per output position, its blur
            not counted). The two agree for models without upsampling ModConvs.

    Raises:
        ValueError: ``batch_size < 1`` or an unknown ``convention``.
    """
    _check_convention(convention)
    return mac_breakdown(generator, batch_size=batch_size,
                         noise_mode=noise_mode).count(convention)


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
    counts, _ = _flop_counts(generator, batch_size, noise_mode)
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
