"""One mechanism for pixelfold's settings-as-data: the value checks every spec repeats, and
[`SpecMixin`][pixelfold.utils.spec.SpecMixin], which gives a ``@dataclass`` its dict and JSON
forms.

[`GeneratorSpec`][pixelfold.models.GeneratorSpec], [`StageSpec`][pixelfold.models.StageSpec],
[`DiscriminatorSpec`][pixelfold.models.DiscriminatorSpec] and
[`TrainConfig`][pixelfold.training.TrainConfig] all use it, so they agree on the rules:

* ``to_dict()`` is JSON-ready (tuples become lists, nested specs dicts, integer dict keys
  strings); ``from_dict(to_dict())`` gives an equal spec;
* ``from_dict`` refuses unknown keys and missing required ones, naming them;
* keys starting with ``_`` are metadata (``_class_name``, ``_pixelfold_version``, as
  diffusers writes them in a ``config.json``): ``from_dict`` skips them and ``to_dict`` never
  writes them;
* ``from_json`` takes JSON text or the path of a ``.json`` file; ``to_json_file`` writes one
  atomically.

The checks ([`check_int`][pixelfold.utils.spec.check_int],
[`check_number`][pixelfold.utils.spec.check_number],
[`check_choice`][pixelfold.utils.spec.check_choice],
[`check_bool`][pixelfold.utils.spec.check_bool]) raise a
[`ConfigError`][pixelfold.utils.ConfigError] that names the field, what it must be and the
value it got, e.g. ``GeneratorSpec: z_dim must be a positive integer, got 0``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from .errors import ConfigError

__all__ = [
    "SpecMixin",
    "check_bool",
    "check_choice",
    "check_finite_fields",
    "check_int",
    "check_int_tuple",
    "check_number",
    "field_docs",
    "format_resolution",
    "parse_resolution",
]

S = TypeVar("S", bound="SpecMixin")


def _prefix(where: str | None, name: str) -> str:
    return f"{where}: {name}" if where else name


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_resolution(value: Any, what: str = "resolution") -> tuple[int, int]:
    """``(height, width)`` from one int (a square), a ``[height, width]`` pair or a string
    ``"N"`` / ``"HxW"`` (as JSON files and command lines write it).

    Raises:
        ConfigError: anything else, or a side below 1; the message names ``what``.
    """
    given = value
    if isinstance(value, str):
        parts = value.strip().lower().split("x")
        if len(parts) in (1, 2) and all(p.strip().isdigit() for p in parts):
            value = tuple(int(p) for p in parts)
            value = value * 2 if len(value) == 1 else value
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value, value)
    if (not isinstance(value, (tuple, list)) or len(value) != 2
            or any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in value)):
        raise ConfigError(f"{what} must be a positive int, [height, width] or 'HxW', "
                          f"got {given!r}")
    return int(value[0]), int(value[1])


def format_resolution(resolution: int | Sequence[int]) -> str:
    """``"HxW"`` of a resolution (one int is a square)."""
    h, w = parse_resolution(resolution)
    return f"{h}x{w}"


def check_int(value: Any, name: str, *, where: str | None = None, low: int = 1,
              high: int | None = None, optional: bool = False) -> int | None:
    """``value`` if it is an integer (not a bool) in ``[low, high]``, else a ``ConfigError``
    such as ``where: name must be a positive integer, got 0``.

    Args:
        value: the value to check.
        name: the field's name, for the message.
        where: the spec's name (``"GeneratorSpec"``), or ``None`` for none.
        low: the smallest allowed value (1: positive, 0: non-negative).
        high: the largest allowed value, or ``None`` for no bound.
        optional: ``None`` is allowed (and returned).
    """
    if optional and value is None:
        return None
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= low \
        and (high is None or value <= high)
    if not ok:
        if high is not None:
            kind = f"an integer in {low}..{high}"
        else:
            kind = {1: "a positive integer", 0: "a non-negative integer"}.get(
                low, f"an integer >= {low}")
        if optional:
            kind += " or None"
        raise ConfigError(f"{_prefix(where, name)} must be {kind}, got {value!r}")
    return value


def check_number(value: Any, name: str, *, where: str | None = None,
                 low: float | None = None, high: float | None = None,
                 low_open: bool = False, high_open: bool = False, optional: bool = False,
                 words: Sequence[str] = ()) -> Any:
    """``value`` if it is a finite real number (not a bool) within the bounds, else a
    ``ConfigError`` naming the field, the allowed range and the value.

    Args:
        value: the value to check.
        name: the field's name, for the message.
        where: the spec's name, or ``None`` for none.
        low: lower bound (``None``: none); excluded when ``low_open``.
        high: upper bound (``None``: none); excluded when ``high_open``.
        optional: ``None`` is allowed (and returned).
        words: strings also allowed as they are (``("auto",)``).
    """
    if (optional and value is None) or (isinstance(value, str) and value in words):
        return value
    if low == 0 and low_open and high is None:
        kind = "a finite positive number"
    elif low is not None and high is not None:
        kind = (f"a finite number in {'(' if low_open else '['}{low:g}, "
                f"{high:g}{')' if high_open else ']'}")
    elif low is not None:
        kind = f"a finite number {'>' if low_open else '>='} {low:g}"
    elif high is not None:
        kind = f"a finite number {'<' if high_open else '<='} {high:g}"
    else:
        kind = "a finite number"
    ok = _is_number(value) and math.isfinite(value) \
        and not (low is not None and (value <= low if low_open else value < low)) \
        and not (high is not None and (value >= high if high_open else value > high))
    if not ok:
        extra = ""  # the other allowed values, named when the value is not a number at all
        if not _is_number(value):
            extra = "".join(f" or {w!r}" for w in words) + (" or None" if optional else "")
        raise ConfigError(f"{_prefix(where, name)} must be {kind}{extra}, got {value!r}")
    return value


def check_choice(value: Any, name: str, options: Sequence[Any] | Mapping[Any, Any], *,
                 where: str | None = None) -> Any:
    """``value`` if it is one of ``options`` (a sequence, or a mapping's keys), else a
    ``ConfigError`` listing them."""
    options = tuple(options)
    if value not in options:
        raise ConfigError(f"{_prefix(where, name)} must be one of "
                          f"{', '.join(map(str, options))}, got {value!r}")
    return value


def check_int_tuple(value: Any, name: str, *, where: str | None = None,
                    allow_empty: bool = False) -> tuple[int, ...]:
    """``value`` (an int, or a sequence of them) as a tuple of positive integers, else a
    ``ConfigError``; empty is allowed only with ``allow_empty``."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = (value,)
    if not isinstance(value, (tuple, list)):
        raise ConfigError(f"{_prefix(where, name)} must be a sequence of positive integers, "
                          f"got {value!r}")
    out = tuple(value)
    if not allow_empty and not out:
        raise ConfigError(f"{_prefix(where, name)} must be a non-empty sequence of positive "
                          f"integers, got {value!r}")
    if any(isinstance(v, bool) or not isinstance(v, int) or v < 1 for v in out):
        raise ConfigError(f"{_prefix(where, name)} must hold positive integers, got {value!r}")
    return out


def check_bool(value: Any, name: str, *, where: str | None = None) -> bool:
    """``value`` if it is ``True`` or ``False``, else a ``ConfigError``."""
    if not isinstance(value, bool):
        raise ConfigError(f"{_prefix(where, name)} must be a bool, got {value!r}")
    return value


def _non_finite(value: Any) -> bool:
    """Whether ``value`` is, or holds (in a list, tuple or dict), a NaN or infinite float."""
    if isinstance(value, float):
        return not math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return any(_non_finite(v) for v in value)
    if isinstance(value, Mapping):
        return any(_non_finite(v) for v in value.values())
    return False


def check_finite_fields(where: str, obj: Any) -> None:
    """Raise a ``ConfigError`` naming the first field of the dataclass ``obj`` that is or holds
    a NaN or infinite number (JSON files may spell them ``NaN`` and ``Infinity``): no field of a
    spec means anything with them."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if not f.name.startswith("_") and _non_finite(value):
            raise ConfigError(f"{where}: {f.name} must be finite, got {value!r}")


def _jsonable(value: Any) -> Any:
    if isinstance(value, SpecMixin):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k) if isinstance(k, int) else k: _jsonable(v) for k, v in value.items()}
    return value


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


class SpecMixin:
    """Dict and JSON forms for a ``@dataclass`` whose fields are JSON-like values (numbers,
    strings, bools, ``None``, tuples, dicts, nested specs).

    Subclasses validate and normalize in ``__post_init__`` (a list read from JSON becomes the
    field's tuple there), may list fields left out of ``to_dict`` while they hold their default
    in ``omit_if_default`` (so that adding an optional field keeps old configs byte-identical),
    and may override ``_field_to_json`` for a field whose JSON form differs from the generic
    one.
    """

    omit_if_default: ClassVar[tuple[str, ...]] = ()

    def _field_to_json(self, name: str, value: Any) -> Any:
        """The JSON form of field ``name``; by default tuples become lists, nested specs dicts
        and integer dict keys strings."""
        return _jsonable(value)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serializable dict of the fields (``_``-prefixed ones and defaulted
        ``omit_if_default`` ones left out)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.name.startswith("_"):
                continue
            value = getattr(self, f.name)
            if f.name in self.omit_if_default and value == _default(f):
                continue
            out[f.name] = self._field_to_json(f.name, value)
        return out

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
        """Build the spec from a dict such as ``to_dict`` returns. Keys starting with ``_`` are
        metadata and skipped; unknown and missing required keys are a ``ConfigError`` naming
        them; the values are checked by the spec itself."""
        where = cls.__name__
        if not isinstance(data, Mapping):
            raise ConfigError(f"{where}.from_dict expects a dict, got {type(data).__name__}")
        fields = dataclasses.fields(cls)  # type: ignore[arg-type]
        known = {f.name for f in fields}
        unknown = sorted((k for k in data if k not in known and not str(k).startswith("_")),
                         key=str)
        if unknown:
            raise ConfigError(f"{where}: unknown field(s) {unknown}")
        missing = [f.name for f in fields
                   if _default(f) is dataclasses.MISSING and f.name not in data]
        if missing:
            raise ConfigError(f"{where}: missing field(s) {missing}")
        return cls(**{k: v for k, v in data.items() if k in known})

    def to_json(self, indent: int = 2) -> str:
        """JSON text of ``to_dict()``."""
        return json.dumps(self.to_dict(), indent=indent)

    def to_json_file(self, path: str | os.PathLike) -> None:
        """Write ``to_json()`` to ``path`` atomically (a crash leaves the old file or none)."""
        from .files import atomic_write_text

        atomic_write_text(Path(path), self.to_json() + "\n")

    @classmethod
    def from_json(cls: type[S], text_or_path: str | os.PathLike) -> S:
        """Parse JSON text, or read a ``.json`` file (a ``Path``, or a string that does not
        start with ``{`` and ends in ``.json``), into the spec.

        Raises:
            FileNotFoundError: no such file.
            ConfigError: a folder, a non-text file, invalid JSON or an invalid spec; the message
                names the file (when one was read) and the field.
        """
        text = os.fspath(text_or_path) if isinstance(text_or_path, os.PathLike) \
            else str(text_or_path)
        source: str | None = None
        if isinstance(text_or_path, os.PathLike) or (not text.lstrip().startswith("{")
                                                     and text.endswith(".json")):
            path = Path(text)
            if path.is_dir():
                raise ConfigError(f"{path} is a folder, not a {cls.__name__} (.json) file")
            try:
                text = path.read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise ConfigError(f"{path} is not a UTF-8 text (JSON) file") from None
            source = str(path)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{source or cls.__name__ + '.from_json'}: invalid JSON "
                              f"({exc})") from None
        if source is None:
            return cls.from_dict(data)
        try:
            return cls.from_dict(data)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"{source}: {exc}") from None


_ARG = re.compile(r"^(\s+)(\w+)(?: \([^)]*\))?:\s*(.*)$")
_XREF = re.compile(r"\[`([^`]+)`\]\[[^\]]+\]")


def field_docs(cls: type) -> dict[str, str]:
    """The description of each field in the ``Args:`` section of ``cls``'s Google-style
    docstring, as one line of plain text (mkdocstrings cross-references ``[`x`][path]`` become
    ``x``, double backquotes are dropped): the help text of generated command lines."""
    doc = inspect.getdoc(cls) or ""
    out: dict[str, str] = {}
    lines = doc.splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() in ("Args:",
                                                                           "Attributes:"))
    except StopIteration:
        return out
    indent: int | None = None
    current: str | None = None
    for line in lines[start + 1:]:
        if line.strip() and not line.startswith(" "):
            break  # the section ended
        m = _ARG.match(line)
        if m and (indent is None or len(m.group(1)) == indent):
            indent = len(m.group(1))
            current = m.group(2)
            out[current] = m.group(3).strip()
        elif current is not None and line.strip():
            out[current] += " " + line.strip()
    return {k: _XREF.sub(r"\1", v).replace("``", "") for k, v in out.items()}
