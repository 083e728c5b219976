"""The run's Markdown (eval.md, the localisation tables, the names' evaluation) as HTML
for the report, rendered when the report is built by markdown-it-py (CommonMark with
tables; raw HTML in the text is escaped, not passed through).

Images the Markdown shows (eval.md's plots) are pointed at the report's copies and made
links to themselves, so a plot drawn small opens at full size.
"""

from __future__ import annotations

from collections.abc import Mapping

from markdown_it import MarkdownIt


def _renderer(images: Mapping[str, str]) -> MarkdownIt:
    md = MarkdownIt("commonmark", {"html": False, "typographer": False}).enable("table")
    default = md.renderer.rules.get("image")

    def image(renderer, tokens, idx, options, env):
        token = tokens[idx]
        src = images.get(token.attrGet("src") or "", token.attrGet("src") or "")
        token.attrSet("src", src)
        token.attrSet("loading", "lazy")
        html = default(tokens, idx, options, env) if default else renderer.renderToken(tokens, idx, options, env)
        return f'<a class="plot" href="{md.utils.escapeHtml(src)}" target="_blank" rel="noopener">{html}</a>'

    md.add_render_rule("image", image)
    return md


def markdown_html(text: str, images: Mapping[str, str] | None = None) -> str:
    """``text`` (Markdown) as HTML; ``images`` maps the paths its images name to the
    report's copies (an image not listed keeps its path)."""
    return _renderer(images or {}).render(text)
