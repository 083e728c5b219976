"""``sparc serve`` on the stand-in world of tests/explore/world.py: the JSON API in-process
(Starlette's test client) against the Explorer's own answers, its one-line errors, and
the served report in headless Chromium, whose query box asks the server about a sentence
the store has never seen.

The server runs in this process (a thread), so the world's stand-in backbones apply.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

pytest.importorskip("starlette", reason="sparc serve needs: pip install 'sparc-sae[serve]'")
pytest.importorskip("uvicorn", reason="sparc serve needs: pip install 'sparc-sae[serve]'")
pytest.importorskip("python_multipart", reason="sparc serve needs: pip install 'sparc-sae[serve]'")

from sparc.errors import SparcError  # noqa: E402
from sparc.explore import Explorer  # noqa: E402
from sparc.explore.report import ReportSettings  # noqa: E402
from sparc.explore.serve import LiveQueries, bind, default_report, make_app, prepare_report, start  # noqa: E402
from tests.explore.report.conftest import browser  # noqa: E402, F401  (the fixture)
from tests.explore.world import concept_image, register_fakes, session_world  # noqa: E402

NEW_SENTENCE = "look, an otter floats on its back in the kelp"
"""A caption no row has; of the world's concepts it names only "otter" (what the
stand-in text backbone reads: the concept words among the caption's words)."""


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """(Explorer, LiveQueries, app, report folder), built once: the backbones load here."""
    mp = pytest.MonkeyPatch()
    register_fakes(mp)
    try:
        world = session_world(tmp_path_factory)
        ex = Explorer.open(world["run"], log=lambda m: None)
        report = prepare_report(ex, tmp_path_factory.mktemp("serve") / "report", ReportSettings(progress=False),
                                log=lambda m: None)
        live = LiveQueries(ex, report)
        yield ex, live, make_app(live, report), report
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def client(served):
    from starlette.testclient import TestClient

    with TestClient(served[2]) as c:
        yield c


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def test_info_and_the_report_are_served(client, served):
    info = client.get("/api/info").json()
    assert info["sparc"] == "serve" and info["split"] == "all" and info["n_rows"] == 480
    assert info["streams"] == [{"name": "img", "modality": "image"}, {"name": "txt", "modality": "text"},
                               {"name": "raw", "modality": None}]
    page = client.get("/")
    assert page.status_code == 200 and 'src="assets/live.js"' in page.text
    assert client.get("/assets/live.js").status_code == 200


def test_text_query_answers_as_the_explorer_does(client, served):
    ex = served[0]
    answer = client.post("/api/query", json={"text": NEW_SENTENCE, "top": 5}).json()
    ref = ex.query_text(NEW_SENTENCE, top=5)
    assert answer["kind"] == "text" and answer["stream"] == "txt" and set(answer["ranked"]) == {"img", "raw"}
    assert [(x["id"], x["value"]) for x in answer["latents"]] == [(lat, round(v, 4)) for lat, v in ref.latents]
    from sparc.explore.name_table import headline

    assert [x["name"] for x in answer["latents"]] == [headline(ex.names, lat) for lat, _ in ref.latents]
    meta = ex.store.rows()
    for stream in ("img", "raw"):
        assert [(x["row"], x["score"]) for x in answer["ranked"][stream]] == [
            (meta[r].row_id, round(s, 4)) for r, s in ref.ranked[stream]]
    top = answer["ranked"]["img"]
    assert all("otter" in x["labels"] for x in top[:3])
    # every image row points at a thumbnail the report holds, and it is served
    for x in top:
        assert x["thumb"] == f"thumbs/{x['report_row']}.webp"
        got = client.get("/" + x["thumb"])
        assert got.status_code == 200 and Image.open(io.BytesIO(got.content)).size[0] <= 96
        assert x["caption"] == meta[ex.row_index(x["row"])].caption


def test_image_and_row_queries(client, served):
    ex = served[0]
    answer = client.post("/api/query", files={"image": ("whale.png", png(concept_image({"whale": 0.9})), "image/png")},
                         data={"top": "3"}).json()
    assert answer["kind"] == "image" and answer["stream"] == "img"
    assert len(answer["ranked"]["txt"]) == 3 and all("whale" in x["labels"] for x in answer["ranked"]["txt"])
    row = client.post("/api/query", json={"row": "r3", "stream": "txt", "top": 4}).json()
    ref = ex.query_row("r3", "txt", top=4)
    assert row["stream"] == "txt" and [x["row"] for x in row["ranked"]["img"]] == [
        ex.store.rows()[r].row_id for r, _ in ref.ranked["img"]]
    # a row's thumbnail made on request (for rows the report does not carry)
    got = client.get("/api/thumb/r3")
    assert got.status_code == 200 and got.headers["content-type"] == "image/webp"


@pytest.mark.parametrize(("request_", "message"), [
    ({"json": {"row": "nope"}}, "no row 'nope'"),
    ({"json": {"text": "   "}}, "a text query needs a non-empty text"),
    ({"json": {"text": ""}}, "a text query needs a non-empty text"),
    ({"files": {"image": ("notes.txt", b"not an image at all", "text/plain")}}, "cannot read upload 'notes.txt'"),
    ({"files": {"image": ("empty.png", b"", "image/png")}}, "upload 'empty.png' is empty"),
    ({"files": {"other": ("x.png", b"x", "image/png")}}, "needs a file in the form field 'image'"),
    ({"json": {"text": "a shark", "row": "r1"}}, 'give exactly one of "text" or "row"'),
    ({"json": {"text": "a shark", "top": 0}}, "top must be between 1 and 100"),
    ({"json": {"text": "a shark", "stream": "raw"}}, "stream 'raw' does not read texts"),
    ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "the query must be JSON"),
])
def test_bad_queries_are_one_line_json_errors(client, request_, message):
    got = client.post("/api/query", **request_)
    assert got.status_code == 400
    error = got.json()["error"]
    assert message in error and "\n" not in error
    missing = client.get("/api/thumb/nope")
    assert missing.status_code == 400 and "no row 'nope'" in missing.json()["error"]


def test_a_served_report_queries_text_it_has_never_seen(browser, served, tmp_path):  # noqa: F811
    ex, live, app, report = served
    assert not any(NEW_SENTENCE in (m.caption or "") for m in ex.store.rows())
    server = start(app, bind("127.0.0.1", 0))
    try:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        problems: list[str] = []
        page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        page.goto(server.url + "#query")
        page.wait_for_selector("body[data-live='1']")
        assert "any text" in page.get_attribute("#query-text", "placeholder")
        page.fill("#query-text", NEW_SENTENCE)
        page.click("#query-go")
        page.wait_for_selector("#query-result .stream[data-stream='img'] figure.thumb")
        img_rows = page.locator("#query-result .stream[data-stream='img'] [data-row]")
        first = [img_rows.nth(i).get_attribute("data-row") for i in range(3)]
        meta = ex.store.rows()
        assert all("otter" in meta[ex.row_index(r)].labels for r in first), first
        assert first == [x["row"] for x in live.text(NEW_SENTENCE)["ranked"]["img"][:3]]
        page.wait_for_function("""() => [...document.querySelectorAll("#query-result img")]
                                  .every(i => i.complete && i.naturalWidth > 0)""")
        assert page.locator("#query-result .query-latents li").count() >= 1
        # an image chosen in the box: a whale finds the whale captions
        path = tmp_path / "whale.png"
        concept_image({"whale": 0.9}).save(path)
        page.set_input_files("#query-image", str(path))
        page.wait_for_selector("#query-result .stream[data-stream='txt'] .textrow")
        captions = page.locator("#query-result .stream[data-stream='txt'] .caption").all_inner_texts()
        assert "whale" in captions[0]
        # a row of the answer, clicked: queried by its own code in its stream
        clicked = page.get_attribute("#query-result .stream[data-stream='txt'] [data-row]", "data-row")
        page.click("#query-result .stream[data-stream='txt'] [data-row]")
        page.wait_for_selector(f"#query-result .note:has-text('row {clicked} (txt) encoded by txt alone')")
        expected = [x["row"] for x in live.row(clicked, "txt")["ranked"]["img"]]
        shown = page.locator("#query-result .stream[data-stream='img'] [data-row]")
        assert [shown.nth(i).get_attribute("data-row") for i in range(shown.count())] == expected
        # the server's one-line error is said in the box
        page.evaluate("window.sparcLive.query('a shark', 'raw')")
        page.wait_for_selector("#query-result .note.error")
        assert page.inner_text("#query-result .note.error") == "error: stream 'raw' does not read texts; this run " \
            "has: img (image), txt (text), raw (no backbone recorded)"
        problems = [p for p in problems if "400" not in p]  # the browser logs the answer's status
        assert problems == [], problems
    finally:
        server.stop()


def test_the_report_from_disk_says_what_its_box_can_match(browser, served):  # noqa: F811
    report = served[3]
    page = browser.new_page()
    page.goto((report / "index.html").resolve().as_uri() + "#query")
    page.wait_for_selector("#view-query:not([hidden])")
    assert "stored caption" in page.get_attribute("#query-text", "placeholder")
    help_ = page.inner_text("#query-help")
    assert "contain every word" in help_ and "sparc serve" in help_
    page.fill("#query-text", NEW_SENTENCE)
    page.click("#query-go")
    note = page.inner_text("#query-result .note")
    assert "sparc serve" in note and page.get_attribute("body", "data-live") is None
    assert json.loads(page.evaluate("JSON.stringify(typeof window.sparcLive)")) == "undefined"


def test_a_report_written_earlier_is_served_as_it_is(served, tmp_path):
    ex, _, _, report = served
    logs: list[str] = []
    assert prepare_report(ex, report, ReportSettings(progress=False), log=logs.append) == report
    assert logs == [f"serving the report in {report} (as written earlier; --rebuild writes it again)"]
    (tmp_path / "index.html").write_text("<html></html>")
    with pytest.raises(SparcError, match="is not a report written by sparc report"):
        prepare_report(ex, tmp_path, ReportSettings(progress=False))
    # a report of another model
    import shutil

    other = tmp_path / "other"
    shutil.copytree(report, other)
    index = other / "index.html"
    index.write_text(index.read_text().replace('"n_latents":48', '"n_latents":64', 1))
    with pytest.raises(SparcError, match=r"^the report in .* is of another model \(64 latents, streams img, txt, raw; "
                                         r"this run: 48, img, txt, raw\); add --rebuild"):
        prepare_report(ex, other, ReportSettings(progress=False))
    # a folder to build in must be new, empty or a report, and outside the run
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "mine.txt").write_text("keep me")
    with pytest.raises(SparcError, match="refusing to replace it: choose a new or empty --report$"):
        prepare_report(ex, tmp_path / "notes", ReportSettings(progress=False))
    with pytest.raises(SparcError, match="^--report .* overlaps the input"):
        prepare_report(ex, ex.run / "report", ReportSettings(progress=False))
    assert (tmp_path / "notes" / "mine.txt").read_text() == "keep me" and not (ex.run / "report").exists()


def test_default_report_lies_beside_the_run(tmp_path):
    assert default_report(tmp_path / "runs" / "sparc") == (tmp_path / "runs" / "sparc-report").resolve()


def test_a_taken_port_is_a_one_line_error():
    sock = bind("127.0.0.1", 0)
    try:
        with pytest.raises(SparcError, match=r"cannot listen on 127\.0\.0\.1:\d+ .*choose another --port"):
            bind("127.0.0.1", sock.getsockname()[1])
    finally:
        sock.close()
