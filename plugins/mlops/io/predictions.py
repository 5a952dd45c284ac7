"""One record per scored day, the only place that says its predictions are done: `scored/<date>.json`.

Predictions live in two stores, the Parquet partition `predictions/<date>.parquet` and (with a sink)
the SQL table. A day is rewritten in this order: its record is removed, the SQL rows are committed,
the Parquet file replaces the old one, and a new record names both (the Parquet content digest,
the SQL table and row count). A failure or a kill anywhere in between leaves no `done` record,
so no reader takes one store ahead of the other as done; the retry writes both again.

A day whose predictions no longer hold (its partition is now empty, or failed validation) is
retracted: rows removed from both stores, and the record says `retracted`, with the reason.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from mlops.io import lake
from mlops.io.paths import monitoring_dir, predictions_dir, scored_dir
from mlops.io.sinks import PostgresSink

DONE, RETRACTED = "done", "retracted"


def _path(pipeline: str, key: str):
    return scored_dir(pipeline) / f"{key}.json"


def record(pipeline: str, key: str) -> dict[str, Any] | None:
    """The day's record, or None (never scored, or being rewritten)."""
    path = _path(pipeline, key)
    return lake.read_json(path) if path.exists() else None


def clear(pipeline: str, key: str) -> None:
    """Remove the day's record: from now on the day is not done until `mark_done`."""
    _path(pipeline, key).unlink(missing_ok=True)


def mark_done(pipeline: str, key: str, manifest: dict[str, Any], sink: PostgresSink | None, sink_rows: int) -> dict:
    """Record that the day's predictions are complete in Parquet (`manifest`) and, with a sink, in SQL."""
    done = {
        "status": DONE,
        "day": key,
        "model_version": manifest.get("model_version"),
        "parquet": {
            "path": str(lake.partition_path(predictions_dir(pipeline), key)),
            "rows": manifest["row_count"],
            "content_digest": manifest["content_digest"],
        },
        "sql": {"table": f"{sink.masked_url} table {sink.table}", "rows": sink_rows} if sink else None,
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    lake.write_json(_path(pipeline, key), done)
    return done


def is_done(pipeline: str, key: str) -> bool:
    """Whether the day has a `done` record that matches the Parquet partition in place.

    Raises lake.PartitionReadError (naming the file) when that partition cannot be read.
    """
    rec = record(pipeline, key)
    if rec is None or rec.get("status") != DONE:
        return False
    try:
        manifest = lake.read_manifest(predictions_dir(pipeline), key)
    except FileNotFoundError:
        return False
    return manifest["content_digest"] == rec["parquet"]["content_digest"]


def scored_days(pipeline: str) -> list[str]:
    """Keys of the days whose predictions are done in every store, sorted."""
    folder = scored_dir(pipeline)
    if not folder.exists():
        return []
    keys = sorted(p.stem for p in folder.glob("*.json") if not p.name.startswith("."))
    return [key for key in keys if is_done(pipeline, key)]


def retract(
    pipeline: str, key: str, reason: str, sink: PostgresSink | None, bounds: tuple[dt.datetime, dt.datetime]
) -> dict[str, Any]:
    """Remove the day's predictions from both stores (SQL rows in `bounds`) and record why; returns the record.

    Also removes the day's monitoring report, which described those predictions. Idempotent.
    """
    previous = record(pipeline, key)
    clear(pipeline, key)
    deleted = None
    if sink is not None:
        with sink.replacing(pipeline, *bounds) as writer:
            pass
        deleted = writer.replaced
    path = lake.partition_path(predictions_dir(pipeline), key)
    parquet_rows = None
    if path.exists():
        try:
            parquet_rows = lake.read_manifest(predictions_dir(pipeline), key)["row_count"]
        except lake.PartitionReadError:
            parquet_rows = "unreadable"
        path.unlink()
    (monitoring_dir(pipeline) / f"{key}.json").unlink(missing_ok=True)
    retracted = {
        "status": RETRACTED,
        "day": key,
        "reason": reason,
        "removed": {
            "model_version": previous.get("model_version") if previous else None,
            "parquet_rows": parquet_rows,
            "sql_rows": deleted,
        },
        "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    lake.write_json(_path(pipeline, key), retracted)
    return retracted
