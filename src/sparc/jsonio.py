"""Typed values to JSON files and back.

Configs, run records, manifests and results are frozen dataclasses holding numbers,
strings, lists, ``dict[str, X]`` and other such dataclasses. :func:`to_json` turns one
into plain JSON values (NaN and ±inf become ``null``, as JSON has no such numbers);
:func:`from_json` rebuilds it from its type hints, so ``from_json(T, to_json(x)) == x``
up to NaN.

Reading follows the one rule of :mod:`sparc.options` (docs/formats.md), strict: values
of exactly their field's type, a missing key takes the field's default, and an
**unknown key is an error** naming the key — a file from a newer sparc, or one that is
not what it claims to be, is refused rather than half-understood.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from sparc.errors import SparcError
from sparc.options import BadValue, fields, read_value

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


_SCALAR = r'(?:-?\d[\d.eE+-]*|null|true|false|"(?:[^"\\\n]|\\.)*")'
_SCALAR_LIST = re.compile(rf"\[\n\s*({_SCALAR}(?:,\n\s*{_SCALAR})*)\n\s*\]")


def json_text(value: Any) -> str:
    """``value`` (plain JSON values) as indented JSON text with every list of scalars on
    one line: a file of per-latent lists stays readable and small (one number a line
    would triple it). ``json.loads`` of it equals ``value``."""
    text = json.dumps(value, indent=2)
    # "[\n" cannot occur inside a JSON string (newlines there are escaped), so only lists match.
    return _SCALAR_LIST.sub(lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text) + "\n"


def from_json(tp: type[T], data: Any, *, what: str | None = None) -> T:
    """Rebuild a value of type ``tp`` from :func:`to_json` output.

    Missing fields take their defaults; unknown keys, wrong types and values the
    dataclass refuses raise one :class:`SparcError` line naming ``what`` (the file or
    thing being read) and where in it the problem is.
    """
    try:
        return read_value(tp, data)
    except (BadValue, TypeError) as e:
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


def json_options(options: Any, keys: Any = None) -> dict[str, Any]:
    """The options (or only ``keys`` of them) as JSON values (paths as text, lists as lists)."""
    out = {}
    for f in fields(type(options)):
        if keys is not None and f.name not in keys:
            continue
        value = getattr(options, f.name)
        out[f.name] = os.fspath(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
    return out
