"""Tensors on disk without pickles, and checks that tensors are finite.

* [`save_state`][pixelfold.utils.tensors.save_state] /
  [`load_state`][pixelfold.utils.tensors.load_state]: any nesting of dicts, lists and tuples
  of tensors, numbers, strings, booleans and ``None`` (an optimizer's ``state_dict()``, RNG
  states, a scaler) as one ``.safetensors`` file: the tensors as tensors, the structure as JSON
  in the file's metadata. Reading one cannot run code.
* [`load_tensor_file`][pixelfold.utils.tensors.load_tensor_file]: a state dict from a
  ``.safetensors`` file or a PyTorch ``.pt`` / ``.pth`` file read with
  ``torch.load(weights_only=True)``, with one-line errors for TorchScript archives, pickles of
  objects, text files and truncated files.
* [`check_finite`][pixelfold.utils.tensors.check_finite] /
  [`non_finite`][pixelfold.utils.tensors.non_finite]: which tensors hold NaN or infinity.
* [`frozen_parameters`][pixelfold.utils.tensors.frozen_parameters]: a module's parameters
  without gradients for a block of code.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError, NonFiniteError

__all__ = [
    "check_finite",
    "frozen_parameters",
    "load_state",
    "load_tensor_file",
    "module_tensors",
    "non_finite",
    "save_state",
    "torchscript_names",
]

_STRUCTURE_KEY = "pixelfold_structure"
_FORMAT_KEY = "pixelfold_state_format"
_FORMAT = "1"


# ---------------------------------------------------------------------------------------------
# nested states


def _flatten(obj: Any, tensors: dict[str, torch.Tensor], where: str) -> Any:
    if isinstance(obj, torch.Tensor):
        name = f"t{len(tensors)}"
        tensors[name] = obj.detach().cpu().contiguous()
        return {"__tensor__": name}
    if obj is None or isinstance(obj, (bool, str)):
        return obj
    if isinstance(obj, (int, float)):
        if isinstance(obj, float) and obj != obj:  # NaN survives JSON only as a marker
            return {"__float__": "nan"}
        if isinstance(obj, float) and obj in (float("inf"), float("-inf")):
            return {"__float__": "inf" if obj > 0 else "-inf"}
        return obj
    if isinstance(obj, tuple):
        return {"__tuple__": [_flatten(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_flatten(v, tensors, f"{where}[{i}]") for i, v in enumerate(obj)]
    if isinstance(obj, Mapping):
        if all(isinstance(k, str) for k in obj) and not any(k.startswith("__") for k in obj):
            return {k: _flatten(v, tensors, f"{where}.{k}") for k, v in obj.items()}
        items = []
        for k, v in obj.items():
            if not isinstance(k, (str, int, float, bool)) and k is not None:
                raise TypeError(f"{where}: cannot store a dict key of type {type(k).__name__}")
            items.append([k, _flatten(v, tensors, f"{where}[{k!r}]")])
        return {"__items__": items}
    if hasattr(obj, "item") and hasattr(obj, "dtype"):  # numpy scalar
        return _flatten(obj.item(), tensors, where)
    raise TypeError(f"{where}: cannot store a {type(obj).__name__} (only tensors, numbers, "
                    f"strings, booleans, None, lists, tuples and dicts)")


def _unflatten(node: Any, tensors: Mapping[str, torch.Tensor], where: str) -> Any:
    if isinstance(node, list):
        return [_unflatten(v, tensors, where) for v in node]
    if isinstance(node, dict):
        if set(node) == {"__tensor__"}:
            name = node["__tensor__"]
            if name not in tensors:
                raise CheckpointError(f"{where}: the structure names a tensor {name!r} that "
                                      f"the file lacks")
            return tensors[name]
        if set(node) == {"__float__"}:
            return float(node["__float__"])
        if set(node) == {"__tuple__"}:
            return tuple(_unflatten(v, tensors, where) for v in node["__tuple__"])
        if set(node) == {"__items__"}:
            return {k: _unflatten(v, tensors, where) for k, v in node["__items__"]}
        return {k: _unflatten(v, tensors, where) for k, v in node.items()}
    return node


def save_state(path: str | os.PathLike, state: Any, metadata: Mapping[str, str] | None = None
               ) -> Path:
    """Write a nested ``state`` (dicts, lists, tuples of tensors and plain values) as one
    safetensors file. Tensors are stored on the CPU, contiguous; ``metadata`` (strings) is
    kept beside the structure. Returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors: dict[str, torch.Tensor] = {}
    structure = _flatten(state, tensors, path.name)
    meta = {_FORMAT_KEY: _FORMAT, _STRUCTURE_KEY: json.dumps(structure)}
    for key, value in (metadata or {}).items():
        if key in meta:
            raise ValueError(f"metadata key {key!r} is reserved")
        meta[key] = str(value)
    save_file(tensors, str(path), metadata=meta)
    return path


def load_state(path: str | os.PathLike, *, device: str = "cpu") -> tuple[Any, dict[str, str]]:
    """Read a file written by [`save_state`][pixelfold.utils.tensors.save_state]: returns the
    nested state and the extra metadata.

    Raises:
        CheckpointError: the file is not such a file, or is corrupt or truncated.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device=device) as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - not a dict
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is corrupt or truncated ({' '.join(str(exc).split())})"
                              ) from None
    if meta.get(_FORMAT_KEY) != _FORMAT or _STRUCTURE_KEY not in meta:
        raise CheckpointError(f"{path} is not a pixelfold state file (no "
                              f"{_STRUCTURE_KEY!r} metadata)")
    try:
        structure = json.loads(meta.pop(_STRUCTURE_KEY))
    except ValueError as exc:
        raise CheckpointError(f"{path}: its structure is not valid JSON ({exc})") from None
    meta.pop(_FORMAT_KEY)
    return _unflatten(structure, tensors, path.name), meta


# ---------------------------------------------------------------------------------------------
# reading weights files

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTO = 0x80  # first byte of a pickle of protocol >= 2 (torch's legacy format)


def _sniff(path: Path) -> str:
    """What ``path`` holds, from its first bytes: ``"empty"``, ``"safetensors"``, ``"zip"``
    (torch's format since 1.6, or TorchScript), ``"pickle"`` (torch's legacy format), ``"text"``
    or ``"unknown"``."""
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(512)
    if not head:
        return "empty"
    if len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"  # an 8-byte header length, then the JSON header
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    if head[0] == _PICKLE_PROTO:
        return "pickle"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:  # may cut a character at the end: retry without the last ones
        try:
            text = head[:-3].decode("utf-8")
        except UnicodeDecodeError:
            return "unknown"
    if all(c.isprintable() or c in "\t\n\r\f\v" for c in text):
        return "text"
    return "unknown"


def _torch_load_failure(exc: Exception) -> str:
    """Why ``torch.load(weights_only=True)`` refused a file, in words."""
    message = " ".join(str(exc).split())
    found = re.search(r"Unsupported global: GLOBAL (\S+)", message)
    if found:
        return (f"it holds pickled Python objects besides tensors ({found.group(1)}), which "
                f"could run code when loaded, so pixelfold does not load them")
    if "Weights only load failed" in message:
        return ("it holds pickled data other than tensors and plain containers, which could "
                "run code when loaded, so pixelfold does not load it")
    if "central directory" in message or "zip archive" in message or isinstance(exc, EOFError):
        return f"the file is truncated or damaged ({type(exc).__name__})"
    return f"not a PyTorch weights file ({type(exc).__name__}: {message[:200]})"


def torchscript_names(names: Iterable[str]) -> bool:
    """Whether the entries ``names`` of a zip file are those of a TorchScript archive (a
    ``constants.pkl`` or a ``code/`` folder; torch's own test), not of a ``torch.save`` file.

    [`load_tensor_file`][pixelfold.utils.tensors.load_tensor_file] refuses such archives; the
    Inception-v3 weights alone opt in to reading their tensors without running them
    ([`pixelfold.metrics.torchscript`][pixelfold.metrics.torchscript])."""
    return any(n.endswith("constants.pkl") or "/code/" in n for n in names)


def load_tensor_file(path: str | os.PathLike, *, what: str = "weights",
                     key: str | None = None) -> dict[str, torch.Tensor]:
    """A flat ``{name: tensor}`` state dict from a weights file, without running any code.

    A safetensors file (recognized by its content, whatever its suffix) is read with
    safetensors; a PyTorch file (``.pt`` / ``.pth`` / ``.bin``, zip or legacy format) with
    ``torch.load(weights_only=True)``, which refuses pickled objects other than tensors and
    plain containers. Empty files, text files, TorchScript archives and files of any other
    format are refused before anything is unpickled (the Inception-v3 weights read TorchScript
    Inception files with [`pixelfold.metrics.torchscript`][pixelfold.metrics.torchscript]
    instead of this function). A dict holding the state dict under
    ``key`` (e.g. ``"state_dict"``) is unwrapped when ``key`` is given.

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is empty, text, a TorchScript archive, a pickle of other objects,
            truncated, of another format, or does not hold a flat dict of tensors. The message
            names the file and ``what`` it should be.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    kind = _sniff(path)
    if path.suffix == ".safetensors" or kind == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise ValueError(f"{path} is not a readable safetensors file for the {what} "
                             f"({' '.join(str(exc).split())})") from None
    else:
        refused = {
            "empty": "the file is empty",
            "text": "it is a text file, not a PyTorch (.pt, .pth) or safetensors weights file",
            "unknown": "it is neither a PyTorch (.pt, .pth) nor a safetensors weights file",
        }
        if kind in refused:
            raise ValueError(f"cannot read {path} as the {what}: {refused[kind]}")
        if kind == "zip":
            try:
                with zipfile.ZipFile(path) as z:
                    names = z.namelist()
            except zipfile.BadZipFile:
                raise ValueError(f"cannot read {path} as the {what}: the file is truncated or "
                                 f"damaged (not a complete zip archive)") from None
            if torchscript_names(names):  # Inception-v3: pixelfold.metrics.torchscript
                raise ValueError(f"{path} is a TorchScript archive (a saved program), not a "
                                 f"state dict of tensors: pixelfold only reads tensors from "
                                 f"{what} files. Save the network's state_dict() instead.")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors come in many types
            raise ValueError(f"cannot read {path} as the {what}: {_torch_load_failure(exc)}"
                             ) from None
    if key is not None and isinstance(state, Mapping) and key in state \
            and isinstance(state[key], Mapping):
        state = state[key]
    if not isinstance(state, Mapping):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a state dict of tensors "
                         f"for the {what}")
    bad = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{path} is not a flat state dict of tensors for the {what}: "
                         f"{', '.join(bad[:5])} {'are' if len(bad) > 1 else 'is'} not tensors")
    return {str(k): v for k, v in state.items()}


# ---------------------------------------------------------------------------------------------
# finiteness


def _tensors(obj: Any, prefix: str = "") -> Iterable[tuple[str, torch.Tensor]]:
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}[{i}]")


def non_finite(tensors: Any) -> list[tuple[str, int, int]]:
    """``(name, non-finite count, numel)`` for every floating-point tensor of ``tensors`` (a
    tensor, a module's ``named_parameters``-like mapping, or any nesting of dicts and lists)
    that holds NaN or infinity."""
    found = []
    for name, t in _tensors(tensors):
        if t.is_floating_point() or t.is_complex():
            values, repeats = _distinct(t.detach())
            ok = torch.isfinite(values)
            if not bool(ok.all()):
                found.append((name, int((~ok).sum()) * repeats, t.numel()))
    return found


def _distinct(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """``t`` without the repeats of its broadcast (stride-0) dimensions, and how many times
    each remaining value stands for: an ``expand``-ed tensor is checked at the cost of its
    storage, not of its size."""
    if t.layout != torch.strided:
        return t, 1
    index = tuple(0 if stride == 0 and size > 1 else slice(None)
                  for stride, size in zip(t.stride(), t.shape, strict=True))
    repeats = 1
    for stride, size in zip(t.stride(), t.shape, strict=True):
        if stride == 0 and size > 1:
            repeats *= size
    return t[index], repeats


def check_finite(tensors: Any, *, what: str, source: str | None = None) -> None:
    """Raise [`NonFiniteError`][pixelfold.utils.errors.NonFiniteError] naming the tensors of
    ``tensors`` that hold NaN or infinity. ``what`` says what they are ("the generator's
    weights"), ``source`` where they come from (a file)."""
    bad = non_finite(tensors)
    if not bad:
        return
    names = ", ".join(f"{name} ({count} of {numel})" for name, count, numel in bad[:5])
    more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
    where = f" in {source}" if source else ""
    raise NonFiniteError(f"{what}{where} hold non-finite values (NaN or infinity): "
                         f"{names}{more}")


def module_tensors(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers of ``module`` by name (for
    [`check_finite`][pixelfold.utils.tensors.check_finite])."""
    return dict(module.state_dict(keep_vars=False))


@contextmanager
def frozen_parameters(module: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``module`` with ``requires_grad=False`` on all its parameters inside the block, each
    flag put back as it was afterwards (parameters frozen before stay frozen).

    What a GAN's generator step does to the discriminator (as NVlabs' and the StyleGAN2 ports'
    training loops): gradients flow through it to its input, but none is computed for its
    weights. Yields ``module``.
    """
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
