"""Where the pretrained networks behind the metrics come from.

Every metric network is downloaded on first use when the machine is online and kept in the
torch hub cache (``$TORCH_HOME/hub/checkpoints``). Offline, give a local copy: each file has a
function argument, a CLI flag and an environment variable.

- Inception-v3 (FID, KID, IS): ``inception_weights=PATH``, ``--inception-weights PATH``,
  ``PIXELFOLD_INCEPTION_WEIGHTS``;
- VGG16 (precision/recall, LPIPS backbone): ``vgg16_weights=PATH``, ``--vgg16-weights PATH``,
  ``PIXELFOLD_VGG16_WEIGHTS``;
- LPIPS linear layers (PPL): ``lpips_weights=PATH``, ``--lpips-weights PATH``,
  ``PIXELFOLD_LPIPS_WEIGHTS``;
- DINOv2 (FD-DINOv2): ``dinov2_weights=PATH``, ``--dinov2-weights PATH``,
  ``PIXELFOLD_DINOV2_WEIGHTS``.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = [
    "DINOV2_WEIGHTS",
    "INCEPTION_WEIGHTS",
    "LPIPS_WEIGHTS",
    "VGG16_WEIGHTS",
    "MissingWeightsError",
    "WeightsFile",
    "file_sha256",
    "is_offline",
    "resolve_weights",
]


class MissingWeightsError(RuntimeError):
    """The weights of a metric network are neither given nor downloadable."""


@dataclass(frozen=True)
class WeightsFile:
    """A pretrained file a metric needs, and the ways a user can provide it.

    Args:
        title: what the network is, for messages.
        url: where it is downloaded from (for the hub-based DINOv2: an ``hf-hub:`` id).
        argument: the keyword argument of the ``compute_*`` functions.
        flag: the ``pixelfold eval`` flag.
        env: the environment variable.
    """

    title: str
    url: str
    argument: str
    flag: str
    env: str

    @property
    def filename(self) -> str:
        """File name in the torch hub cache."""
        return self.url.rsplit("/", 1)[-1]

    def how_to_provide(self) -> str:
        """One sentence naming every way to give a local file."""
        return (f"pass a local copy with {self.argument}=PATH (CLI: {self.flag} PATH) or set the "
                f"environment variable {self.env}=PATH")


INCEPTION_WEIGHTS = WeightsFile(
    title="Inception-v3 weights (TensorFlow 2015-12-05 graph, converted by torch-fidelity)",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-inception-2015-12-05-6726825d.pth",
    argument="inception_weights", flag="--inception-weights", env="PIXELFOLD_INCEPTION_WEIGHTS",
)
VGG16_WEIGHTS = WeightsFile(
    title="VGG16 ImageNet weights (torchvision IMAGENET1K_V1)",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    argument="vgg16_weights", flag="--vgg16-weights", env="PIXELFOLD_VGG16_WEIGHTS",
)
LPIPS_WEIGHTS = WeightsFile(
    title="LPIPS-VGG16 linear-layer weights (v0.1, as packaged by torch-fidelity)",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-vgg16-lpips.pth",
    argument="lpips_weights", flag="--lpips-weights", env="PIXELFOLD_LPIPS_WEIGHTS",
)
DINOV2_WEIGHTS = WeightsFile(
    title="DINOv2 weights (timm, from the Hugging Face Hub)",
    url="hf-hub:timm/vit_large_patch14_dinov2.lvd142m",
    argument="dinov2_weights", flag="--dinov2-weights", env="PIXELFOLD_DINOV2_WEIGHTS",
)


def is_offline() -> bool:
    """Whether downloads are switched off (``HF_HUB_OFFLINE`` set to a true value)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def local_weights(spec: WeightsFile, path: str | os.PathLike | None) -> Path | None:
    """The file the user gave for ``spec``: ``path`` if not ``None``, else the environment
    variable, else ``None``. A given file that does not exist raises ``FileNotFoundError``."""
    if path is not None:
        source, value = spec.argument, str(path)
    elif os.environ.get(spec.env):
        source, value = spec.env, os.environ[spec.env]
    else:
        return None
    file = Path(value).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{source}={value}: no such file ({spec.title})")
    return file


def resolve_weights(spec: WeightsFile, path: str | os.PathLike | None = None, *,
                    progress: bool = True) -> Path:
    """A local file with the weights of ``spec``, downloading it if needed.

    Looks in this order at ``path``, the environment variable ``spec.env``, the torch hub cache,
    and finally downloads into the cache, unless offline (``HF_HUB_OFFLINE=1``).

    Raises:
        FileNotFoundError: ``path`` (or the environment variable) names no file.
        MissingWeightsError: offline, or the download failed; the message says how to give a
            local file.
    """
    given = local_weights(spec, path)
    if given is not None:
        return given
    cached = Path(torch.hub.get_dir()) / "checkpoints" / spec.filename
    if cached.is_file():
        return cached
    where = f"not in the torch hub cache ({cached.parent})"
    if is_offline():
        raise MissingWeightsError(
            f"{spec.title} are needed, but downloads are off (HF_HUB_OFFLINE=1) and the file is "
            f"{where}. Download {spec.url} on a machine with internet, then "
            f"{spec.how_to_provide()}.")
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        torch.hub.download_url_to_file(spec.url, str(cached), progress=progress)
    except Exception as exc:  # no network, proxy, HTTP error, disk...
        raise MissingWeightsError(
            f"{spec.title} could not be downloaded from {spec.url} ({type(exc).__name__}: "
            f"{exc}) and the file is {where}. Without internet, {spec.how_to_provide()}."
        ) from exc
    return cached


def file_sha256(path: str | os.PathLike) -> str:
    """Hex SHA-256 of a file, to record exactly which weights produced a number."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
