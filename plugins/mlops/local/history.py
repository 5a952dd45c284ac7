"""`mlops history`: the audit trail of promotions, rejections and rollbacks as a table a person reads."""

from __future__ import annotations

from typing import Any

COLUMNS = ("at", "event", "version", "previous", "by", "reasons")


def _cells(event: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The row's cells, and its reasons (one a line, the first in the row)."""
    at = str(event.get("at", "")).replace("T", " ").replace("+00:00", "Z")
    reasons = [str(r) for r in event.get("reasons") or []]
    if event.get("revoked"):
        reasons.append(f"revoked: {', '.join(str(v) for v in event['revoked'])}")
    cells = [
        at,
        str(event.get("event", "")),
        str(event.get("version") or "-"),
        str(event.get("previous") or "-"),
        str(event.get("triggered_by") or "-"),
    ]
    return cells, reasons


def history_table(events: list[dict[str, Any]]) -> str:
    """One row per event, oldest first: time (UTC), event, version, previous champion, who, reasons.

    An event with several reasons continues on the next lines, under the reasons column.
    """
    rows = [_cells(e) for e in events]
    widths = [max([len(COLUMNS[i])] + [len(cells[i]) for cells, _ in rows]) for i in range(len(COLUMNS) - 1)]
    indent = sum(w + 2 for w in widths)

    def line(cells: list[str], reason: str) -> str:
        return ("".join(c.ljust(w + 2) for c, w in zip(cells, widths, strict=True)) + reason).rstrip()

    out = [line(list(COLUMNS[:-1]), COLUMNS[-1])]
    for cells, reasons in rows:
        out.append(line(cells, reasons[0] if reasons else "-"))
        out += [" " * indent + reason for reason in reasons[1:]]
    return "\n".join(out)
