"""Stage 9, outcomes: realized and estimated performance of a scored day, once its labels are due.

For scored day S (the `<name>_outcomes` DAG evaluates S = its interval's day - `labels.delay_days`):

1. the day's predictions (`predictions/S.parquet`: row key, model version, stamped threshold, score)
   get their slice columns from the ingested partition (`raw/S.parquet`) and their labels from the
   label source (config `labels`, `io.labels.read_labels`), joined by row key;
2. the labels are counted, never dropped silently: `predictions`, `label_rows` (rows the label source
   gave), `duplicate_keys` (label rows whose key repeats an earlier one: the first is kept), `unmatched`
   (label keys matching no prediction), `missing` (predictions with no label row), `unknown` (a label
   row without a value, e.g. a cancelled flight), `labelled` (predictions with a known label) and
   `coverage` = labelled / predictions; `status` is `complete` (every prediction labelled), `partial`
   or `missing` (none);
3. per model version that scored the day, overall and per configured slice: the realized metrics on
   the labelled rows and the CBPE estimates on all the version's scored rows (`core.outcomes`); an
   estimated row carries `estimate_error` = estimate - realized (NaN while nothing is realized);
4. the tidy rows go to `outcomes/S.parquet` (manifest: the counts) and the counts to `outcomes/S.json`,
   each replaced atomically, so a re-run of the interval replaces its own day and nothing else; the
   day is logged to MLflow (`io.outcome_runs`: a run per month, step = day).

A day that is not scored (never, or its predictions were retracted) has no outcomes: any earlier
ones are removed (from the lake, and from the month's MLflow run, rebuilt without it), and the result
says why.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.config import PipelineConfig
from mlops.core.features import ROW_KEY
from mlops.core.interval import Interval
from mlops.core.metrics import OVERALL
from mlops.core.outcomes import ESTIMATED, REALIZED, Value, estimated, realized
from mlops.core.slicing import slice_groups, slice_seed
from mlops.io import lake, outcome_runs, predictions
from mlops.io.labels import LABEL, read_labels
from mlops.io.paths import outcomes_dir, predictions_dir, raw_dir

OUTCOME_COLUMNS = [
    "day",
    "model_version",
    "slice_feature",
    "slice_value",
    "metric",
    "kind",
    "value",
    "ci_low",
    "ci_high",
    "n",
    "status",
    "interval_method",
    "estimate_error",
]
COMPLETE, PARTIAL, MISSING, NOT_SCORED = "complete", "partial", "missing", "not_scored"
ESTIMATE_SEED_OFFSET = 7_919  # the label draws of an estimate use other seeds than the bootstrap of the same slice


@dataclass(frozen=True)
class OutcomeResult:
    """What the outcomes of one scored day are; `rows` is the tidy frame (OUTCOME_COLUMNS)."""

    pipeline: str
    day: str
    status: str  # complete, partial, missing, not_scored
    counts: dict[str, Any]
    versions: list[str]
    rows: pd.DataFrame = field(repr=False)
    path: str | None = None
    mlflow: dict[str, Any] | None = None
    reason: str | None = None  # not_scored: why

    def overall(self, kind: str, metric: str) -> float | None:
        """The whole day's value of one metric (first version), or None."""
        r = self.rows[(self.rows.slice_feature == OVERALL) & (self.rows.kind == kind) & (self.rows.metric == metric)]
        return float(r.value.iloc[0]) if len(r) else None

    def summary(self) -> dict[str, Any]:
        """A small JSON-able summary (the task's XCom and `outcomes/<day>.json`)."""
        return {
            "pipeline": self.pipeline,
            "day": self.day,
            "status": self.status,
            "counts": self.counts,
            "versions": self.versions,
            "rows": len(self.rows),
            "path": self.path,
            "mlflow": self.mlflow,
            "reason": self.reason,
            "realized_roc_auc": self.overall(REALIZED, "roc_auc"),
            "estimated_roc_auc": self.overall(ESTIMATED, "roc_auc"),
        }


def scored_days(cfg: PipelineConfig, interval: Interval) -> list[dt.date]:
    """The scored days whose labels are due in `interval` (the outcomes DAG's data interval): each day - delay_days."""
    delay = dt.timedelta(days=cfg.labels.delay_days)
    return [day - delay for day in interval.days()]


def count_labels(scored: pd.DataFrame, labels: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Join `labels` (row_key, label) onto `scored` (row_key, ...) by row key; returns (joined, counts).

    `joined` has every scored row, with `label` NaN where no label is known. Counts: module docstring.
    """
    duplicated = labels[ROW_KEY].duplicated(keep="first")
    unique = labels[~duplicated]
    keys = set(scored[ROW_KEY])
    matched = unique[ROW_KEY].isin(keys)
    joined = scored.merge(unique, on=ROW_KEY, how="left", validate="one_to_one")
    has_row = scored[ROW_KEY].isin(set(unique[ROW_KEY]))
    n = len(scored)
    labelled = int(joined[LABEL].notna().sum())
    counts = {
        "predictions": n,
        "label_rows": len(labels),
        "duplicate_keys": int(duplicated.sum()),
        "unmatched": int((~matched).sum()),
        "missing": int((~has_row).sum()),
        "unknown": int((has_row & joined[LABEL].isna().to_numpy()).sum()),
        "labelled": labelled,
        "coverage": labelled / n if n else 0.0,
    }
    counts["status"] = COMPLETE if labelled == n and n else (MISSING if labelled == 0 else PARTIAL)
    return joined, counts


def _rows(day: str, version: str, kind: str, feature: str, value: str, metrics: dict[str, Value]) -> list[tuple]:
    return [
        (day, version, feature, value, m, kind, v.value, v.ci_low, v.ci_high, v.n, v.status, v.interval_method, np.nan)
        for m, v in metrics.items()
    ]


def outcome_rows(cfg: PipelineConfig, day: str, joined: pd.DataFrame) -> pd.DataFrame:
    """The tidy outcome rows (OUTCOME_COLUMNS) of one day's joined predictions, per version and slice.

    `joined`: row_key, model_version, threshold, score, label (NaN: unknown) and the slice columns.
    Realized metrics use the labelled rows of the slice (none: no realized rows), estimates all of them.
    """
    ev = cfg.evaluation
    rows: list[tuple] = []
    for version, part in joined.groupby("model_version", sort=True):
        part = part.reset_index(drop=True)
        threshold = float(part["threshold"].iloc[0])
        known = part[part[LABEL].notna()].reset_index(drop=True)
        y_known = known[LABEL].to_numpy(dtype="int64")
        s_known = known["score"].to_numpy(dtype="float64")
        scores = part["score"].to_numpy(dtype="float64")
        realized_slices = {(f, v): pos for f, v, pos in slice_groups(known, cfg.slices)} if len(known) else {}
        for number, (feature, value, positions) in enumerate(slice_groups(part, cfg.slices)):
            seed = slice_seed(ev.seed, number)
            est = estimated(
                scores[positions],
                threshold,
                resamples=ev.bootstrap_samples,
                confidence=ev.confidence,
                seed=seed + ESTIMATE_SEED_OFFSET,
            )
            real_rows = []
            if (feature, value) in realized_slices:
                pos = realized_slices[(feature, value)]
                real = realized(
                    y_known[pos],
                    s_known[pos],
                    threshold,
                    resamples=ev.bootstrap_samples,
                    confidence=ev.confidence,
                    seed=seed,
                    min_slice_size=ev.min_slice_size,
                )
                real_rows = _rows(day, str(version), REALIZED, feature, value, real)
            est_rows = _rows(day, str(version), ESTIMATED, feature, value, est)
            realized_values = {r[4]: r[6] for r in real_rows}
            est_rows = [(*r[:-1], r[6] - realized_values.get(r[4], np.nan)) for r in est_rows]
            rows += real_rows + est_rows
    frame = pd.DataFrame(rows, columns=OUTCOME_COLUMNS)
    return frame.astype({"n": "int64", "value": "float64", "ci_low": "float64", "ci_high": "float64"})


def _remove(pipeline: str, key: str) -> None:
    lake.partition_path(outcomes_dir(pipeline), key).unlink(missing_ok=True)


def day_outcomes(
    cfg: PipelineConfig,
    day: dt.date,
    labels: pd.DataFrame | None = None,
    url: str | None = None,
    log_to_mlflow: bool = True,
) -> OutcomeResult:
    """Join, count, compute, store and log the outcomes of scored `day` (module docstring).

    `labels` (row_key, label) replaces reading the label source (tests, replays); `url` overrides the
    label source's URL. Raises SourceError / SourceSchemaError (label source), lake.PartitionReadError
    (a damaged predictions or raw partition), RegistryUnavailableError (MLflow unreachable: the lake is
    written first, the retry logs again).
    """
    key = day.isoformat()
    if not predictions.is_done(cfg.name, key):
        record = predictions.record(cfg.name, key) or {}
        reason = record.get("reason") or "the day has no predictions (not scored yet, or being rewritten)"
        _remove(cfg.name, key)
        dropped = outcome_runs.forget_day(cfg.name, day) if log_to_mlflow else None
        empty = pd.DataFrame(columns=OUTCOME_COLUMNS)
        result = OutcomeResult(cfg.name, key, NOT_SCORED, {}, [], empty, mlflow=dropped, reason=reason)
        lake.write_json(outcomes_dir(cfg.name) / f"{key}.json", result.summary())
        return result
    columns = [ROW_KEY, "model_version", "threshold", "score"]
    scored = lake.read_partition(predictions_dir(cfg.name), key, columns=columns)
    slices = lake.read_partition(raw_dir(cfg.name), key, columns=[ROW_KEY, *cfg.slice_columns])
    scored = scored.merge(slices, on=ROW_KEY, how="left", validate="one_to_one")
    if labels is None:
        labels = read_labels(cfg, day, url)
    joined, counts = count_labels(scored, labels[[ROW_KEY, LABEL]])
    rows = outcome_rows(cfg, key, joined)
    versions = sorted(str(v) for v in joined["model_version"].unique())
    manifest = {"pipeline": cfg.name, "day": key, "counts": counts, "versions": versions}
    lake.write_partition(rows, outcomes_dir(cfg.name), key, manifest)
    path = str(lake.partition_path(outcomes_dir(cfg.name), key))
    logged = outcome_runs.log_day(cfg.name, day, rows, counts) if log_to_mlflow else None
    result = OutcomeResult(cfg.name, key, counts["status"], counts, versions, rows, path, logged)
    lake.write_json(outcomes_dir(cfg.name) / f"{key}.json", result.summary())
    return result


def outcomes(
    cfg: PipelineConfig, interval: Interval, url: str | None = None, log_to_mlflow: bool = True
) -> list[OutcomeResult]:
    """The outcomes of every scored day whose labels are due in `interval` (see `scored_days`), in order.

    Days logged before are logged again with one rebuild of each month's run (`batched_rebuilds`).
    """
    with outcome_runs.batched_rebuilds():
        return [day_outcomes(cfg, day, url=url, log_to_mlflow=log_to_mlflow) for day in scored_days(cfg, interval)]


def read_outcomes(pipeline: str, day: str) -> pd.DataFrame | None:
    """The stored outcome rows of a scored day, or None."""
    if day not in lake.list_partitions(outcomes_dir(pipeline)):
        return None
    return lake.read_partition(outcomes_dir(pipeline), day)
