"""Closed-form edit directions (SeFa, Shen & Zhou 2021) and the images they make.

Every layer of the synthesis network that takes a style maps its ``w`` (one row of ``ws``)
through an affine layer to per-channel scales. SeFa stacks the weights of those affine layers
for a chosen set of ``ws`` indices, scales every output unit's weight vector to unit norm, and
takes the eigenvectors of ``AᵀA`` (``A``: the stacked rows, ``w_dim`` columns) with the largest
eigenvalues: the directions of ``w`` that change the styles of those layers the most. An edit
adds ``strength * direction`` to the ``ws`` rows of the same indices.

Which affine layers read a ``ws`` index ([`style_layers`][pixelfold.tools.style_layers]): the
modulated convolutions, as in SeFa; an index that only a ToRGB reads (the last one) uses the
ToRGB's. ``layers="stage:K"`` is the indices that stage ``K``'s convolutions read (the last
stage also gets the final ToRGB's), so the stages split ``ws`` between them.

>>> from pixelfold.models import Generator
>>> G = Generator.from_preset("pixelfolder-tiny-32").eval()
>>> directions, eigenvalues = sefa_directions(G)
>>> edit_images(G, [0, 1], directions[0], [-3, 0, 3]).shape
torch.Size([2, 3, 3, 32, 32])
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..models import Generator
from ..utils.errors import ConfigError
from .figures import _labeled_canvas, _rgb_uint8, _seed_label
from .images import (
    _mapping,
    _synthesize,
    _ws_bytes,
    check_batch_memory,
    check_held_memory,
)
from .latents import WLatents

__all__ = [
    "edit_figure",
    "edit_images",
    "edit_ws",
    "parse_strengths",
    "resolve_layers",
    "sefa_directions",
    "style_layers",
]

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def style_layers(G: Generator) -> dict[int, list[tuple[str, nn.Module]]]:
    """For every ``ws`` index, the affine (style) layers reading it, as ``(name, module)``
    with names relative to ``G.synthesis``: those of the modulated convolutions, or of the
    ToRGB layers for an index that no convolution reads (SeFa's choice)."""
    convs: dict[int, list[tuple[str, nn.Module]]] = {}
    rgbs: dict[int, list[tuple[str, nn.Module]]] = {}
    for s, stage in enumerate(G.synthesis.stages):
        k = stage.w_offset
        prefix = f"stages.{s}"
        if not stage.style_free_input:
            for i, layer in enumerate(stage.input_layers):
                convs.setdefault(k, []).append((f"{prefix}.input_layers.{i}.conv.modulation",
                                                layer.conv.modulation))
                k += 1
        for j, block in enumerate(stage.blocks):
            for c, conv in enumerate((block.conv0, block.conv1)):
                convs.setdefault(k + c, []).append(
                    (f"{prefix}.blocks.{j}.conv{c}.conv.modulation", conv.conv.modulation))
            rgbs.setdefault(k + 2, []).append((f"{prefix}.blocks.{j}.to_rgb.conv.modulation",
                                               block.to_rgb.conv.modulation))
            k += 2
    return {i: convs.get(i) or rgbs[i] for i in range(G.num_ws) if i in convs or i in rgbs}


def resolve_layers(G: Generator, layers: str | Sequence[int] = "all") -> list[int]:
    """The ``ws`` indices of ``layers``: ``"all"``, ``"stage:K"`` (the indices stage ``K``'s
    convolutions read, the final ToRGB's for the last stage) or a sequence of indices
    (sorted, repeats dropped).

    Raises:
        ConfigError: an unknown name, a stage or index out of range.
    """
    n = G.num_ws
    if isinstance(layers, str):
        text = layers.strip()
        if text == "all":
            return list(range(n))
        m = re.fullmatch(r"stage:(\d+)", text)
        if m is None:
            raise ConfigError(f"layers {layers!r}: expected 'all', 'stage:K' or a list of ws "
                              f"indices")
        k, starts = int(m.group(1)), [s.w_offset for s in G.synthesis.stages]
        if k >= len(starts):
            raise ConfigError(f"layers {layers!r}: this model has stages 0-{len(starts) - 1}")
        stop = starts[k + 1] if k + 1 < len(starts) else n
        return list(range(starts[k], stop))
    indices = sorted({int(i) for i in layers})
    if not indices:
        raise ConfigError("layers: no ws index given")
    if indices[0] < 0 or indices[-1] >= n:
        raise ConfigError(f"layers {list(layers)!r}: ws indices must be in [0, {n - 1}]")
    return indices


@torch.no_grad()
def sefa_directions(G: Generator, layers: str | Sequence[int] = "all"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """SeFa's closed-form directions for the ``ws`` indices of ``layers``.

    Args:
        G: the generator.
        layers: see [`resolve_layers`][pixelfold.tools.resolve_layers].

    Returns:
        ``(directions (K, w_dim), eigenvalues (K,))``, float32 on the CPU, by decreasing
        eigenvalue: unit-norm, mutually orthogonal rows, ``K = min(w_dim, number of stacked
        affine rows)``. The sign of an eigenvector is arbitrary; each is chosen so that its
        largest component is positive (reproducible).
    """
    by_index = style_layers(G)
    rows = [module.weight.detach().double().cpu()
            for i in resolve_layers(G, layers) for _, module in by_index[i]]
    a = torch.cat(rows)  # (sum of channels, w_dim)
    a = a / a.norm(dim=1, keepdim=True).clamp_min(1e-30)
    values, vectors = torch.linalg.eigh(a.T @ a)
    k = min(a.shape[1], a.shape[0])
    values, vectors = values.flip(0)[:k], vectors.flip(1)[:, :k].T
    peak = vectors.gather(1, vectors.abs().argmax(1, keepdim=True))
    vectors = vectors * torch.where(peak < 0, -1.0, 1.0)
    return vectors.float().contiguous(), values.clamp_min(0).float()


def edit_ws(ws: torch.Tensor, direction: torch.Tensor, strengths: Sequence[float] | torch.Tensor,
            layers: Sequence[int]) -> torch.Tensor:
    """``ws`` moved along ``direction`` by each strength at the indices ``layers``.

    Args:
        ws: ``(N, num_ws, w_dim)``.
        direction: ``(w_dim,)``.
        strengths: ``S`` values.
        layers: ``ws`` indices that move.

    Returns:
        ``(N, S, num_ws, w_dim)``: ``ws[:, None]`` plus ``strength * direction`` on the rows
        of ``layers``.
    """
    if ws.ndim != 3 or direction.shape != (ws.shape[2],):
        raise ValueError(f"edit_ws needs ws (N, num_ws, w_dim) and a (w_dim,) direction, got "
                         f"{tuple(ws.shape)} and {tuple(direction.shape)}")
    s = torch.as_tensor(strengths, dtype=ws.dtype, device=ws.device).reshape(-1)
    mask = torch.zeros(ws.shape[1], dtype=ws.dtype, device=ws.device)
    mask[list(layers)] = 1
    step = s[:, None, None] * mask[None, :, None] * direction.to(ws)[None, None, :]
    return ws[:, None] + step[None]


def parse_strengths(text: str) -> list[float]:
    """Edit strengths: ``"A:B:N"`` (``N`` evenly spaced values from ``A`` to ``B``, both
    included, as ``numpy.linspace``) or a comma-separated list ``"-2,0,2"``.

    Raises:
        ConfigError: anything else, ``N < 1`` or a value that is not finite.
    """
    if not isinstance(text, str) or not text.strip():
        raise ConfigError("empty strength list; expected A:B:N (e.g. -3:3:7) or a list such as "
                          "-2,0,2")
    t = text.strip()
    m = re.fullmatch(rf"\s*({_NUMBER})\s*:\s*({_NUMBER})\s*:\s*(\d+)\s*", t)
    if m is not None:
        a, b, n = float(m.group(1)), float(m.group(2)), int(m.group(3))
        if n < 1:
            raise ConfigError(f"bad strengths {text!r}: N must be >= 1, got {n}")
        values = [float(v) for v in np.linspace(a, b, n)]
    elif re.fullmatch(rf"\s*{_NUMBER}\s*(,\s*{_NUMBER}\s*)*", t):
        values = [float(v) for v in t.split(",")]
    else:
        raise ConfigError(f"bad strengths {text!r}: expected A:B:N (N values from A to B, e.g. "
                          f"-3:3:7) or a comma-separated list of numbers")
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"bad strengths {text!r}: values must be finite")
    return values


@torch.inference_mode()
def edit_images(
    G: Generator,
    seeds: Sequence[int] | WLatents,
    direction: torch.Tensor | int,
    strengths: Sequence[float],
    *,
    layers: str | Sequence[int] = "all",
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    batch_size: int = 16,
    progress: bool = False,
) -> torch.Tensor:
    """Images of ``seeds`` (or given latents) edited along ``direction``.

    Args:
        G: the generator.
        seeds: seeds, or a [`WLatents`][pixelfold.tools.WLatents] (projected images).
        direction: a ``(w_dim,)`` direction, or the index of a SeFa direction of ``layers``
            ([`sefa_directions`][pixelfold.tools.sefa_directions], 0 the strongest).
        strengths: distances to move, in units of the (unit-norm) direction.
        layers: the ``ws`` indices that move, see
            [`resolve_layers`][pixelfold.tools.resolve_layers].
        truncation_psi: truncation of the latents before the edit.
        noise_mode: ``"const"``, ``"random"`` or ``"none"``.
        batch_size: images per forward pass.
        progress: show a progress bar when it takes more than a second.

    Returns:
        ``(len(seeds), len(strengths), 3, H, W)`` in ``[-1, 1]``.

    Raises:
        ConfigError: a direction index out of range, bad layers or strengths.
        MemoryLimitError: the images, or one batch, do not fit in memory.
        NonFiniteError: the generator's output holds NaN or infinity.
    """
    indices = resolve_layers(G, layers)
    if not isinstance(direction, torch.Tensor):
        directions, _ = sefa_directions(G, indices)
        k = int(direction)
        if not 0 <= k < directions.shape[0]:
            raise ConfigError(f"direction {k} is out of range: there are "
                              f"{directions.shape[0]} directions (0-{directions.shape[0] - 1})")
        direction = directions[k]
    if direction.shape != (G.w_dim,) or not bool(torch.isfinite(direction).all()):
        raise ConfigError(f"direction must be a finite ({G.w_dim},) tensor, got "
                          f"{tuple(direction.shape)}")
    strengths = [float(s) for s in strengths]
    if not strengths or not all(math.isfinite(s) for s in strengths):
        raise ConfigError(f"strengths must be one or more finite numbers, got {strengths!r}")
    count = len(seeds) * len(strengths)
    check_held_memory(G, count, f"{count:,d} images ({len(seeds):,d} latents x "
                      f"{len(strengths)} strengths)", hint="use fewer seeds or strengths",
                      extra_bytes=_ws_bytes(G, count))
    check_batch_memory(G, batch_size, count)
    ws = _mapping(G, seeds, truncation_psi)
    edited = edit_ws(ws, direction.to(ws), strengths, indices)
    images = _synthesize(G, edited.flatten(0, 1), noise_mode=noise_mode, batch_size=batch_size,
                         progress=progress, desc="edit", what="the edits")
    return images.reshape(len(seeds), len(strengths), *images.shape[1:])


def edit_figure(images: torch.Tensor, strengths: Sequence[float], *,
                seeds: Sequence[int | str] | None = None, title: str | None = None,
                labels: bool = True) -> Image.Image:
    """The grid of [`edit_images`][pixelfold.tools.edit_images]: one row per latent, one
    column per strength.

    Args:
        images: ``(N, S, 3, H, W)``.
        strengths: the ``S`` strengths (column labels ``-3``, ``+1.5``, ...).
        seeds: seeds or labels of the rows (``seed N``, or the label itself).
        title: a header over all columns (e.g. ``direction 0, ws 0-8``).
        labels: draw the text (``False``: images only).
    """
    if images.ndim != 5 or images.shape[1] != len(strengths):
        raise ValueError(f"edit_figure: images of shape {tuple(images.shape)} do not match "
                         f"{len(strengths)} strengths")
    n, s, _, h, w = images.shape
    u8 = _rgb_uint8(images)
    cells = {(r, c): u8[r, c] for r in range(n) for c in range(s)}
    kwargs = {}
    if labels:
        rows = seeds if seeds is not None else range(n)
        kwargs = dict(row_labels=[_seed_label(x) for x in rows],
                      col_labels=[f"{v:+.3g}" if v else "0" for v in strengths],
                      headers=[(0, s - 1, title)] if title else [])
    return _labeled_canvas(cells, (n, s), (h, w), **kwargs)
