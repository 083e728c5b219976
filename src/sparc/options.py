"""Typed options and the one parser of their text forms.

Every dataset adapter and backbone declares its options as a frozen dataclass whose
field docstrings are the help. This module turns text into such instances, and puts
Python keyword arguments through the same coercion:

- ``NAME[:key=value,...]`` → (name, options instance) for a registry (:func:`parse_spec`);
  the name ends at the first ``:``, options are separated by ``,``, each splits at its
  first ``=`` (so a value may contain ``=`` and ``:``), ``-`` in a key reads as ``_``,
  empty items are ignored;
- ``NAME=VALUE`` items of a command-line flag → {name: value} (:func:`named_values`).

A value (a string from the command line, or a Python value) is coerced to its field's
type:

- ``str``: the text (a path or a number is turned into its text);
- ``int``, ``float``: a number (``"224"``, ``0.5``); an int never comes from a bool;
- ``bool``: ``true/false``, ``yes/no``, ``on/off``, ``1/0`` (any case);
- ``Path``: any non-empty text;
- ``Literal[...]``: one of the choices (any case);
- ``X | None``: ``none``, ``null`` or the empty string → None, else an X;
- ``tuple[str, ...]``: a list, or text split at ``|`` (and ``,`` outside the command
  line's option syntax); blanks dropped.

Values that types cannot express (ranges, existing files) are checked by the dataclass's
``__post_init__`` (raising :class:`OptionError`) or by the constructor that uses them.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import os
import re
import textwrap
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Protocol, TypeVar

from sparc.errors import SparcError

T = TypeVar("T")

_NONE = {"", "none", "null"}
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}
_INT = re.compile(r"[+-]?\d+")


class OptionError(SparcError):
    """A bad option value found by an options dataclass's own checks (a range, a format).

    The message is ``option KEY=VALUE WHY``; the registry that builds the options puts
    the dataset or backbone in front of it.
    """

    def __init__(self, key: str, value: Any, why: str):
        super().__init__(f"option {key}={value!r} {why}")


class BadValue(Exception):
    """A value that does not fit a type (from :func:`coerce_value`); ``args[0]`` says
    what was expected (``an integer``); :func:`coerce` turns it into a SparcError."""


class OptionsRegistry(Protocol):
    """What :func:`parse_spec` needs of a registry (see :class:`sparc.registry.Registry`)."""

    def options(self, name: str, /, **values: Any) -> Any: ...


# --------------------------------------------------------------------------- fields
@dataclasses.dataclass(frozen=True)
class OptionInfo:
    """One field of an options dataclass, for help and error messages."""

    name: str
    type: Any
    """The resolved annotation."""
    required: bool
    default: Any
    """The default value (``dataclasses.MISSING`` when required)."""
    help: str
    """The field's docstring."""

    @property
    def type_name(self) -> str:
        return type_name(self.type)

    @property
    def default_text(self) -> str:
        if self.required:
            return "(required)"
        text = _text(self.default)
        return repr(text) if text != text.strip() or not text else text


@functools.cache
def fields(cls: type) -> tuple[OptionInfo, ...]:
    """The options of the dataclass ``cls``: its own in declaration order, then inherited ones."""
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"{cls!r} is not an options dataclass")
    hints = typing.get_type_hints(cls)
    docs = field_docs(cls)
    # the class's own fields first, then those it inherits (dataclasses put bases first)
    by_name = {f.name: f for f in dataclasses.fields(cls) if f.init}
    order = [n for k in cls.__mro__ for n in k.__dict__.get("__annotations__", {}) if n in by_name]
    out = []
    for f in (by_name[n] for n in dict.fromkeys(order)):
        if f.default is not dataclasses.MISSING:
            default, required = f.default, False
        elif f.default_factory is not dataclasses.MISSING:
            default, required = f.default_factory(), False
        else:
            default, required = dataclasses.MISSING, True
        out.append(OptionInfo(f.name, hints[f.name], required, default, docs.get(f.name, "")))
    return tuple(out)


def field_docs(cls: type) -> dict[str, str]:
    """Field name → the string literal right under the field (its help), along the MRO."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if klass is object or not dataclasses.is_dataclass(klass):
            continue
        try:
            tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        except (OSError, TypeError, SyntaxError):
            continue
        body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
        for node, after in zip(body, body[1:] + [None], strict=True):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr)
                and isinstance(after.value, ast.Constant)
                and isinstance(after.value.value, str)
            ):
                docs[node.target.id] = " ".join(after.value.value.split())
    return docs


def type_name(tp: Any) -> str:
    """A short name of an option type: ``int``, ``path``, ``image|text``, ``int or none``, ``list a|b``."""
    inner = _optional(tp)
    if inner is not None:
        return f"{type_name(inner)} or none"
    if typing.get_origin(tp) is Literal:
        return "|".join(str(c) for c in typing.get_args(tp))
    if _is_str_tuple(tp):
        return "list a|b"
    names = {str: "str", int: "int", float: "float", bool: "bool", Path: "path"}
    if tp in names:
        return names[tp]
    raise TypeError(f"unsupported option type {tp!r}")


def _optional(tp: Any) -> Any:
    """X for ``X | None``, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0]
    return None


def _is_str_tuple(tp: Any) -> bool:
    return typing.get_origin(tp) is tuple and typing.get_args(tp) == (str, ...)


def valid_keys(cls: type) -> str:
    """``key (type), ...`` for error messages."""
    return ", ".join(f"{f.name} ({f.type_name})" for f in fields(cls))


# --------------------------------------------------------------------------- coercion
def coerce_value(tp: Any, value: Any) -> Any:
    """``value`` (text or a Python value) as type ``tp``; raises ``BadValue(expected)``."""
    inner = _optional(tp)
    if inner is not None:
        if value is None or (isinstance(value, str) and value.strip().lower() in _NONE):
            return None
        try:
            return coerce_value(inner, value)
        except BadValue as e:
            raise BadValue(f"{e.args[0]} or none") from None
    if typing.get_origin(tp) is Literal:
        choices = typing.get_args(tp)
        if value in choices:
            return value
        if isinstance(value, str):
            folded = [c for c in choices if str(c).lower() == value.strip().lower()]
            if len(folded) == 1:
                return folded[0]
        raise BadValue("one of " + ", ".join(str(c) for c in choices))
    if _is_str_tuple(tp):
        if isinstance(value, str):
            parts = re.split(r"[|,]", value)
        elif isinstance(value, os.PathLike):
            parts = [os.fspath(value)]
        elif isinstance(value, (list, tuple)) and all(isinstance(v, (str, os.PathLike)) for v in value):
            parts = [os.fspath(v) for v in value]
        else:
            raise BadValue("a list of text (a|b)")
        return tuple(p.strip() for p in parts if p.strip())
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise BadValue("true or false")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _INT.fullmatch(value.strip()):
            return int(value)
        raise BadValue("an integer")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise BadValue("a number")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, os.PathLike) or (isinstance(value, (int, float)) and not isinstance(value, bool)):
            return os.fspath(value) if isinstance(value, os.PathLike) else str(value)
        raise BadValue("text")
    if tp is Path:
        if isinstance(value, (str, os.PathLike)) and os.fspath(value) != "":
            return Path(value)
        raise BadValue("a path")
    raise TypeError(f"unsupported option type {tp!r}")


def coerce(cls: type[T], values: Mapping[str, Any], what: str) -> T:
    """An instance of the options dataclass ``cls`` from ``values`` (text or Python values).

    ``what`` names the owner in errors (``dataset 'coco'``). Unknown keys, missing
    required options, values that do not fit their type and the class's own checks
    raise a one-line SparcError.
    """
    known = {f.name: f for f in fields(cls)}
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key not in known:
            raise SparcError(f"unknown option {key!r} for {what}; valid: {valid_keys(cls)}")
        try:
            kwargs[key] = coerce_value(known[key].type, value)
        except BadValue as e:
            raise SparcError(f"{what}: option {key}={value!r} must be {e.args[0]}") from None
    for f in known.values():
        if f.required and f.name not in kwargs:
            hint = f": {f.help}" if f.help else ""
            raise SparcError(f"{what} needs {f.name}=... ({f.type_name}){hint}")
    try:
        return cls(**kwargs)
    except OptionError as e:
        raise SparcError(f"{what}: {e}") from None


# --------------------------------------------------------------------------- text forms
def split_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``NAME[:key=value,...]`` → (name, {key: text}), the syntax only (see the module docstring)."""
    name, _, rest = spec.partition(":")
    options: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise SparcError(f"bad option {item!r} in {spec!r}; expected key=value")
        key = key.strip().replace("-", "_")
        if key in options:
            raise SparcError(f"option {key!r} given twice in {spec!r}")
        options[key] = value
    if not name:
        raise SparcError(f"empty name in {spec!r}")
    return name, options


def parse_spec(spec: str, registry: OptionsRegistry) -> tuple[str, Any]:
    """``NAME[:key=value,...]`` → (name, the options instance of ``registry``'s entry NAME)."""
    name, values = split_spec(spec)
    return name, registry.options(name, **values)


def format_options(options: Any, *, changed_only: bool = False) -> str:
    """``key=value,...`` that :func:`parse_spec` reads back as ``options``.

    Raises SparcError for a value the text form cannot carry (a ``,`` in a value, a
    ``|`` in a list item, text that would read as none).
    """
    items = []
    for f in fields(type(options)):
        value = getattr(options, f.name)
        if changed_only and not f.required and value == f.default:
            continue
        items.append(f"{f.name}={_spec_text(f, value)}")
    return ",".join(items)


def _spec_text(f: OptionInfo, value: Any) -> str:
    text = _text(value)
    items = value if _is_str_tuple(_optional(f.type) or f.type) and value is not None else ()
    if (
        "," in text
        or any("|" in v or "," in v or v != v.strip() or not v for v in items)
        or (value is not None and _optional(f.type) is not None and text.strip().lower() in _NONE)
    ):
        raise SparcError(f"option {f.name}={value!r} cannot be written as key=value text")
    return text


def _text(value: Any) -> str:
    """How a value reads in a spec and in help."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "|".join(map(str, value))
    if isinstance(value, Path):
        return os.fspath(value)
    return str(value)


def named_values(items: tuple[str, ...] | list[str], form: str, flag: str = "--stream") -> dict[str, str]:
    """``flag`` items ``NAME=VALUE`` → {name: value}, in order, names unique."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise SparcError(f"{flag} expects {form}, got {item!r}")
        if name in out:
            raise SparcError(f"stream {name!r} given twice")
        out[name] = value
    return out


def json_options(options: Any, keys: Any = None) -> dict[str, Any]:
    """The options (or only ``keys`` of them) as JSON values (paths as text, lists as lists)."""
    out = {}
    for f in fields(type(options)):
        if keys is not None and f.name not in keys:
            continue
        value = getattr(options, f.name)
        out[f.name] = os.fspath(value) if isinstance(value, Path) else list(value) if isinstance(value, tuple) else value
    return out


def env_choice(var: str, choices: tuple[str, ...], default: str = "auto") -> str:
    """The value of environment variable ``var`` (``default`` when unset or empty), one of
    ``choices``, or a one-line error."""
    value = os.environ.get(var, default).strip().lower() or default
    if value not in choices:
        raise SparcError(f"{var} must be one of {', '.join(choices)}, got {value!r}")
    return value
