"""Typed values to JSON and back: the one rule for every file sparc reads.

Configs, run records, manifests and results are frozen dataclasses holding numbers,
strings, lists, ``dict[str, X]`` and other such dataclasses. :func:`to_json` turns one
into plain JSON values (NaN and ±inf become ``null``, as JSON has no such numbers);
:func:`from_json` rebuilds it from its type hints, so ``from_json(T, to_json(x)) == x``
up to NaN.

The rule for reading (docs/formats.md): a missing key takes the field's default, and
an **unknown key is an error** naming the key — a file from a newer sparc, or one that
is not what it claims to be, is refused rather than half-understood.
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from pathlib import Path
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

import numpy as np

from sparc.errors import SparcError

T = TypeVar("T")


def to_json(obj: Any) -> Any:
    """Plain JSON values (dicts, lists, str, int, float, bool, None) for ``obj``."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def from_json(tp: type[T], data: Any, *, what: str | None = None) -> T:
    """Rebuild a value of type ``tp`` from :func:`to_json` output.

    Missing fields take their defaults; unknown keys, wrong types and values the
    dataclass refuses raise one :class:`SparcError` line naming ``what`` (the file or
    thing being read) and where in it the problem is.
    """
    try:
        return _build(tp, data, "")
    except (ValueError, TypeError) as e:
        raise SparcError(f"{what or tp.__name__}: {e}") from None


def read_json(path: str | Path, tp: type[T], *, what: str | None = None) -> T:
    """:func:`from_json` of the JSON file at ``path``; one-line errors for a missing or
    malformed file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SparcError(f"{path} does not exist") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SparcError(f"{path} is not readable JSON ({e})") from None
    return from_json(tp, data, what=what or str(path))


def _build(tp: Any, data: Any, where: str) -> Any:
    origin = get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(data, dict):
            raise ValueError(f"{where or tp.__name__}: expected an object, got {type(data).__name__}")
        hints = get_type_hints(tp)
        known = {f.name for f in dataclasses.fields(tp) if f.init}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown key{'s' if len(unknown) > 1 else ''} "
                             + ", ".join(repr(f"{where}.{k}".lstrip(".")) for k in unknown)
                             + " (written by a newer sparc, or not this kind of file)")
        kwargs = {
            f.name: _build(hints[f.name], data[f.name], f"{where}.{f.name}")
            for f in dataclasses.fields(tp) if f.init and f.name in data
        }
        try:
            return tp(**kwargs)
        except SparcError as e:
            raise ValueError(f"{where.lstrip('.') or tp.__name__}: {e}") from None
    if origin in (Union, types.UnionType):
        args = get_args(tp)
        if data is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _build(arg, data, where)
            except (ValueError, TypeError) as e:
                errors.append(str(e))
        raise ValueError("; ".join(errors))
    if origin is Literal:
        if data not in get_args(tp):
            raise ValueError(f"{where}: {data!r} is not one of {get_args(tp)}")
        return data
    if origin is list:
        (arg,) = get_args(tp)
        return [_build(arg, v, f"{where}[{i}]") for i, v in enumerate(_as_list(data, where))]
    if origin is tuple:
        args = get_args(tp)
        items = _as_list(data, where)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_build(args[0], v, where) for v in items)
        return tuple(_build(a, v, where) for a, v in zip(args, items))
    if origin is dict:
        _, arg = get_args(tp)
        if not isinstance(data, dict):
            raise ValueError(f"{where}: expected an object")
        return {k: _build(arg, v, f"{where}.{k}") for k, v in data.items()}
    if tp is float:
        if data is None:
            return math.nan
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise ValueError(f"{where}: expected a number, got {data!r}")
        return float(data)
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise ValueError(f"{where}: expected an integer, got {data!r}")
        return data
    if tp in (str, bool):
        if not isinstance(data, tp):
            raise ValueError(f"{where}: expected {tp.__name__}, got {data!r}")
        return data
    if tp is Any or tp is typing.Any:
        return data
    raise TypeError(f"{where}: cannot rebuild type {tp!r}")


def _as_list(data: Any, where: str) -> list:
    if not isinstance(data, list):
        raise ValueError(f"{where}: expected a list, got {type(data).__name__}")
    return data
