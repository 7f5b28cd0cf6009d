"""Image datasets for GAN training on Hugging Face Datasets.

[`load_image_dataset`][pixelfold.training.data.load_image_dataset] opens a Hub dataset, a
local image folder (``imagefolder``) or a folder written by ``Dataset.save_to_disk``;
[`ImageDataset`][pixelfold.training.data.ImageDataset] decodes, converts to the model's
channels (grayscale, RGB or RGBA: see
[`preprocess_image`][pixelfold.training.data.preprocess_image]), resizes, center-crops to
``H x W`` and scales images to ``[-1, 1]``, skipping unreadable or truncated files (each skip
is counted; the first one is reported with one warning).

For class-conditional training, [`dataset_classes`][pixelfold.training.data.dataset_classes]
finds the label column (a ``ClassLabel``, such as the ``label`` column the ``imagefolder``
builder makes from one subfolder per class, or an integer column) and the classes; the image
datasets then yield ``(image, class)`` pairs.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageFile

from ..utils.errors import DataError

__all__ = [
    "RESIZE_FILTERS",
    "DatasetClasses",
    "ImageDataset",
    "convert_image",
    "IterableImageDataset",
    "dataset_classes",
    "digits_dataset",
    "find_image_column",
    "load_image_dataset",
    "preprocess_image",
]

logger = logging.getLogger(__name__)

#: Resize filters by name. ``box`` is the default: NVlabs recommend it for downscaling FFHQ.
RESIZE_FILTERS = {
    "box": Image.Resampling.BOX,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "nearest": Image.Resampling.NEAREST,
}


def _is_saved_dataset(path: Path) -> bool:
    return (path / "dataset_info.json").is_file() or (path / "dataset_dict.json").is_file() \
        or (path / "state.json").is_file()


def load_image_dataset(
    dataset: str | os.PathLike | Any,
    *,
    split: str = "train",
    streaming: bool = False,
    cache_dir: str | None = None,
) -> Any:
    """Open an image dataset.

    Args:
        dataset: a Hub id (``"user/name"``), a local folder of images (loaded with the
            ``imagefolder`` builder), a folder written by ``save_to_disk``, or an already
            loaded ``datasets.Dataset`` / ``IterableDataset`` (returned as is).
        split: the split to use.
        streaming: stream instead of downloading (Hub and image folders).
        cache_dir: datasets cache folder.

    Returns:
        The split as a ``datasets.Dataset`` (an ``IterableDataset`` when streaming).
    """
    import datasets

    if isinstance(dataset, (datasets.Dataset, datasets.IterableDataset)):
        return dataset
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise ValueError(f"split {split!r} not in the dataset (has {list(dataset)})")
        return dataset[split]
    path = Path(dataset)
    if path.is_dir():
        if _is_saved_dataset(path):
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                if split not in loaded:
                    raise ValueError(f"split {split!r} not in {path} (has {list(loaded)})")
                loaded = loaded[split]
            return loaded.to_iterable_dataset() if streaming else loaded
        if not any(p.is_file() for p in path.rglob("*") if not p.name.startswith(".")):
            raise DataError(f"--dataset {path} holds no files: put the training images there")
        try:
            return datasets.load_dataset("imagefolder", data_dir=str(path), split=split,
                                         streaming=streaming, cache_dir=cache_dir)
        except (FileNotFoundError, ValueError) as exc:
            raise DataError(f"--dataset {path}: no images found that the imagefolder loader "
                            f"reads ({' '.join(str(exc).split())[:300]})") from None
    if path.exists():
        raise DataError(f"--dataset {dataset} is a file; give a folder of images, a saved "
                        f"dataset folder or a Hub id")
    text = str(dataset)
    if text.count("/") > 1 or text.startswith((".", "/", "~")):
        raise FileNotFoundError(f"no such dataset folder: {dataset}")
    try:
        return datasets.load_dataset(text, split=split, streaming=streaming, cache_dir=cache_dir)
    except Exception as exc:
        raise FileNotFoundError(
            f"--dataset {text!r} is not a local folder and could not be loaded from the "
            f"Hugging Face Hub ({type(exc).__name__}: {' '.join(str(exc).split())[:300]})"
        ) from None


def find_image_column(features: Any, image_column: str | None = None) -> str:
    """The name of the image column: ``image_column`` if given (checked), else the first
    column whose feature is ``datasets.Image``."""
    import datasets

    names = list(features) if features is not None else []
    if image_column is not None:
        if features is not None and image_column not in names:
            raise ValueError(f"--image-column {image_column!r} is not a column of the dataset "
                             f"(columns: {names})")
        return image_column
    for name in names:
        if isinstance(features[name], datasets.Image):
            return name
    raise ValueError(f"the dataset has no image column (columns: {names}); pass --image-column")


@dataclass(frozen=True)
class DatasetClasses:
    """The classes of a labelled dataset.

    Args:
        column: the label column.
        names: the name of each class, index order (a ``ClassLabel``'s names; ``"0"``,
            ``"1"``, ... for an integer column).
        counts: images per class (``None`` for a streamed dataset, whose labels are not read
            ahead).
    """

    column: str
    names: tuple[str, ...]
    counts: tuple[int, ...] | None = None

    @property
    def num_classes(self) -> int:
        """How many classes (the ``c_dim`` of a model trained on them)."""
        return len(self.names)


def dataset_classes(dataset: Any, class_column: str | None = None) -> DatasetClasses:
    """The label column and classes of a ``datasets.Dataset`` (or ``IterableDataset``).

    The column is ``class_column`` if given, else the first ``ClassLabel`` column (an image
    folder with one subfolder per class gets one, ``label``, from the ``imagefolder`` builder:
    the classes are the sorted subfolder names), else an integer column called ``label`` or
    ``labels``. A ``ClassLabel`` gives the classes and their names; an integer column of a
    map-style dataset has the classes ``0 .. max`` (named by their numbers).

    Raises:
        DataError: no such column, no label column found, a column that holds neither
            ``ClassLabel`` nor integer values, negative labels, or an integer column of a
            streamed dataset (whose number of classes cannot be known without reading it
            all).
    """
    import datasets

    features = dataset.features
    names = list(features) if features is not None else []
    if class_column is not None:
        if features is not None and class_column not in names:
            raise DataError(f"--class-column {class_column!r} is not a column of the dataset "
                            f"(columns: {names})")
        column = class_column
    else:
        found = [n for n in names if isinstance(features[n], datasets.ClassLabel)]
        found += [n for n in ("label", "labels") if n in names and n not in found]
        if not found:
            raise DataError(f"--cond: the dataset has no label column (columns: {names}): "
                            f"pass --class-column, or use an image folder with one subfolder "
                            f"per class")
        column = found[0]
    feature = features[column] if features is not None else None
    streaming = isinstance(dataset, datasets.IterableDataset)
    if isinstance(feature, datasets.ClassLabel):
        counts = None
        if not streaming:
            values = np.asarray(dataset[column], dtype=np.int64)
            if values.size and values.min() < 0:
                raise DataError(f"--class-column {column}: {int((values < 0).sum())} image(s) "
                                f"have no class (label -1)")
            if values.size and values.max() >= feature.num_classes:
                raise DataError(f"--class-column {column}: label {int(values.max())} is out of "
                                f"range for its {feature.num_classes} class names")
            counts = tuple(np.bincount(values, minlength=feature.num_classes).tolist())
        return DatasetClasses(column, tuple(str(n) for n in feature.names), counts)
    dtype = getattr(feature, "dtype", None)
    if not (isinstance(feature, datasets.Value) and ("int" in str(dtype))):
        raise DataError(f"--class-column {column}: the column holds {feature}, not class "
                        f"labels (a ClassLabel or integers)")
    if streaming:
        raise DataError(f"--class-column {column}: a streamed dataset needs a ClassLabel "
                        f"column (its names give the classes); this one holds integers")
    values = np.asarray(dataset[column], dtype=np.int64)
    if values.size == 0:
        raise DataError("the dataset is empty")
    if values.min() < 0:
        raise DataError(f"--class-column {column}: labels must be >= 0, got "
                        f"{int(values.min())}")
    counts = np.bincount(values)
    return DatasetClasses(column, tuple(str(i) for i in range(len(counts))),
                          tuple(counts.tolist()))


def preprocess_image(
    image: Image.Image,
    resolution: int | tuple[int, int],
    *,
    resize_filter: str = "box",
    jpeg_quality: int | None = None,
    image_channels: int = 3,
) -> torch.Tensor:
    """Convert one PIL image to an ``(image_channels, H, W)`` float tensor in ``[-1, 1]``.

    ``resolution`` is one side (a square) or ``(H, W)``. The image is scaled so that it covers
    ``H x W`` (for a square: its shorter side resized to ``resolution``) with
    ``resize_filter``, then the center is cropped. ``jpeg_quality`` re-encodes the image as
    JPEG first (the PixelFolder authors trained on images re-encoded at quality 85; an alpha
    channel is kept as it is, JPEG having none).

    One rule converts any image to the model's ``image_channels``: transparency is composited
    over white when the model has no alpha channel, color becomes luma when it has no color.

    * 3 (RGB): grayscale, CMYK and palette images become RGB; RGBA, LA and transparent palette
      images are composited over white.
    * 1 (grayscale): as for RGB, then PIL's ITU-R 601-2 luma ``L = 0.299 R + 0.587 G +
      0.114 B``.
    * 4 (RGBA, straight alpha): images with transparency (RGBA, LA, palette) keep it; images
      without get an opaque alpha (255); grayscale is repeated into R, G and B.

    Single-channel images of more than 8 bits keep their precision: 16-bit integer images
    (modes ``I;16*``, and ``I``, which is how Pillow opens 16-bit PNGs) are read as
    ``0..65535``, floating-point images (mode ``F``, e.g. float TIFFs) as ``0..1``; values
    outside that range are an error naming them, not a silent clip. (Pillow reads 16-bit RGB
    files as 8-bit RGB.)
    """
    if resize_filter not in RESIZE_FILTERS:
        raise ValueError(f"resize_filter must be one of {sorted(RESIZE_FILTERS)}, "
                         f"got {resize_filter!r}")
    if image_channels not in (1, 3, 4):
        raise ValueError(f"image_channels must be 1, 3 or 4, got {image_channels!r}")
    size = _size(resolution)
    if image.mode.startswith("I") or image.mode == "F":
        return _preprocess_high_depth(image, size, resize_filter, jpeg_quality, image_channels)
    image = convert_image(image, image_channels)
    if jpeg_quality is not None:
        image = _jpeg(image, jpeg_quality)
    image = _resize_and_crop(image, size, resize_filter)
    array = np.asarray(image, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    tensor = torch.from_numpy(array.copy()).permute(2, 0, 1).float()
    return tensor / 127.5 - 1.0


def convert_image(image: Image.Image, image_channels: int = 3) -> Image.Image:
    """An 8-bit PIL image in the mode of ``image_channels`` (``L``, ``RGB`` or ``RGBA``), by
    the rule of [`preprocess_image`][pixelfold.training.data.preprocess_image]: transparency
    composited over white unless the model has alpha, luma unless it has color, an opaque
    alpha for images without one."""
    if image_channels not in (1, 3, 4):
        raise ValueError(f"image_channels must be 1, 3 or 4, got {image_channels!r}")
    if image.mode == "P":
        image = image.convert("RGBA")
    if image_channels == 4:
        return image if image.mode == "RGBA" else image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image.convert("RGBA"))
    if image.mode != "RGB" and not (image_channels == 1 and image.mode == "L"):
        image = image.convert("RGB")
    mode = "L" if image_channels == 1 else "RGB"
    return image if image.mode == mode else image.convert(mode)


def _size(resolution: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    """``(H, W)`` of a side or a pair."""
    if isinstance(resolution, (tuple, list)):
        h, w = resolution
        return int(h), int(w)
    return int(resolution), int(resolution)


def _jpeg(image: Image.Image, quality: int) -> Image.Image:
    """``image`` re-encoded as JPEG at ``quality``; an alpha channel is kept as it is."""
    alpha = image.getchannel("A") if image.mode == "RGBA" else None
    buf = io.BytesIO()
    image.convert("RGB" if alpha is not None else image.mode).save(buf, format="JPEG",
                                                                    quality=quality)
    buf.seek(0)
    decoded = Image.open(buf).convert("RGB" if image.mode != "L" else "L")
    if alpha is not None:
        decoded.putalpha(alpha)
    return decoded


def _resize_and_crop(image: Image.Image, resolution: int | tuple[int, int],
                     resize_filter: str) -> Image.Image:
    """Scaled to cover ``(H, W)`` (a square: the shorter side resized to it), then the
    center ``H x W``."""
    out_h, out_w = _size(resolution)
    w, h = image.size
    scale = max(out_w / w, out_h / h)
    new_size = (max(out_w, round(w * scale)), max(out_h, round(h * scale)))
    if new_size != (w, h):
        image = image.resize(new_size, RESIZE_FILTERS[resize_filter])
    w, h = image.size
    left, top = (w - out_w) // 2, (h - out_h) // 2
    return image.crop((left, top, left + out_w, top + out_h))


def _preprocess_high_depth(image: Image.Image, size: tuple[int, int], resize_filter: str,
                           jpeg_quality: int | None, image_channels: int) -> torch.Tensor:
    """Grayscale images of 16-bit integers or 32-bit floats, scaled to ``[-1, 1]`` without
    going through 8 bits (unless JPEG re-encoding asks for it); repeated into R, G and B for
    color models, with an opaque alpha for RGBA ones."""
    array = np.asarray(image, dtype=np.float64)
    full = 1.0 if image.mode == "F" else 65535.0
    lo, hi = float(array.min()), float(array.max())
    if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0 or hi > full:
        kind = "float image values must be in [0, 1]" if image.mode == "F" else \
            "16-bit image values must be in [0, 65535]"
        raise ValueError(f"{kind}; this {image.mode} image has values in [{lo:g}, {hi:g}]")
    gray = Image.fromarray((array * (255.0 / full)).astype(np.float32), mode="F")
    if jpeg_quality is not None:
        eight = Image.fromarray(np.asarray(gray).round().clip(0, 255).astype(np.uint8), "L")
        return preprocess_image(eight, size, resize_filter=resize_filter,
                                jpeg_quality=jpeg_quality, image_channels=image_channels)
    gray = _resize_and_crop(gray, size, resize_filter)
    plane = torch.from_numpy(np.asarray(gray, dtype=np.float32).copy()).clamp(0, 255)
    plane = plane / 127.5 - 1.0
    if image_channels == 1:
        return plane[None].contiguous()
    color = plane.expand(3, -1, -1)
    if image_channels == 4:
        color = torch.cat([color, torch.ones_like(plane)[None]])
    return color.contiguous()


def _open(value: Any) -> Image.Image:
    """Open an image from what a datasets ``Image(decode=False)`` column holds."""
    if isinstance(value, Image.Image):
        image = value
    elif isinstance(value, dict):
        if value.get("bytes") is not None:
            image = Image.open(io.BytesIO(value["bytes"]))
        elif value.get("path"):
            image = Image.open(value["path"])
        else:
            raise ValueError("empty image entry")
    elif isinstance(value, (str, os.PathLike)):
        image = Image.open(value)
    else:
        raise ValueError(f"cannot read an image from a {type(value).__name__}")
    image.load()  # decode now: truncated files fail here, not later
    return image


def _describe(value: Any) -> str:
    if isinstance(value, dict) and value.get("path"):
        return str(value["path"])
    return f"<{type(value).__name__}>"


class _SkipCounter:
    def __init__(self) -> None:
        self.skipped = 0

    def skip(self, where: str, exc: Exception) -> None:
        self.skipped += 1
        if self.skipped == 1:
            logger.warning("skipping unreadable image %s (%s: %s); further skips are counted "
                           "silently", where, type(exc).__name__, exc)


class ImageDataset(torch.utils.data.Dataset):
    """Map-style dataset of preprocessed images from a ``datasets.Dataset``.

    Unreadable images are replaced by the next readable one (so batches keep their size) and
    counted in ``skipped``.

    Args:
        dataset: a ``datasets.Dataset`` with an image column.
        resolution: output side, or ``(H, W)``.
        image_column: image column name (auto-detected when ``None``).
        resize_filter: see [`preprocess_image`][pixelfold.training.data.preprocess_image].
        jpeg_quality: optional JPEG re-encoding quality.
        image_channels: channels of the output (1, 3 or 4): every image is converted to them
            as [`preprocess_image`][pixelfold.training.data.preprocess_image] says.
        label_column: a label column (see
            [`dataset_classes`][pixelfold.training.data.dataset_classes]): items are then
            ``(image, class)`` pairs, the class an int.
    """

    def __init__(self, dataset: Any, resolution: int | tuple[int, int], *,
                 image_column: str | None = None, resize_filter: str = "box",
                 jpeg_quality: int | None = None, image_channels: int = 3,
                 label_column: str | None = None) -> None:
        import datasets

        self.column = find_image_column(dataset.features, image_column)
        if isinstance(dataset.features[self.column], datasets.Image):
            dataset = dataset.cast_column(self.column, datasets.Image(decode=False))
        self.label_column = label_column
        self.dataset = dataset.select_columns([self.column]
                                              + ([label_column] if label_column else []))
        if len(self.dataset) == 0:
            raise DataError("the dataset is empty")
        self.resolution = resolution
        self.resize_filter = resize_filter
        self.jpeg_quality = jpeg_quality
        self.image_channels = image_channels
        self._counter = _SkipCounter()
        self._bad: set[int] = set()
        ImageFile.LOAD_TRUNCATED_IMAGES = False

    @property
    def skipped(self) -> int:
        """How many unreadable images were met (in this process)."""
        return self._counter.skipped

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> torch.Tensor | tuple[torch.Tensor, int]:
        n = len(self.dataset)
        for offset in range(n):
            i = (index + offset) % n
            if i in self._bad:
                continue
            row = self.dataset[i]
            try:
                return _row_item(self, row)
            except Exception as exc:  # unreadable, truncated, unsupported
                self._bad.add(i)
                self._counter.skip(_describe(row[self.column]), exc)
        raise DataError(f"none of the {n} images of the dataset could be read")

    def probe(self) -> None:
        """Check that the dataset has a readable image, reading as few as it takes (one, for a
        healthy dataset).

        Raises:
            DataError: not one image can be read; the message names the first failure.
        """
        first: str | None = None
        for i in range(len(self.dataset)):
            value = self.dataset[i][self.column]
            try:
                preprocess_image(_open(value), self.resolution, resize_filter=self.resize_filter,
                                 jpeg_quality=self.jpeg_quality,
                                 image_channels=self.image_channels)
                return
            except Exception as exc:  # unreadable, truncated, unsupported
                self._bad.add(i)
                self._counter.skip(_describe(value), exc)
                if first is None:
                    first = f"{_describe(value)}: {type(exc).__name__}: {exc}"
        raise DataError(f"none of the {len(self.dataset)} files of the dataset is a readable "
                        f"image (the first: {' '.join(str(first).split())[:300]})")


def _row_item(ds: ImageDataset | IterableImageDataset,
              row: dict[str, Any]) -> torch.Tensor | tuple[torch.Tensor, int]:
    """One dataset row as the item ``ds`` gives: the image decoded and preprocessed with
    ``ds``'s settings, paired with its class when ``ds`` has a label column (raises what
    decoding raises, for the caller to count the image as skipped)."""
    image = preprocess_image(_open(row[ds.column]), ds.resolution,
                             resize_filter=ds.resize_filter, jpeg_quality=ds.jpeg_quality,
                             image_channels=ds.image_channels)
    return image if ds.label_column is None else (image, int(row[ds.label_column]))


class IterableImageDataset(torch.utils.data.IterableDataset):
    """Streaming counterpart of [`ImageDataset`][pixelfold.training.data.ImageDataset] for a
    ``datasets.IterableDataset``; loops over the stream forever, skipping unreadable images."""

    def __init__(self, dataset: Any, resolution: int | tuple[int, int], *,
                 image_column: str | None = None, resize_filter: str = "box",
                 jpeg_quality: int | None = None, seed: int = 0, shuffle_buffer: int = 1000,
                 image_channels: int = 3, label_column: str | None = None) -> None:
        import datasets

        self.column = find_image_column(dataset.features, image_column)
        self.label_column = label_column
        if dataset.features is not None and isinstance(dataset.features[self.column],
                                                       datasets.Image):
            dataset = dataset.cast_column(self.column, datasets.Image(decode=False))
        self.dataset = dataset.shuffle(seed=seed, buffer_size=shuffle_buffer) \
            if shuffle_buffer else dataset
        self.resolution = resolution
        self.resize_filter = resize_filter
        self.jpeg_quality = jpeg_quality
        self.image_channels = image_channels
        self._counter = _SkipCounter()
        self.epoch = 0

    @property
    def skipped(self) -> int:
        """How many unreadable images were met (in this process)."""
        return self._counter.skipped

    def set_epoch(self, epoch: int) -> None:
        """Reshuffle the stream for ``epoch``."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[torch.Tensor | tuple[torch.Tensor, int]]:
        while True:
            if hasattr(self.dataset, "set_epoch"):
                self.dataset.set_epoch(self.epoch)
            produced = 0
            for row in self.dataset:
                try:
                    item = _row_item(self, row)
                except Exception as exc:  # unreadable, truncated, unsupported
                    self._counter.skip(_describe(row[self.column]), exc)
                    continue
                yield item
                produced += 1
            if produced == 0:
                raise DataError("the streamed dataset yielded no readable image")
            self.epoch += 1


def digits_dataset(resolution: int | tuple[int, int] = 32):
    """scikit-learn's 1,797 handwritten digits (8x8, 17 gray levels) as a ``datasets.Dataset``
    of RGB PIL images upsampled to ``resolution`` (one side, or ``(H, W)``: the digit is
    stretched) with a bicubic filter: a real dataset that ships inside a pip package, for fully
    offline training (a grayscale model reads them back as the exact gray levels)."""
    import datasets
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = []
    for arr in digits.images:
        gray = (255 - arr * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)  # dark ink on white
        h, w = _size(resolution)
        img = Image.fromarray(gray, mode="L").resize((w, h), Image.Resampling.BICUBIC)
        images.append(img.convert("RGB"))
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    return datasets.Dataset.from_dict(
        {"image": images, "label": [int(t) for t in digits.target]}, features=features)
