"""The rule for typed values (options, environment variables, JSON), the option spec
syntax, errors, round trip."""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sparc.errors import SparcError
from sparc.extract.backbones import BACKBONES
from sparc.extract.datasets import DATASETS
from sparc.jsonio import from_json, json_text
from sparc.options import (
    EXACT,
    OPTION_TEXT,
    BadValue,
    OptionError,
    coerce,
    env_value,
    fields,
    format_options,
    named_values,
    parse_spec,
    read_value,
    split_spec,
)

REGISTRIES = {"dataset": DATASETS, "backbone": BACKBONES}
ENTRIES = [(kind, name) for kind, reg in REGISTRIES.items() for name in reg.names()]


@pytest.mark.parametrize(
    ("tp", "value", "want"),
    [
        (bool, "true", True),
        (bool, "False", False),
        (bool, "1", True),
        (bool, "0", False),
        (bool, "yes", True),
        (bool, "NO", False),
        (bool, "on", True),
        (bool, " off ", False),
        (bool, True, True),
        (int, "224", 224),
        (int, "-3", -3),
        (int, "+5", 5),
        (int, 224, 224),
        (float, "0.5", 0.5),
        (float, "1e-3", 0.001),
        (float, 2, 2.0),
        (str, "x", "x"),
        (str, "none", "none"),
        (str, "", ""),
        (str, Path("a/b"), "a/b"),
        (Path, "a/b", Path("a/b")),
        (Path, Path("~/x"), Path("~/x")),
        (Literal["image", "text"], "image", "image"),
        (Literal["image", "text"], "TEXT", "text"),
        (int | None, "none", None),
        (int | None, "NULL", None),
        (int | None, "", None),
        (int | None, None, None),
        (int | None, "3", 3),
        (str | None, "none", None),
        (str | None, "x", "x"),
        (Path | None, "", None),
        (tuple[str, ...], "a|b", ("a", "b")),
        (tuple[str, ...], "a, b", ("a", "b")),
        (tuple[str, ...], " a ||b ", ("a", "b")),
        (tuple[str, ...], "", ()),
        (tuple[str, ...], ["x", Path("y")], ("x", "y")),
        (tuple[str, ...], ("x",), ("x",)),
        (tuple[str, ...], Path("p.jsonl"), ("p.jsonl",)),
    ],
)
def test_option_text_and_python_values(tp, value, want):
    out = read_value(tp, value, text=OPTION_TEXT)
    assert out == want and type(out) is type(want)


@pytest.mark.parametrize(
    ("tp", "value", "expected"),
    [
        (bool, "maybe", "true or false"),
        (bool, 1, "true or false"),
        (bool, "", "true or false"),
        (int, True, "an integer"),
        (int, 2.5, "an integer"),
        (int, 224.0, "an integer"),
        (int, "2x", "an integer"),
        (int, "", "an integer"),
        (int, None, "an integer"),
        (float, "x", "a number"),
        (float, True, "a number"),
        (str, None, "text"),
        (str, True, "text"),
        (str, 1234, "text"),
        (Path, "", "a path"),
        (Path, None, "a path"),
        (Path, 3, "a path"),
        (Literal["image", "text"], "audio", "one of image, text"),
        (tuple[str, ...], 3, "a list of text (a|b)"),
        (int | None, "x", "an integer or none"),
    ],
)
def test_option_values_rejected(tp, value, expected):
    with pytest.raises(BadValue) as e:
        read_value(tp, value, text=OPTION_TEXT)
    assert e.value.expected == expected and str(e.value) == f"expected {expected}, got {value!r}"


@pytest.mark.parametrize(
    ("tp", "value", "want"),
    [
        (bool, False, False),
        (int, -3, -3),
        (float, 2, 2.0),
        (float, None, math.nan),  # to_json writes NaN as null
        (str, "Yes", "Yes"),
        (str, Path("a/b"), "a/b"),
        (Path, "a", Path("a")),
        (Literal["image", "text"], "text", "text"),
        (int | None, None, None),
        (list[int], [1, 2], [1, 2]),
        (tuple[float, float], [1, 0.5], (1.0, 0.5)),
        (tuple[str, ...], ["a", "b"], ("a", "b")),
        (dict[str, int], {"a": 1}, {"a": 1}),
    ],
)
def test_strict_values_accepted(tp, value, want):
    out = read_value(tp, value)
    assert type(out) is type(want) and (out == want or (out != out and want != want))


@pytest.mark.parametrize(
    ("tp", "value", "message"),
    [
        (bool, "true", "expected true or false, got 'true'"),
        (bool, 1, "expected true or false, got 1"),
        (int, "3", "expected an integer, got '3'"),
        (int, 3.0, "expected an integer, got 3.0"),
        (float, "0.5", "expected a number, got '0.5'"),
        (str, 3, "expected text, got 3"),
        (Literal["image", "text"], "TEXT", "expected one of image, text, got 'TEXT'"),
        (int | None, "none", "expected an integer or none, got 'none'"),
        (tuple[float, float], [1.0], "expected a list of 2, got [1.0]"),
        (tuple[str, ...], "a|b", "expected a list of text (a|b), got 'a|b'"),
        (list[int], [1, "2"], "[1]: expected an integer, got '2'"),
        (dict[str, bool], {"a": "yes"}, "a: expected true or false, got 'yes'"),
    ],
)
def test_strict_values_rejected(tp, value, message):
    with pytest.raises(BadValue) as e:
        read_value(tp, value)
    assert str(e.value) == message


@pytest.mark.parametrize(
    ("tp", "text", "want"),
    [
        (bool, "true", True),
        (bool, "false", False),
        (int, "-3", -3),
        (float, "1e-3", 0.001),
        (Literal["auto", "pytorch"], "pytorch", "pytorch"),
        (int | None, "none", None),
        (tuple[str, ...], "a|b", ("a", "b")),
        (str, " Yes ", " Yes "),
    ],
)
def test_exact_text_accepted(tp, text, want):
    assert read_value(tp, text, text=EXACT) == want


@pytest.mark.parametrize(
    ("tp", "text", "expected"),
    [
        (bool, "yes", "true or false"),
        (bool, "True", "true or false"),
        (bool, " true", "true or false"),
        (bool, "1", "true or false"),
        (int, " 3", "an integer"),
        (float, "0.5 ", "a number"),
        (Literal["auto", "pytorch"], "PyTorch", "one of auto, pytorch"),
        (int | None, "null", "an integer or none"),
        (int | None, "", "an integer or none"),
    ],
)
def test_exact_text_rejects_the_option_spellings(tp, text, expected):
    with pytest.raises(BadValue) as e:
        read_value(tp, text, text=EXACT)
    assert e.value.expected == expected
    read_value(tp, text, text=OPTION_TEXT)  # the one exception takes them


def test_environment_variables_are_exact(monkeypatch):
    modes = Literal["auto", "pytorch", "fused"]
    monkeypatch.delenv("SPARC_TEST_MODE", raising=False)
    assert env_value("SPARC_TEST_MODE", modes, "auto") == "auto"
    monkeypatch.setenv("SPARC_TEST_MODE", "")
    assert env_value("SPARC_TEST_MODE", modes, "auto") == "auto"
    monkeypatch.setenv("SPARC_TEST_MODE", "fused")
    assert env_value("SPARC_TEST_MODE", modes, "auto") == "fused"
    monkeypatch.setenv("SPARC_TEST_MODE", "Fused")
    with pytest.raises(SparcError) as e:
        env_value("SPARC_TEST_MODE", modes, "auto")
    assert str(e.value) == "SPARC_TEST_MODE must be one of auto, pytorch, fused, got 'Fused'"
    monkeypatch.setenv("SPARC_TEST_MODE", "yes")
    with pytest.raises(SparcError, match="^SPARC_TEST_MODE must be true or false, got 'yes'$"):
        env_value("SPARC_TEST_MODE", bool, False)


@dataclass(frozen=True)
class Inner:
    k: int
    mode: Literal["a", "b"] = "a"

    def __post_init__(self) -> None:
        if self.k < 1:
            raise SparcError(f"k must be >= 1, got {self.k}")


@dataclass(frozen=True)
class Outer:
    inner: Inner
    names: list[str] = dataclasses.field(default_factory=list)
    extra: Inner | None = None


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"inner": {"k": 2, "topx": 1}}, "f.json: unknown key 'inner.topx' (written by a newer sparc, or not this kind of file)"),
        ({"inner": {"k": 2}, "a": 1, "b": 2}, "f.json: unknown keys 'a', 'b' (written by a newer sparc, or not this kind of file)"),
        ({"inner": {"k": "2"}}, "f.json: inner.k: expected an integer, got '2'"),
        ({"inner": {"k": 2, "mode": "A"}}, "f.json: inner.mode: expected one of a, b, got 'A'"),
        ({"inner": {"k": 0}}, "f.json: inner: k must be >= 1, got 0"),
        ({"inner": {"k": 1}, "extra": {"k": 0}}, "f.json: extra: k must be >= 1, got 0"),
        ({"inner": {"k": 1}, "names": "a"}, "f.json: names: expected a list, got 'a'"),
        ([], "f.json: expected an object, got []"),
        ({"inner": {"k": 1}, "names": ["x" * 50, 3]}, "f.json: names[1]: expected text, got 3"),
        ({"inner": {"k": 1}, "extra": ["x" * 100]}, "f.json: extra: expected an object or none, got ['" + "x" * 75 + "..."),
    ],
)
def test_json_files_follow_the_same_rule_with_one_line_errors(data, message):
    assert from_json(Outer, {"inner": {"k": 3}, "extra": None}) == Outer(Inner(3))
    with pytest.raises(SparcError) as e:
        from_json(Outer, data, what="f.json")
    assert str(e.value) == message


@dataclass(frozen=True, kw_only=True)
class Demo:
    name: str
    """A required option."""

    size: int = 3
    """Positive."""

    fast: bool = False
    """Go fast."""

    tags: tuple[str, ...] = ()
    """Tags."""

    mode: Literal["a", "b"] = "a"
    """The mode."""

    root: Path | None = None
    """A folder."""

    def __post_init__(self) -> None:
        if self.size <= 0:
            raise OptionError("size", self.size, "must be positive")


def test_coerce_builds_the_dataclass_from_text_and_from_python_values():
    assert coerce(Demo, {"name": "x", "size": "4", "fast": "yes", "tags": "p|q", "root": "none"}, "thing 'd'") == Demo(
        name="x", size=4, fast=True, tags=("p", "q")
    )
    assert coerce(Demo, {"name": "x", "fast": True, "tags": ["p"], "root": Path("r")}, "thing 'd'") == Demo(
        name="x", fast=True, tags=("p",), root=Path("r")
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"name": "x", "sise": "4"},
            "unknown option 'sise' for thing 'd'; valid: name (str), size (int), fast (bool), tags (list a|b), "
            "mode (a|b), root (path or none)",
        ),
        ({"name": "x", "size": "big"}, "thing 'd': option size='big' must be an integer"),
        ({"name": "x", "mode": "c"}, "thing 'd': option mode='c' must be one of a, b"),
        ({"name": "x", "size": 0}, "thing 'd': option size=0 must be positive"),
        ({"name": "x", "size": "-2"}, "thing 'd': option size=-2 must be positive"),
        ({}, "thing 'd' needs name=... (str): A required option."),
    ],
)
def test_coerce_errors_are_one_line_and_name_the_option(values, message):
    with pytest.raises(SparcError) as e:
        coerce(Demo, values, "thing 'd'")
    assert str(e.value) == message


def test_fields_have_types_defaults_and_help():
    info = {f.name: f for f in fields(Demo)}
    assert info["name"].required and info["name"].default_text == "(required)"
    assert (info["size"].type_name, info["size"].default_text, info["size"].help) == ("int", "3", "Positive.")
    assert info["tags"].default_text == "''" and info["root"].default_text == "none"
    assert info["fast"].default_text == "false" and info["mode"].type_name == "a|b"


@pytest.mark.parametrize(
    ("spec", "want"),
    [
        ("minilm", ("minilm", {})),
        ("minilm:", ("minilm", {})),
        ("open-clip:model=ViT-B-16,pretrained=None", ("open-clip", {"model": "ViT-B-16", "pretrained": "None"})),
        ("open-clip:model=hf-hub:org/repo", ("open-clip", {"model": "hf-hub:org/repo"})),
        ("x:template={a}={b},k=", ("x", {"template": "{a}={b}", "k": ""})),
        ("x:max-length=3", ("x", {"max_length": "3"})),
        ("x:a=1,,b=2,", ("x", {"a": "1", "b": "2"})),
        ("image-folder:root=/a b/c", ("image-folder", {"root": "/a b/c"})),
    ],
)
def test_split_spec(spec, want):
    assert split_spec(spec) == want


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("x:novalue", "bad option 'novalue' in 'x:novalue'; expected key=value"),
        ("x:=3", "bad option '=3' in 'x:=3'; expected key=value"),
        (":a=1", "empty name in ':a=1'"),
        ("x:a=1,a=2", "option 'a' given twice in 'x:a=1,a=2'"),
    ],
)
def test_split_spec_errors(spec, message):
    with pytest.raises(SparcError) as e:
        split_spec(spec)
    assert str(e.value) == message


def test_parse_spec_with_a_registry():
    name, options = parse_spec("openmoji:size=64,skin_tones=false,exclude_groups=Flags|Component", DATASETS)
    assert name == "openmoji"
    assert options == DATASETS.get("openmoji").Options(
        size=64, skin_tones=False, exclude_groups=("Flags", "Component")
    )
    name, options = parse_spec("hf-clip:tower=text,max_length=32,revision=1234", BACKBONES)
    assert (options.tower, options.max_length, options.revision) == ("text", 32, "1234")
    with pytest.raises(SparcError, match=r"^unknown backbone 'nope'; available: .*minilm"):
        parse_spec("nope:a=1", BACKBONES)


def test_named_values():
    assert named_values(("b=x:y=1", "a=z"), "NAME=V") == {"b": "x:y=1", "a": "z"}
    assert list(named_values(("b=1", "a=2"), "NAME=V")) == ["b", "a"]
    for item in ("noequals", "=v", "n="):
        with pytest.raises(SparcError, match=rf"^--stream expects NAME=V, got '{item}'$"):
            named_values((item,), "NAME=V")
    with pytest.raises(SparcError, match="^stream 'a' given twice$"):
        named_values(("a=1", "a=2"), "NAME=V")


def test_format_refuses_what_the_text_form_cannot_carry():
    assert format_options(Demo(name="x", tags=("p", "q"))) == "name=x,size=3,fast=false,tags=p|q,mode=a,root=none"
    assert format_options(Demo(name="x", size=5), changed_only=True) == "name=x,size=5"
    for bad in (Demo(name="a,b"), Demo(name="x", tags=("p|q",)), Demo(name="x", tags=(" p",))):
        with pytest.raises(SparcError, match="cannot be written as key=value text"):
            format_options(bad)


@pytest.mark.parametrize(("kind", "name"), ENTRIES)
def test_every_options_class_is_constructible_with_its_defaults(kind, name):
    registry = REGISTRIES[kind]
    cls = registry.get(name).Options
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen
    infos = fields(cls)
    for f in infos:
        assert f.type_name and f.help, f"{name}: option {f.name} needs a supported type and a help line"
    required = [f.name for f in infos if f.required]
    if not required:
        assert cls() == registry.options(name)
        assert format_options(cls(), changed_only=True) == ""
    else:
        with pytest.raises(SparcError, match=rf"^{kind} '{name}' needs {required[0]}=\.\.\. "):
            registry.options(name)


# ----------------------------------------------------------------- round trip
SAFE_TEXT = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters=","), max_size=12)
ITEM = st.from_regex(r"[A-Za-z0-9_.*/#-]{1,8}", fullmatch=True)
OVERRIDES = {
    ("fashion-mnist", "split"): st.sampled_from([("all",), ("train",), ("test",), ("train", "test"), ("test", "train")]),
    ("openmoji", "background"): st.from_regex(r"#?[0-9A-Za-z]{1,8}", fullmatch=True),
    ("openmoji", "size"): st.integers(8, 4096),
}


def strategy(tp):
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(tp) if a is not type(None)]
        return st.one_of(st.none(), strategy(inner))
    if typing.get_origin(tp) is Literal:
        return st.sampled_from(typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        return st.lists(ITEM, max_size=3).map(tuple)
    return {
        str: SAFE_TEXT,
        int: st.integers(1, 10**6),
        float: st.floats(allow_nan=False, allow_infinity=False),
        bool: st.booleans(),
        Path: SAFE_TEXT.filter(lambda s: s != "").map(Path),
    }[tp]


@pytest.mark.parametrize(("kind", "name"), ENTRIES)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(data=st.data())
def test_format_then_parse_gives_the_same_options(kind, name, data):
    registry = REGISTRIES[kind]
    cls = registry.get(name).Options
    values = {f.name: data.draw(OVERRIDES.get((name, f.name), strategy(f.type)), label=f.name) for f in fields(cls)}
    try:
        options = cls(**values)
    except OptionError:
        assume(False)
    try:
        text = format_options(options)
    except SparcError:
        assume(False)
    assert parse_spec(f"{name}:{text}", registry) == (name, options)
    assert registry.options(name, **dataclasses.asdict(options)) == options  # Python values: the same coercion


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20)


@settings(max_examples=200, deadline=None)
@given(_JSON)
def test_json_text_reads_back_as_the_value(value):
    assert json.loads(json_text(value)) == value


def test_json_text_puts_lists_of_scalars_on_one_line():
    assert json_text({"a": [1, 2.5, None, "x\n[", True], "b": [[1], []]}) == (
        '{\n  "a": [1, 2.5, null, "x\\n[", true],\n  "b": [\n    [1],\n    []\n  ]\n}\n')
