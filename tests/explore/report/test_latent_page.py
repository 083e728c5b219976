"""What a reader sees on a latent's page and the overview, in headless Chromium: captions
that repeat shown once with their count, the histogram's axis on the latent's own range,
heatmaps named by their row's caption, the overview's Markdown rendered."""

import json
import re
import shutil

from sparc.eval import EvalSettings, evaluate, write_eval
from sparc.explore import Explorer
from sparc.explore.report import ReportSettings, write_report
from sparc.train.rundir import RunDir, load_model


def _details(out):
    text = (out / "data" / "latents-0000.js").read_text()
    return json.loads(re.fullmatch(r"/\*.*?\*/\nwindow\.sparcLoaded\(\"latents\", \d+, (.*)\);\n", text, flags=re.S).group(1))


def _inline(html, name):
    return json.loads(re.search(rf'<script id="{name}" type="application/json">(.*?)</script>', html, flags=re.S).group(1))


def test_latent_page_and_overview_read_well(browser, world, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(world["run"], run)
    ex = Explorer.open(run, world["store"], log=lambda m: None)
    write_eval(evaluate(load_model(run), ex.store, EvalSettings(progress=False, probes=False, retrieval_queries=10,
                                                                null_shuffles=0)), RunDir(run).eval_dir("test"), plots=False)
    out = tmp_path / "report"
    write_report(ex, out, ReportSettings(progress=False, chunk_latents=1000, top_rows=12))
    meta = _inline((out / "index.html").read_text(), "sparc-meta")
    rows = json.loads(re.search(r"window\.sparcLoaded\(\"rows\", 0, (.*)\);", (out / "data" / "rows.js").read_text(),
                                flags=re.S).group(1))
    details = _details(out)
    txt = [s["name"] for s in meta["streams"]].index("txt")
    # the latent whose top text rows repeat a caption the most
    def repeats(d):
        caps = [rows["caption"][r] for r, _ in d["streams"][txt]["top"]]
        return len(caps) - len(set(caps))
    lat = max(range(len(details)), key=lambda i: (repeats(details[i]), -i))
    caps = [rows["caption"][r] for r, _ in details[lat]["streams"][txt]["top"]]
    assert repeats(details[lat]) > 0

    page = browser.new_page()
    problems = []
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
    url = (out / "index.html").resolve().as_uri()
    page.goto(f"{url}#latent/{lat}")
    column = page.locator(".stream[data-stream='txt']")
    column.locator(".rows").first.wait_for()
    top = column.locator(".rows").first.locator(".textrow")
    assert top.count() == len(set(caps))  # each caption once
    counts = {c: caps.count(c) for c in caps}
    for i in range(top.count()):
        caption, repeat = top.nth(i).locator(".caption").inner_text(), top.nth(i).locator(".repeat").inner_text()
        assert repeat.strip() == (f"×{counts[caption]}" if counts[caption] > 1 else "")
    # the histogram's first and last labels bracket the latent's own bins, not 0.001–100
    hist = details[lat]["streams"][txt]["hist"]
    first = next(i for i, c in enumerate(hist) if c)
    labels = column.locator("svg.hist text").all_text_contents()
    assert float(labels[0]) >= meta["hist_edges"][max(0, first - 1)] * 0.999
    assert float(labels[0]) > meta["hist_edges"][0] or first <= 1

    page.goto(f"{url}#overview")
    page.wait_for_selector("#overview ul.headline li")
    text = page.locator("#overview").inner_text()
    assert "**" not in text and text.index("Headline figures") < text.index("Settings: model")
    assert page.locator("#overview details:not([open]) summary.section", has_text="Settings").count() == 1
    assert problems == [], problems
