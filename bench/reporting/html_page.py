"""The leaderboard of one dataset as one self-contained HTML page, which a browser opens from disk.

It says what the Markdown says (``leaderboard_render.blocks``): the text is that Markdown rendered by
markdown-it-py with raw HTML off, so every character of a label, note or command is escaped; the
tables are drawn by a Jinja template with autoescaping and sort on a click on a column header (an
inline script); the plots are inline ``data:`` URIs. Nothing is fetched.
"""

from __future__ import annotations

import base64
import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import jinja2
import pandas as pd
from markdown_it import MarkdownIt

from bench.evaluation.metric_catalog import METRICS
from bench.reporting import markdown as render
from bench.reporting.leaderboard import Board

_MARKDOWN = MarkdownIt("commonmark", {"html": False}).enable("table")  # the gi section's table of doubles
_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("bench", "templates"), autoescape=True, undefined=jinja2.StrictUndefined,
    trim_blocks=True, lstrip_blocks=True,
)


@dataclass(frozen=True)
class _Text:
    html: str  # rendered with raw HTML off: safe to insert as it is
    kind = "text"


@dataclass(frozen=True)
class _Table:
    table: render.MetricTable
    first: str  # the order of a metric column's first click: its best value first
    kind = "table"


@dataclass(frozen=True)
class _Image:
    alt: str
    uri: str
    kind = "image"


def _sort_key(value: float) -> str:
    """A number as the sort script reads it; empty (sorted last) where there is none."""
    return repr(float(value)) if math.isfinite(value) else ""


def _parts(board_tables: list[tuple[Board, pd.DataFrame, dict[str, str]]], command: str,
           folder: Path) -> list[_Text | _Table | _Image]:
    """The page in order: runs of Markdown text rendered to HTML, tables, and images read from ``folder``."""
    parts = []
    for is_text, blocks in itertools.groupby(render.blocks(board_tables, command), lambda b: isinstance(b, str)):
        if is_text:
            parts.append(_Text(_MARKDOWN.render("\n".join(blocks))))
            continue
        for block in blocks:
            if isinstance(block, render.MetricTable):
                parts.append(_Table(block, "descending" if METRICS[block.metric].sign > 0 else "ascending"))
            else:
                data = base64.b64encode((folder / block.name).read_bytes()).decode("ascii")
                parts.append(_Image(block.alt, f"data:image/png;base64,{data}"))
    return parts


def page(board_tables: list[tuple[Board, pd.DataFrame, dict[str, str]]], command: str, folder: Path) -> str:
    """The HTML page of one dataset's leaderboard; ``folder`` holds the images named in ``board_tables``."""
    template = _TEMPLATES.get_template("leaderboard.html")
    return template.render(title=f"Leaderboard: {board_tables[0][0].dataset}",
                           parts=_parts(board_tables, command, folder), sort_key=_sort_key)
