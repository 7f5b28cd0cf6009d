"""Perceptual path length (PPL, Karras et al. 2019) with torch-fidelity's LPIPS-VGG16.

For pairs of latents ``(a, b)``, PPL is the mean of
``LPIPS(G(lerp(a, b, t)), G(lerp(a, b, t + eps))) / eps²`` after discarding the values below the
1st and above the 99th percentile. The defaults follow torch-fidelity's protocol, which the
PixelFolder paper used (PPL 197 on FFHQ): Z space, linear interpolation, ``t = 0``
(``sampling="end"``), no crop, images quantized to uint8 and resized to 64x64 for LPIPS.
StyleGAN's protocols are close to ``space="w", sampling="full", quantize=False,
resize=None`` (and ``crop=True`` for faces) for StyleGAN2's PPL-W, and ``space="z",
sampling="full", interpolation="slerp", quantize=False, resize=None`` for PPL-Z.

torch-fidelity's own PPL cannot run on numpy >= 2.4 (its percentile trimming passes
``interpolation=``, an argument numpy removed), and it interpolates only the input latents,
so the path is walked here and only the LPIPS network is torch-fidelity's (built from weights
files that pixelfold reads as tensors only and verifies).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..utils import NonFiniteError
from ..utils.channels import note_conversion, to_rgb
from .networks import lpips_network, read_fidelity_weights, read_lpips_weights
from .report import MetricsReport
from .sources import (
    QUANTIZATION,
    _channels_protocol,
    _cuda_devices,
    _generator_name,
    as_generator,
    resolve_device,
    to_uint8,
)
from .weights import LPIPS_WEIGHTS, VGG16_WEIGHTS, file_sha256, resolve_weights

__all__ = ["compute_ppl", "lpips_vgg16", "trim_percentiles"]

Similarity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def trim_percentiles(values: Any, lower: float | None = 1.0,
                     upper: float | None = 99.0) -> np.ndarray:
    """Keep the values between the ``lower`` and ``upper`` percentiles (inclusive).

    The bounds are data points: the ``lower`` percentile rounded down to a sample
    (``numpy.percentile(..., method="lower")``) and the ``upper`` one rounded up
    (``method="higher"``), as in StyleGAN's and torch-fidelity's PPL. (Those call
    ``interpolation=``, which numpy 2.4 removed; ``method=`` exists since numpy 1.22.)

    Args:
        values: 1-D values.
        lower: lower percentile in ``(0, 100)`` (``None``: no lower cut).
        upper: upper percentile (``None``: no upper cut).
    """
    v = np.asarray(values, dtype=np.float64).ravel()
    for name, q in (("lower", lower), ("upper", upper)):
        if q is not None and not 0 < q < 100:
            raise ValueError(f"{name} percentile must be in (0, 100), got {q}")
    if lower is not None and upper is not None and lower >= upper:
        raise ValueError(f"lower percentile {lower} must be below upper {upper}")
    keep = np.ones(v.shape, dtype=bool)
    if lower is not None:
        keep &= v >= np.percentile(v, lower, method="lower")
    if upper is not None:
        keep &= v <= np.percentile(v, upper, method="higher")
    return v[keep]


def lpips_vgg16(*, lpips_weights: str | os.PathLike | None = None,
                vgg16_weights: str | os.PathLike | None = None, resize: int | None = 64,
                uint8: bool = True, progress: bool = True) -> nn.Module:
    """torch-fidelity's LPIPS-VGG16 (``SampleSimilarityLPIPS``), built from local files.

    ``module(a, b)`` returns the LPIPS distance of each pair of images in ``[0, 255]``. Both
    files are read by pixelfold as tensors only and checked (names, shapes, finiteness) before
    the network is built from them (see
    [`lpips_network`][pixelfold.metrics.networks.lpips_network]); nothing in them can run code.

    Args:
        lpips_weights: the LPIPS linear layers (torch-fidelity's ``weights-vgg16-lpips.pth``;
            ``None``: ``PIXELFOLD_LPIPS_WEIGHTS``, else downloaded).
        vgg16_weights: the VGG16 backbone (torchvision's ``vgg16-397923af.pth``; ``None``:
            ``PIXELFOLD_VGG16_WEIGHTS``, else downloaded).
        resize: side the images are resized to before LPIPS (``None``: as they are).
        uint8: expect uint8 images (else floats in ``[0, 255]``).
        progress: show download progress.

    Raises:
        MissingWeightsError: a file is neither given nor downloadable.
        ValueError: a file is not the network's tensors (the message names it).
    """
    lpips_path = resolve_weights(LPIPS_WEIGHTS, lpips_weights, progress=progress)
    vgg_path = resolve_weights(VGG16_WEIGHTS, vgg16_weights, progress=progress)
    module = lpips_network(read_lpips_weights(lpips_path),
                           read_fidelity_weights("vgg16", vgg_path), resize=resize,
                           dtype="uint8" if uint8 else None)
    return module.eval().requires_grad_(False)


def _lerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return a + (b - a) * t


def _slerp(a: torch.Tensor, b: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """Spherical interpolation of the directions of ``a`` and ``b`` (unit-norm result)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    d = (a * b).sum(-1, keepdim=True).clamp(-1, 1)
    angle = t * torch.acos(d)
    c = b - d * a
    c = c / c.norm(dim=-1, keepdim=True).clamp_min(1e-12)
    out = a * torch.cos(angle) + c * torch.sin(angle)
    return out / out.norm(dim=-1, keepdim=True)


def _face_crop(images: torch.Tensor) -> torch.Tensor:
    """StyleGAN's FFHQ crop: rows 3/8..7/8, columns 2/8..6/8 (the face, without background)."""
    c = images.shape[2] // 8
    return images[:, :, c * 3:c * 7, c * 2:c * 6]


def compute_ppl(
    generator: nn.Module | str | os.PathLike,
    *,
    space: str = "z",
    num_samples: int = 50_000,
    epsilon: float = 1e-4,
    sampling: str = "end",
    crop: bool = False,
    interpolation: str = "lerp",
    resize: int | None = 64,
    quantize: bool = True,
    batch_size: int = 32,
    device: str | torch.device | None = None,
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "const",
    lpips_weights: str | os.PathLike | None = None,
    vgg16_weights: str | os.PathLike | None = None,
    similarity: Similarity | None = None,
    progress: bool = True,
) -> MetricsReport:
    """Perceptual path length of ``generator``.

    Args:
        generator: a [`Generator`][pixelfold.models.Generator] (``mapping``, ``synthesis``,
            ``z_dim``), a preset name, a ``save_pretrained`` folder or a Hub id.
        space: ``"z"`` (interpolate latents, then map them) or ``"w"`` (interpolate mapped
            ``w``).
        num_samples: number of latent pairs.
        epsilon: step between the two images of a pair.
        sampling: ``"end"`` (``t = 0``, torch-fidelity) or ``"full"`` (``t ~ U(0, 1)``,
            StyleGAN).
        crop: crop to the face as StyleGAN does for FFHQ.
        interpolation: ``"lerp"`` or ``"slerp"`` (Z space only) for the latents.
        resize: side the images are resized to for LPIPS (``None``: keep).
        quantize: quantize images to uint8 by rounding before LPIPS (torch-fidelity);
            ``False`` keeps floats in ``[0, 255]`` (StyleGAN).
        batch_size: pairs per batch.
        device: where to run (``None``: CUDA when available).
        seed: seed of the latents, of ``t`` and of the noise.
        truncation_psi: truncation (1: none).
        noise_mode: ``"const"`` (default, as StyleGAN2), ``"none"`` or ``"random"`` (the two
            images of a pair then share their noise).
        lpips_weights: local LPIPS linear-layer weights (``None``: ``PIXELFOLD_LPIPS_WEIGHTS``,
            else downloaded).
        vgg16_weights: local VGG16 weights for LPIPS (``None``: ``PIXELFOLD_VGG16_WEIGHTS``,
            else downloaded).
        similarity: a distance ``f(images_a, images_b) -> (B,)`` used instead of LPIPS (it
            receives uint8 images, or floats in ``[0, 255]`` when ``quantize=False``).
        progress: show a progress bar.

    Returns:
        A [`MetricsReport`][pixelfold.metrics.report.MetricsReport] with ``ppl``, ``ppl_std`` and
        ``protocol["ppl"]``.

    Raises:
        MissingWeightsError: an LPIPS or VGG16 file is neither given nor downloadable.
        ValueError: a weights file is not the network's tensors (the message names it), bad
            arguments, or path lengths that are not finite (``NonFiniteError``).
    """
    from ..layers import check_noise_mode

    if space not in ("z", "w"):
        raise ValueError(f"space must be 'z' or 'w', got {space!r}")
    if sampling not in ("end", "full"):
        raise ValueError(f"sampling must be 'end' or 'full', got {sampling!r}")
    if interpolation not in ("lerp", "slerp"):
        raise ValueError(f"interpolation must be 'lerp' or 'slerp', got {interpolation!r}")
    if interpolation == "slerp" and space == "w":
        raise ValueError("slerp is for Z space; W space interpolates linearly")
    if not epsilon > 0:
        raise ValueError(f"epsilon must be > 0, got {epsilon}")
    if num_samples < 1 or batch_size < 1:
        raise ValueError(f"num_samples and batch_size must be >= 1, got {num_samples} and "
                         f"{batch_size}")
    check_noise_mode(noise_mode)
    started = time.perf_counter()
    dev = resolve_device(device)
    G = as_generator(generator)
    protocol: dict[str, Any] = {
        "generator": _generator_name(G),
        "resolution": getattr(G, "resolution", None),
        "space": space.upper(),
        "num_samples": num_samples,
        "epsilon": epsilon,
        "sampling": "end (t = 0)" if sampling == "end" else "full (t ~ U(0, 1))",
        "interpolation": interpolation if space == "z" else "lerp",
        "crop": "StyleGAN face crop" if crop else "none",
        "quantization": QUANTIZATION if quantize else "none (float images in [0, 255])",
        "seed": seed,
        "truncation_psi": truncation_psi,
        "noise_mode": noise_mode + (" (shared by the two images of a pair)"
                                    if noise_mode == "random" else ""),
        **_channels_protocol(int(getattr(G, "image_channels", 3))),
    }
    if similarity is None:
        files = {spec.argument: resolve_weights(spec, path, progress=progress)
                 for spec, path in ((LPIPS_WEIGHTS, lpips_weights),
                                    (VGG16_WEIGHTS, vgg16_weights))}
        similarity = lpips_vgg16(lpips_weights=files["lpips_weights"],
                                 vgg16_weights=files["vgg16_weights"], resize=resize,
                                 uint8=quantize, progress=progress)
        protocol["similarity"] = ("lpips-vgg16 (torch-fidelity)"
                                  + (f", images resized to {resize}x{resize}" if resize else ""))
        for name, path in files.items():
            protocol[name] = str(path)
            protocol[f"{name}_sha256"] = file_sha256(path)
    else:
        protocol["similarity"] = getattr(similarity, "__name__", type(similarity).__name__)
    if isinstance(similarity, nn.Module):
        similarity = similarity.to(dev)

    distances = _path_lengths(G, similarity, space=space, num_samples=num_samples,
                              epsilon=epsilon, sampling=sampling, crop=crop,
                              interpolation=interpolation, quantize=quantize,
                              batch_size=batch_size, device=dev, seed=seed,
                              truncation_psi=truncation_psi, noise_mode=noise_mode,
                              progress=progress)
    if not np.isfinite(distances).all():
        raise NonFiniteError(f"{int((~np.isfinite(distances)).sum())} of {distances.size} path "
                             f"lengths are not finite (NaN or infinity), so PPL cannot be "
                             f"reported: check the generator's outputs")
    kept = trim_percentiles(distances, 1.0, 99.0)
    protocol["discard"] = ("below the 1st and above the 99th percentile (numpy methods "
                           "'lower' / 'higher')")
    protocol["num_kept"] = int(kept.size)
    protocol["device"] = str(dev)
    protocol["seconds"] = round(time.perf_counter() - started, 2)
    return MetricsReport(ppl=float(kept.mean()), ppl_std=float(kept.std()),
                         protocol={"ppl": protocol})


@torch.no_grad()
def _path_lengths(G: nn.Module, similarity: Similarity, *, space: str, num_samples: int,
                  epsilon: float, sampling: str, crop: bool, interpolation: str,
                  quantize: bool, batch_size: int, device: torch.device, seed: int,
                  truncation_psi: float, noise_mode: str, progress: bool) -> np.ndarray:
    """``similarity(G(a_t), G(a_{t+eps})) / eps²`` for ``num_samples`` pairs, in float64."""
    interp = _slerp if interpolation == "slerp" else _lerp
    rng = torch.Generator().manual_seed(seed)
    params = list(G.parameters())
    old_device = params[0].device if params else device
    was_training = G.training
    G.to(device).eval()

    def synthesize(ws: torch.Tensor, noise_seed: int) -> torch.Tensor:
        if noise_mode != "random":
            return G.synthesis(ws, noise_mode=noise_mode)
        with torch.random.fork_rng(devices=_cuda_devices(device)):
            torch.manual_seed(noise_seed)
            return G.synthesis(ws, noise_mode="random")

    def to_pixels(images: torch.Tensor) -> torch.Tensor:
        note_conversion(images.shape[1], "PPL")
        images = to_rgb(images)  # LPIPS reads RGB
        if crop:
            images = _face_crop(images)
        if quantize:
            return to_uint8(images)
        return (images.float() + 1) * 127.5

    out = []
    try:
        with tqdm(total=num_samples, desc="PPL", unit="pairs", disable=not progress) as bar:
            for start in range(0, num_samples, batch_size):
                size = min(batch_size, num_samples - start)
                z = torch.randn(2, size, G.z_dim, generator=rng)
                t = torch.rand(size, 1, generator=rng) if sampling == "full" \
                    else torch.zeros(size, 1)
                noise_seed = int(torch.randint(2**62, (1,), generator=rng))
                z, t = z.to(device), t.to(device)
                if space == "z":
                    za, zb = interp(z[0], z[1], t), interp(z[0], z[1], t + epsilon)
                    ws = G.mapping(torch.cat([za, zb]), truncation_psi=truncation_psi)
                    ws_a, ws_b = ws.chunk(2)
                else:
                    w = G.mapping(z.flatten(0, 1), truncation_psi=truncation_psi)
                    w0, w1 = w.chunk(2)
                    t3 = t.view(size, *([1] * (w0.ndim - 1)))
                    ws_a, ws_b = _lerp(w0, w1, t3), _lerp(w0, w1, t3 + epsilon)
                if noise_mode == "random":
                    img_a, img_b = synthesize(ws_a, noise_seed), synthesize(ws_b, noise_seed)
                else:
                    img_a, img_b = synthesize(torch.cat([ws_a, ws_b]), noise_seed).chunk(2)
                d = similarity(to_pixels(img_a), to_pixels(img_b))
                out.append(d.reshape(size).double().cpu() / epsilon ** 2)
                bar.update(size)
    finally:
        G.to(old_device).train(was_training)
    return torch.cat(out).numpy()
