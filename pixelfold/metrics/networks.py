"""The metric networks, built from tensors pixelfold read and verified itself.

torch-fidelity's networks read their weights with ``torch.load(weights_only=False)``, which
runs whatever code a pickle holds. pixelfold never hands them a user's file (nor a file from the
torch hub cache or a download): it reads the file with
[`read_weights`][pixelfold.metrics.weights.read_weights] (tensors only; names, shapes and
finiteness checked against the network), then

* Inception-v3 and VGG16 (FID, KID, IS, precision/recall): torch-fidelity's extractor gets, as
  its weights "file", an in-memory ``torch.save`` of those tensors
  ([`tensors_only_file`][pixelfold.metrics.weights.tensors_only_file]), so its unpickling can
  only ever see pixelfold's own tensors;
* LPIPS (PPL): torch-fidelity's ``SampleSimilarityLPIPS`` is built with its two weight sources
  (the LPIPS linear layers and torchvision's VGG16) replaced, while it is constructed, by the
  verified tensors and a VGG16 loaded from them; nothing is unpickled at all.

The networks are torch-fidelity's own classes with the same tensors as before, so the numbers
are unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .weights import (
    INCEPTION_WEIGHTS,
    LPIPS_WEIGHTS,
    VGG16_WEIGHTS,
    WeightsFile,
    read_weights,
    tensors_only_file,
)

__all__ = [
    "fidelity_extractor",
    "inception_shapes",
    "lpips_network",
    "lpips_shapes",
    "read_fidelity_weights",
    "read_lpips_weights",
    "vgg16_shapes",
]

_LPIPS_CHANNELS = (64, 128, 256, 512, 512)
"""Channels of VGG16's relu1_2 ... relu5_3, one LPIPS linear layer each (torch-fidelity's
``SampleSimilarityLPIPS.chns``)."""


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {name: tuple(t.shape) for name, t in module.state_dict().items()}


def _is_batch_norm_counter(name: str) -> bool:
    # filled in by BatchNorm when absent; unused in eval mode
    return name.endswith(".num_batches_tracked")


@functools.cache
def _inception_skeleton() -> nn.Module:
    """torch-fidelity's Inception-v3 (``inception-v3-compat``) built on the meta device: its
    layers without memory nor weights."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    class Skeleton(FeatureExtractorInceptionV3):
        def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True,
                            assign: bool = False) -> Any:
            return None  # the layers only: nothing to load

    with torch.device("meta"):
        return Skeleton("inception-v3-compat", ["2048"],
                        feature_extractor_weights_path=tensors_only_file({}))


@functools.cache
def inception_shapes() -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of torch-fidelity's Inception-v3 (``inception-v3-compat``),
    from the network built on the meta device (no memory, no weights)."""
    return _shapes(_inception_skeleton())


def inception_layers() -> dict[str, nn.Module]:
    """Name -> module of torch-fidelity's Inception-v3, built on the meta device (what a
    TorchScript Inception's strides and paddings are compared with)."""
    return dict(_inception_skeleton().named_modules())


@functools.cache
def vgg16_shapes() -> dict[str, tuple[int, ...]]:
    """Name -> shape of every tensor of torchvision's VGG16 (what torch-fidelity's VGG16 feature
    extractor and its LPIPS load)."""
    import torchvision

    with torch.device("meta"):
        return _shapes(torchvision.models.vgg16())


@functools.cache
def lpips_shapes() -> dict[str, tuple[int, ...]]:
    """Name -> shape of the LPIPS linear layers of torch-fidelity's ``SampleSimilarityLPIPS``."""
    from torch_fidelity.sample_similarity_lpips import NetLinLayer

    shapes = {}
    with torch.device("meta"):
        for i, channels in enumerate(_LPIPS_CHANNELS):
            layer = NetLinLayer(channels, use_dropout=True)
            shapes.update({f"lin{i}.{k}": v for k, v in _shapes(layer).items()})
    return shapes


_FIDELITY: dict[str, tuple[WeightsFile, Any]] = {
    "inception-v3-compat": (INCEPTION_WEIGHTS, inception_shapes),
    "vgg16": (VGG16_WEIGHTS, vgg16_shapes),
}


def read_fidelity_weights(name: str, path: str | Path, *, logits: bool = False
                          ) -> dict[str, torch.Tensor]:
    """The verified tensors of ``path`` for torch-fidelity's feature extractor ``name``
    (``"inception-v3-compat"`` or ``"vgg16"``); see
    [`read_weights`][pixelfold.metrics.weights.read_weights] for what is checked.

    For Inception-v3, ``path`` may also be a TorchScript Inception (NVlabs'
    ``inception-2015-12-05.pt``, fid-helper's ``default_1.pt``): its tensors are read without
    running it and mapped onto torch-fidelity's names (see
    [`pixelfold.metrics.torchscript`][pixelfold.metrics.torchscript]). ``logits=True`` (the
    Inception score will be computed) refuses such a file without the logits layer now rather
    than when the network is built."""
    if name not in _FIDELITY:
        raise ValueError(f"no weights check for torch-fidelity's {name!r} (known: "
                         f"{', '.join(_FIDELITY)})")
    spec, shapes = _FIDELITY[name]
    # --- issue 12: TorchScript Inception files, read as tensors (the code is never run) ---
    if name == "inception-v3-compat":
        from .torchscript import is_torchscript_archive, read_inception_torchscript

        if is_torchscript_archive(path):
            return read_inception_torchscript(path, logits=logits)
    # ---
    return read_weights(spec, path, shapes(), optional=_is_batch_norm_counter)


def read_lpips_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The verified LPIPS linear-layer tensors of ``path``."""
    return read_weights(LPIPS_WEIGHTS, path, lpips_shapes())


def fidelity_extractor(name: str, layers: list[str], tensors: Mapping[str, torch.Tensor], *,
                       cuda: bool, verbose: bool) -> nn.Module:
    """torch-fidelity's feature extractor ``name`` with the weights ``tensors`` (from
    [`read_fidelity_weights`][pixelfold.metrics.networks.read_fidelity_weights]), handed over as
    an in-memory file of those tensors only.

    On the CPU the network is put in the channels-last memory format: its convolutions then run
    about 1.2-2x faster there (oneDNN's native layout; measured interleaved on 2 cores), and
    the features change only by float rounding (about 1e-6 relative), like any other order of
    summation. On CUDA it is left as torch-fidelity builds it."""
    from torch_fidelity.utils import create_feature_extractor

    from .torchscript import complete_for_fidelity

    # issue 12: Inception weights without the logits layer (fid-helper's TorchScript file) get
    # NaN placeholders for it, or a one-line error when the logits are asked for (IS)
    tensors = complete_for_fidelity(tensors, layers)
    extractor = create_feature_extractor(name, layers, cuda=cuda, verbose=verbose,
                                         feature_extractor_weights_path=tensors_only_file(tensors))
    if not cuda:
        extractor = extractor.to(memory_format=torch.channels_last)
    return extractor


@contextmanager
def _replaced(module: Any, **attributes: Any) -> Iterator[None]:
    """Set attributes of ``module`` for the duration of the block (restored after)."""
    previous = {name: getattr(module, name) for name in attributes}
    for name, value in attributes.items():
        setattr(module, name, value)
    try:
        yield
    finally:
        for name, value in previous.items():
            setattr(module, name, value)


def lpips_network(lpips_tensors: Mapping[str, torch.Tensor],
                  vgg16_tensors: Mapping[str, torch.Tensor], *, resize: int | None,
                  dtype: str | None) -> nn.Module:
    """torch-fidelity's LPIPS-VGG16 (``SampleSimilarityLPIPS``) with the given verified tensors.

    Its constructor fetches the linear layers with ``torch.hub.load_state_dict_from_url`` and
    the backbone with torchvision's pretrained VGG16; while it runs, these two are replaced by
    the tensors given (a VGG16 is built and loaded from ``vgg16_tensors``), so no file is read.
    (The replacement is module-wide for that moment: build LPIPS networks from one thread at a
    time.)

    Args:
        lpips_tensors: from [`read_lpips_weights`][pixelfold.metrics.networks.read_lpips_weights].
        vgg16_tensors: from
            [`read_fidelity_weights`][pixelfold.metrics.networks.read_fidelity_weights]
            ``("vgg16", ...)``.
        resize: ``sample_similarity_resize`` (side the images are resized to, or ``None``).
        dtype: ``sample_similarity_dtype`` (``"uint8"`` or ``None``).
    """
    import torchvision
    from torch_fidelity import sample_similarity_lpips as lpips_module

    vgg = torchvision.models.vgg16()
    vgg.load_state_dict(vgg16_tensors)

    def linear_layers(url: str, *args: Any, **kwargs: Any) -> dict[str, torch.Tensor]:
        if url != lpips_module.URL_VGG16_LPIPS:
            raise RuntimeError(f"torch-fidelity's LPIPS asked for {url}, not the LPIPS weights "
                               f"pixelfold verified ({lpips_module.URL_VGG16_LPIPS})")
        return dict(lpips_tensors)

    with _replaced(lpips_module, load_state_dict_from_url=linear_layers,
                   torchvision_load_pretrained_vgg16=lambda **kwargs: vgg):
        return lpips_module.SampleSimilarityLPIPS(
            "lpips-vgg16", sample_similarity_resize=resize, sample_similarity_dtype=dtype)
