"""Append-only audit trail of registry decisions (promotions, rejections, rollbacks), one JSON line each."""

from __future__ import annotations

import datetime as dt
import json
import os
from typing import Any

from mlops.io.paths import lake_dir


def audit_path(pipeline: str):
    return lake_dir(pipeline) / "audit.jsonl"


def record(pipeline: str, event: str, **fields: Any) -> dict[str, Any]:
    """Append one event; a single O_APPEND write, so concurrent writers never interleave lines."""
    entry = {
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "pipeline": pipeline,
        "event": event,
        **fields,
    }
    path = audit_path(pipeline)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, (json.dumps(entry, default=str) + "\n").encode())
    finally:
        os.close(fd)
    return entry


def record_once(pipeline: str, event: str, decision_id: str, **fields: Any) -> dict[str, Any] | None:
    """Append one event unless an entry with the same `decision_id` is there already (a retry of it).

    Returns the entry written, or None when it was recorded before. Call it under the pipeline's
    champion lock: the check and the append are not one step.
    """
    if any(entry.get("decision_id") == decision_id for entry in history(pipeline)):
        return None
    return record(pipeline, event, decision_id=decision_id, **fields)


def history(pipeline: str) -> list[dict[str, Any]]:
    """Every recorded event, oldest first."""
    path = audit_path(pipeline)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
