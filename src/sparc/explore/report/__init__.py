"""``sparc report``: a static site to browse a run's concept space, opened from disk.

The site (``DIR/index.html``) needs no server, no network and no CDN: the HTML comes
from the jinja2 templates beside this file, the overview and the latent table are
inlined as JSON in the page, the rows and the per-latent details are JSON in small
``data/*.js`` files loaded by ``<script>`` tags (which browsers allow from ``file://``,
unlike ``fetch``), thumbnails are WebP files in ``thumbs/``, and the code is plain
JavaScript (``assets/app.js``) with no library. Pages:

- **overview** — the run's model, training and store settings, the statistics and
  naming settings, the vocabulary-against-labels figures, the evaluation (``RUN/eval-*``:
  eval.md and its plots) and the localisation table when ``RUN/localisation*/`` holds
  one;
- **latents** — one table row per latent (name, aligned, vocabulary words, firing
  frequency per stream, agreement, mean purity, concept Jaccard, stream presence), sortable by any
  column, filtered by text (id, name, words) and by "aligned" / "fires", paged (an
  8,192-latent table stays fast);
- **latent** — per stream, side by side: the top rows and rows from across the
  activation range (thumbnails for image streams; captions for text streams, with the
  words of the latent's names shaded), the activation histogram, the names, the
  nearest latents by decoder cosine within each stream and over all streams, and the
  latent's heatmaps when the run holds them (:data:`HEATMAPS`), and its stream presence
  (class and per-stream firing and activation shares, docs/method.md §5.9) from the run's
  evaluation of the statistics' split (``RUN/eval-<split>/eval.json``);
- **query** — type a caption or a label: the rows the report holds that match it, the
  latents of the best match's code (in a text stream), and the rows of every other
  stream ranked by the cosine of their sparse codes — the query engine of
  :class:`~sparc.explore.Explorer`, offline, over the rows the report carries (the box
  says so). Served by ``sparc serve`` (:mod:`sparc.explore.serve`), ``assets/live.js``
  finds the server's API and the box encodes any text or image live instead.

Heatmap hook: ``RUN/heatmaps/index.json`` = ``{"latents": {"<latent>": {"<stream>":
[["<row id>", "<image path relative to RUN/heatmaps>"], ...]}}}``; the report copies
those images into ``DIR/heatmaps/`` and shows them on the latent's page.
"""

from sparc.explore.report.settings import ReportSettings
from sparc.lazy import lazy_exports

# Building loads PyTorch and Pillow: imported on first use (sparc/lazy.py).
__getattr__ = lazy_exports(__name__, {"sparc.explore.report.build": ["HEATMAPS", "write_report"]})

__all__ = ["HEATMAPS", "ReportSettings", "write_report"]
