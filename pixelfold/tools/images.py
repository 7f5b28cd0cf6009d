"""Images from a generator: samples by seed, stage-wise style mixing, latent interpolation and
per-stage outputs.

Wherever they take seeds they also take a [`WLatents`][pixelfold.tools.WLatents]: given ``ws``
(a projection read by [`load_projected_w`][pixelfold.tools.load_projected_w], say) used in
place of the mapped seeds.

Every function takes a [`Generator`][pixelfold.models.Generator], runs it under
``torch.inference_mode`` on its own device and dtype, in batches of ``batch_size``, and returns
float32 CPU tensors in ``[-1, 1]``. [`figures`][pixelfold.tools.figures] lays them out and
writes them.

Before computing anything they check what they would hold against the memory available
(``pixelfold.utils.check_fits``): one batch of the generator's activations on its device
(``pixelfold.utils.memory.generator_batch_bytes``) and, except for
[`iter_images`][pixelfold.tools.iter_images], every image they return, with the uint8 copy
and the figure made from them (``HELD_BYTES_PER_PIXEL``); too much is a ``MemoryLimitError``
with the estimate. An output holding NaN or infinity is a ``NonFiniteError`` naming the seeds
(and the non-finite weights, if any) instead of a black image.

>>> from pixelfold.models import Generator
>>> G = Generator.from_preset("pixelfolder-tiny-32").eval()
>>> generate_images(G, [0, 1, 2]).shape
torch.Size([3, 3, 32, 32])
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..layers import CoordinateWindow
from ..models import Generator, style_mix
from ..utils.errors import ConfigError, NonFiniteError
from ..utils.memory import check_fits, generator_batch_bytes
from ..utils.spec import check_int
from ..utils.tensors import module_tensors, non_finite
from .latents import WLatents, lerp, seed_latents, slerp

__all__ = [
    "HELD_BYTES_PER_PIXEL",
    "Crossover",
    "check_batch_memory",
    "check_finite_images",
    "check_held_memory",
    "generate_images",
    "interpolation_frames",
    "iter_images",
    "resolve_crossovers",
    "stage_images",
    "style_mix_images",
]

Crossover = tuple[str, range]
"""A named set of ``ws`` indices taken from the column latent, e.g. ``("stage 1", range(4, 9))``."""

HELD_BYTES_PER_PIXEL = 20
"""Memory per pixel of an image held until written: 12 bytes of float32 RGB, 3 of its uint8
copy and 4 of the RGBA-backed figure canvas, rounded up."""


def _check_batch_size(batch_size: int) -> None:
    check_int(batch_size, "batch_size")


def check_batch_memory(G: Generator, batch_size: int, count: int | None = None) -> None:
    """Refuse a batch whose activations cannot fit on ``G``'s device.

    Args:
        G: the generator.
        batch_size: images per forward pass.
        count: images in all (the batch is at most this many).

    Raises:
        MemoryLimitError: with the estimate of
            ``pixelfold.utils.memory.generator_batch_bytes``.
    """
    _check_batch_size(batch_size)
    batch = batch_size if count is None else max(1, min(batch_size, count))
    nbytes = generator_batch_bytes(G.spec, batch, _param_dtype(G))
    h, w = G.resolution
    check_fits(nbytes, f"a batch of {batch:,d} images of {h}x{w} (batch size {batch_size:,d})",
               device=G.device, hint="use a smaller batch size (--batch-size)")


def check_held_memory(G: Generator, count: int, what: str, *, hint: str = "",
                      extra_bytes: int = 0) -> None:
    """Refuse to hold ``count`` images of ``G`` (and ``extra_bytes`` more) in CPU memory when
    they cannot fit.

    Args:
        G: the generator (its resolution).
        count: images held at once.
        what: what they are, for the message (``"4,294,967,296 images"``).
        hint: what to do instead.
        extra_bytes: memory held besides the images (latents, styles).

    Raises:
        MemoryLimitError: with the estimate.
    """
    h, w = G.resolution
    nbytes = count * h * w * HELD_BYTES_PER_PIXEL + extra_bytes
    check_fits(nbytes, f"holding {what} of {h}x{w} at once", device="cpu", hint=hint)


def _check_psi(truncation_psi: float) -> None:
    if not isinstance(truncation_psi, (int, float)) or not math.isfinite(truncation_psi):
        raise ConfigError(f"truncation_psi must be a finite number, got {truncation_psi!r}")


def check_finite_images(G: Generator, images: torch.Tensor,
                        seeds: Sequence[int] | None = None, what: str = "images") -> None:
    """Raise ``NonFiniteError`` if ``images`` (a batch just computed by ``G``) hold NaN or
    infinity, naming the seeds of the bad images and the non-finite weights of ``G`` when
    there are some.

    Args:
        G: the generator that computed them.
        images: ``(B, ...)`` outputs.
        seeds: the seed of each image, for the message.
        what: what they are, for the message.
    """
    bad = ~torch.isfinite(images.flatten(1)).all(1)
    if not bool(bad.any()):
        return
    idx = bad.nonzero().flatten().tolist()
    kind = "latent(s)" if isinstance(seeds, WLatents) else "seed(s)"
    which = (f"{kind} {', '.join(str(seeds[i]) for i in idx[:5])}"
             + (f" and {len(idx) - 5} more" if len(idx) > 5 else "")
             if seeds is not None else f"{len(idx)} of {images.shape[0]}")
    weights = non_finite(module_tensors(G))
    cause = ("its weights hold NaN or infinity: " + ", ".join(n for n, *_ in weights[:3])
             if weights else
             "its weights are finite, so the values overflow (a float16 model? try float32 "
             "or bfloat16)")
    raise NonFiniteError(f"the generator produced NaN or infinite pixels in {what} of "
                         f"{which}; nothing was written from them: {cause}")


def _batches(n: int, batch_size: int, progress: bool, desc: str) -> Iterator[slice]:
    _check_batch_size(batch_size)
    # tqdm shows the bar only when the loop lasts more than a second
    with tqdm(total=n, desc=desc, unit="img", disable=not progress, delay=1.0,
              leave=False) as bar:
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            yield slice(start, stop)
            bar.update(stop - start)


def _param_dtype(G: Generator) -> torch.dtype:
    return next(G.parameters()).dtype


def _mapping(G: Generator, seeds: Sequence[int] | WLatents,
             truncation_psi: float, c: int | None = None) -> torch.Tensor:
    """``ws (N, num_ws, w_dim)`` of seeds (mapped, with the class ``c`` of a conditional
    generator), or of given latents (whose class is in them: ``c`` is not used), truncated."""
    _check_psi(truncation_psi)
    if isinstance(seeds, WLatents):
        ws = seeds.for_generator(G)
        return G.mapping.truncate(ws, truncation_psi) if truncation_psi != 1 else ws.clone()
    z = seed_latents(seeds, G.z_dim).to(G.device, _param_dtype(G))
    return G.mapping(z, c, truncation_psi=truncation_psi).clone()


def _ws_bytes(G: Generator, count: int) -> int:
    return count * (G.z_dim + G.num_ws * G.w_dim) * _param_dtype(G).itemsize


def _synthesize(G: Generator, ws: torch.Tensor, *, noise_mode: str, batch_size: int,
                progress: bool, desc: str, seeds: Sequence[int] | None = None,
                what: str = "images") -> torch.Tensor:
    out = []
    for sl in _batches(ws.shape[0], batch_size, progress, desc):
        img = G.synthesis(ws[sl], noise_mode=noise_mode)
        check_finite_images(G, img, None if seeds is None else seeds[sl], what)
        out.append(img.float().clamp(-1, 1).cpu())
    return torch.cat(out)


def iter_images(
    G: Generator,
    seeds: Sequence[int],
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    progress: bool = False,
    window: CoordinateWindow | None = None,
    c: int | None = None,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Like [`generate_images`][pixelfold.tools.generate_images], one batch at a time:
    yields ``(batch_seeds, images (len(batch_seeds), 3, H, W))``, so that any number of seeds
    (a [`SeedList`][pixelfold.tools.SeedList] of billions) can be written out in constant
    memory. The progress bar counts images handed out. ``window`` and ``c``: as in
    [`generate_images`][pixelfold.tools.generate_images].

    Raises:
        MemoryLimitError: one batch does not fit on ``G``'s device.
        NonFiniteError: a batch holds NaN or infinity (it is not yielded).
    """
    if not isinstance(seeds, Sequence):
        seeds = list(seeds)
    _check_psi(truncation_psi)
    check_batch_memory(G, batch_size, len(seeds))
    for sl in _batches(len(seeds), batch_size, progress, "generate"):
        batch_seeds = seeds[sl]
        with torch.inference_mode():
            ws = _mapping(G, batch_seeds, truncation_psi, c)
            images = G.synthesis(ws, noise_mode=noise_mode, window=window)
            check_finite_images(G, images, batch_seeds)
            images = images.float().clamp(-1, 1).cpu()
        yield list(batch_seeds), images


def generate_images(
    G: Generator,
    seeds: Sequence[int],
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    progress: bool = False,
    window: CoordinateWindow | None = None,
    c: int | None = None,
) -> torch.Tensor:
    """One image per seed, ``(len(seeds), 3, H, W)``.

    Args:
        G: the generator.
        seeds: latent seeds (see [`seed_latents`][pixelfold.tools.seed_latents]).
        truncation_psi: ``w_avg + psi (w - w_avg)``; 1 disables truncation.
        noise_mode: ``"const"`` (the stored noise images: reproducible), ``"random"`` or
            ``"none"``.
        batch_size: images per forward pass.
        progress: show a progress bar when it takes more than a second.
        window: the part of the coordinate plane to render (a
            [`CoordinateWindow`][pixelfold.layers.CoordinateWindow]: shift, zoom); default
            the training frame.
        c: the class of a conditional generator, by index (``G.class_index(name)`` gives
            the index of a name); ``None`` for an unconditional one.

    Raises:
        MemoryLimitError: the images, or one batch, do not fit in memory.
        NonFiniteError: the generator's output holds NaN or infinity.
        LabelError: ``c`` missing for a conditional generator, given to an unconditional
            one, or out of range.
    """
    check_held_memory(G, len(seeds), f"{len(seeds):,d} images",
                      hint="use fewer seeds, or iter_images (pixelfold generate without "
                           "--grid), which holds one batch at a time")
    return torch.cat([images for _, images in iter_images(
        G, seeds, truncation_psi=truncation_psi, noise_mode=noise_mode, batch_size=batch_size,
        progress=progress, window=window, c=c)])


def resolve_crossovers(G: Generator, crossovers: Sequence[str | int]) -> list[Crossover]:
    """Turn crossover names into ``ws`` index ranges.

    Args:
        G: the generator.
        crossovers: each is ``"stage"`` (one crossover per stage, the indices of
            [`style_ranges()`][pixelfold.models.SynthesisNetwork.style_ranges]), ``"stage:K"``
            (stage ``K`` only) or an int ``c`` (StyleGAN's crossover point: ``ws[c:]``).

    Raises:
        ValueError: an unknown name, a stage or crossover point out of range.
    """
    ranges = G.synthesis.style_ranges()
    n = G.num_ws
    out: list[Crossover] = []
    for c in crossovers:
        text = str(c).strip()
        if text == "stage":
            out.extend((f"stage {i}: ws {r.start}-{r.stop - 1}", r) for i, r in enumerate(ranges))
        elif text.startswith("stage:"):
            k = text.split(":", 1)[1]
            if not k.isdigit() or int(k) >= len(ranges):
                raise ValueError(f"bad crossover {text!r}: this model has stages "
                                 f"0-{len(ranges) - 1}")
            r = ranges[int(k)]
            out.append((f"stage {k}: ws {r.start}-{r.stop - 1}", r))
        elif text.isdigit() or isinstance(c, int):
            i = int(text)
            if not 0 <= i < n:
                raise ValueError(f"bad crossover {text!r}: a crossover point must be in "
                                 f"[0, {n - 1}] (the model has {n} ws)")
            out.append((f"crossover {i}: ws {i}-{n - 1}", range(i, n)))
        else:
            raise ValueError(f"bad crossover {text!r}: expected 'stage', 'stage:K' or an "
                             f"integer index into ws")
    if not out:
        raise ValueError("no crossover given")
    return out


@torch.inference_mode()
def style_mix_images(
    G: Generator,
    row_seeds: Sequence[int],
    col_seeds: Sequence[int],
    crossovers: Sequence[str | int] = ("stage",),
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    progress: bool = False,
    c: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[Crossover]]:
    """Stage-wise style mixing (the PixelFolder paper's Fig. C).

    Image ``mixed[k, r, c]`` takes the styles of row seed ``r`` everywhere except the indices
    of crossover ``k``, which come from column seed ``c``.

    Args:
        G: the generator.
        row_seeds: seeds of the latents that keep most styles.
        col_seeds: seeds of the latents that give the crossover's styles.
        crossovers: see [`resolve_crossovers`][pixelfold.tools.resolve_crossovers].
        truncation_psi: truncation of both latents.
        noise_mode: ``"const"``, ``"random"`` or ``"none"``.
        batch_size: images per forward pass.
        progress: show a progress bar when it takes more than a second.
        c: the class of every latent, rows and columns, of a conditional generator, by
            index (``G.class_index(name)`` gives the index of a name); ``None`` for an
            unconditional one.

    Returns:
        ``(row_images (R, 3, H, W), col_images (C, 3, H, W), mixed (K, R, C, 3, H, W),
        crossovers)`` with the resolved crossovers as ``(label, range)``.

    Raises:
        MemoryLimitError: the images, or one batch, do not fit in memory.
        NonFiniteError: the generator's output holds NaN or infinity.
    """
    resolved = resolve_crossovers(G, crossovers)
    count = len(row_seeds) + len(col_seeds) + len(resolved) * len(row_seeds) * len(col_seeds)
    check_held_memory(G, count, f"{count:,d} images (a mix of {len(row_seeds):,d} rows x "
                      f"{len(col_seeds):,d} columns x {len(resolved)} crossovers)",
                      hint="use fewer seeds",
                      extra_bytes=_ws_bytes(G, count))
    check_batch_memory(G, batch_size, count)
    ws_rows = _mapping(G, row_seeds, truncation_psi, c)
    ws_cols = _mapping(G, col_seeds, truncation_psi, c)
    R, C, K = len(row_seeds), len(col_seeds), len(resolved)
    a = ws_rows[:, None].expand(-1, C, -1, -1).reshape(R * C, *ws_rows.shape[1:])
    b = ws_cols[None].expand(R, -1, -1, -1).reshape(R * C, *ws_cols.shape[1:])
    mixed_ws = torch.cat([style_mix(a, b, idx) for _, idx in resolved])
    all_ws = torch.cat([ws_rows, ws_cols, mixed_ws])
    images = _synthesize(G, all_ws, noise_mode=noise_mode, batch_size=batch_size,
                         progress=progress, desc="mix", what="the mix")
    rows, cols, mixed = images.split([R, C, K * R * C])
    return rows, cols, mixed.reshape(K, R, C, *images.shape[1:]), resolved


@torch.inference_mode()
def interpolation_frames(
    G: Generator,
    seeds: Sequence[int],
    steps: int,
    *,
    space: Literal["z", "w"] = "z",
    method: Literal["lerp", "slerp"] | None = None,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    progress: bool = False,
    c: int | None = None,
) -> torch.Tensor:
    """Frames of a walk through the latents of ``seeds``, in order.

    Each pair of consecutive seeds is joined by ``steps`` frames, both ends included; the
    shared end frames are not repeated, so there are ``(len(seeds) - 1) * (steps - 1) + 1``
    frames (``steps`` for two seeds).

    Args:
        G: the generator.
        seeds: two or more key seeds.
        steps: frames per pair of seeds, ends included (>= 2).
        space: ``"z"`` interpolates the Gaussian latents (then maps them), ``"w"`` the mapped
            (and truncated) latents, every layer's (so per-layer ``ws`` of a
            [`WLatents`][pixelfold.tools.WLatents], which has no ``z``, need ``"w"``).
        method: ``"slerp"`` (default in z: follows the sphere where Gaussian latents live, see
            [`slerp`][pixelfold.tools.slerp]) or ``"lerp"`` (default in w, the only method
            there: w is not spherical).
        truncation_psi: truncation of every frame.
        noise_mode: ``"const"`` keeps the noise fixed across frames (smooth animations).
        batch_size: images per forward pass.
        progress: show a progress bar when it takes more than a second.
        c: the class of every frame, of a conditional generator, by index
            (``G.class_index(name)`` gives the index of a name); ``None`` for an
            unconditional one.

    Returns:
        ``(frames, 3, H, W)``.

    Raises:
        MemoryLimitError: the frames, or one batch, do not fit in memory.
        NonFiniteError: the generator's output holds NaN or infinity.
    """
    if len(seeds) < 2:
        raise ConfigError(f"interpolation needs at least two seeds, got {seeds!r}")
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 2:
        raise ConfigError(f"steps must be an integer >= 2 (both ends are frames), "
                          f"got {steps!r}")
    if space not in ("z", "w"):
        raise ValueError(f"space must be 'z' or 'w', got {space!r}")
    method = method or ("slerp" if space == "z" else "lerp")
    if method not in ("lerp", "slerp"):
        raise ValueError(f"method must be 'lerp' or 'slerp', got {method!r}")
    if space == "w" and method == "slerp":
        raise ValueError("slerp is for z space (Gaussian latents); interpolate w with lerp")
    if space == "z" and isinstance(seeds, WLatents):
        raise ConfigError(f"{seeds.source or 'given ws'}: latents given as ws have no z; "
                          f"interpolate them in w space")
    _check_psi(truncation_psi)
    frames = (len(seeds) - 1) * (steps - 1) + 1
    check_held_memory(G, frames, f"{frames:,d} frames", extra_bytes=_ws_bytes(G, frames) * 2,
                      hint="use fewer --steps or seeds")
    check_batch_memory(G, batch_size, frames)
    interp = slerp if method == "slerp" else lerp
    t = torch.linspace(0, 1, steps, dtype=torch.float64)
    if space == "z":
        keys = seed_latents(seeds, G.z_dim).double()
    else:  # every layer's w: the per-layer ws of a projection differ
        keys = _mapping(G, seeds, truncation_psi, c).double().cpu()
    shape = (-1,) + (1,) * (keys.ndim - 1)
    path = [interp(keys[i][None], keys[i + 1][None], (t if i == 0 else t[1:]).view(shape))
            for i in range(len(seeds) - 1)]
    points = torch.cat(path).to(G.device, _param_dtype(G))
    ws = G.mapping(points, c, truncation_psi=truncation_psi) if space == "z" else points
    return _synthesize(G, ws, noise_mode=noise_mode, batch_size=batch_size,
                       progress=progress, desc="interpolate", what="frames")


@torch.inference_mode()
def stage_images(
    G: Generator,
    seeds: Sequence[int],
    *,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """Each stage's RGB output (the paper's Fig. 6), upsampled (nearest) to the final size.

    Returns:
        ``(len(seeds), num_stages, 3, H, W)``; the last stage is the final image.

    Raises:
        MemoryLimitError: the images, or one batch, do not fit in memory.
        NonFiniteError: the generator's output holds NaN or infinity.
    """
    num_stages = len(G.synthesis.stages)
    check_held_memory(G, len(seeds) * num_stages, f"{num_stages} stage outputs of "
                      f"{len(seeds):,d} seeds", hint="use fewer seeds",
                      extra_bytes=_ws_bytes(G, len(seeds)))
    check_batch_memory(G, batch_size, len(seeds))
    ws = _mapping(G, seeds, truncation_psi)
    size = tuple(G.resolution)
    out = []
    for sl in _batches(ws.shape[0], batch_size, progress, "stages"):
        _, rgbs = G.synthesis(ws[sl], noise_mode=noise_mode, return_stages=True)
        for rgb in rgbs:
            check_finite_images(G, rgb, seeds[sl], "the stage outputs")
        out.append(torch.stack([F.interpolate(rgb.float(), size=size, mode="nearest")
                                for rgb in rgbs], dim=1).clamp(-1, 1).cpu())
    return torch.cat(out)
