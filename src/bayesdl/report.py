"""A self-contained HTML report: tables of metrics and the PNGs, embedded.

The page has no scripts, no external style sheets and no links to other files: images
are embedded as base64 ``data:`` URIs, so the one file can be mailed or archived and
opens in any browser. Every text that comes from outside (method names, settings) is
HTML-escaped. The layout fits a 1,200-pixel-wide window without scrolling sideways: images
shrink to the page's width, long values wrap, and a table too wide for the page scrolls
inside its own box.

Columns are shown under human names (``column_labels``, e.g. ``"NLL ↓"``); a column ``c``
whose rows also hold ``c_min`` and ``c_max`` (repeated timings) is shown as
``median (min–max)``.
"""

from __future__ import annotations

import base64
import html
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["html_report"]

_STYLE = """
*, *::before, *::after { box-sizing: border-box; }
body { font-family: system-ui, sans-serif; margin: 2em auto; padding: 0 1em;
       max-width: 1200px; color: #222; line-height: 1.4; overflow-wrap: anywhere; }
.table { max-width: 100%; overflow-x: auto; margin: 1em 0; }
table { border-collapse: collapse; font-size: 0.9em; }
caption { text-align: left; font-weight: 600; padding: 0.3em 0; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th { overflow-wrap: normal; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
figure { margin: 1.5em 0; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
.note { color: #555; font-size: 0.9em; }
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.4g}"
    return html.escape(str(value))


def _value(row: Mapping[str, Any], column: str) -> str:
    """A cell: the value, or ``median (min–max)`` when the row has the column's spread."""
    value = row.get(column, "")
    low, high = row.get(f"{column}_min"), row.get(f"{column}_max")
    if isinstance(low, float) and isinstance(high, float):
        return f"{_cell(value)} ({low:.3g}–{high:.3g})"
    return _cell(value)


def _table(
    rows: Mapping[str, Mapping[str, Any]],
    columns: Sequence[str],
    caption: str,
    labels: Mapping[str, str],
) -> str:
    head = "".join(
        f'<th title="{html.escape(c, quote=True)}">{html.escape(labels.get(c, c))}</th>'
        for c in ["method", *columns]
    )
    body = []
    for name, row in rows.items():
        cells = "".join(f"<td>{_value(row, c)}</td>" for c in columns)
        body.append(f"<tr><td>{html.escape(name)}</td>{cells}</tr>")
    return (
        f'<div class="table"><table><caption>{html.escape(caption)}</caption>'
        f"<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table></div>"
    )


def _image(path: Path, caption: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    alt = html.escape(caption, quote=True)
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{alt}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def html_report(
    path: str | os.PathLike,
    *,
    title: str,
    intro: str,
    tables: Sequence[tuple[str, Mapping[str, Mapping[str, Any]], Sequence[str]]],
    images: Sequence[tuple[str | os.PathLike, str]],
    settings: Mapping[str, Any],
    column_labels: Mapping[str, str] | None = None,
    notes: Sequence[str] = (),
    sections: Sequence[tuple[str, str, Sequence[tuple[str | os.PathLike, str]]]] = (),
) -> Path:
    """Write one self-contained HTML page.

    Args:
        path: Destination ``.html`` file (replaced if it exists; the caller decides).
        title: Page title and heading.
        intro: A paragraph of plain text under the heading.
        tables: ``(caption, rows, columns)`` per table; ``rows`` maps a method name to
            its metric values, ``columns`` picks and orders the metrics shown.
        images: ``(png_path, caption)`` per figure, embedded in that order.
        settings: Run settings listed at the end of the page.
        column_labels: Column key -> header shown (e.g. ``"nll"`` -> ``"NLL ↓"``); keys
            without a label are shown as they are. The key stays in the header's tooltip.
        notes: Short paragraphs shown after the figures (e.g. why a plot is left out).
        sections: ``(heading, paragraph, images)`` per further section, after the notes:
            an ``<h2>`` heading, a paragraph of plain text and ``(png_path, caption)``
            figures; the section's ``id`` is its heading in lower case, words joined by
            ``-`` (``"why-is-the-model-unsure"``).

    Returns:
        The path written.

    Raises:
        FileNotFoundError: If an image does not exist.
    """
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>",
    ]
    labels = dict(column_labels or {})
    for caption, rows, columns in tables:
        parts.append(_table(rows, columns, caption, labels))
    for image, caption in images:
        parts.append(_image(Path(image), caption))
    parts += [f'<p class="note">{html.escape(note)}</p>' for note in notes]
    for heading, paragraph, figures in sections:
        anchor = "-".join("".join(c if c.isalnum() else " " for c in heading.lower()).split())
        parts.append(f'<section id="{anchor}"><h2>{html.escape(heading)}</h2>'
                     f"<p>{html.escape(paragraph)}</p>")  # fmt: skip
        parts += [_image(Path(image), caption) for image, caption in figures]
        parts.append("</section>")
    items = "".join(
        f"<li><code>{html.escape(str(k))}</code>: {html.escape(str(v))}</li>"
        for k, v in settings.items()
    )
    parts.append(f"<h2>Settings</h2><ul>{items}</ul></body></html>")
    out = Path(path)
    out.write_text("\n".join(parts), encoding="utf-8")
    return out
