"""Queries: text, image and row through the store's own backbones; ranking by cosine of
sparse codes; and the one-line errors of bad input."""

import json
import shutil

import numpy as np
import pytest
import torch

from sparc.data import FeatureStore, StoreWriter
from sparc.errors import SparcError
from sparc.explore import Explorer, NamingSettings, StatsSettings
from sparc.explore.sources import backbone_for, derived_options
from sparc.model import SPARC
from tests.explore.world import CONCEPTS, FakeText, concept_image


@pytest.fixture
def ex(world):
    return Explorer.open(world["run"], log=lambda m: None)


def _brute_rank(ex, code, stream, top):
    q = code.dense()[0].numpy()
    q = q / np.linalg.norm(q)
    dense = ex.stats.code(stream, slice(None)).dense().numpy()
    norms = np.linalg.norm(dense, axis=1, keepdims=True)
    scores = (dense / np.where(norms > 0, norms, 1)) @ q
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], ex.stats.rows[i]))[:top]
    return [int(ex.stats.rows[i]) for i in order], scores[order]


def test_text_query_reaches_the_images_of_its_concept(ex):
    result = ex.query_text("a shark", top=5)
    assert result.stream == "txt" and set(result.ranked) == {"img", "raw"}
    vals = [v for _, v in result.latents]
    assert vals == sorted(vals, reverse=True) and all(v > 0 for v in vals)
    meta = ex.store.rows()
    assert all("shark" in meta[r].labels for r, _ in result.ranked["img"][:3])
    for stream in ("img", "raw"):
        rows, scores = _brute_rank(ex, result.code, stream, 5)
        assert [r for r, _ in result.ranked[stream]] == rows
        np.testing.assert_allclose([s for _, s in result.ranked[stream]], scores, rtol=1e-5, atol=1e-6)
    # the code is the text stream's independent code of the normalised backbone features
    x = FakeText().encode(["a shark"])
    x = x / x.norm(dim=1, keepdim=True)
    with torch.no_grad():
        ref = ex.model.encode({"txt": x})["txt"]
    assert torch.equal(ref.indices, result.code.indices)


def test_image_query_and_row_query(ex, tmp_path):
    path = tmp_path / "whale.png"
    concept_image({"whale": 0.9}).save(path)
    result = ex.query_image(path, top=3)
    assert result.stream == "img"
    meta = ex.store.rows()
    assert all("whale" in meta[r].labels for r, _ in result.ranked["txt"])
    row = ex.query_row("r3", "txt", top=4)
    assert row.stream == "txt" and len(row.ranked["img"]) == 4
    assert ex.query_row("r3").stream == "img"  # the model's first stream by default


def test_bad_queries_are_one_line_errors(ex, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(SparcError, match="cannot read image"):
        ex.query_image(bad)
    with pytest.raises(SparcError, match="does not exist"):
        ex.query_image(tmp_path / "missing.png")
    with pytest.raises(SparcError, match="no row 'nope'"):
        ex.query_row("nope")
    with pytest.raises(SparcError, match="does not read texts"):
        ex.query_text("a shark", "raw")
    with pytest.raises(SparcError, match="non-empty text"):
        ex.query_text("   ")
    with pytest.raises(SparcError, match="records no backbone"):
        backbone_for(ex.store, "raw")


def test_a_run_without_a_text_stream(world, tmp_path):
    from sparc.model import SPARCConfig

    store = FeatureStore.open(world["store"])
    model = SPARC({"img": store.streams["img"], "raw": store.streams["raw"]}, SPARCConfig(n_latents=16, k=2))
    model.save(tmp_path / "m")
    ex = Explorer.open(tmp_path / "m", world["store"], naming=None, log=lambda m: None)
    with pytest.raises(SparcError, match="this run has no text stream .*query by --image or --row"):
        ex.query_text("a shark")


def test_backbone_checked_against_the_fingerprint(ex, monkeypatch):
    original = FakeText.fingerprint
    monkeypatch.setattr(FakeText, "fingerprint", lambda self: {**original(self), "code": 2})
    with pytest.raises(SparcError, match="differs from the one that made stream 'txt'"):
        ex.query_text("a shark")


def test_missing_backbone(ex, monkeypatch):
    from sparc.extract.backbones import BACKBONES

    monkeypatch.delitem(BACKBONES.classes, "explore-fake-text")
    with pytest.raises(SparcError, match="unknown backbone 'explore-fake-text'"):
        ex.query_text("a shark")


def test_weights_that_cannot_load_are_one_line_errors(ex, monkeypatch):
    def broken(self):
        raise FileNotFoundError("weights.bin not found\nsecond line")

    monkeypatch.setattr(FakeText, "_load", broken)
    with pytest.raises(SparcError, match="cannot load the explore-fake-text backbone .*weights.bin not found; install") as e:
        ex.query_text("a shark")
    assert "\n" not in str(e.value)


def test_options_are_read_from_the_fingerprint(world):
    store = FeatureStore.open(world["store"])
    source = dict(store.manifest.streams["txt"].source, scale=2.0)
    assert derived_options("explore-fake-text", source) == {"scale": 2.0}
    assert derived_options("explore-fake-text", {"scale": "not a number"}) == {}


def _copy_store(src: FeatureStore, path, sources):
    with StoreWriter(path, src.streams, sources={s: v for s, v in sources.items() if v}, dataset=src.dataset_info(),
                     label_hierarchy=src.label_hierarchy()) as w:
        w.append({s: np.asarray(src.features(s)) for s in src.streams}, src.rows())
    return path


def test_a_store_that_does_not_belong_to_the_run(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)  # statistics of other stores go there, not into the shared run
    store = FeatureStore.open(world["store"])
    sources = {s: store.manifest.streams[s].source for s in store.streams}
    other = _copy_store(store, tmp_path / "other", {**sources, "txt": {**sources["txt"], "scale": 2.0}})
    with pytest.raises(SparcError, match="does not belong to run .*stream 'txt' comes from another backbone"):
        Explorer.open(run, other, naming=None, log=lambda m: None)
    same = _copy_store(store, tmp_path / "same", sources)  # same backbones: fine
    assert Explorer.open(run, same, naming=None, log=lambda m: None).stats.n_rows > 0
    with StoreWriter(tmp_path / "narrow", {"img": store.streams["img"]}) as w:
        w.append({"img": np.asarray(store.features("img"))}, store.rows())
    with pytest.raises(SparcError, match="has no stream 'txt' that the model needs"):
        Explorer.open(run, tmp_path / "narrow", naming=None, log=lambda m: None)


def test_stats_and_names_reused_from_python(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    logs = []
    first = Explorer.open(run, world["store"], log=logs.append)
    assert (run / "explore-all" / "names.json").exists()
    logs.clear()
    again = Explorer.open(run, world["store"], stats_settings=StatsSettings(top=20), naming=NamingSettings(words=2),
                          reuse_any=True, log=logs.append)
    assert logs == [] and again.stats.settings.top == 50 and again.names.words.shape[1] == 5
    assert json.loads((run / "explore-all" / "stats.json").read_text())["n_rows"] == first.stats.n_rows
    assert CONCEPTS[0] in first.names.vocabulary


def test_the_readmes_store_and_new_inputs_snippet_runs(world, tmp_path, monkeypatch):
    # The README's Python block for stores and new inputs, on the stand-in world.
    from pathlib import Path

    from tests.explore.world import concept_image

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = readme.split("A store, and new inputs through a run's own backbones:\n\n```python\n")[1].split("```")[0]
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    concept_image({"seal": 0.8}).save(tmp_path / "photo.jpg")
    monkeypatch.chdir(tmp_path)
    code = block.replace('"store/"', repr(str(world["store"]))).replace('"runs/sparc"', repr(str(run))) \
        .replace('"dino"', '"img"')
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)
    assert scope["x"].shape[1] == FeatureStore.open(world["store"]).streams["img"]
    assert scope["code"].indices.shape[0] == 1 and scope["result"].latents and set(scope["result"].ranked)
