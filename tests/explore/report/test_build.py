"""The report directory: self-contained files, data that matches the statistics, the
hooks for evaluations and heatmaps, and the folders it refuses to write over."""

import json
import re
import shutil

import pytest
from PIL import Image

from sparc.errors import SparcError
from sparc.explore import Explorer
from sparc.explore.report import ReportSettings, write_report


def _data(path, kind):
    text = path.read_text()
    m = re.fullmatch(r"/\*.*?\*/\nwindow\.sparcLoaded\(\"(\w+)\", (\d+), (.*)\);\n", text, flags=re.S)
    assert m and m.group(1) == kind
    return json.loads(m.group(3))


def _inline(html, name):
    m = re.search(rf'<script id="{name}" type="application/json">(.*?)</script>', html, flags=re.S)
    return json.loads(m.group(1))


@pytest.fixture
def run(world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    return run


def test_report_files_and_data(world, run, tmp_path):
    ex = Explorer.open(run, world["store"], log=lambda m: None)
    info = write_report(ex, tmp_path / "report", ReportSettings(progress=False, chunk_latents=20, top_rows=3))
    out = tmp_path / "report"
    assert info.index == out / "index.html" and info.bytes == sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    html = (out / "index.html").read_text()
    assert "http://" not in html and "https://" not in html  # nothing from the network
    meta, table = _inline(html, "sparc-meta"), _inline(html, "sparc-table")
    assert meta["n_latents"] == 48 and meta["n_chunks"] == 3 and [s["name"] for s in meta["streams"]] == ["img", "txt", "raw"]
    assert sorted(p.name for p in (out / "data").iterdir()) == ["latents-0000.js", "latents-0001.js", "latents-0002.js",
                                                                "rows.js"]
    rows = _data(out / "data" / "rows.js", "rows")
    assert len(rows["id"]) == info.rows and sum(rows["thumb"]) == info.thumbnails > 0
    for i, has in enumerate(rows["thumb"]):
        assert (out / "thumbs" / f"{i}.webp").exists() == bool(has)
    with Image.open(next((out / "thumbs").iterdir())) as im:
        assert im.format == "WEBP" and max(im.size) == 96
    # the table and the details are the statistics' own figures
    freq = ex.stats.frequency("joint")
    assert table["freq"][0][5] == pytest.approx(freq[0, 5], abs=1e-6)
    assert table["name"][5] == ex.names.name(5)
    details = _data(out / "data" / "latents-0000.js", "latents")
    assert len(details) == 20
    top_rows, top_vals = ex.stats.top("joint", "txt", 5, 3)
    assert [rows["id"][r] for r, _ in details[5]["streams"][1]["top"]] == [ex.store.rows()[r].row_id for r in top_rows]
    assert details[5]["streams"][1]["hist"] == ex.stats.hist[0, 1, 5].tolist()
    assert len(details[5]["streams"][0]["near"]) == 5 and len(details[5]["near_all"]) == 5
    # the query rows carry their codes
    assert len(rows["codes"]["txt"]["idx"]) == len(rows["query"]) * rows["k"]
    # rebuilding over a report is allowed
    write_report(ex, out, ReportSettings(progress=False, encoding="independent"))
    assert _inline((out / "index.html").read_text(), "sparc-meta")["encoding"] == "independent"


def test_evaluation_and_heatmap_hooks(world, run, tmp_path):
    (run / "eval-test" / "plots").mkdir(parents=True)
    (run / "eval-test" / "eval.md").write_text("# eval\n\n| a | b |\n|---|---|\n| **1** | <b>2</b> |\n\n"
                                              "|A ∩ B| / |A ∪ B| per row\n\n![dead](plots/dead.png)\n")
    Image.new("RGB", (20, 10), "red").save(run / "eval-test" / "plots" / "firing.png")
    Image.new("RGB", (20, 10), "red").save(run / "eval-test" / "plots" / "dead.png")
    (run / "heatmaps").mkdir()
    Image.new("RGB", (16, 16), "blue").save(run / "heatmaps" / "h.png")
    (run / "heatmaps" / "index.json").write_text(json.dumps({"latents": {"7": {"img": [["r3", "h.png"], ["r4", "gone.png"]]}}}))
    (run / "localisation-test").mkdir()
    (run / "localisation-test" / "localisation.md").write_text("| method | mAP |\n|---|---|\n| sum | 0.2 |\n")
    ex = Explorer.open(run, world["store"], log=lambda m: None)
    write_report(ex, tmp_path / "r", ReportSettings(progress=False))
    meta = _inline((tmp_path / "r" / "index.html").read_text(), "sparc-meta")
    ev = meta["overview"]["evaluations"][0]
    # eval.md as HTML: Markdown rendered, raw HTML escaped, a formula not taken for a table, the
    # plot it shows pointed at the report's copy (a link to the full size); the other plot below.
    assert "<td><strong>1</strong></td>" in ev["html"] and "&lt;b&gt;2&lt;/b&gt;" in ev["html"]
    assert "<p>|A ∩ B| / |A ∪ B| per row</p>" in ev["html"]
    assert '<a class="plot" href="plots/eval-test/dead.png"' in ev["html"] and 'src="plots/eval-test/dead.png"' in ev["html"]
    assert ev["name"] == "eval-test" and ev["plots"] == ["plots/eval-test/firing.png"] and ev["headline"] == []
    assert (tmp_path / "r" / ev["plots"][0]).exists() and (tmp_path / "r" / "plots" / "eval-test" / "dead.png").exists()
    assert "<table>" in meta["overview"]["localisation"][0]["html"]
    assert meta["overview"]["localisation"][0]["name"] == "localisation-test/localisation.md"
    assert meta["heatmaps"] is True
    details = _data(tmp_path / "r" / "data" / "latents-0000.js", "latents")
    heat = details[7]["streams"][0]["heatmaps"]
    assert len(heat) == 1 and heat[0][0] == "r3" and (tmp_path / "r" / heat[0][1]).exists()


def test_refuses_to_write_over_other_folders(world, run, tmp_path):
    ex = Explorer.open(run, world["store"], naming=None, log=lambda m: None)
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(SparcError, match="not a report written by sparc"):
        write_report(ex, foreign, ReportSettings(progress=False))
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(SparcError, match="overlaps the input"):
        write_report(ex, run / "report", ReportSettings(progress=False))
    with pytest.raises(SparcError, match="overlaps the input"):
        write_report(ex, world["store"], ReportSettings(progress=False))
    with pytest.raises(SparcError, match="top_rows must be at least 1"):
        ReportSettings(top_rows=0)
    # a report without names still builds
    info = write_report(ex, tmp_path / "plain", ReportSettings(progress=False))
    assert info.index.exists()
