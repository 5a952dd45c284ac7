"""Volume against recent history: a day's row count over the median of the same weekday in recent weeks.

A fixed `min_rows` cannot tell a day cut short from a quiet one; the same weekday of the last weeks
can (a Friday is compared with Fridays). Pure: the caller gathers the history.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Any

from mlops.core.config import Volume

CHECK = "row_count_vs_same_weekday"


def history_days(day: dt.date, volume: Volume) -> list[dt.date]:
    """The same weekday in each of the `weeks` weeks before `day`, latest first."""
    return [day - dt.timedelta(weeks=k) for k in range(1, volume.weeks + 1)]


def reference_days(days: list[dt.date], volume: Volume) -> list[dt.date]:
    """The days whose partitions validating `days` reads besides their own, sorted, without `days`:
    the day before the first (the drift reference, `stages.validate.previous_partition`) and, for each
    day, the same weekday of the `weeks` weeks before it (the volume history, `history_days`).

    A run must see them whatever order the runs of a backfill take (several run at once), so the
    ingest task writes those that are missing (`stages.ingest.ingest_references`).
    """
    wanted = {min(days) - dt.timedelta(days=1)} if days else set()
    for day in days:
        wanted.update(history_days(day, volume))
    return sorted(wanted - set(days))


def volume_check(day: dt.date, rows: int, history: dict[str, int], volume: Volume) -> dict[str, Any]:
    """One check record (as the validation report's) of `rows` against `history` (day -> rows).

    The ratio rows / median(history) fails (severity error) below `error_below` or above
    `error_above`, and is reported (severity warning) beyond the `warn_*` limits. With fewer than
    `min_history` days of history, or on an exempt day, it never errors.
    """
    expected: dict[str, Any] = {
        "history": history,
        "warn_below": volume.warn_below,
        "error_below": volume.error_below,
        "warn_above": volume.warn_above,
        "error_above": volume.error_above,
    }
    observed: dict[str, Any] = {"day": day.isoformat(), "rows": rows}
    record = {"check": CHECK, "column": None, "success": True, "severity": "warning"}
    if len(history) < volume.min_history:
        expected["note"] = f"fewer than {volume.min_history} earlier days with rows (min_history): not judged"
        return {**record, "observed": observed, "expected": expected}
    median = statistics.median(history.values())
    ratio = rows / median if median else float("inf")
    observed["ratio"] = round(ratio, 4)
    expected["median"] = median

    def beyond(low: float | None, high: float | None) -> bool:
        return (low is not None and ratio < low) or (high is not None and ratio > high)

    gates = day not in volume.exempt and (volume.error_below is not None or volume.error_above is not None)
    error = beyond(volume.error_below, volume.error_above)
    warn = beyond(volume.warn_below, volume.warn_above)
    if day in volume.exempt:
        expected["note"] = "an exempt day (validation.volume.exempt): reported, never an error"
    return {
        **record,
        "success": not (error or warn),
        "severity": "error" if gates and (error or not warn) else "warning",  # as the suite's checks: error if it gates
        "observed": observed,
        "expected": expected,
    }
