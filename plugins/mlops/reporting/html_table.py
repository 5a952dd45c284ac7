"""One HTML table builder for every report page (validation, promotion, pipeline page, year report)."""

from __future__ import annotations

import html
from typing import Any


def table(head: list[str], rows: list[list[Any]], escaped: bool = False) -> str:
    """An HTML table of `head` (column names, escaped) and `rows` (cells as str(cell)); cells are
    HTML-escaped unless `escaped` says they are HTML already."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    cell = (lambda c: str(c)) if escaped else (lambda c: html.escape(str(c)))
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{th}</tr>{body}</table>"
