"""The registry: lazy import of the modules that register, lookup errors, options, listing."""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass

import pytest

from sparc.errors import SparcError
from sparc.registry import Registry


@dataclass(frozen=True, kw_only=True)
class ThingOptions:
    size: int = 2
    """How big."""


MODULE = '''
import sparc_test_holder as holder


@holder.REG.register("b-thing")
class B:
    """The second thing."""

    Options = holder.ThingOptions

    def __init__(self, options):
        self.options = options


@holder.REG.register("a-thing")
class A(B):
    """The first thing."""
'''


@pytest.fixture
def registry(tmp_path, monkeypatch):
    reg: Registry = Registry("thing", ["sparc_test_things"], name_attribute="name")
    (tmp_path / "sparc_test_things.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "sparc_test_holder", types.SimpleNamespace(REG=reg, ThingOptions=ThingOptions))
    yield reg
    sys.modules.pop("sparc_test_things", None)


def test_modules_are_imported_on_first_use_only(registry):
    assert "sparc_test_things" not in sys.modules
    assert registry.names() == ["a-thing", "b-thing"]
    assert "sparc_test_things" in sys.modules


def test_get_and_options(registry):
    cls = registry.get("a-thing")
    assert cls.__name__ == "A"
    assert (cls.name, registry.get("b-thing").name) == ("a-thing", "b-thing")  # set by register, per class
    assert registry.options("a-thing", size="5") == ThingOptions(size=5)
    assert cls(registry.options("a-thing")).options == ThingOptions()


def test_unknown_name_lists_the_available_ones(registry):
    with pytest.raises(SparcError) as e:
        registry.get("c-thing")
    assert str(e.value) == "unknown thing 'c-thing'; available: a-thing, b-thing"


def test_unknown_option_lists_the_valid_ones(registry):
    with pytest.raises(SparcError) as e:
        registry.options("b-thing", colour="red")
    assert str(e.value) == "unknown option 'colour' for thing 'b-thing'; valid: size (int)"


def test_registration_rules(registry):
    registry.names()
    with pytest.raises(ValueError, match="thing 'a-thing' registered twice"):
        registry.register("a-thing")(type("C", (), {"Options": ThingOptions}))
    with pytest.raises(TypeError, match=r"thing 'd-thing': D.Options must be an options dataclass"):
        registry.register("d-thing")(type("D", (), {}))


def test_describe_lists_summaries_and_options(registry):
    assert registry.describe().splitlines() == [
        "  a-thing — The first thing.",
        "      size (int) = 2  How big.",
        "  b-thing — The second thing.",
        "      size (int) = 2  How big.",
    ]
