"""``sparc serve``: the run's report on a local web server, with live queries.

The static report (:mod:`sparc.explore.report`) answers its query box offline, from the
codes of the rows it carries: it can only match stored captions. Served, the same page
asks this server instead, which encodes ANY text or an uploaded image through the
store's own backbones (:class:`~sparc.explore.Explorer`, loaded once at start) and
answers with the latents the query fires (id, value, name) and the rows they reach in
every other stream. The page finds the server with a fetch of ``api/info`` (which
fails from ``file://``), so one report works both ways.

The API (JSON; an error is HTTP 400 with ``{"error": "<one line>"}``):

- ``GET  /api/info`` — the run, its split, streams and modalities;
- ``POST /api/query`` — a JSON body ``{"text": ...}`` or ``{"row": "<row id>"}``
  (optional ``"stream"``, ``"top"``), or a multipart form with a file ``image``
  (optional fields ``stream``, ``top``);
- ``GET  /api/thumb/<row id>`` — a WebP thumbnail of a row outside the report's rows.

Starlette and uvicorn come with the ``serve`` extra; the server listens on 127.0.0.1
unless told otherwise (it has no authentication: anyone who reaches it can query).
"""

from __future__ import annotations

import functools
import io
import json
import re
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from PIL import ImageOps

from sparc.errors import SparcError
from sparc.explore.explorer import Explorer, QueryResult
from sparc.explore.name_table import headline
from sparc.explore.sources import RowImages, read_image, stream_modality

INSTALL = "sparc serve needs Starlette and uvicorn: pip install 'sparc-sae[serve]'"
MAX_TOP = 100
"""Most rows an answer ranks per stream."""
MAX_UPLOAD_BYTES = 32 * 2**20
"""Largest image file a query may upload (the pixel limit of read_image applies too)."""


def require_web() -> None:
    """A one-line error unless the ``serve`` extra is installed."""
    try:
        import python_multipart  # noqa: F401  (Starlette's form parser)
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        raise SparcError(INSTALL) from None


def report_rows(report: Path) -> dict[str, tuple[int, bool]]:
    """Row id → (its index among the report's rows, whether it has a thumbnail), read
    from the report's ``data/rows.js``."""
    path = Path(report) / "data" / "rows.js"
    try:
        text = path.read_text()
        body = text[text.index("(") + 1:text.rindex(")")]
        data = json.loads(body[body.index("{"):])  # after the kind and the index
        return {rid: (i, bool(t)) for i, (rid, t) in enumerate(zip(data["id"], data["thumb"]))}
    except (OSError, ValueError, KeyError, TypeError):
        raise SparcError(f"{report} is not a report written by sparc report (no readable data/rows.js); "
                         "remove --report to build one") from None


class LiveQueries:
    """The API's answers, apart from the web framework: an Explorer (its backbones loaded
    once here) and the rows of the report whose thumbnails the answers point to."""

    def __init__(self, ex: Explorer, report: Path, *, top: int = 10, warm: bool = True):
        self.ex = ex
        self.top = top
        self.rows = report_rows(report)
        self.meta = ex.store.rows()
        self.images = RowImages(ex.store)
        # One query at a time: the backbones and the model are not shared between threads.
        self.lock = threading.Lock()
        self.modality = {s: stream_modality(ex.store, s) for s in ex.model.names}
        for s, m in self.modality.items():
            if m is not None:
                ex.backbone(s).load()
        if warm:  # the first encoding allocates what later ones reuse
            for s, m in self.modality.items():
                if m == "text":
                    ex.encode_texts(["warm up"], s)
                elif m == "image":
                    from PIL import Image

                    ex.query_image(Image.new("RGB", (64, 64), "grey"), s, top=1)

    def info(self) -> dict:
        st = self.ex.stats
        return {"sparc": "serve", "run": str(self.ex.run) if self.ex.run is not None else None,
                "split": st.settings.split, "n_rows": st.n_rows, "n_latents": st.n_latents, "top": self.top,
                "streams": [{"name": s, "modality": m} for s, m in self.modality.items()]}

    def _top(self, top) -> int:
        if top is None:
            return self.top
        try:
            top = int(top)
        except (TypeError, ValueError):
            raise SparcError(f"top must be a whole number, got {top!r}") from None
        if not 1 <= top <= MAX_TOP:
            raise SparcError(f"top must be between 1 and {MAX_TOP}, got {top}")
        return top

    def _stream(self, stream) -> str | None:
        if stream is not None and not isinstance(stream, str):
            raise SparcError(f"stream must be a stream's name, got {stream!r}")
        return stream or None

    def text(self, text, stream=None, top=None) -> dict:
        if not isinstance(text, str) or not text.strip():
            raise SparcError("a text query needs a non-empty text")
        t0 = time.perf_counter()
        with self.lock:
            result = self.ex.query_text(text, self._stream(stream), top=self._top(top))
        return self.answer(result, "text", t0)

    def image(self, data: bytes, filename: str | None = None, stream=None, top=None) -> dict:
        name = f"upload {filename!r}" if filename else "the upload"
        if not data:
            raise SparcError(f"{name} is empty; drop a PNG, JPEG or WebP image")
        if len(data) > MAX_UPLOAD_BYTES:
            raise SparcError(f"{name} is {len(data) / 2**20:.0f} MiB, over {MAX_UPLOAD_BYTES // 2**20} MiB; "
                             "send a smaller image")
        t0 = time.perf_counter()
        pil = read_image(io.BytesIO(data), name=name)
        with self.lock:
            result = self.ex.query_image(pil, self._stream(stream), top=self._top(top))
        result.query = f"image {filename!r}" if filename else "an image"
        return self.answer(result, "image", t0)

    def row(self, row_id, stream=None, top=None) -> dict:
        if not isinstance(row_id, str) or not row_id:
            raise SparcError("a row query needs the id of a row of the store")
        t0 = time.perf_counter()
        with self.lock:
            result = self.ex.query_row(row_id, self._stream(stream), top=self._top(top))
        return self.answer(result, "row", t0)

    def answer(self, result: QueryResult, kind: str, t0: float) -> dict:
        """The JSON of a query's result: its latents with their names, and per other
        stream its rows (id, caption, labels, cosine, thumbnail URL)."""
        names = self.ex.names
        latents = [{"id": lat, "value": round(v, 4), "name": headline(names, lat)} for lat, v in result.latents]
        ranked = {}
        for stream, items in result.ranked.items():
            ranked[stream] = [self._row(r, score) for r, score in items]
        return {"query": result.query, "kind": kind, "stream": result.stream, "latents": latents,
                "ranked": ranked, "split": self.ex.stats.settings.split,
                "seconds": round(time.perf_counter() - t0, 4)}

    def _row(self, r: int, score: float) -> dict:
        m = self.meta[r]
        local, thumb = self.rows.get(m.row_id, (None, False))
        url = f"thumbs/{local}.webp" if thumb else (f"api/thumb/{m.row_id}" if m.image else None)
        return {"row": m.row_id, "caption": m.caption or "", "labels": list(m.labels), "score": round(score, 4),
                "thumb": url, "report_row": local}

    @functools.lru_cache(maxsize=1024)  # one LiveQueries per server: caching on self is fine
    def thumbnail(self, row_id: str, px: int = 96) -> bytes:
        """A WebP thumbnail of a row's image (for rows the report does not carry)."""
        meta = self.meta[self.ex.row_index(row_id)]
        im = self.images.load(meta)
        if im is None:
            raise SparcError(f"row {row_id!r} has no image that can be read here")
        buf = io.BytesIO()
        ImageOps.contain(im, (px, px)).save(buf, format="WEBP", quality=80)
        return buf.getvalue()


def make_app(live: LiveQueries, report: Path):
    """The Starlette application: the API under ``/api``, the report's files at ``/``."""
    require_web()
    from starlette.applications import Starlette
    from starlette.concurrency import run_in_threadpool
    from starlette.datastructures import UploadFile
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    def error(e: Exception) -> JSONResponse:
        return JSONResponse({"error": str(e).splitlines()[0] if str(e) else type(e).__name__}, status_code=400)

    async def info(request: Request):
        return JSONResponse(live.info())

    async def query(request: Request):
        try:
            if request.headers.get("content-type", "").startswith("multipart/form-data"):
                form = await request.form(max_files=1, max_fields=8)
                upload = form.get("image")
                if not isinstance(upload, UploadFile):
                    raise SparcError("an image query needs a file in the form field 'image'")
                data = await upload.read(MAX_UPLOAD_BYTES + 1)
                answer = await run_in_threadpool(live.image, data, upload.filename, form.get("stream"),
                                                 form.get("top"))
            else:
                try:
                    body = await request.json()
                except ValueError:
                    raise SparcError('the query must be JSON ({"text": ...} or {"row": ...}) '
                                     "or a form with an image") from None
                if not isinstance(body, dict) or ("text" in body) == ("row" in body):
                    raise SparcError('give exactly one of "text" or "row" (or upload an image)')
                if "text" in body:
                    answer = await run_in_threadpool(live.text, body["text"], body.get("stream"), body.get("top"))
                else:
                    answer = await run_in_threadpool(live.row, body["row"], body.get("stream"), body.get("top"))
        except SparcError as e:
            return error(e)
        return JSONResponse(answer)

    async def thumb(request: Request):
        try:
            data = await run_in_threadpool(live.thumbnail, request.path_params["row_id"])
        except SparcError as e:
            return error(e)
        return Response(data, media_type="image/webp")

    return Starlette(routes=[
        Route("/api/info", info),
        Route("/api/query", query, methods=["POST"]),
        Route("/api/thumb/{row_id:path}", thumb),
        Mount("/", StaticFiles(directory=str(report), html=True)),
    ])


def bind(host: str, port: int) -> socket.socket:
    """A listening socket (port 0: a free one), or a one-line error (the port is taken)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise SparcError(f"cannot listen on {host}:{port} ({e.strerror}); choose another --port or --host") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass
class Server:
    """A running server (:func:`start`): its URL, stopped by :meth:`stop`."""

    url: str
    server: object
    thread: threading.Thread | None

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(timeout=10)


def _uvicorn(app):
    import uvicorn

    return uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False))


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://{f'[{host}]' if ':' in host else host}:{port}/"


def start(app, sock: socket.socket) -> Server:
    """Serve ``app`` on ``sock`` in a background thread (tests, benchmarks); returns once it listens."""
    server = _uvicorn(app)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True, name="sparc-serve")
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise SparcError("the server did not start")
        time.sleep(0.01)
    return Server(url_of(sock), server, thread)


def run_forever(app, sock: socket.socket) -> None:
    """Serve ``app`` on ``sock`` in this thread until Ctrl-C."""
    _uvicorn(app).run(sockets=[sock])


def check_report_fits(report: Path, ex: Explorer) -> None:
    """Refuse a report of another model: its latent pages would not be the latents the
    answers name."""
    text = (Path(report) / "index.html").read_text(errors="replace")
    m = re.search(r'<script id="sparc-meta" type="application/json">(.*?)</script>', text, re.S)
    try:
        meta = json.loads(m.group(1)) if m else None
        streams, n_latents = [x["name"] for x in meta["streams"]], meta["n_latents"]
    except (ValueError, KeyError, TypeError):
        raise SparcError(f"{report} is not a report written by sparc report (its index.html has no settings); "
                         "remove --report to build one") from None
    if streams != list(ex.model.names) or n_latents != ex.model.n_latents:
        raise SparcError(f"the report in {report} is of another model ({n_latents} latents, streams "
                         f"{', '.join(streams)}; this run: {ex.model.n_latents}, {', '.join(ex.model.names)}); "
                         "add --rebuild to write it again, or give another --report")


def default_report(run: Path) -> Path:
    """Where ``sparc serve`` keeps the report it builds: beside the run (a report may not
    lie inside its run), ``<run>-report``."""
    run = Path(run).resolve()
    return run.parent / f"{run.name}-report"


def prepare_report(ex: Explorer, report: Path, settings, *, rebuild: bool = False, log=print) -> Path:
    """The report folder to serve: ``report`` as it is when it holds one (unless
    ``rebuild``), else written there by :func:`~sparc.explore.report.write_report`."""
    from sparc.explore.report import write_report
    from sparc.workspace import REPORT, check_not_input, check_replaceable

    report = Path(report)
    if (report / "index.html").is_file() and not rebuild:
        report_rows(report)  # a readable report, or a one-line error
        check_report_fits(report, ex)
        log(f"serving the report in {report} (as written earlier; --rebuild writes it again)")
        return report
    # write_report checks these too; here its messages name this command's flag.
    check_not_input(report, [ex.store.path] + ([ex.run] if ex.run is not None else []), "--report")
    check_replaceable(report, REPORT, "choose a new or empty --report")
    info = write_report(ex, report, settings, log=log)
    for note in info.notes:
        log(f"note: {note}")
    log(info.summary().replace("; open it in a browser", ""))
    return report
