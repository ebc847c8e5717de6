"""Turning plain YAML data into typed, validated, frozen dataclasses.

A config class is a frozen dataclass whose fields carry their constraint in
``field(metadata=...)`` (built with :func:`spec`). :func:`build` walks the mapping once,
rejecting unknown keys, wrong types and out-of-range values with a :class:`ConfigError`
naming the source file, the dotted field path, the bad value and what is allowed.
Cross-field rules live in a class's ``check(self, source, path)`` method, run after its
fields are built.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Callable

from neurosim.errors import ConfigError

_MISSING = dataclasses.MISSING


def spec(
    default: Any = _MISSING,
    *,
    doc: str,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    lt: float | None = None,
    choices: Sequence[Any] | None = None,
    min_len: int | None = None,
    factory: Callable[[], Any] | None = None,
) -> Any:
    """A dataclass field with documentation and a range or choice constraint."""
    metadata = {"doc": doc, "ge": ge, "gt": gt, "le": le, "lt": lt, "choices": choices,
                "min_len": min_len}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def _bounds(meta: Mapping[str, Any]) -> str:
    """A field's range, ``> 0.0 and <= 1.0``; empty when it has none."""
    parts = []
    for key, symbol in (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<=")):
        if meta.get(key) is not None:
            parts.append(f"{symbol} {meta[key]}")
    return " and ".join(parts)


def _check_number(value: float, meta: Mapping[str, Any], source: str, path: str) -> None:
    if not math.isfinite(value):  # NaN and inf: the error names the range too
        raise ConfigError(source, path, value,
                          f"must be a finite number {_bounds(meta)}".rstrip())
    bad = ((meta.get("gt") is not None and not value > meta["gt"])
           or (meta.get("ge") is not None and not value >= meta["ge"])
           or (meta.get("lt") is not None and not value < meta["lt"])
           or (meta.get("le") is not None and not value <= meta["le"]))
    if bad:
        raise ConfigError(source, path, value, f"must be {_bounds(meta)}")


_PLURAL = {int: "integers", float: "numbers", str: "strings", bool: "true/false values"}


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        (inner, *_) = typing.get_args(tp) or (Any,)
        return f"a list of {_PLURAL.get(inner, _type_name(inner))}"
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    return {int: "an integer", float: "a number", str: "a string", bool: "true/false",
            dict: "a mapping"}.get(
        tp, getattr(tp, "__name__", str(tp)))


def yaml11_number(value: Any) -> Any:
    """A number written as YAML 1.2 allows but PyYAML (YAML 1.1) reads as text, such as
    ``1e-3`` (1.1 wants ``1.0e-3``), as the float it is; anything else unchanged."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            return value
        if math.isfinite(number) and value.strip().lower() not in ("inf", "nan"):
            return number
    return value


def _convert(value: Any, tp: Any, meta: Mapping[str, Any], source: str, path: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(value, arg, meta, source, path)
            except ConfigError as error:
                errors.append(error)
        # Prefer an error inside the value (a field of an optional section, an item of an
        # optional list: the value has that type, one of its parts is wrong), then a range
        # error from a matching type, over a type mismatch of the whole value.
        for error in errors:
            if error.path != path:
                raise error
        for error in errors:
            if "must be a" not in error.allowed and "must be an" not in error.allowed:
                raise error
        raise ConfigError(source, path, value, f"must be {_type_name(tp)}")
    if dataclasses.is_dataclass(tp):
        return build(tp, value, source, path)
    if origin is tuple:
        (inner, *_) = typing.get_args(tp)
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(source, path, value, f"must be {_type_name(tp)}")
        if meta.get("min_len") is not None and len(value) < meta["min_len"]:
            raise ConfigError(source, path, value,
                              f"must have at least {meta['min_len']} entries")
        return tuple(_convert(v, inner, meta, source, f"{path}[{i}]") for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(source, path, value, "must be true or false")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(source, path, value, "must be an integer")
        _check_number(value, meta, source, path)
        return value
    if tp is float:
        value = yaml11_number(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(source, path, value, f"must be a number {_bounds(meta)}".rstrip())
        _check_number(float(value), meta, source, path)
        return float(value)
    if tp is str:
        choices = meta.get("choices") or ()
        if isinstance(value, bool) and {"on", "off"} <= set(choices):
            value = "on" if value else "off"  # YAML 1.1 reads unquoted on/off as booleans
        if not isinstance(value, str):
            raise ConfigError(source, path, value, "must be a string")
        choices = meta.get("choices")
        if choices is not None and value not in choices:
            raise ConfigError(source, path, value, f"must be one of {', '.join(choices)}")
        return value
    if tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(source, path, value, "must be a mapping")
        return dict(value)
    if tp is Any:
        return value
    raise TypeError(f"schema type {tp!r} at {path} is not supported")  # programming error


def build(cls: type, data: Any, source: str, path: str = "") -> Any:
    """Build config class ``cls`` from ``data`` (a mapping), validating every field."""
    where = path or "(top level)"
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(source, where, data, "must be a mapping of fields")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields), key=str)  # keys YAML read as numbers too
    if unknown:
        key = unknown[0]
        raise ConfigError(source, _join(path, str(key)), data[key],
                          f"unknown field; allowed fields: {', '.join(fields)}")
    values = {}
    for name, f in fields.items():
        field_path = _join(path, name)
        if name in data:
            values[name] = _convert(data[name], hints[name], f.metadata, source, field_path)
        elif f.default is _MISSING and f.default_factory is _MISSING:
            raise ConfigError(source, field_path, None, "is required")
    obj = cls(**values)
    check = getattr(obj, "check", None)
    if check is not None:
        check(source, path)
    return obj


def to_plain(obj: Any) -> Any:
    """The plain (YAML/JSON-serialisable) form of a config object."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_plain(v) for k, v in obj.items()}
    return obj


def differing(saved: Any, now: Any, prefix: str = "") -> list[tuple[str, Any, Any]]:
    """``(dotted field, saved value, current value)`` where two plain configs differ."""
    if isinstance(saved, dict) and isinstance(now, dict):
        return [item for key in dict.fromkeys([*saved, *now])
                for item in differing(saved.get(key), now.get(key), _join(prefix, str(key)))]
    return [] if saved == now else [(prefix, saved, now)]


def differences_text(differences: list[str], most: int = 3) -> str:
    """The first ``most`` differences in one line, and how many more there are."""
    shown = "; ".join(differences[:most])
    more = len(differences) - most
    return shown + (f"; and {more} more" if more > 0 else "")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def set_dotted(data: dict, dotted: str, value: Any, source: str = "--set",
               prefix: str = "") -> None:
    """Set ``data['a']['b'] = value`` for ``dotted='a.b'``, creating mappings on the way.
    Where a mapping already spells part of the path flat (a condition's ``a.b: 1``), that
    key is the one set or descended into, the longest such key first, so one field never
    ends up under two spellings. An error names ``source`` (the file, or ``--set``) and the
    override as written there, ``prefix + dotted`` (e.g. ``conditions.a.train.epochs.x``)."""
    keys = dotted.split(".")
    node, depth = data, 0
    while True:
        end = next((end for end in range(len(keys), depth + 1, -1)
                    if ".".join(keys[depth:end]) in node), depth + 1)
        key = ".".join(keys[depth:end])
        if end == len(keys):
            node[key] = value
            return
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        elif not isinstance(child, dict):
            raise ConfigError(source, prefix + dotted, value,
                              f"{'.'.join(keys[:end])} is not a mapping of fields")
        node, depth = child, end


def _optional_section(tp: Any) -> type | None:
    """The config class of an optional section (``SomeConfig | None``), else None."""
    if typing.get_origin(tp) not in (typing.Union, types.UnionType):
        return None
    classes = [arg for arg in typing.get_args(tp) if dataclasses.is_dataclass(arg)]
    return classes[0] if len(classes) == 1 else None


def field_docs(cls: type, prefix: str = "") -> list[tuple[str, str, str]]:
    """(dotted path, default, doc) for every field of ``cls``, nested classes expanded;
    an optional section (``SomeConfig | None``) has its own row (its default, null, and
    what it does) followed by its fields, with the defaults they take when it is given."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        path = _join(prefix, f.name)
        if dataclasses.is_dataclass(tp):
            rows.extend(field_docs(tp, path))
            continue
        default = f.default if f.default is not _MISSING else (
            f.default_factory() if f.default_factory is not _MISSING else "(required)")
        rows.append((path, repr(default), f.metadata.get("doc", "")))
        section = _optional_section(tp)
        if section is not None:
            rows.extend(field_docs(section, path))
    return rows
