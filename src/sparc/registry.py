"""Named classes that register themselves: the datasets and the backbones.

A :class:`Registry` maps a name to a class whose ``Options`` attribute is its typed,
frozen options dataclass (see :mod:`sparc.options`). Classes register with the
:meth:`Registry.register` decorator when their module is imported, which also gives
the class its name (so it is written once); the registry is
given those modules' names and imports them on first use, so importing a registry is
cheap (each module imports its heavy packages only when it is used).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from sparc.errors import SparcError
from sparc.options import coerce, fields

T = TypeVar("T")


class Registry(Generic[T]):
    """Name → class, for one kind of thing (``dataset``, ``backbone``)."""

    def __init__(self, kind: str, modules: Iterable[str], *, name_attribute: str):
        self.kind = kind
        """What the entries are, in messages: ``unknown dataset 'x'``."""
        self.name_attribute = name_attribute
        """The class attribute that :meth:`register` sets to the registered name (``name``, ``family``)."""
        self._modules = tuple(modules)
        self.classes: dict[str, type[T]] = {}
        """Name → class, as registered (tests may patch in stand-ins with ``monkeypatch.setitem``)."""
        self._imported = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator: register the class under ``name``, and set its name attribute to it."""

        def deco(cls: type[T]) -> type[T]:
            if name in self.classes:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            options = getattr(cls, "Options", None)
            if not (isinstance(options, type) and dataclasses.is_dataclass(options)):
                raise TypeError(f"{self.kind} {name!r}: {cls.__name__}.Options must be an options dataclass")
            setattr(cls, self.name_attribute, name)
            self.classes[name] = cls
            return cls

        return deco

    def _import(self) -> None:
        if not self._imported:
            for module in self._modules:
                importlib.import_module(module)
            self._imported = True

    def names(self) -> list[str]:
        """The registered names, sorted."""
        self._import()
        return sorted(self.classes)

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``."""
        self._import()
        if name not in self.classes:
            raise SparcError(f"unknown {self.kind} {name!r}; available: {', '.join(sorted(self.classes))}")
        return self.classes[name]

    def options(self, name: str, /, **values: Any) -> Any:
        """The options instance of ``name`` from keyword values (text or Python values)."""
        return coerce(self.get(name).Options, values, f"{self.kind} {name!r}")  # type: ignore[attr-defined]

    def describe(self) -> str:
        """Every entry with its summary and options (name, type, default, help), for ``--list``."""
        lines = []
        for name in self.names():
            cls = self.classes[name]
            doc = (cls.__doc__ or "").strip().splitlines()
            lines.append(f"  {name}" + (f" — {doc[0]}" if doc else ""))
            for f in fields(cls.Options):  # type: ignore[attr-defined]
                lines.append(f"      {f.name} ({f.type_name}) = {f.default_text}" + (f"  {f.help}" if f.help else ""))
            if not fields(cls.Options):  # type: ignore[attr-defined]
                lines.append("      (no options)")
        return "\n".join(lines)
