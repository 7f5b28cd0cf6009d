"""How much memory there is, and refusing work that cannot fit before allocating it.

[`check_fits`][pixelfold.utils.memory.check_fits] compares an estimate (bytes) with what the
device can still give (``MemAvailable`` of ``/proc/meminfo`` or psutil on the CPU,
``torch.cuda.mem_get_info`` on CUDA) and raises a
[`MemoryLimitError`][pixelfold.utils.errors.MemoryLimitError] with both numbers, so that a
setting asking for terabytes fails at once with a message instead of swapping or being killed.

Estimates, none of which allocates what it measures:

* [`generator_values`][pixelfold.utils.memory.generator_values] /
  [`discriminator_values`][pixelfold.utils.memory.discriminator_values]: how many values the
  parameters and buffers of a model built from a spec hold, computed from the spec
  (microseconds; the models check it before building);
* [`generator_batch_bytes`][pixelfold.utils.memory.generator_batch_bytes]: what one batch of a
  generator's inference needs on top of its weights (latents, activations, output), computed
  from the spec;
* [`module_bytes`][pixelfold.utils.memory.module_bytes] and
  [`peak_forward_bytes`][pixelfold.utils.memory.peak_forward_bytes]: the same measured on the
  ``meta`` device (tensors with shapes and dtypes but no memory), for any module: the
  parameters and buffers of a module built there, and the most memory the tensors of a
  computation hold at once. The first use of the meta device imports about half a second of
  PyTorch, so the models use the computed estimates and the tests check them against these
  measurements.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from .errors import MemoryLimitError

if TYPE_CHECKING:
    from torch import nn

__all__ = ["available_memory", "check_fits", "discriminator_values", "format_bytes",
           "generator_batch_bytes", "generator_values", "module_bytes", "peak_forward_bytes",
           "tensor_bytes"]


def format_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def available_memory(device: str | torch.device = "cpu") -> int | None:
    """Bytes the device can still allocate (``None`` when unknown). ``PIXELFOLD_MEMORY_LIMIT``
    (bytes) caps the answer, for tests and shared machines."""
    device = torch.device(device)
    found: int | None = None
    if device.type == "cuda":
        try:
            found = int(torch.cuda.mem_get_info(device)[0])
        except (RuntimeError, AssertionError):
            found = None
    elif device.type == "meta":
        return None
    else:
        try:
            with open("/proc/meminfo") as f:
                for line in f:
                    if line.startswith("MemAvailable:"):
                        found = int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            found = None
        if found is None:
            try:
                import psutil

                found = int(psutil.virtual_memory().available)
            except ImportError:
                found = None
    limit = os.environ.get("PIXELFOLD_MEMORY_LIMIT")
    if limit:
        found = min(found, int(limit)) if found is not None else int(limit)
    return found


def check_fits(nbytes: float, what: str, *, device: str | torch.device = "cpu",
               hint: str = "") -> None:
    """Raise [`MemoryLimitError`][pixelfold.utils.errors.MemoryLimitError] if ``nbytes`` (an
    estimate) exceed the memory ``device`` has available. ``what`` names the request
    (``"--seeds 0-4294967295 as one grid"``), ``hint`` says what to do instead."""
    free = available_memory(device)
    if free is None or nbytes <= free:
        return
    dev = torch.device(device)
    raise MemoryLimitError(f"{what} needs about {format_bytes(nbytes)} but {dev.type} has "
                           f"{format_bytes(free)} available" + (f"; {hint}" if hint else ""))


# ---------------------------------------------------------------------------------------------
# estimates


def tensor_bytes(*shape: int, dtype: torch.dtype = torch.float32) -> int:
    """Bytes of a dense tensor of ``shape`` and ``dtype`` (Python integers: no overflow)."""
    n = 1
    for d in shape:
        n *= int(d)
    return n * dtype.itemsize


def module_bytes(build: Callable[[], nn.Module]) -> int:
    """Bytes of the parameters and buffers of the module ``build()`` returns, built on the
    ``meta`` device: nothing is allocated, so a size that would need terabytes is measured in
    milliseconds. Shared tensors count once."""
    with torch.device("meta"):
        module = build()
    seen: set[int] = set()
    total = 0
    for t in (*module.parameters(), *module.buffers()):
        if id(t) not in seen:
            seen.add(id(t))
            total += t.numel() * t.element_size()
    return total


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of the tensors that operations create while they are alive.

    A view (``expand``, ``permute``, slicing) shares its base's memory and an in-place
    operation returns its input, so neither counts; every other output is new memory until
    its last reference goes (a finalizer subtracts it; while autograd keeps a tensor, it stays
    alive and counted)."""

    def __init__(self) -> None:
        super().__init__()
        self.live = 0
        self.peak = 0

    def _free(self, nbytes: int) -> None:
        self.live -= nbytes

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None
                           ) -> Any:
        from torch.utils import _pytree as pytree

        out = func(*args, **(kwargs or {}))
        if func.is_view:
            return out
        inputs = {id(t) for t in pytree.tree_leaves((args, kwargs))
                  if isinstance(t, torch.Tensor)}
        for t in pytree.tree_leaves(out):
            if isinstance(t, torch.Tensor) and id(t) not in inputs:
                nbytes = t.numel() * t.element_size()
                self.live += nbytes
                self.peak = max(self.peak, self.live)
                weakref.finalize(t, self._free, nbytes)
        return out


def peak_forward_bytes(fn: Callable[[], Any]) -> int:
    """The most bytes the tensors created by ``fn()`` hold at one time.

    ``fn`` should compute on the ``meta`` device (a model built there, inputs created there),
    so that the measurement allocates nothing; on a real device it measures the same but
    computes for real. Tensors that exist before the call (weights) are not counted; what
    ``fn`` returns is. Allocator caches and library workspaces are not seen: real peaks are
    somewhat higher.
    """
    mode = _LiveBytes()
    with mode:
        result = fn()
    del result
    return mode.peak


def generator_values(spec: Any) -> int:
    """Number of values in the parameters and buffers of ``Generator(spec)``, computed from
    the [`GeneratorSpec`][pixelfold.models.GeneratorSpec] without building anything (the
    tests compare it with the built model for every preset)."""
    wd = spec.w_dim
    c_dim = getattr(spec, "c_dim", 0)
    embed = wd if c_dim else 0  # a conditional mapping embeds the label to w_dim features
    widths = [spec.z_dim + embed] + [wd] * (spec.mapping_layers - 1) + [wd]
    total = sum(a * b + b for a, b in zip(widths[:-1], widths[1:], strict=True)) + wd  # w_avg
    total += c_dim * embed + embed  # the label embedding

    def styled(cin: int, cout: int, k: int, noise_hw: int | None, up: bool = False) -> int:
        n = cout * cin * k * k + wd * cin + cin + cout  # weight, modulation, bias
        if noise_hw is not None:
            n += 1 + noise_hw  # strength, constant noise image
        return n + (16 if up else 0)  # the (1, 3, 3, 1) blur of an upsampling ModConv

    rgb_res = None
    for i, st in enumerate(spec.stages):
        h, w = st.resolution
        total += 2 * h * w + 3 * st.fourier_channels + st.coord_embedding_channels * h * w
        cin = st.positional_channels
        for cout in st.input_channels:
            if st.input_layer == "conv":
                total += cout * cin + cout
            else:
                total += styled(cin, cout, 1, h * w if st.noise else None)
            cin = cout
        block_in = spec.block_input_channels(i)
        if i > 0 and st.merge == "concat":
            total += block_in * (st.reduced_channels + block_in) + block_in
        rh, rw = st.reduced_resolution
        cin, k, g = block_in, st.kernel_size, st.grow_factor
        for cout, mid, first in zip(st.block_channels, st.block_mid_channels,
                                    st.block_first_channels, strict=True):
            oh, ow = rh * g, rw * g
            out_noise = oh * ow if st.noise else None
            if st.grow == "deconv":
                total += styled(cin, first, k, out_noise, up=True)
            else:
                total += styled(cin, first, k, rh * rw if st.noise else None)
            total += styled(mid, cout, k, out_noise)
            c = spec.image_channels  # ToRGB: 1x1 ModConv (no bias) + bias
            total += c * cout + wd * cout + cout + c
            if rgb_res is not None and (oh, ow) != rgb_res:
                total += len(spec.blur_kernel) ** 2  # the skip upsampler's kernel
            rgb_res = (oh, ow)
            rh, rw, cin = oh, ow, cout
    return total


def discriminator_values(spec: Any) -> int:
    """Number of values in the parameters and buffers of ``Discriminator(spec)``, from the
    [`DiscriminatorSpec`][pixelfold.models.DiscriminatorSpec] alone."""
    ch, taps = spec.channels, len(spec.blur_kernel) ** 2
    side = min(spec.size)
    total = spec.image_channels * ch[side] + ch[side]
    for r in spec.block_resolutions:
        cin, cout = ch[r], ch[r // 2]
        total += cin * cin * 9 + cin  # 3x3 conv + bias
        total += taps + cout * cin * 9 + cout  # blur, stride-2 3x3 conv + bias
        total += taps + cout * cin  # skip: blur, stride-2 1x1 conv
    c4, f = ch[4], spec.mbstd_num_channels
    fh, fw = spec.final_size
    total += c4 * (c4 + f) * 9 + c4 + c4 * c4 * fh * fw + c4 + c4 + 1
    c_dim = getattr(spec, "c_dim", 0)
    if c_dim:  # projection: the output layer gives c4 values, the label mapping c4 more
        total += (c4 - 1) * (c4 + 1)
        total += c_dim * c4 + c4 + spec.mapping_layers * (c4 * c4 + c4)
    return total


def generator_batch_bytes(spec: Any, batch_size: int, dtype: torch.dtype = torch.float32
                          ) -> int:
    """Estimated memory of one inference pass ``G(z)`` of ``batch_size`` images of the
    generator of ``spec`` (a [`GeneratorSpec`][pixelfold.models.GeneratorSpec]) in ``dtype``,
    on top of its weights: latents, activations and output.

    Computed from the spec (microseconds): a modulated convolution holds its input, a
    style-scaled copy of it and its output (a 3x3 one also the unfolded or upsampled copy of
    the output), so per image the largest ``2 in + out`` (``2 in + 2 out``) of the layers, plus
    the running RGB; once per batch, the style-free stage inputs computed at batch 1 (the
    largest layer, and every stage's result, kept). The tests compare it with
    [`peak_forward_bytes`][pixelfold.utils.memory.peak_forward_bytes] measured on the meta
    device for every preset (within a factor of 2)."""
    size = tensor_bytes(1, dtype=dtype)

    def layer(cin: int, cout: int, k: int, in_hw: int, out_hw: int) -> int:
        return 2 * cin * in_hw + (2 if k > 1 else 1) * cout * out_hw

    per_image = shared_peak = kept = 0
    for i, st in enumerate(spec.stages):
        h, w = st.resolution
        cin = st.positional_channels
        for j, cout in enumerate(st.input_channels):
            cost = layer(cin, cout, 1, h * w, h * w)
            if st.input_layer == "conv":
                shared_peak = max(shared_peak, cost)
            elif j == 0:  # the positional input is shared; its style-scaled copy is not
                per_image = max(per_image, cost - cin * h * w)
                shared_peak = max(shared_peak, cin * h * w)
            else:
                per_image = max(per_image, cost)
            cin = cout
        rh, rw = st.reduced_resolution
        if st.input_layer == "conv":
            kept += st.reduced_channels * rh * rw
        cin, k, g = spec.block_input_channels(i), st.kernel_size, st.grow_factor
        for cout, mid, first in zip(st.block_channels, st.block_mid_channels,
                                    st.block_first_channels, strict=True):
            oh, ow = rh * g, rw * g
            first_out = (oh * ow) if st.grow == "deconv" else (rh * rw)
            per_image = max(per_image, layer(cin, first, k, rh * rw, first_out),
                            layer(mid, cout, k, oh * ow, oh * ow),
                            layer(cout, spec.image_channels, 1, oh * ow, oh * ow))
            rh, rw, cin = oh, ow, cout
    fh, fw = spec.resolution
    per_image += 2 * spec.image_channels * fh * fw + spec.z_dim + 2 * spec.num_ws * spec.w_dim
    shared = shared_peak + kept
    return size * (shared + per_image * int(batch_size))
