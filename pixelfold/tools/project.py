"""Project images into a generator's latent space, as NVlabs' StyleGAN2-ADA projector does, and
optionally fine-tune the generator around the result (pivotal tuning, PTI).

[`project`][pixelfold.tools.project] optimizes one ``w`` per target (``space="w"``, stored as
identical rows of ``ws``) or one ``w`` per layer (``space="wplus"``), together with the
per-layer noise images, for ``num_steps`` Adam steps:

* ``w`` starts at the average ``w`` of ``w_avg_samples`` latents (``numpy``'s
  ``RandomState(123)``, as NVlabs), and its spread ``w_std`` (root mean squared distance to
  the average) scales the noise added to ``w`` at each step: ``w_std * 0.05 * max(0, 1 - t /
  0.75)²`` at ``t = step / num_steps``, gone after 75% of the steps;
* the learning rate ``0.1`` ramps up linearly over the first 5% of the steps and down along
  a half cosine over the last 25%;
* the loss is the distance to the target plus ``1e5`` times the noise regularization
  ([`noise_regularization`][pixelfold.tools.noise_regularization]); after each step every
  noise image is normalized to mean 0 and variance 1;
* the distance is LPIPS-VGG16 (torch-fidelity's, from the local weights files the metrics
  use, see ``pixelfold.metrics.weights``) on images in ``[0, 255]``, downsampled to 256 (area)
  when larger, as NVlabs, and upsampled (bilinear) to 32 when smaller than 32, so that
  VGG16's deepest features keep at least 2x2 pixels; sizes in between are kept.
  ``distance="mse"`` uses the mean squared pixel difference instead (no weights needed).

The noise images are passed to the synthesis network explicitly (``G.synthesis(ws,
noise=...)``, one ``(N, 1, H, W)`` image per noise layer and target); the generator itself,
its stored noise images included, is not changed. As in NVlabs' projector, the final images
are rendered from the projected ``ws`` with the generator's own stored noise
(``noise_mode="const"``): what every other command renders from the ``.npz`` file. The
optimized noise images are returned too.

Targets of a batch are optimized together but independently: every loss term is a sum of
per-target terms.
"""

from __future__ import annotations

import copy
import io
import json
import math
import os
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps
from torch import nn
from tqdm.auto import tqdm

from ..models import Generator
from ..utils.channels import to_rgb
from ..utils.errors import ConfigError
from ..utils.files import atomic_write_bytes
from ..utils.tensors import frozen_parameters
from .images import check_batch_memory, check_finite_images
from .latents import WLatents

__all__ = [
    "DISTANCES",
    "IMAGE_SUFFIXES",
    "PROJECTED_W_FORMAT",
    "SPACES",
    "ProjectionResult",
    "find_targets",
    "image_distance",
    "learning_rate_schedule",
    "load_projected_w",
    "load_targets",
    "lpips_size",
    "noise_regularization",
    "project",
    "save_projected_w",
    "target_names",
    "tune_generator",
]

SPACES = ("w", "wplus")
"""What [`project`][pixelfold.tools.project] optimizes: one ``w`` per image, or one per layer."""
DISTANCES = ("lpips", "mse")
"""Distances to the target: LPIPS-VGG16, or the mean squared pixel difference."""
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
"""Files of a target folder that are read as images (case-insensitive)."""
PROJECTED_W_FORMAT = "pixelfold-projected-w"
"""The ``format`` field of the metadata of a projection file."""

_LPIPS_MIN, _LPIPS_MAX = 32, 256
_W_STATS_SEED = 123  # NVlabs' RandomState for the w statistics


# ---------------------------------------------------------------------------------------------
# targets


def find_targets(items: Sequence[str | os.PathLike]) -> list[Path]:
    """The image files named by ``items``: files as given, folders as their image files
    (``IMAGE_SUFFIXES``, sorted by name, not recursive).

    Raises:
        FileNotFoundError: an item is neither a file nor a folder.
        ValueError: a folder holds no image file, or no item is given.
    """
    if not items:
        raise ValueError("no target image given")
    files: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.iterdir()
                           if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise ValueError(f"{path} is a folder without image files "
                                 f"({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"{path}: no such file or folder")
    return files


def target_names(paths: Sequence[str | os.PathLike]) -> list[str]:
    """One name per target for file names and labels: the file name without its suffix, with
    characters other than letters, digits and ``._+-`` replaced by ``_``, and ``-2``, ``-3``,
    ... appended to repeats."""
    names: list[str] = []
    for p in paths:
        base = re.sub(r"[^\w.+-]", "_", Path(p).stem) or "target"
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}-{k}"
        names.append(name)
    return names


def _fit(image: Image.Image, size: tuple[int, int], image_channels: int = 3) -> torch.Tensor:
    """An 8-bit image center-cropped to the aspect ratio of ``size`` ``(H, W)`` and resized
    to it (Lanczos), in ``[-1, 1]``, with ``image_channels`` channels."""
    from ..training.data import convert_image, preprocess_image

    h, w = size
    if h == w:  # every color mode, 16-bit and float images included
        return preprocess_image(image, h, resize_filter="lanczos", image_channels=image_channels)
    if image.mode.startswith("I") or image.mode == "F":
        raise ValueError(f"a {image.mode} (more than 8 bits) image can only be projected "
                         f"into a square model; this one is {h}x{w}")
    image = ImageOps.fit(convert_image(image, image_channels), (w, h), Image.Resampling.LANCZOS)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.copy()).permute(2, 0, 1).float() / 127.5 - 1.0


def load_targets(paths: Sequence[str | os.PathLike], resolution: tuple[int, int] | int,
                 image_channels: int = 3) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Read target images for [`project`][pixelfold.tools.project] as NVlabs' projector does:
    converted to RGB (transparency over white), the center cropped to the model's aspect
    ratio and resized to its resolution with a Lanczos filter. A grayscale or RGBA model gets
    its own channels instead, by the data pipeline's rule
    ([`convert_image`][pixelfold.training.data.convert_image]).

    Args:
        paths: image files.
        resolution: the model's ``(H, W)`` (or one int for a square model).
        image_channels: the model's channels (1, 3 or 4).

    Returns:
        ``(targets (N, C, H, W) in [-1, 1], [(width, height) of each file])``: the original
        sizes say which targets were cropped or resized.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a file is not an image Pillow can read (the message names it).
    """
    size = (resolution, resolution) if isinstance(resolution, int) else tuple(resolution)
    images, sizes = [], []
    for path in paths:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such file")
        try:
            with Image.open(path) as image:
                image.load()
                sizes.append(image.size)
                images.append(_fit(image, size, image_channels))  # type: ignore[arg-type]
        except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
            reason = " ".join(str(exc).split()) or type(exc).__name__
            raise ValueError(f"{path} is not an image Pillow can read ({reason})") from None
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from None
    return torch.stack(images), sizes


# ---------------------------------------------------------------------------------------------
# the pieces of the optimization


def learning_rate_schedule(step: int, num_steps: int, *, initial_learning_rate: float = 0.1,
                           lr_rampdown_length: float = 0.25, lr_rampup_length: float = 0.05,
                           initial_noise_factor: float = 0.05, noise_ramp_length: float = 0.75
                           ) -> tuple[float, float]:
    """NVlabs' schedules at ``step`` of ``num_steps``: ``(learning rate, factor of w_std for
    the noise added to w)``.

    With ``t = step / num_steps``: the rate is ``initial_learning_rate`` times a linear
    ramp-up over the first ``lr_rampup_length`` and a half-cosine ramp-down over the last
    ``lr_rampdown_length``; the noise factor is ``initial_noise_factor * max(0, 1 - t /
    noise_ramp_length)²``.
    """
    t = step / num_steps
    noise = initial_noise_factor * max(0.0, 1.0 - t / noise_ramp_length) ** 2
    ramp = min(1.0, (1.0 - t) / lr_rampdown_length)
    ramp = 0.5 - 0.5 * math.cos(ramp * math.pi)
    ramp *= min(1.0, t / lr_rampup_length) if lr_rampup_length > 0 else 1.0
    return initial_learning_rate * ramp, noise


def noise_regularization(noise: Mapping[str, torch.Tensor] | Sequence[torch.Tensor]
                         ) -> torch.Tensor:
    """NVlabs' multiscale noise regularization, per target: for every noise image and every
    scale (halved by 2x2 average pooling while both sides are above 8), the squared mean
    products of the image with itself shifted by one pixel (circularly) along each axis.
    White noise gives almost 0, noise with spatial structure much more.

    Args:
        noise: ``(N, 1, H, W)`` images (a dict's values are used).

    Returns:
        ``(N,)``: the regularization of each target.
    """
    maps = list(noise.values()) if isinstance(noise, Mapping) else list(noise)
    if not maps:
        raise ValueError("noise_regularization needs at least one noise image")
    total = maps[0].new_zeros(maps[0].shape[0])
    for v in maps:
        while True:
            total = total + (v * torch.roll(v, shifts=1, dims=3)).mean((1, 2, 3)) ** 2
            total = total + (v * torch.roll(v, shifts=1, dims=2)).mean((1, 2, 3)) ** 2
            if min(v.shape[2], v.shape[3]) <= 8:
                break
            v = F.avg_pool2d(v, kernel_size=2)
    return total


def lpips_size(resolution: tuple[int, int]) -> tuple[int, int]:
    """The size images of ``resolution`` ``(H, W)`` are compared at by LPIPS: scaled down so
    that the longer side is 256 when it is longer (NVlabs), up so that the shorter side is 32
    when it is shorter (VGG16's deepest features then keep 2x2 pixels), else kept."""
    h, w = resolution
    if max(h, w) > _LPIPS_MAX:
        scale = _LPIPS_MAX / max(h, w)
    elif min(h, w) < _LPIPS_MIN:
        scale = _LPIPS_MIN / min(h, w)
    else:
        return h, w
    return max(1, round(h * scale)), max(1, round(w * scale))


class _Distance:
    """Distance of images to fixed targets, ``(N,)``: LPIPS with the targets' VGG16
    features computed once, or the mean squared pixel difference."""

    def __init__(self, kind: str, targets: torch.Tensor, lpips: nn.Module | None) -> None:
        self.kind = kind
        self.targets = targets.float()
        self.lpips = lpips
        if kind == "lpips":
            assert lpips is not None
            self.size = lpips_size(tuple(targets.shape[2:]))  # type: ignore[arg-type]
            with torch.no_grad():
                self.target_features = self._features(self.targets)

    def _pixels(self, images: torch.Tensor) -> torch.Tensor:
        x = (to_rgb(images.float()) + 1) * 127.5  # VGG16 reads RGB
        if tuple(x.shape[2:]) == self.size:
            return x
        if self.size[0] < x.shape[2]:
            return F.interpolate(x, size=self.size, mode="area")
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)

    def _features(self, images: torch.Tensor) -> list[torch.Tensor]:
        from torch_fidelity.sample_similarity_lpips import normalize_tensor

        lpips = self.lpips
        assert lpips is not None
        outs = lpips.net(lpips.normalize(self._pixels(images)))
        return [normalize_tensor(f) for f in outs]

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if self.kind == "mse":
            return (images.float() - self.targets).square().mean((1, 2, 3))
        lpips = self.lpips
        assert lpips is not None
        total = images.new_zeros(images.shape[0], dtype=torch.float32)
        for feat, target, lin in zip(self._features(images), self.target_features, lpips.lins,
                                     strict=True):
            total = total + lin.model((feat - target) ** 2).mean((1, 2, 3))
        return total


def _check_distance(distance: str, lpips: nn.Module | None, lpips_weights: Any,
                    vgg16_weights: Any, progress: bool) -> nn.Module | None:
    if distance not in DISTANCES:
        raise ConfigError(f"distance must be one of {DISTANCES}, got {distance!r}")
    if distance == "mse":
        return None
    if lpips is None:
        from ..metrics.ppl import lpips_vgg16

        lpips = lpips_vgg16(lpips_weights=lpips_weights, vgg16_weights=vgg16_weights,
                            resize=None, uint8=False, progress=progress)
    return lpips


def image_distance(images: torch.Tensor, targets: torch.Tensor, *, distance: str = "lpips",
                   lpips: nn.Module | None = None,
                   lpips_weights: str | os.PathLike | None = None,
                   vgg16_weights: str | os.PathLike | None = None) -> torch.Tensor:
    """The distance [`project`][pixelfold.tools.project] minimizes, per image: LPIPS-VGG16 at
    [`lpips_size`][pixelfold.tools.lpips_size] of images in ``[0, 255]``, or the mean squared
    difference of ``[-1, 1]`` pixels. LPIPS sees grayscale and RGBA images as RGB
    ([`to_rgb`][pixelfold.utils.channels.to_rgb]: repeated, over white); MSE compares every
    channel, alpha included.

    Args:
        images: ``(N, C, H, W)`` in ``[-1, 1]``, ``C`` = 1, 3 or 4.
        targets: the same shape.
        distance: ``"lpips"`` or ``"mse"``.
        lpips: see [`project`][pixelfold.tools.project].
        lpips_weights: see [`project`][pixelfold.tools.project].
        vgg16_weights: see [`project`][pixelfold.tools.project].

    Returns:
        ``(N,)`` float32 on the images' device (differentiable with respect to ``images``).
    """
    if images.shape != targets.shape or images.ndim != 4 or images.shape[1] not in (1, 3, 4):
        raise ConfigError(f"images {tuple(images.shape)} and targets {tuple(targets.shape)} "
                          f"must be (N, C, H, W) of one shape, C = 1, 3 or 4")
    lpips = _check_distance(distance, lpips, lpips_weights, vgg16_weights, False)
    if lpips is not None:
        lpips = lpips.to(images.device)
    return _Distance(distance, targets.detach().to(images.device), lpips)(images)


def _check_targets(G: Generator, targets: torch.Tensor, what: str = "targets") -> torch.Tensor:
    h, w = G.resolution
    c = getattr(G, "image_channels", 3)
    if not isinstance(targets, torch.Tensor) or targets.ndim != 4 \
            or tuple(targets.shape[1:]) != (c, h, w) or targets.shape[0] == 0:
        shape = tuple(targets.shape) if isinstance(targets, torch.Tensor) else type(targets)
        raise ConfigError(f"{what} must be (N, {c}, {h}, {w}) images in [-1, 1] with N >= 1, "
                          f"got {shape}")
    if not bool(torch.isfinite(targets).all()):
        raise ConfigError(f"{what} hold NaN or infinite values")
    return targets.detach().to(G.device, torch.float32)


@contextmanager
def _frozen(G: nn.Module) -> Iterator[None]:
    """``G`` in eval mode without parameter gradients for the block (restored after)."""
    training = G.training
    G.eval()
    try:
        with frozen_parameters(G):
            yield
    finally:
        G.train(training)


@torch.no_grad()
def _w_stats(G: Generator, num_samples: int, batch_size: int = 1000
             ) -> tuple[torch.Tensor, float]:
    """NVlabs' ``w`` statistics: the mean ``w`` of ``num_samples`` latents drawn by numpy's
    ``RandomState(123)`` and the root mean squared distance to it."""
    z = np.random.RandomState(_W_STATS_SEED).randn(num_samples, G.z_dim)
    param = next(G.parameters())
    ws = torch.cat([G.mapping(torch.from_numpy(z[i:i + batch_size]).to(param.device,
                                                                          param.dtype))[:, 0]
                    .float() for i in range(0, num_samples, batch_size)])
    avg = ws.mean(0)
    std = float(((ws - avg).square().sum() / num_samples).sqrt())
    return avg, std


# ---------------------------------------------------------------------------------------------
# projection


@dataclass
class ProjectionResult:
    """What [`project`][pixelfold.tools.project] found.

    Attributes:
        ws: the projected latents ``(N, num_ws, w_dim)`` float32 on the CPU (identical rows for
            ``space="w"``).
        images: the generator's images of ``ws`` with its stored noise (``noise_mode="const"``,
            what the other commands render from a ``.npz``), ``(N, 3, H, W)`` in ``[-1, 1]``.
        targets: the targets ``(N, 3, H, W)``.
        distance: distance of ``images`` to the targets ``(N,)``.
        search_distance: distance at the last step, with the optimized noise images ``(N,)``.
        noise: the optimized noise images by layer name, ``(N, 1, H, W)`` each (empty with
            ``optimize_noise=False``): ``G.synthesis(ws, noise=result.noise)`` renders with
            them.
        history: ``ws`` after the steps of ``history_steps``, ``(F, N, num_ws, w_dim)``, or
            ``None`` without ``history_every``.
        history_steps: the 1-based steps of ``history``.
        space: ``"w"`` or ``"wplus"``.
        distance_kind: ``"lpips"`` or ``"mse"``.
        num_steps: optimization steps.
        seed: seed of the noise images and of the noise added to ``w``.
        w_avg_samples: latents of the ``w`` statistics.
        w_std: the spread of ``w`` the noise added to ``w`` is scaled by.
    """

    ws: torch.Tensor
    images: torch.Tensor
    targets: torch.Tensor
    distance: torch.Tensor
    search_distance: torch.Tensor
    noise: dict[str, torch.Tensor]
    history: torch.Tensor | None
    history_steps: list[int]
    space: str
    distance_kind: str
    num_steps: int
    seed: int
    w_avg_samples: int
    w_std: float


def project(
    G: Generator,
    targets: torch.Tensor,
    *,
    space: str = "w",
    num_steps: int = 1000,
    distance: str = "lpips",
    lpips_weights: str | os.PathLike | None = None,
    vgg16_weights: str | os.PathLike | None = None,
    lpips: nn.Module | None = None,
    w_avg_samples: int = 10_000,
    initial_learning_rate: float = 0.1,
    initial_noise_factor: float = 0.05,
    lr_rampdown_length: float = 0.25,
    lr_rampup_length: float = 0.05,
    noise_ramp_length: float = 0.75,
    regularize_noise_weight: float = 1e5,
    optimize_noise: bool = True,
    seed: int = 303,
    history_every: int = 0,
    progress: bool = False,
    callback: Callable[[int, torch.Tensor], None] | None = None,
) -> ProjectionResult:
    """Find latents whose images are closest to ``targets`` (NVlabs' projector; see the module
    docs for the schedule).

    Args:
        G: the generator (its device and dtype are used; it is left as it was).
        targets: ``(N, 3, H, W)`` images in ``[-1, 1]`` at the generator's resolution (see
            [`load_targets`][pixelfold.tools.load_targets]).
        space: ``"w"`` (one ``w`` per target, NVlabs) or ``"wplus"`` (one per layer).
        num_steps: optimization steps (NVlabs: 1000).
        distance: ``"lpips"`` (LPIPS-VGG16) or ``"mse"``.
        lpips_weights: local LPIPS linear-layer weights (``None``:
            ``PIXELFOLD_LPIPS_WEIGHTS``, the torch hub cache, else downloaded).
        vgg16_weights: local VGG16 weights (``None``: ``PIXELFOLD_VGG16_WEIGHTS``, ...).
        lpips: an LPIPS module from ``pixelfold.metrics.lpips_vgg16(resize=None,
            uint8=False)`` to use instead of building one from the weights files.
        w_avg_samples: latents for the average and spread of ``w``.
        initial_learning_rate: peak learning rate of Adam.
        initial_noise_factor: noise added to ``w`` at the start, in units of its spread.
        lr_rampdown_length: share of the steps the rate ramps down over (at the end).
        lr_rampup_length: share of the steps it ramps up over (at the start; 0: none).
        noise_ramp_length: share of the steps the noise added to ``w`` lasts.
        regularize_noise_weight: weight of the noise regularization.
        optimize_noise: optimize the noise images too (NVlabs); ``False`` keeps the
            generator's stored noise during the search.
        seed: seed of the initial noise images and of the noise added to ``w`` (drawn on the
            CPU: the same on every device).
        history_every: keep ``ws`` every this many steps (and after the last) in
            ``result.history``, e.g. for a video; 0 keeps none.
        progress: show a progress bar.
        callback: called after every step with ``(step, distances (N,))``.

    Returns:
        A [`ProjectionResult`][pixelfold.tools.ProjectionResult].

    Raises:
        ConfigError: bad arguments, or targets of another shape than the generator's images.
        MissingWeightsError: LPIPS weights neither given nor downloadable.
        MemoryLimitError: one batch of the targets does not fit on the generator's device.
        NonFiniteError: the generator produced NaN or infinity.
    """
    if space not in SPACES:
        raise ConfigError(f"space must be one of {SPACES}, got {space!r}")
    for name, value, low in (("num_steps", num_steps, 1), ("w_avg_samples", w_avg_samples, 1),
                             ("history_every", history_every, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    for name, value in (("initial_learning_rate", initial_learning_rate),
                        ("lr_rampdown_length", lr_rampdown_length),
                        ("noise_ramp_length", noise_ramp_length)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    for name, value in (("lr_rampup_length", lr_rampup_length),
                        ("initial_noise_factor", initial_noise_factor),
                        ("regularize_noise_weight", regularize_noise_weight)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
            raise ConfigError(f"{name} must be a finite number >= 0, got {value!r}")
    lpips = _check_distance(distance, lpips, lpips_weights, vgg16_weights, progress)
    targets = _check_targets(G, targets)
    n = targets.shape[0]
    check_batch_memory(G, n)
    device, dtype = G.device, next(G.parameters()).dtype
    if lpips is not None:
        lpips = lpips.to(device)
    gen = torch.Generator().manual_seed(seed)

    with _frozen(G):
        w_avg, w_std = _w_stats(G, w_avg_samples)
        layers = {name: m for name, m in G.synthesis.noise_layers().items()
                  if m.noise_const is not None} if optimize_noise else {}
        noise = {name: torch.randn((n, 1, *m.noise_const.shape[2:]),  # type: ignore[union-attr]
                                   generator=gen).to(device).requires_grad_(True)
                 for name, m in layers.items()}
        rows = 1 if space == "w" else G.num_ws
        w_opt = w_avg.to(device).expand(n, rows, -1).clone().requires_grad_(True)
        optimizer = torch.optim.Adam([w_opt, *noise.values()], betas=(0.9, 0.999),
                                     lr=initial_learning_rate)
        dist_fn = _Distance(distance, targets, lpips)
        history: list[torch.Tensor] = []
        history_steps: list[int] = []
        dist = torch.zeros(n)
        with torch.enable_grad(), tqdm(range(num_steps), desc="project", unit="step",
                                       disable=not progress, leave=False) as bar:
            for step in bar:
                lr, noise_factor = learning_rate_schedule(
                    step, num_steps, initial_learning_rate=initial_learning_rate,
                    lr_rampdown_length=lr_rampdown_length, lr_rampup_length=lr_rampup_length,
                    initial_noise_factor=initial_noise_factor,
                    noise_ramp_length=noise_ramp_length)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                w_noise = torch.randn(w_opt.shape, generator=gen).to(device)
                ws = (w_opt + w_noise * (w_std * noise_factor)).expand(-1, G.num_ws, -1)
                images = G.synthesis(ws.to(dtype), noise_mode="const", noise=noise or None)
                check_finite_images(G, images, what="the projection")
                dist_each = dist_fn(images)
                loss = dist_each.sum()
                if noise:
                    loss = loss + noise_regularization(noise).sum() * regularize_noise_weight
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                with torch.no_grad():
                    for v in noise.values():
                        v -= v.mean((1, 2, 3), keepdim=True)
                        v *= v.square().mean((1, 2, 3), keepdim=True).rsqrt()
                dist = dist_each.detach().float().cpu()
                if progress:
                    bar.set_postfix(dist=f"{float(dist.mean()):.4f}")
                if history_every and ((step + 1) % history_every == 0 or step + 1 == num_steps):
                    history.append(w_opt.detach().expand(-1, G.num_ws, -1).float().cpu()
                                   .clone())
                    history_steps.append(step + 1)
                if callback is not None:
                    callback(step, dist)
        final = w_opt.detach().expand(-1, G.num_ws, -1).float()
        with torch.no_grad():
            images = G.synthesis(final.to(dtype), noise_mode="const").float()
            check_finite_images(G, images, what="the projection")
            final_dist = dist_fn(images).float().cpu()
    return ProjectionResult(
        ws=final.cpu().contiguous(), images=images.clamp(-1, 1).cpu(), targets=targets.cpu(),
        distance=final_dist, search_distance=dist,
        noise={k: v.detach().cpu() for k, v in noise.items()},
        history=torch.stack(history) if history else None, history_steps=history_steps,
        space=space, distance_kind=distance, num_steps=num_steps, seed=seed,
        w_avg_samples=w_avg_samples, w_std=w_std)


# ---------------------------------------------------------------------------------------------
# pivotal tuning


def tune_generator(
    G: Generator,
    ws: torch.Tensor,
    targets: torch.Tensor,
    *,
    num_steps: int = 350,
    learning_rate: float = 3e-4,
    distance: str = "lpips",
    l2_weight: float = 1.0,
    lpips_weight: float = 1.0,
    lpips_weights: str | os.PathLike | None = None,
    vgg16_weights: str | os.PathLike | None = None,
    lpips: nn.Module | None = None,
    progress: bool = False,
) -> Generator:
    """Pivotal tuning (PTI, Roich et al. 2022): fine-tune a copy of the synthesis network so
    that the fixed ``ws`` (the pivots, from [`project`][pixelfold.tools.project]) render the
    targets, with Adam at ``learning_rate`` (PTI: 3e-4) on ``l2_weight * MSE +
    lpips_weight * LPIPS`` (PTI's weights: 1 and 1; LPIPS is VGG16 here, AlexNet in PTI;
    ``distance="mse"`` leaves LPIPS out). The images are rendered with the generator's stored
    noise (``noise_mode="const"``), as every command renders them. Several targets tune one
    generator together (PTI's multi-ID tuning). PTI's optional locality regularization and
    early stop are not applied.

    Args:
        G: the generator (not modified: a tuned copy is returned).
        ws: the pivots ``(N, num_ws, w_dim)``.
        targets: ``(N, 3, H, W)`` in ``[-1, 1]``.
        num_steps: tuning steps (PTI: 350).
        learning_rate: Adam's rate.
        distance: ``"lpips"`` (L2 + LPIPS) or ``"mse"`` (L2 only).
        l2_weight: weight of the mean squared error.
        lpips_weight: weight of the mean LPIPS distance.
        lpips_weights: see [`project`][pixelfold.tools.project].
        vgg16_weights: see [`project`][pixelfold.tools.project].
        lpips: see [`project`][pixelfold.tools.project].
        progress: show a progress bar.

    Returns:
        The tuned copy, in eval mode, on ``G``'s device.
    """
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 1:
        raise ConfigError(f"num_steps must be an integer >= 1, got {num_steps!r}")
    if not (math.isfinite(learning_rate) and learning_rate > 0):
        raise ConfigError(f"learning_rate must be a finite number > 0, got {learning_rate!r}")
    lpips = _check_distance(distance, lpips, lpips_weights, vgg16_weights, progress)
    targets = _check_targets(G, targets)
    ws = WLatents(ws).for_generator(G)
    if ws.shape[0] != targets.shape[0]:
        raise ConfigError(f"{ws.shape[0]} pivots for {targets.shape[0]} targets")
    tuned = copy.deepcopy(G).eval()
    tuned.requires_grad_(False)
    tuned.synthesis.requires_grad_(True)
    if lpips is not None:
        lpips = lpips.to(G.device)
    dist_fn = _Distance(distance, targets, lpips)
    mse = _Distance("mse", targets, None)
    optimizer = torch.optim.Adam([p for p in tuned.synthesis.parameters() if p.requires_grad],
                                 lr=learning_rate)
    with torch.enable_grad():
        for _ in tqdm(range(num_steps), desc="tune", unit="step", disable=not progress,
                      leave=False):
            images = tuned.synthesis(ws, noise_mode="const")
            check_finite_images(tuned, images, what="the tuned projection")
            loss = l2_weight * mse(images).mean()
            if distance == "lpips":
                loss = loss + lpips_weight * dist_fn(images).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    return tuned.requires_grad_(False).eval()


# ---------------------------------------------------------------------------------------------
# files of projected ws


def save_projected_w(path: str | os.PathLike, ws: torch.Tensor, *,
                     names: Sequence[str] | None = None,
                     targets: Sequence[str | os.PathLike] | None = None,
                     distance: torch.Tensor | Sequence[float] | None = None,
                     meta: Mapping[str, Any] | None = None) -> Path:
    """Write projected latents as an ``.npz`` that ``numpy.load(allow_pickle=False)`` reads
    (written atomically).

    Arrays: ``w`` ``(N, num_ws, w_dim)`` float32 (NVlabs' key), ``names`` ``(N,)`` strings
    (labels and file names of the images), ``targets`` ``(N,)`` strings (the target files),
    ``distance`` ``(N,)`` float32 (final distances) and ``meta``, a JSON string (``format``:
    ``"pixelfold-projected-w"``, ``version``, and what ``meta`` holds: model, space, steps,
    distance kind, seed, ...).

    Args:
        path: the ``.npz`` file.
        ws: ``(N, num_ws, w_dim)``.
        names: labels (default ``w0000``, ...): letters, digits and ``._+-``, all different.
        targets: the target files.
        distance: the final distances.
        meta: more JSON-serializable metadata.
    """
    latents = WLatents(ws.float(), names, source=str(path))  # checks shape, labels, finiteness
    if latents.ws.ndim != 3:
        raise ConfigError(f"ws must be (N, num_ws, w_dim), got {tuple(ws.shape)}")
    n = len(latents)
    arrays: dict[str, np.ndarray] = {
        "w": latents.ws.cpu().numpy().astype(np.float32),
        "names": np.array(latents.labels, dtype=np.str_),
    }
    if targets is not None:
        if len(targets) != n:
            raise ConfigError(f"{len(targets)} target files for {n} latents")
        arrays["targets"] = np.array([str(t) for t in targets], dtype=np.str_)
    if distance is not None:
        d = np.asarray(torch.as_tensor(distance, dtype=torch.float32).cpu(), dtype=np.float32)
        if d.shape != (n,):
            raise ConfigError(f"distance must hold {n} values, got shape {d.shape}")
        arrays["distance"] = d
    info = {"format": PROJECTED_W_FORMAT, "version": 1, **(meta or {})}
    arrays["meta"] = np.array(json.dumps(info, sort_keys=True))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)  # type: ignore[arg-type]
    return atomic_write_bytes(path, buffer.getvalue())


def load_projected_w(path: str | os.PathLike) -> WLatents:
    """Read latents from an ``.npz`` with a ``w`` array: a file of
    [`save_projected_w`][pixelfold.tools.save_projected_w] (labels from its ``names``) or of
    NVlabs' projector (``projected_w.npz``, labels ``w0000``, ...). Nothing in the file is
    unpickled (``numpy.load(allow_pickle=False)``).

    ``w`` may be ``(N, num_ws, w_dim)`` or ``(N, w_dim)``; whether it fits a model is checked
    when it is used ([`WLatents.for_generator`][pixelfold.tools.latents.WLatents.for_generator]).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not an ``.npz`` file, no ``w`` array, ``w`` not floats of 2 or 3
            dimensions, or NaN / infinity in it (the message names the file).
    """
    import zipfile

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file" + (" (a folder)" if path.is_dir()
                                                            else ""))
    with open(path, "rb") as f:
        magic = f.read(6)
    if magic[:4] != b"PK\x03\x04":
        kind = "a single .npy array" if magic == b"\x93NUMPY" else "not a zip archive"
        raise ValueError(f"{path} is not an .npz file of latents ({kind})")
    try:
        with np.load(path, allow_pickle=False) as data:
            if "w" not in data.files:
                raise ValueError(f"it has no 'w' array (arrays: "
                                 f"{', '.join(data.files) or 'none'})")
            w = data["w"]
            names = data["names"] if "names" in data.files else None
    except ValueError as exc:
        reason = " ".join(str(exc).split())
        if "allow_pickle" in reason:
            reason = "its 'w' holds pickled objects, which are never loaded"
        raise ValueError(f"{path} is not an .npz file of latents: {reason}") from None
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise ValueError(f"{path} is not an .npz file of latents: {reason}") from None
    if w.dtype.kind != "f" or w.ndim not in (2, 3) or 0 in w.shape:
        raise ValueError(f"{path}: 'w' must be floats of shape (N, num_ws, w_dim) or "
                         f"(N, w_dim), got {w.dtype} of shape {w.shape}")
    labels: list[str] | None = None
    if names is not None and names.dtype.kind == "U" and names.shape == (w.shape[0],):
        candidate = [str(x) for x in names]
        if len(set(candidate)) == len(candidate) and all(
                re.fullmatch(r"[\w.+-]+", x) for x in candidate):
            labels = candidate
    return WLatents(torch.from_numpy(w.astype(np.float32)), labels, source=str(path))
