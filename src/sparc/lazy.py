"""Names a package exports but imports on first use.

Most of sparc's packages export classes that load PyTorch. The ``sparc`` command reads
only their settings to build its flags, so ``sparc --help`` or a mistyped flag answers
at once when the heavy names load only once something uses them (PEP 562's module
``__getattr__``).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterable


def lazy_exports(package: str, modules: dict[str, Iterable[str]]) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports each name of ``modules``
    (module → the names it provides) from its module when first asked for."""
    where = {name: module for module, names in modules.items() for name in names}

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(where[name]), name)
        setattr(sys.modules[package], name, value)  # found directly from now on
        return value

    return __getattr__
