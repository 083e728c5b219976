"""The latents' stream presence (docs/method.md §5.9) in the report: read from the run's
evaluation of the statistics' split (for a report over every row, the held-out one),
shown in the latent table and on each latent's page (in headless Chromium), and left out
with a note when no fitting evaluation exists."""

import json
import re
import shutil

import pytest

from sparc.eval import EvalSettings, evaluate, write_eval
from sparc.explore import Explorer
from sparc.explore.report import ReportSettings, write_report
from sparc.explore.report.build import presence_labels
from sparc.train.rundir import RunDir, load_model


def _inline(html, name):
    return json.loads(re.search(rf'<script id="{name}" type="application/json">(.*?)</script>', html, flags=re.S).group(1))


def _details(out, chunk):
    text = (out / "data" / f"latents-{chunk:04d}.js").read_text()
    return json.loads(re.fullmatch(r"/\*.*?\*/\nwindow\.sparcLoaded\(\"latents\", \d+, (.*)\);\n", text, flags=re.S).group(1))


def _report(world, tmp_path, *, evaluated=True):
    """(report folder, the evaluation it shows) of a copy of the world's run."""
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    ex = Explorer.open(run, world["store"], log=lambda m: None)
    ev = None
    if evaluated:
        ev = evaluate(load_model(run), ex.store, EvalSettings(progress=False, probes=False, retrieval_queries=10,
                                                              null_shuffles=0, presence_mostly=0.8))
        write_eval(ev, RunDir(run).eval_dir("test"), plots=False)
    write_report(ex, tmp_path / "report", ReportSettings(progress=False, chunk_latents=1000, top_rows=2))
    return tmp_path / "report", ev


def test_the_report_carries_the_evaluations_presence(world, tmp_path):
    out, ev = _report(world, tmp_path)
    html = (out / "index.html").read_text()
    meta, table = _inline(html, "sparc-meta"), _inline(html, "sparc-table")
    headline = meta["overview"]["evaluations"][0]["headline"]  # the overview opens with these
    assert headline[0].endswith(f"on test ({ev.n_rows:,} rows)") and any(x.startswith("NMSE ") for x in headline)
    assert meta["presence"] == {"eval": "eval-test", "n_rows": ev.n_rows, "basis": "firing", "mostly": 0.8, "only": 0.99}
    assert table["presence"] == presence_labels(ev.presence)
    assert 'id="presence-help"' in html
    shares = ev.presence.firing_share()
    for lat, d in enumerate(_details(out, 0)):
        for s, ds in zip(ev.presence.fires, d["streams"]):
            assert ds["presence"]["fires"] == ev.presence.fires[s][lat]
            assert ds["presence"]["fire_share"] == (None if ev.presence.classes[lat] == "dead"
                                                    else pytest.approx(shares[s][lat], abs=1e-4))


def test_no_evaluation_no_presence_and_a_note(world, tmp_path):
    out, _ = _report(world, tmp_path, evaluated=False)
    html = (out / "index.html").read_text()
    meta, table = _inline(html, "sparc-meta"), _inline(html, "sparc-table")
    assert table["presence"] is None and meta["presence"] is None and "presence-help" not in html
    assert any("sparc eval" in n and "stream presence" in n for n in meta["notes"])
    assert all(ds["presence"] is None for ds in _details(out, 0)[0]["streams"])


def test_latent_pages_show_the_class_in_a_browser(browser, world, tmp_path):
    out, ev = _report(world, tmp_path)
    labels = presence_labels(ev.presence)
    page = browser.new_page()
    problems = []
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(str(e)))
    url = (out / "index.html").resolve().as_uri()
    for cls in sorted(set(ev.presence.classes)):  # one latent of each class the model has
        lat = ev.presence.classes.index(cls)
        page.goto(f"{url}#latent/{lat}")
        page.wait_for_selector(".stream .presence-share")
        assert page.locator("h2 .badge.presence").inner_text() == labels[lat]
        assert page.locator(".stream .presence-share").count() == len(ev.streams)
        assert f"stream presence: {labels[lat]}" in page.locator("#latent").inner_text()
    page.goto(f"{url}#latents")
    page.wait_for_selector("#latent-body tr")
    assert "presence" in page.locator("#latent-head").inner_text()
    assert problems == []
