"""Typed values: the one rule by which sparc reads options, environment variables and
JSON files.

Configs, run records, manifests and results are frozen dataclasses; every dataset
adapter and backbone declares its options as a frozen dataclass whose field docstrings
are the help. :func:`read_value` turns what was given into a field's type, or raises
:class:`BadValue` saying what was expected; it is **strict**:

- ``bool``: a bool; ``int``: an int (never a bool, never a float such as ``2.0``);
  ``float``: a number (not a bool), and None reads as NaN (JSON has no NaN:
  :func:`sparc.jsonio.to_json` writes NaN and ±inf as null);
- ``str``: text; ``Path``: non-empty text; a path (``os.PathLike``) counts as its text;
- ``Literal[...]``: exactly one of the choices, case included;
- ``X | None``: None, else an X (other unions: the first member that fits);
- ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``: a list or tuple (of that length);
  ``dict[str, X]``: an object; ``Any``: anything;
- a dataclass: an object of its fields; a missing key takes the field's default and an
  **unknown key is an error** (a file from a newer sparc, or one that is not what it
  claims to be, is refused rather than half-understood); its own checks apply.

Text that a person typed or set — a command-line option, an environment variable — is
read by a :class:`Spelling` when the field is not text itself:

- :data:`EXACT` (environment variables, :func:`env_value`): ``true``/``false`` for a
  bool, ``none`` for None, an integer in decimal digits (``224``, ``-3``), a number in
  Python's float syntax (``0.5``, ``1e-3``), a choice exactly as documented (lower
  case), a list as items separated by ``|`` or ``,`` (blanks dropped). An unset or empty
  variable means its default; anything else outside these spellings is an error naming
  the variable, so a typo is never read as the default.
- :data:`OPTION_TEXT`, the one exception: the ``key=value`` options of datasets and
  backbones (``--dataset``, ``--stream``, ``--backbone``, and keyword values given to
  :meth:`sparc.registry.Registry.options` as text) have always also taken any case and
  surrounding blanks, ``yes/no``, ``on/off`` and ``1/0`` for a bool, and ``null`` or
  the empty text for None (``skin_tones=No``, ``tower=TEXT``, ``root=``); scripts rely
  on them, so they stay, here and only here.

The text forms of options — ``NAME[:key=value,...]`` (:func:`split_spec`) and a flag's
``NAME=VALUE`` items (:func:`named_values`) — are read at the end of this module.

Values that types cannot express (ranges, existing files) are checked by the dataclass's
``__post_init__`` (raising :class:`OptionError`, or SparcError) or by the constructor
that uses them.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import inspect
import math
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

_INTEGER = re.compile(r"[+-]?\d+")


class OptionError(SparcError):
    """A bad option value found by an options dataclass's own checks (a range, a format).

    The message is ``option KEY=VALUE WHY``; the registry that builds the options puts
    the dataset or backbone in front of it.
    """

    def __init__(self, key: str, value: Any, why: str):
        super().__init__(f"option {key}={value!r} {why}")


class BadValue(ValueError):
    """A value that does not fit its type (from :func:`read_value`). ``expected`` says
    what would (``an integer``), ``where`` where it is in a nested value (``streams.a.dim``);
    the readers (:func:`coerce`, :func:`sparc.jsonio.from_json`) turn it into a SparcError."""

    def __init__(self, expected: str, value: Any = None, where: str = "", *, why: str | None = None):
        self.expected, self.where = expected, where
        self.found_inside = why is not None
        """The value had the right form and something inside it is wrong (``why`` says what)."""
        message = why if why is not None else f"expected {expected}, got {_shown(value)}"
        super().__init__(f"{where}: {message}" if where and why is None else message)


def _shown(value: Any, limit: int = 80) -> str:
    """``repr(value)``, cut to ``limit`` characters (a whole file's object is too long for one line)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


@dataclasses.dataclass(frozen=True)
class Spelling:
    """How typed text reads as a bool, as None and as a choice (see the module docstring)."""

    true: frozenset[str]
    false: frozenset[str]
    none: frozenset[str]
    folded: bool
    """Compare after dropping surrounding blanks and lower-casing."""

    def word(self, text: str) -> str:
        """``text`` as compared with the spellings."""
        return text.strip().lower() if self.folded else text

    def is_none(self, text: str) -> bool:
        return self.word(text) in self.none


EXACT = Spelling(frozenset({"true"}), frozenset({"false"}), frozenset({"none"}), folded=False)
"""The spellings of text by default: environment variables."""
OPTION_TEXT = Spelling(frozenset({"true", "yes", "on", "1"}), frozenset({"false", "no", "off", "0"}),
                       frozenset({"none", "null", ""}), folded=True)
"""The one exception: dataset and backbone options written ``key=value``."""


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


# --------------------------------------------------------------------------- reading values
def read_value(tp: Any, value: Any, *, text: Spelling | None = None, where: str = "") -> Any:
    """``value`` as type ``tp`` by the rule of this module; text (a ``str``) for a field
    that is not text is read by ``text`` (None: text only where the field is text).
    Raises :class:`BadValue`; ``where`` names the place in a nested value, for errors."""
    if isinstance(value, str) and text is not None and tp not in (str, Any):
        return _read_text(tp, value, text, where)
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _read_dataclass(tp, value, text, where)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None and len(members) < len(typing.get_args(tp)):
            return None
        expected = []
        for member in members:
            try:
                return read_value(member, value, text=text, where=where)
            except BadValue as e:
                if e.where != where or e.found_inside:  # the member fitted; its own error says more
                    raise
                expected.append(e.expected)
        if len(members) < len(typing.get_args(tp)):
            expected.append("none")
        raise BadValue(" or ".join(expected), value, where)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise BadValue(_choices(tp), value, where)
        return value
    if origin in (list, tuple):
        return _read_sequence(tp, value, text, where)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise BadValue("an object", value, where)
        (_, item) = typing.get_args(tp)
        return {k: read_value(item, v, text=text, where=_inside(where, k)) for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise BadValue("true or false", value, where)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise BadValue("an integer", value, where)
    if tp is float:
        if value is None:
            return math.nan
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise BadValue("a number", value, where)
    if tp is str:
        if isinstance(value, (str, os.PathLike)):
            return os.fspath(value)
        raise BadValue("text", value, where)
    if tp is Path:
        if isinstance(value, (str, os.PathLike)) and os.fspath(value) != "":
            return Path(value)
        raise BadValue("a path", value, where)
    if tp is Any:
        return value
    raise TypeError(f"{where or 'value'}: unsupported type {tp!r}")


def _read_text(tp: Any, text: str, spelling: Spelling, where: str) -> Any:
    """``text`` (typed by a person) as type ``tp``, by ``spelling``."""
    inner = _optional(tp)
    if inner is not None:
        if spelling.is_none(text):
            return None
        try:
            return _read_text(inner, text, spelling, where)
        except BadValue as e:
            raise BadValue(f"{e.expected} or none", text, where) from None
    if tp in (str, Any):
        return text
    word = spelling.word(text)
    if typing.get_origin(tp) is Literal:
        matches = [c for c in typing.get_args(tp) if spelling.word(str(c)) == word]
        if len(matches) != 1:
            raise BadValue(_choices(tp), text, where)
        return matches[0]
    if _is_str_tuple(tp):
        return tuple(p.strip() for p in re.split(r"[|,]", text) if p.strip())
    if tp is bool:
        if word in spelling.true | spelling.false:
            return word in spelling.true
        raise BadValue("true or false", text, where)
    if tp is int:
        if _INTEGER.fullmatch(word):
            return int(word)
        raise BadValue("an integer", text, where)
    if tp is float:
        try:
            if word != word.strip():
                raise ValueError(word)
            return float(word)
        except ValueError:
            raise BadValue("a number", text, where) from None
    if tp is Path:
        return read_value(tp, text, where=where)
    raise TypeError(f"{where or 'text'}: no text form for type {tp!r}")


def _read_sequence(tp: Any, value: Any, text: Spelling | None, where: str) -> Any:
    """A list or tuple type: ``list[X]``, ``tuple[X, ...]``, ``tuple[X, Y]``."""
    args = typing.get_args(tp)
    if _is_str_tuple(tp) and isinstance(value, os.PathLike):
        value = [value]  # one path given for a list of them
    if not isinstance(value, (list, tuple)):
        raise BadValue("a list of text (a|b)" if _is_str_tuple(tp) else "a list", value, where)
    if typing.get_origin(tp) is list or args[1:] == (Ellipsis,):
        items = [read_value(args[0], v, text=text, where=f"{where}[{i}]") for i, v in enumerate(value)]
    elif len(value) != len(args):
        raise BadValue(f"a list of {len(args)}", value, where)
    else:
        items = [read_value(a, v, text=text, where=f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value))]
    return items if typing.get_origin(tp) is list else tuple(items)


def _read_dataclass(cls: type, value: Any, text: Spelling | None, where: str) -> Any:
    if not isinstance(value, Mapping):
        raise BadValue("an object", value, where)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    unknown = sorted(set(value) - set(names))
    if unknown:
        keys = ", ".join(repr(_inside(where, k)) for k in unknown)
        raise BadValue("known keys", value, where, why=f"unknown key{'s' if len(unknown) > 1 else ''} {keys} "
                       "(written by a newer sparc, or not this kind of file)")
    kwargs = {n: read_value(hints[n], value[n], text=text, where=_inside(where, n)) for n in names if n in value}
    try:
        return cls(**kwargs)
    except (SparcError, TypeError) as e:  # its own checks; a required field missing
        raise BadValue("valid values", value, where, why=f"{where or cls.__name__}: {e}") from None


def _inside(where: str, key: str) -> str:
    return f"{where}.{key}" if where else str(key)


def _choices(tp: Any) -> str:
    return "one of " + ", ".join(str(c) for c in typing.get_args(tp))


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
            kwargs[key] = read_value(known[key].type, value, text=OPTION_TEXT)
        except BadValue as e:
            at = f" (at {e.where})" if e.where else ""
            raise SparcError(f"{what}: option {key}={value!r} must be {e.expected}{at}") from None
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
    """``NAME[:key=value,...]`` → (name, {key: text}), the syntax only: the name ends at the
    first ``:``, options are separated by ``,``, each splits at its first ``=`` (so a value
    may contain ``=`` and ``:``), ``-`` in a key reads as ``_``, empty items are ignored; a
    list is written ``a|b``."""
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
        or (value is not None and _optional(f.type) is not None and OPTION_TEXT.is_none(text))
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


def env_value(var: str, tp: Any, default: T) -> T:
    """Environment variable ``var`` read as type ``tp`` by :data:`EXACT` (``default`` when
    unset or empty), or a one-line SparcError naming the variable and what it takes."""
    value = os.environ.get(var, "")
    if value == "":
        return default
    try:
        return read_value(tp, value, text=EXACT)
    except BadValue as e:
        raise SparcError(f"{var} must be {e.expected}, got {value!r}") from None


def env_choice(var: str, choices: tuple[str, ...], default: str = "auto") -> str:
    """:func:`env_value` for a variable that names one of ``choices``."""
    return env_value(var, Literal[choices], default)  # type: ignore[valid-type]
