"""The outcomes series in MLflow: one run per pipeline and month, one metric step per scored day.

Experiment `<pipeline>-outcomes`; the month's run is found by its tags (`pipeline`, `stage` =
`outcomes`, `month` = `YYYY-MM`) among active runs, or created. Every metric of a day is logged at
step = the day's proleptic ordinal (`datetime.date.toordinal()`, e.g. 734909 for 2013-02-01), with the
day's midnight as timestamp. Metric keys: `<kind>/<metric>/overall` for the whole day and
`<kind>/<metric>/<slice_feature>/<slice_value>` per slice (kind `realized`, `estimated`, or
`estimate_error`); interval ends of the whole day as `.../overall/ci_low` and `.../ci_high`; label
counts as `labels/<count>`. Characters MLflow refuses in a key become `_`.

MLflow keeps a metric's history append-only. The lake (`outcomes/<day>.parquet`) is the record; the
run mirrors it: when a day already logged is logged again (a re-run of its interval), the month's run
is rebuilt from the lake (a new run with the same tags, every day of the month that the lake holds;
the old run is then deleted), so every step holds exactly one value, the latest, and the other days
keep theirs. A task that re-runs many days does so inside `batched_rebuilds`: each month is rebuilt
once, when the block ends, instead of once per day (a re-run of a whole month logged its days 30 x 30
times).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import re
import time
from collections.abc import Iterator
from typing import Any

import pandas as pd
from mlflow.entities import Metric

from mlops.io import lake, registry
from mlops.io.paths import outcomes_dir

STAGE = "outcomes"
COUNT_METRICS = ("predictions", "labelled", "missing", "unknown", "unmatched", "duplicate_keys", "coverage")
SENTINEL = "labels/predictions"  # logged for every day: its steps are the days logged
_BAD = re.compile(r"[^A-Za-z0-9_\-. :/]")
BATCH = 1000  # MLflow's limit of metrics per log_batch
_PENDING: list[set[tuple[str, str]]] = []  # the (pipeline, month)s to rebuild, per open batched_rebuilds block
PENDING = "at the end of the task"  # the `rebuilt` value of a day whose month is rebuilt when the block ends


@contextlib.contextmanager
def batched_rebuilds() -> Iterator[dict[str, str]]:
    """Within the block, a month whose logged day is logged again (or dropped) is rebuilt once, at the end.

    Yields a dict month -> the rebuilt run's id, filled when the block ends. A day of a month already
    marked for rebuilding is not logged to the old run (the rebuild reads it from the lake). The
    months are rebuilt also when the block raises, so the runs mirror what the lake holds by then.
    Raises RegistryUnavailableError when MLflow is unreachable.
    """
    pending: set[tuple[str, str]] = set()
    rebuilt: dict[str, str] = {}
    _PENDING.append(pending)
    try:
        yield rebuilt
    finally:
        _PENDING.pop()
        for pipeline, month in sorted(pending):
            rebuilt[month] = rebuild_month(pipeline, month, replaces=find_month_run(pipeline, month))["run_id"]


def _defer(pipeline: str, month: str) -> bool:
    """Mark the month for rebuilding at the end of the open batched_rebuilds block; False when none is open."""
    if not _PENDING:
        return False
    _PENDING[-1].add((pipeline, month))
    return True


def experiment_name(pipeline: str) -> str:
    return f"{pipeline}-outcomes"


def metric_key(kind: str, metric: str, slice_feature: str, slice_value: str, suffix: str = "") -> str:
    """The MLflow key of one series (see the module docstring)."""
    parts = [kind, metric, "overall"] if slice_feature == "overall" else [kind, metric, slice_feature, slice_value]
    key = "/".join(_BAD.sub("_", p) for p in parts) + (f"/{suffix}" if suffix else "")
    return key[:250]


def day_metrics(day: dt.date, rows: pd.DataFrame, counts: dict[str, Any]) -> list[Metric]:
    """The MLflow metric points of one scored day: its tidy outcome rows and its label counts.

    `rows`: the outcomes parquet (columns day, model_version, slice_feature, slice_value, metric, kind,
    value, ci_low, ci_high, estimate_error). A day scored by several versions gets `v<version>/` before
    each key. NaN values are not logged.
    """
    step = day.toordinal()
    stamp = int(dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC).timestamp() * 1000)
    points: dict[str, float] = {f"labels/{k}": float(counts[k]) for k in COUNT_METRICS if k in counts}
    several = rows["model_version"].nunique() > 1
    for r in rows.itertuples(index=False):
        prefix = f"v{r.model_version}/" if several else ""
        points[prefix + metric_key(r.kind, r.metric, r.slice_feature, r.slice_value)] = r.value
        if r.slice_feature == "overall":
            points[prefix + metric_key(r.kind, r.metric, "overall", "overall", "ci_low")] = r.ci_low
            points[prefix + metric_key(r.kind, r.metric, "overall", "overall", "ci_high")] = r.ci_high
        if r.kind == "estimated" and not _nan(r.estimate_error):
            points[prefix + metric_key("estimate_error", r.metric, r.slice_feature, r.slice_value)] = r.estimate_error
    return [Metric(k, float(v), stamp, step) for k, v in points.items() if not _nan(v)]


def _nan(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _month_tags(pipeline: str, month: str) -> dict[str, str]:
    return {"pipeline": pipeline, "stage": STAGE, "month": month}


def find_month_run(pipeline: str, month: str) -> str | None:
    """The active run of the pipeline's month (`YYYY-MM`), or None."""
    c = registry.client()
    experiment = registry.experiment_id(experiment_name(pipeline))
    runs = c.search_runs(
        [experiment],
        filter_string=f"tags.pipeline = '{pipeline}' and tags.stage = '{STAGE}' and tags.month = '{month}'",
        order_by=["attributes.start_time DESC"],
        max_results=5,
    )
    return runs[0].info.run_id if runs else None


def _create_month_run(pipeline: str, month: str) -> str:
    c = registry.client()
    experiment = registry.experiment_id(experiment_name(pipeline))
    run = c.create_run(experiment, run_name=f"outcomes {pipeline} {month}", tags=_month_tags(pipeline, month))
    return run.info.run_id


def _log(run_id: str, metrics: list[Metric]) -> None:
    c = registry.client()
    for i in range(0, len(metrics), BATCH):
        c.log_batch(run_id, metrics=metrics[i : i + BATCH])


def _logged_steps(run_id: str) -> set[int]:
    return {m.step for m in registry.client().get_metric_history(run_id, SENTINEL)}


def month_days_in_lake(pipeline: str, month: str) -> list[str]:
    """The scored days of `month` whose outcomes the lake holds, sorted."""
    return [k for k in lake.list_partitions(outcomes_dir(pipeline)) if k.startswith(f"{month}-")]


def log_day(pipeline: str, day: dt.date, rows: pd.DataFrame, counts: dict[str, Any]) -> dict[str, Any]:
    """Log one scored day's outcomes to its month's run; returns {run_id, month, step, rebuilt, metrics}.

    A day already logged in that run makes the run rebuilt from the lake (module docstring): the
    lake must already hold the day's new outcomes. Raises RegistryUnavailableError when MLflow is unreachable.
    """
    month = day.strftime("%Y-%m")
    run_id = find_month_run(pipeline, month)
    step = day.toordinal()
    metrics = day_metrics(day, rows, counts)
    deferred = {"run_id": run_id, "month": month, "step": step, "rebuilt": PENDING, "metrics": len(metrics)}
    if run_id is None:
        run_id = _create_month_run(pipeline, month)
    elif _PENDING and (pipeline, month) in _PENDING[-1]:
        return deferred
    elif step in _logged_steps(run_id):
        if _defer(pipeline, month):
            return deferred
        return {**rebuild_month(pipeline, month, replaces=run_id), "step": step, "metrics": len(metrics)}
    _log(run_id, metrics)
    return {"run_id": run_id, "month": month, "step": step, "rebuilt": False, "metrics": len(metrics)}


def forget_day(pipeline: str, day: dt.date) -> dict[str, Any] | None:
    """Drop a day from its month's run (its outcomes left the lake, e.g. its predictions were retracted).

    Rebuilds the month's run from the lake when the day was logged there; returns what
    `rebuild_month` returns, or None when there was nothing to drop.
    """
    month = day.strftime("%Y-%m")
    run_id = find_month_run(pipeline, month)
    if run_id is None or day.toordinal() not in _logged_steps(run_id):
        return None
    if _defer(pipeline, month):
        return {"run_id": run_id, "month": month, "rebuilt": PENDING}
    return rebuild_month(pipeline, month, replaces=run_id)


def rebuild_month(pipeline: str, month: str, replaces: str | None = None) -> dict[str, Any]:
    """A new run of the month holding every day of the lake's outcomes of that month; deletes `replaces`."""
    run_id = _create_month_run(pipeline, month)
    for key in month_days_in_lake(pipeline, month):
        rows = lake.read_partition(outcomes_dir(pipeline), key)
        counts = lake.read_manifest(outcomes_dir(pipeline), key).get("counts", {})
        _log(run_id, day_metrics(dt.date.fromisoformat(key), rows, counts))
    if replaces is not None:
        c = registry.client()
        c.set_tag(replaces, "replaced_by", run_id)
        c.delete_run(replaces)
    return {"run_id": run_id, "month": month, "rebuilt": True, "replaced": replaces, "at": time.time()}


def metric_series(run_id: str, key: str) -> dict[int, float]:
    """step -> the latest value logged at that step, of one metric of a run."""
    latest: dict[int, tuple[int, float]] = {}
    for m in registry.client().get_metric_history(run_id, key):
        if m.step not in latest or m.timestamp >= latest[m.step][0]:
            latest[m.step] = (m.timestamp, m.value)
    return {step: value for step, (_, value) in sorted(latest.items())}
