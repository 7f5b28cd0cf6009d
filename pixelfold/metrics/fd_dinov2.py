"""FD-DINOv2: the Fréchet distance in the feature space of DINOv2 (through timm).

Stein et al. (NeurIPS 2023, "Exposing flaws of generative model evaluation metrics") found
that Inception features, trained on ImageNet classification, reward ImageNet-like textures
and agree poorly with human judgement of realism, while the self-supervised DINOv2 ViT-L/14
gives a Fréchet distance that ranks models the way people do. FD-DINOv2 is therefore worth
reporting next to FID, which stays the number to compare with published work.

Protocol: images in uint8, resized to 224x224 (bicubic, antialiased), normalized with the
network's mean and standard deviation (ImageNet's for DINOv2), features are the class token
after the final norm (``timm.create_model(..., num_classes=0)``).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .report import MetricsReport
from .sources import (
    GeneratedInput,
    GeneratorSource,
    RealInput,
    describe_real,
    image_resolution,
    resolve_device,
    resolve_generated,
    resolve_real,
)
from .statistics import (
    FeatureStatistics,
    StatisticsAccumulator,
    frechet_distance,
    statistics_protocol,
)
from .weights import (
    DINOV2_WEIGHTS,
    MissingWeightsError,
    WeightsError,
    check_state_dict,
    file_sha256,
    is_offline,
    local_weights,
    read_weights,
)

__all__ = [
    "DINOV2_MODEL",
    "DinoV2Features",
    "compute_dinov2_statistics",
    "compute_fd_dinov2",
    "load_dinov2",
]

DINOV2_MODEL = "vit_large_patch14_dinov2.lvd142m"
"""timm name of the default feature extractor (DINOv2 ViT-L/14, as in Stein et al.)."""


class DinoV2Features(nn.Module):
    """uint8 images ``(B, 3, H, W)`` -> float32 features ``(B, D)`` of a timm model.

    Args:
        model: a timm model built with ``num_classes=0`` (its forward gives pooled features).
        model_name: its timm name (recorded in reports and statistics).
        image_size: side the images are resized to.
    """

    def __init__(self, model: nn.Module, model_name: str, image_size: int = 224) -> None:
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.model_name = model_name
        self.image_size = int(image_size)
        cfg = getattr(model, "pretrained_cfg", None) or {}
        mean = cfg.get("mean", (0.485, 0.456, 0.406))
        std = cfg.get("std", (0.229, 0.224, 0.225))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.weights = "random initialization"

    @property
    def feature_space(self) -> str:
        """Name of the feature space, e.g. ``"timm:vit_large_patch14_dinov2.lvd142m@224"``."""
        return f"timm:{self.model_name}@{self.image_size}"

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected uint8 images (B, 3, H, W), got {images.dtype} "
                             f"{tuple(images.shape)}")
        x = images.to(self.mean.device, torch.float32) / 255
        size = (self.image_size, self.image_size)
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False,
                              antialias=True).clamp_(0, 1)
        return self.model((x - self.mean) / self.std).float()


def _cached_on_hub(repo_id: str) -> str | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in ("model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin"):
        try:
            found = try_to_load_from_cache(repo_id, filename)
        except Exception:
            found = None
        if isinstance(found, str):
            return found
    return None


def _hub_weights(model_name: str, cfg: Any) -> Path:
    """The pretrained weights file of ``model_name`` from the Hugging Face cache, downloaded
    into it first when missing (unless downloads are off)."""
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if not hub_id:
        raise MissingWeightsError(
            f"{DINOV2_WEIGHTS.title}: timm lists no Hugging Face Hub weights for {model_name}; "
            f"{DINOV2_WEIGHTS.how_to_provide()}.")
    cached = _cached_on_hub(hub_id)
    if cached is not None:
        return Path(cached)
    where = f"hf-hub:{hub_id}"
    if is_offline():
        raise MissingWeightsError(
            f"{DINOV2_WEIGHTS.title}: {model_name} ({where}) is not in the Hugging Face "
            f"cache and downloads are off (HF_HUB_OFFLINE=1). Download the weights on a "
            f"machine with internet, then {DINOV2_WEIGHTS.how_to_provide()}.")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError

    filename = getattr(cfg, "hf_hub_filename", None)
    names = [filename] if filename else ["model.safetensors", "pytorch_model.bin"]
    try:
        for name in names[:-1]:
            try:
                return Path(hf_hub_download(hub_id, name))
            except EntryNotFoundError:
                continue
        return Path(hf_hub_download(hub_id, names[-1]))
    except Exception as exc:  # no network, proxy, HTTP error, disk...
        raise MissingWeightsError(
            f"{DINOV2_WEIGHTS.title}: {model_name} ({where}) could not be downloaded "
            f"({type(exc).__name__}: {exc}). Without internet, "
            f"{DINOV2_WEIGHTS.how_to_provide()}.") from exc


def _mismatch(model_name: str, size: dict[str, Any], file: Path,
              state: dict[str, torch.Tensor], exc: Exception) -> WeightsError:
    """Why timm could not load ``state`` (the tensors of ``file``) into ``model_name``: the
    names and shapes it lacks or has in excess, else timm's own reason."""
    import timm

    with torch.device("meta"):
        skeleton = timm.create_model(model_name, pretrained=False, num_classes=0, **size)
    expected = {name: tuple(t.shape) for name, t in skeleton.state_dict().items()}
    try:  # the position embedding and patch projection are resampled to the input size
        check_state_dict(state, expected, network=f"{DINOV2_WEIGHTS.network} ({model_name})",
                         source=file, any_shape={"pos_embed", "patch_embed.proj.weight"})
    except WeightsError as mismatch:
        return mismatch
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return WeightsError(f"{file} does not fit {model_name}: {reason[:300]}")


def load_dinov2(model_name: str = DINOV2_MODEL, *, weights: str | os.PathLike | None = None,
                image_size: int = 224) -> DinoV2Features:
    """Build the FD-DINOv2 feature extractor.

    The weights file (given, or the Hugging Face Hub's, from its cache or downloaded) is read by
    pixelfold as tensors only (safetensors, or ``torch.load(weights_only=True)``) and checked
    to be finite; timm builds the model from these tensors (adapting known layouts, like the
    original DINOv2 checkpoints, and resampling the position embedding) and loads them
    strictly: every tensor of the model must come from the file, and the file may hold nothing
    else (a classifier head aside). Nothing in the file can run code.

    Args:
        model_name: timm model name (any ViT works; tests use a tiny random one).
        weights: a local weights file for it (``.safetensors`` or ``.pth`` state dict; ``None``:
            the environment variable ``PIXELFOLD_DINOV2_WEIGHTS``, else the Hugging Face Hub).
        image_size: input side; the position embedding is resampled when it differs from the
            model's (DINOv2 is published at 518).

    Raises:
        MissingWeightsError: no local file and the Hub download failed or is switched off.
        ValueError: the file is not a state dict of tensors (TorchScript, pickled objects,
            text, damaged), holds NaN or infinity, or is not the weights of ``model_name``
            (the message names the file).
    """
    import timm
    from timm.models import get_pretrained_cfg

    if not timm.is_model(model_name):
        raise ValueError(f"{model_name!r} is not a timm model name")
    cfg = get_pretrained_cfg(model_name)
    file = local_weights(DINOV2_WEIGHTS, weights)
    if file is None:
        file = _hub_weights(model_name, cfg)
    state = read_weights(DINOV2_WEIGHTS, file, None)  # layouts are timm's to adapt: see below
    classifiers = getattr(cfg, "classifier", None) if cfg is not None else None
    for name in (classifiers,) if isinstance(classifiers, str) else (classifiers or ()):
        state.pop(f"{name}.weight", None)  # the head is not used: num_classes=0
        state.pop(f"{name}.bias", None)
    size: dict[str, Any] = {}
    if cfg is not None and cfg.input_size[-1] != image_size:
        size["img_size"] = image_size
    shapes = {name: torch.empty(t.shape, device="meta") for name, t in state.items()}
    # a state dict, not a file, for timm to load; num_classes matching the overlay's keeps its
    # loading strict (missing or unexpected tensors are errors)
    overlay = {"state_dict": state, "num_classes": 0}
    del state
    try:
        model = timm.create_model(model_name, pretrained=True, num_classes=0,
                                  pretrained_cfg_overlay=overlay, **size)
    except (RuntimeError, ValueError, KeyError, IndexError, TypeError, AssertionError) as exc:
        raise _mismatch(model_name, size, file, shapes, exc) from None
    finally:
        overlay.clear()
    if isinstance(getattr(model, "pretrained_cfg", None), dict):
        model.pretrained_cfg.pop("state_dict", None)  # timm keeps a copy of the overlay there
    extractor = DinoV2Features(model, model_name, image_size)
    extractor.weights = str(file)
    return extractor


def _weights_entry(extractor: DinoV2Features) -> dict[str, str]:
    entry = {"dinov2_weights": extractor.weights}
    if Path(extractor.weights).is_file():
        entry["dinov2_weights_sha256"] = file_sha256(extractor.weights)
    return entry


def _statistics(batches: Iterable[torch.Tensor], extractor: DinoV2Features, total: int,
                desc: str, progress: bool) -> tuple[Any, Any]:
    acc = StatisticsAccumulator()
    with tqdm(total=total, desc=desc, unit="images", disable=not progress) as bar:
        for images in batches:
            acc.add(extractor(images))
            bar.update(images.shape[0])
    return acc.mu_sigma()


def _loader(data: torch.utils.data.Dataset, batch_size: int,
            device: torch.device) -> torch.utils.data.DataLoader:
    n = len(data)  # type: ignore[arg-type]
    workers = min(4, os.cpu_count() or 1) if n > 4 * batch_size else 0
    return torch.utils.data.DataLoader(data, batch_size=batch_size, num_workers=workers,
                                       pin_memory=device.type == "cuda")


def _protocol(extractor: DinoV2Features) -> dict[str, Any]:
    import timm

    return {
        "feature_extractor": f"{extractor.model_name} (timm {timm.__version__}), class token "
                             f"after the final norm",
        "image_size": f"{extractor.image_size}x{extractor.image_size}, bicubic (antialiased), "
                      f"normalized with mean {tuple(extractor.mean.flatten().tolist())} and std "
                      f"{tuple(extractor.std.flatten().tolist())}",
        **_weights_entry(extractor),
    }


def _check_dinov2_statistics(stats: FeatureStatistics, extractor: DinoV2Features,
                             resolution: int | None, side: str) -> None:
    if stats.feature_extractor not in ("unknown", extractor.feature_space):
        raise ValueError(f"the {side} statistics are in the {stats.feature_extractor!r} "
                         f"feature space, not {extractor.feature_space!r}")
    stats_resolution = stats.metadata.get("resolution")
    if stats_resolution is not None and resolution is not None \
            and int(stats_resolution) != resolution:
        raise ValueError(f"the {side} statistics were computed at {stats_resolution}, the "
                         f"generated images are {resolution}x{resolution}")


def compute_fd_dinov2(
    generator: GeneratedInput,
    real: RealInput,
    *,
    num_gen: int = 50_000,
    num_real: int = 50_000,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    dinov2_weights: str | os.PathLike | None = None,
    model_name: str = DINOV2_MODEL,
    image_size: int = 224,
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "random",
    resize_filter: str = "box",
    resolution: int | None = None,
    progress: bool = True,
) -> MetricsReport:
    """FD-DINOv2 of ``generator`` (or of generated images) against ``real``.

    The generated images are those that
    [`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics] sees for equal
    ``num_gen``, ``batch_size``, ``seed``, ``truncation_psi`` and ``noise_mode``.

    Args:
        generator: the generated side, as in
            [`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics]: a generator, a
            folder or dataset of generated images, or their DINOv2 statistics (object or
            ``.npz`` path).
        real: real images (as in [`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics]) or
            statistics from
            [`compute_dinov2_statistics`][pixelfold.metrics.fd_dinov2.compute_dinov2_statistics]
            (object or ``.npz`` path).
        num_gen: number of generated images (at most, for a set of images).
        num_real: at most this many real images.
        batch_size: images per batch.
        device: where to run (``None``: CUDA when available).
        dinov2_weights: local weights file (``None``: ``PIXELFOLD_DINOV2_WEIGHTS``, else the
            Hugging Face Hub).
        model_name: timm model name.
        image_size: side the images are resized to.
        seed: seed of the latents, noise and subsets.
        truncation_psi: truncation (1: none).
        noise_mode: ``"random"``, ``"const"`` or ``"none"``.
        resize_filter: filter that resizes images read from files to the common resolution.
        resolution: the common side when the generated side is images or statistics (as in
            [`compute_metrics`][pixelfold.metrics.fidelity.compute_metrics]).
        progress: show progress bars.

    Returns:
        A [`MetricsReport`][pixelfold.metrics.report.MetricsReport] with ``fd_dinov2`` and
        ``protocol["fd_dinov2"]``.

    Raises:
        MissingWeightsError: no weights file and the Hub download failed or is switched off.
        ValueError: the weights file is not the model's tensors (see
            [`load_dinov2`][pixelfold.metrics.fd_dinov2.load_dinov2]), or statistics that do not
            fit (other feature space or resolution, NaN).
    """
    from .fidelity import versions

    started = time.perf_counter()
    dev = resolve_device(device)
    # the network first: offline without weights, fail before loading anything big
    extractor = load_dinov2(model_name, weights=dinov2_weights, image_size=image_size).to(dev)
    gen = resolve_generated(generator, num_images=num_gen, batch_size=batch_size, seed=seed,
                            truncation_psi=truncation_psi, noise_mode=noise_mode, device=dev,
                            resolution=resolution, resize_filter=resize_filter)
    protocol: dict[str, Any] = {}
    if isinstance(gen, GeneratorSource):
        side: int | None = gen.resolution
        protocol.update(gen.describe())
    elif isinstance(gen, FeatureStatistics):
        found = gen.metadata.get("resolution")
        side = int(resolution if resolution is not None else found) \
            if (resolution is not None or found is not None) else None
        _check_dinov2_statistics(gen, extractor, side, "generated")
        protocol["resolution"] = side
        protocol.update(statistics_protocol(gen, generator, "generated"))
    else:
        side = image_resolution(gen)
        protocol["resolution"] = side
        protocol.update(describe_real(gen, "generated"))
        protocol["generated_resize_filter"] = resize_filter
    real_data = resolve_real(real, side, max_images=num_real, resize_filter=resize_filter,
                             seed=seed, image_channels=getattr(gen, "image_channels", 3))
    if isinstance(real_data, FeatureStatistics):
        _check_dinov2_statistics(real_data, extractor, side, "real")
        protocol.update(statistics_protocol(real_data, real, "real"))
        real_mu, real_sigma = real_data.mu, real_data.sigma
    else:
        protocol.update(describe_real(real_data))
        protocol["real_resize_filter"] = resize_filter
        real_mu, real_sigma = _statistics(
            (b.to(dev) for b in _loader(real_data, batch_size, dev)), extractor,
            len(real_data), "FD-DINOv2 real", progress)
    protocol.update(_protocol(extractor))
    if isinstance(gen, FeatureStatistics):
        gen_mu, gen_sigma = gen.mu, gen.sigma
    elif isinstance(gen, GeneratorSource):
        gen_mu, gen_sigma = _statistics(gen, extractor, len(gen), "FD-DINOv2 generated",
                                        progress)
    else:
        gen_mu, gen_sigma = _statistics(
            (b.to(dev) for b in _loader(gen, batch_size, dev)), extractor, len(gen),
            "FD-DINOv2 generated", progress)
    if gen_mu.shape != real_mu.shape:
        raise ValueError(f"the generated statistics have {gen_mu.shape[0]} features, the real "
                         f"ones {real_mu.shape[0]}")
    value = frechet_distance(gen_mu, gen_sigma, real_mu, real_sigma)
    protocol["device"] = str(dev)
    protocol.update(versions())
    protocol["seconds"] = round(time.perf_counter() - started, 2)
    return MetricsReport(fd_dinov2=value, protocol={"fd_dinov2": protocol})


def compute_dinov2_statistics(
    real: RealInput,
    *,
    resolution: int | None,
    num_real: int = 50_000,
    batch_size: int = 64,
    device: str | torch.device | None = None,
    dinov2_weights: str | os.PathLike | None = None,
    model_name: str = DINOV2_MODEL,
    image_size: int = 224,
    resize_filter: str = "box",
    seed: int = 0,
    progress: bool = True,
) -> FeatureStatistics:
    """DINOv2 statistics of real images, for
    [`save_statistics`][pixelfold.metrics.statistics.save_statistics] and later
    ``compute_fd_dinov2(G, "stats.npz")``. Arguments as in
    [`compute_fd_dinov2`][pixelfold.metrics.fd_dinov2.compute_fd_dinov2]; ``resolution`` is the
    generator's (``None``: the images' own side)."""
    dev = resolve_device(device)
    extractor = load_dinov2(model_name, weights=dinov2_weights, image_size=image_size).to(dev)
    data = resolve_real(real, resolution, max_images=num_real, resize_filter=resize_filter,
                        seed=seed)
    if isinstance(data, FeatureStatistics):
        raise ValueError("compute_dinov2_statistics needs images, got statistics")
    resolution = image_resolution(data) if resolution is None else resolution
    mu, sigma = _statistics((b.to(dev) for b in _loader(data, batch_size, dev)), extractor,
                            len(data), "DINOv2 statistics", progress)
    metadata = {**describe_real(data), "resolution": resolution,
                "resize_filter": resize_filter, **_protocol(extractor)}
    return FeatureStatistics(mu, sigma, num_images=len(data),
                             feature_extractor=extractor.feature_space, metadata=metadata)
