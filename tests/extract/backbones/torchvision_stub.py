"""TEST-ONLY stand-in for torchvision, so open_clip and timm can be imported where the
installed torchvision does not match torch (or is missing).

open_clip and timm import torchvision at package import time (``FrozenBatchNorm2d`` in
``open_clip/utils.py`` and ``timm/layers/create_norm.py``; the transforms modules), but
building a model, open_clip's tokenizer and a forward pass never call it — sparc does its
own preprocessing. This finder answers every ``torchvision[.*]`` import with a module whose
attributes are inert placeholder classes. It is installed only in a subprocess
(``run_stubbed.py``), never in the test process, and never by sparc itself.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types


class _Placeholder(type):
    def __getattr__(cls, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        return _Placeholder(name, (), {})

    def __call__(cls, *args, **kwargs):
        raise RuntimeError(f"torchvision stub: {cls.__name__} was called; the code under test must not use torchvision")


class _StubModule(types.ModuleType):
    def __getattr__(self, name: str):
        if name.startswith("__"):
            raise AttributeError(name)
        value = _Placeholder(name, (), {})
        setattr(self, name, value)
        return value


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, fullname, path, target=None):
        if fullname == "torchvision" or fullname.startswith("torchvision."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec):
        module = _StubModule(spec.name)
        module.__path__ = []
        return module

    def exec_module(self, module):
        if module.__name__ == "torchvision":
            module.__version__ = "0.0.0+sparc-test-stub"


def install() -> None:
    for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
        del sys.modules[name]
    sys.meta_path.insert(0, _Finder())
