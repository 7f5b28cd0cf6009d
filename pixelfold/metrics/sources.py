"""Image sources for the metrics: generated images, real images and precomputed statistics.

Every metric network here reads 8-bit RGB, so both sides are quantized the same way:
generated images by [`to_uint8`][pixelfold.metrics.sources.to_uint8] (rounding), images from
files exactly as the training pipeline decodes them (RGB, shorter side resized, center crop),
at the generator's resolution. A grayscale or RGBA generator is compared with its real images
decoded in its own channels, and both sides are then made RGB by one rule
([`to_rgb`][pixelfold.utils.channels.to_rgb]: grayscale repeated into R, G and B, RGBA
composited over white), said once in the log and in the report's protocol
(``image_channels``, ``rgb_conversion``). The generated side may also be images from files
(a folder or dataset of samples) or precomputed statistics: see
[`resolve_generated`][pixelfold.metrics.sources.resolve_generated].
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..utils import DataError
from ..utils.channels import conversion_to_rgb, note_conversion, to_rgb
from .statistics import FeatureStatistics, load_statistics

__all__ = [
    "QUANTIZATION",
    "GeneratedInput",
    "GeneratorSource",
    "RealImages",
    "RealInput",
    "as_generator",
    "describe_real",
    "is_model_folder",
    "is_statistics",
    "resolve_device",
    "resolve_generated",
    "resolve_real",
    "to_uint8",
]

QUANTIZATION = "uint8 by rounding: round((x + 1) * 127.5), clamped to [0, 255]"
"""How generated images in ``[-1, 1]`` become 8-bit images (written into every report)."""

RealInput = Any
"""What ``real`` may be: a Hub dataset id, a local image folder, a ``save_to_disk`` folder,
``"digits"``, a ``datasets.Dataset``, a [`RealImages`][pixelfold.metrics.sources.RealImages]
(or any torch ``Dataset`` of ``(3, H, W)`` uint8 tensors), a
[`FeatureStatistics`][pixelfold.metrics.statistics.FeatureStatistics] or the path of a
statistics ``.npz``."""

GeneratedInput = Any
"""What the generated side may be: a generator (a module, a preset name, a ``save_pretrained``
folder, a Hub model id), images from files (a local folder of images, a ``save_to_disk``
folder, a ``datasets.Dataset``, a torch ``Dataset`` of ``(3, H, W)`` uint8 tensors), or
precomputed statistics (a
[`FeatureStatistics`][pixelfold.metrics.statistics.FeatureStatistics] or an ``.npz`` path)."""


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """Quantize images in ``[-1, 1]`` to uint8 by rounding: ``round((x + 1) * 127.5)``,
    clamped to ``[0, 255]`` (so -1 -> 0, 0 -> 128, 1 -> 255)."""
    return ((images.float() + 1) * 127.5).round_().clamp_(0, 255).to(torch.uint8)


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``device`` as a ``torch.device``; ``None`` picks CUDA when available, else the CPU."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def as_generator(generator: nn.Module | str | os.PathLike) -> nn.Module:
    """A generator module from a module, a preset name, a ``save_pretrained`` folder or a Hub id
    (with ``pixelfold.models.load_generator``)."""
    if isinstance(generator, nn.Module):
        return generator
    from ..models import load_generator

    return load_generator(generator)


def _generator_name(generator: nn.Module) -> str:
    spec = getattr(generator, "spec", None)
    name = getattr(spec, "name", None)
    return str(name) if name else type(generator).__name__


def _generator_resolution(generator: nn.Module) -> int | tuple[int, int]:
    """The side of a square generator, ``(H, W)`` of a rectangular one."""
    resolution = getattr(generator, "resolution", None)
    if resolution is None:
        raise ValueError(f"{type(generator).__name__} has no resolution attribute; the metrics "
                         f"need it to resize the real images")
    return _normal_resolution(resolution)


def _normal_resolution(resolution: Any) -> int | tuple[int, int]:
    """One int for a square, ``(H, W)`` otherwise."""
    if not isinstance(resolution, (tuple, list)):
        return int(resolution)
    h, w = (int(v) for v in resolution)
    return h if h == w else (h, w)


def _as_rgb_uint8(images: torch.Tensor) -> torch.Tensor:
    """Images in ``[-1, 1]`` with 1, 3 or 4 channels as uint8 RGB (``to_rgb``, then
    ``to_uint8``)."""
    return to_uint8(to_rgb(images))


def _channels_protocol(channels: int) -> dict[str, Any]:
    """Protocol entries for images of ``channels`` channels (none for RGB)."""
    if channels == 3:
        return {}
    return {"image_channels": channels, "rgb_conversion": conversion_to_rgb(channels)}


class _Quantized(nn.Module):
    """``z -> to_uint8(to_rgb(G(z)))``: the generator as torch-fidelity sees it."""

    def __init__(self, generator: nn.Module, truncation_psi: float, noise_mode: str) -> None:
        super().__init__()
        self.generator = generator
        self.truncation_psi = truncation_psi
        self.noise_mode = noise_mode

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        device = next(self.generator.parameters()).device
        images = self.generator(z.to(device), truncation_psi=self.truncation_psi,
                                noise_mode=self.noise_mode)
        note_conversion(images.shape[1], "generated images")
        return _as_rgb_uint8(images).to(z.device)


def _cuda_devices(device: torch.device) -> list[int]:
    if device.type != "cuda":
        return []
    return [device.index if device.index is not None else torch.cuda.current_device()]


class GeneratorSource:
    """``num_images`` generated images, reproducible from ``seed``.

    Latents are drawn exactly as torch-fidelity draws them for a generative input (a
    ``numpy.random.RandomState(seed)`` stream of standard normals, consumed batch by batch), so
    iterating over this object and handing ``fidelity_model()`` to torch-fidelity with
    ``rng_seed=seed`` give the same images. The noise inputs of the
    generator (``noise_mode="random"``) come from torch's generator, reseeded with ``seed`` by
    [`seeded`][pixelfold.metrics.sources.GeneratorSource.seeded].

    A class-conditional generator is wrapped in a
    [`ClassConditioned`][pixelfold.metrics.ClassConditioned] that draws the classes uniformly
    (wrap it yourself to choose them); the protocol records them as ``classes``.

    Args:
        generator: a [`Generator`][pixelfold.models.Generator] (anything with ``z_dim``,
            ``resolution`` and ``forward(z, truncation_psi=..., noise_mode=...)``).
        num_images: how many images.
        batch_size: images per generator call.
        seed: seed of the latents and of the noise.
        truncation_psi: truncation (1: none).
        noise_mode: ``"random"``, ``"const"`` or ``"none"``.
        device: where to run the generator (``None``: CUDA if available).
    """

    def __init__(self, generator: nn.Module, *, num_images: int, batch_size: int = 64,
                 seed: int = 0, truncation_psi: float = 1.0, noise_mode: str = "random",
                 device: str | torch.device | None = None) -> None:
        from ..layers import check_noise_mode

        if num_images < 1:
            raise ValueError(f"num_images must be >= 1, got {num_images}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if getattr(generator, "c_dim", 0):
            from .conditional import ClassConditioned

            generator = ClassConditioned(generator)
        self.generator = generator
        self.num_images = int(num_images)
        self.batch_size = min(int(batch_size), self.num_images)
        self.seed = int(seed)
        self.truncation_psi = float(truncation_psi)
        self.noise_mode = check_noise_mode(noise_mode)
        self.device = resolve_device(device)
        self.z_dim = int(generator.z_dim)
        self.resolution = _generator_resolution(generator)
        #: channels of the generator's images (1, 3 or 4); the metrics see them as RGB
        self.image_channels = int(getattr(generator, "image_channels", 3))

    def __len__(self) -> int:
        return self.num_images

    def latents(self) -> Iterator[torch.Tensor]:
        """The latent batches, on the CPU, in float32."""
        rng = np.random.RandomState(self.seed)
        for start in range(0, self.num_images, self.batch_size):
            size = min(self.batch_size, self.num_images - start)
            yield torch.from_numpy(rng.randn(size, self.z_dim)).float()

    @contextmanager
    def running(self) -> Iterator[None]:
        """Move the generator to ``device`` in eval mode; put it back (device, mode) after."""
        params = list(self.generator.parameters())
        old_device = params[0].device if params else self.device
        was_training = self.generator.training
        self.generator.to(self.device).eval()
        try:
            yield
        finally:
            self.generator.to(old_device).train(was_training)

    @contextmanager
    def seeded(self) -> Iterator[None]:
        """Reseed torch's generators with ``seed`` (restored after), so the generator's noise
        is the same on every pass over the images."""
        with torch.random.fork_rng(devices=_cuda_devices(self.device)):
            torch.manual_seed(self.seed)
            yield

    def fidelity_model(self) -> Any:
        """The generator as a ``torch_fidelity.GenerativeModelModuleWrapper`` that outputs
        uint8 images (use with ``input1_model_num_samples=len(self)`` and ``rng_seed=seed``)."""
        import torch_fidelity

        module = _Quantized(self.generator, self.truncation_psi, self.noise_mode)
        return torch_fidelity.GenerativeModelModuleWrapper(module, self.z_dim, "normal", 0)

    @torch.no_grad()
    def images(self, z: torch.Tensor) -> torch.Tensor:
        """uint8 images ``(B, 3, H, W)`` of the latents ``z`` (on ``z``'s device), as
        torch-fidelity gets them."""
        return _Quantized(self.generator, self.truncation_psi, self.noise_mode)(z)

    @torch.no_grad()
    def __iter__(self) -> Iterator[torch.Tensor]:
        """uint8 image batches ``(B, 3, H, W)`` on ``device``."""
        quantized = _Quantized(self.generator, self.truncation_psi, self.noise_mode)
        with self.running(), self.seeded():
            for z in self.latents():
                yield quantized(z.to(self.device))

    def describe(self) -> dict[str, Any]:
        """The protocol of these images, for reports."""
        return {
            "generator": _generator_name(self.generator),
            "resolution": self.resolution,
            "num_generated": self.num_images,
            "seed": self.seed,
            "truncation_psi": self.truncation_psi,
            "noise_mode": self.noise_mode,
            "quantization": QUANTIZATION,
            **_channels_protocol(self.image_channels),
            **({"classes": self.generator.describe()}
               if hasattr(self.generator, "num_classes") else {}),
        }


@functools.lru_cache(maxsize=2)
def _digits(resolution: int) -> Any:
    """scikit-learn's digits as a dataset (built once per resolution: it takes seconds)."""
    from ..training.data import digits_dataset

    return digits_dataset(resolution)


class RealImages(torch.utils.data.Dataset):
    """Real images as ``(3, H, W)`` uint8 tensors.

    Decoded like the training data (see
    [`preprocess_image`][pixelfold.training.data.preprocess_image]: RGB, shorter side resized
    with ``resize_filter``, center crop) and quantized back to uint8 (exactly: the training
    pipeline's floats are ``uint8 / 127.5 - 1``). When the dataset has more than
    ``max_images`` images, a random subset of ``max_images`` (drawn with ``seed``) is used.
    The same class reads a folder of generated images (``role="generated"``): messages and
    protocol entries then say "generated".

    Args:
        dataset: a Hub id, a local image folder, a ``save_to_disk`` folder, ``"digits"``
            (scikit-learn's digits, offline) or a ``datasets.Dataset``.
        resolution: output side, or ``(H, W)`` (the generator's resolution); ``None``: the
            shorter side of the first readable image.
        max_images: cap on the number of images (``None``: all).
        resize_filter: ``"box"``, ``"bilinear"``, ``"bicubic"``, ``"lanczos"`` or ``"nearest"``.
        seed: seed of the subset.
        split: dataset split.
        image_column: image column (auto-detected when ``None``).
        role: ``"real"`` or ``"generated"``: which side of the comparison these images are.
        image_channels: decode the images in these channels first (1, 3 or 4: the
            generator's, as the training data were), then make them RGB with
            [`to_rgb`][pixelfold.utils.channels.to_rgb].
    """

    def __init__(self, dataset: Any, resolution: int | tuple[int, int] | None, *,
                 max_images: int | None = None, resize_filter: str = "box", seed: int = 0,
                 split: str = "train", image_column: str | None = None, role: str = "real",
                 image_channels: int = 3) -> None:
        from ..training.data import RESIZE_FILTERS, ImageDataset, load_image_dataset

        if resize_filter not in RESIZE_FILTERS:
            raise ValueError(f"resize_filter must be one of {sorted(RESIZE_FILTERS)}, got "
                             f"{resize_filter!r}")
        if max_images is not None and max_images < 1:
            raise ValueError(f"max_images must be >= 1, got {max_images}")
        if role not in ("real", "generated"):
            raise ValueError(f"role must be 'real' or 'generated', got {role!r}")
        self.role = role
        given = str(dataset) if isinstance(dataset, (str, os.PathLike)) else None
        if isinstance(dataset, str) and dataset == "digits":
            self.source = "digits (scikit-learn)"
            dataset = _digits(resolution or 32)
        elif isinstance(dataset, (str, os.PathLike)):
            path = Path(dataset)
            self.source = str(path.resolve()) if path.exists() else str(dataset)
            if path.is_dir():
                _check_has_images(path, role)  # before the loader: its messages are vaguer
            try:
                dataset = load_image_dataset(dataset, split=split)
            except Exception as exc:
                if role == "generated" and isinstance(exc, (ValueError, OSError)):
                    raise DataError(f"the generated images {given}: "
                                    f"{' '.join(str(exc).split())}") from None
                raise
        else:
            fingerprint = getattr(dataset, "_fingerprint", None)
            self.source = f"{type(dataset).__name__}" + (f" {fingerprint}" if fingerprint
                                                         else "")
            dataset = load_image_dataset(dataset, split=split)
        if not hasattr(dataset, "__len__"):
            raise ValueError("real images must be a map-style dataset (streaming datasets are "
                             "not supported by the metrics)")
        try:
            conversion_to_rgb(image_channels)  # the check
            self.images = ImageDataset(dataset, resolution or 1, image_column=image_column,
                                       resize_filter=resize_filter,
                                       image_channels=image_channels)
            if resolution is None:
                resolution = _first_image_side(self.images)
                self.images.resolution = resolution
            # fail here, not in a data-loader worker, when no image can be decoded
            self.images[0]
        except (RuntimeError, DataError) as exc:
            raise DataError(f"the {role} images {given or self.source}: {exc} (expected "
                            f"image files that PIL can decode)") from None
        self.resolution = resolution
        self.resize_filter = resize_filter
        self.image_channels = image_channels
        note_conversion(image_channels, f"{role} images")
        self.num_available = len(self.images)
        if max_images is not None and self.num_available > max_images:
            chosen = np.random.default_rng(seed).choice(self.num_available, max_images,
                                                        replace=False)
            self.indices = np.sort(chosen).tolist()
            self.subset = f"random {max_images} of {self.num_available} (seed {seed})"
        else:
            self.indices = list(range(self.num_available))
            self.subset = f"all {self.num_available}"

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, index: int) -> torch.Tensor:
        return _as_rgb_uint8(self.images[self.indices[index]])

    def describe(self) -> dict[str, Any]:
        """The protocol of these images, for reports (keys ``real_*`` and ``num_real``, or
        ``generated_*`` and ``num_generated``)."""
        mode = {1: "grayscale (L)", 3: "RGB", 4: "RGBA"}[self.image_channels]
        if isinstance(self.resolution, (tuple, list)):
            resize = f"scaled to cover {self.resolution[0]}x{self.resolution[1]}"
        else:
            resize = f"shorter side resized to {self.resolution}"
        then = "" if self.image_channels == 3 else \
            f", then RGB ({conversion_to_rgb(self.image_channels)})"
        return {
            f"{self.role}_source": self.source,
            f"num_{self.role}": len(self),
            f"{self.role}_subset": self.subset,
            f"{self.role}_preprocessing": f"{mode}, {resize} with the {self.resize_filter} "
                                          f"filter (PIL), center crop, uint8{then}",
        }


def _first_image_side(images: Any) -> int:
    """The shorter side of the first readable image of an ``ImageDataset`` (its native
    resolution, for a folder of generated images)."""
    from ..training.data import _open

    first = None
    for i in range(len(images.dataset)):
        value = images.dataset[i][images.column]
        try:
            return int(min(_open(value).size))
        except Exception as exc:  # unreadable: try the next, as ImageDataset does
            first = first or exc
    raise DataError(f"none of the {len(images.dataset)} images of the dataset could be read "
                    f"(the first: {type(first).__name__}: {first})")


def _check_has_images(folder: Path, role: str = "real") -> None:
    """Raise ``pixelfold.utils.DataError`` when ``folder`` holds no file with
    an image extension (what the ``imagefolder`` loader looks for), unless it was written by
    ``save_to_disk``."""
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    from ..training.data import _is_saved_dataset

    if _is_saved_dataset(folder):
        return
    extensions = {e.lower() for e in ImageFolder.EXTENSIONS}
    files = []
    for file in folder.rglob("*"):
        if file.is_file():
            if file.suffix.lower() in extensions:
                return
            files.append(file.relative_to(folder).as_posix())
    files.sort()
    found = (f"it holds {len(files)} files, none an image ({', '.join(files[:3])}"
             f"{', ...' if len(files) > 3 else ''})" if files else "it is empty")
    if role == "generated":
        raise DataError(f"the generated images {folder}: {found}; expected a folder of "
                        f"images (.png, .jpg, .webp, ...), a folder written by save_to_disk, "
                        f"a statistics .npz, or a model (a save_pretrained folder with "
                        f"config.json, a preset name or a Hub id)")
    raise DataError(f"the real images {folder}: {found}; expected a folder of images (.png, "
                    f".jpg, .webp, ...), a folder written by save_to_disk, a Hub dataset id, "
                    f"'digits' or a statistics .npz")


def is_statistics(real: RealInput) -> bool:
    """Whether ``real`` is precomputed statistics (an object or an ``.npz`` path)."""
    return isinstance(real, FeatureStatistics) or (
        isinstance(real, (str, os.PathLike)) and str(real).endswith(".npz"))


def resolve_real(real: RealInput, resolution: int | tuple[int, int] | None, *,
                 max_images: int | None, resize_filter: str = "box", seed: int = 0,
                 role: str = "real", image_channels: int = 3
                 ) -> torch.utils.data.Dataset | FeatureStatistics:
    """Turn what the user gave as ``real`` into a uint8 image dataset or statistics.

    A path to an ``.npz`` file is loaded as statistics;
    [`FeatureStatistics`][pixelfold.metrics.statistics.FeatureStatistics] are returned as is,
    torch datasets as is or as a random subset of ``max_images`` (drawn with ``seed``);
    anything else becomes [`RealImages`][pixelfold.metrics.sources.RealImages] (at
    ``resolution``; ``None``: the images' own; decoded in ``image_channels`` then made RGB).
    ``role="generated"`` reads the generated side the same way.
    """
    if isinstance(real, FeatureStatistics):
        return real
    if is_statistics(real):
        return load_statistics(real)
    if isinstance(real, torch.utils.data.Dataset):
        n = len(real)  # type: ignore[arg-type]
        if n == 0:
            raise DataError(f"the {role} images: the dataset is empty")
        if max_images is None or n <= max_images:
            return real
        chosen = np.sort(np.random.default_rng(seed).choice(n, max_images, replace=False))
        subset = torch.utils.data.Subset(real, chosen.tolist())
        subset.subset = f"random {max_images} of {n} (seed {seed})"  # type: ignore[attr-defined]
        return subset
    return RealImages(real, resolution, max_images=max_images, resize_filter=resize_filter,
                      seed=seed, role=role, image_channels=image_channels)


def describe_real(real: torch.utils.data.Dataset, role: str = "real") -> dict[str, Any]:
    """Protocol entries of an image dataset (a generic description for foreign ones); keys
    ``real_*`` / ``num_real``, or ``generated_*`` / ``num_generated`` with ``role``."""
    if isinstance(real, RealImages):
        return real.describe()
    inner = real.dataset if isinstance(real, torch.utils.data.Subset) else real
    n = len(real)  # type: ignore[arg-type]
    return {f"{role}_source": type(inner).__name__, f"num_{role}": n,
            f"{role}_subset": getattr(real, "subset", f"all {n}")}


def image_resolution(images: torch.utils.data.Dataset) -> int:
    """Side of the images of a uint8 dataset (its first image's last dimension)."""
    if isinstance(images, RealImages):
        return images.resolution
    first = images[0]
    if not isinstance(first, torch.Tensor) or first.ndim != 3 or first.shape[0] != 3 \
            or first.dtype != torch.uint8:
        got = (f"{first.dtype} {tuple(first.shape)}" if isinstance(first, torch.Tensor)
               else type(first).__name__)
        raise DataError(f"a torch dataset of images must hold (3, H, W) uint8 tensors, its "
                        f"first item is {got}")
    return int(first.shape[-1])


def is_model_folder(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a folder written by ``save_pretrained`` (it holds a
    ``config.json``)."""
    return (Path(path) / "config.json").is_file()


def resolve_generated(
    generated: GeneratedInput,
    *,
    num_images: int,
    batch_size: int = 64,
    seed: int = 0,
    truncation_psi: float = 1.0,
    noise_mode: str = "random",
    device: str | torch.device | None = None,
    resolution: int | None = None,
    resize_filter: str = "box",
) -> GeneratorSource | torch.utils.data.Dataset | FeatureStatistics:
    """Turn the generated side into a
    [`GeneratorSource`][pixelfold.metrics.sources.GeneratorSource], a uint8 image dataset or
    statistics.

    * a module, a preset name, a Hub model id, a folder holding ``config.json``: the generator
      (``num_images`` images from ``seed``, ``truncation_psi``, ``noise_mode``);
    * a [`FeatureStatistics`][pixelfold.metrics.statistics.FeatureStatistics] or an ``.npz``
      path: the statistics;
    * any other folder, a ``datasets.Dataset``, a torch ``Dataset``: images, at most
      ``num_images`` (a random subset drawn with ``seed``), at ``resolution`` (``None``: the
      images' own side).

    Raises:
        ValueError: ``resolution`` differs from the generator's; a file that is neither
            statistics nor a folder.
        DataError: a folder without images, images that cannot be decoded.
    """
    import datasets

    if isinstance(generated, (str, os.PathLike)) and not is_statistics(generated):
        path = Path(generated)
        if path.is_file():
            raise DataError(f"the generated images {generated} is a file; expected a model, a "
                            f"folder of images or a statistics .npz")
        if path.is_dir() and not is_model_folder(path):
            return resolve_real(generated, resolution, max_images=num_images,
                                resize_filter=resize_filter, seed=seed, role="generated")
    if isinstance(generated, (str, os.PathLike, nn.Module)) and not is_statistics(generated):
        source = GeneratorSource(as_generator(generated), num_images=num_images,
                                 batch_size=batch_size, seed=seed,
                                 truncation_psi=truncation_psi, noise_mode=noise_mode,
                                 device=device)
        if resolution is not None and _normal_resolution(resolution) != source.resolution:
            raise ValueError(f"resolution {resolution} differs from the generator's "
                             f"{source.resolution}: the real images are resized to the "
                             f"generator's resolution (leave resolution=None)")
        return source
    if isinstance(generated, (datasets.Dataset, datasets.DatasetDict)):
        return RealImages(generated, resolution, max_images=num_images,
                          resize_filter=resize_filter, seed=seed, role="generated")
    return resolve_real(generated, resolution, max_images=num_images,
                        resize_filter=resize_filter, seed=seed, role="generated")
