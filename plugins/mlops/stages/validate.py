"""Stage 2, validation: a Great Expectations suite, plus drift and skew measured per feature, and volume.

- drift: against the previous day's partition;
- skew: against the training data of the model that was champion for this data interval;
- volume: each day's row count against the same weekday of recent weeks.

Both references follow from the run's data interval, so a backfill of an old day compares with the
day before it and with the champion of that time, exactly as the original run did. Both compare
like with like: every row of the day (labelled or not) against every row of the previous day, or of
the champion's training days (the profile's `population` says which rows it holds). A shift is
flagged when it passes its limit and the `null_quantile` of the statistic between two samples of the
reference of the same sizes (what sampling alone gives at that n). Every run's shift scores are
kept (one Parquet file per interval) whether or not anything failed.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.checks import CheckOutcomes, shorten
from mlops.core.config import PipelineConfig, ShiftCheck
from mlops.core.drift import compare, null_distribution, profile
from mlops.core.interval import Interval
from mlops.core.volume import history_days, volume_check
from mlops.io import lake, locks
from mlops.io.datasets import is_empty, read_interval, read_training_set, volume_history
from mlops.io.gx_checks import build_suite, run_suite
from mlops.io.paths import mlflow_run_url, raw_dir, shift_scores_dir, validation_dir

DRIFT, SKEW = "drift", "skew"
AGAINST = {DRIFT: "previous_partition", SKEW: "training_data"}


@dataclass(frozen=True)
class Reference:
    """A distribution to compare with: its name (what it is) and its profile."""

    name: str
    profile: dict[str, Any]


@dataclass
class ValidationReport(CheckOutcomes):
    """Outcome of validating one interval; `failed` lists the checks that stop the chain."""

    pipeline: str
    interval: str
    rows: int
    checks: list[dict[str, Any]]
    shifts: dict[str, dict[str, dict[str, float]]]  # drift|skew -> feature -> metric -> value
    references: dict[str, str | None]  # drift|skew -> reference name
    nulls: dict[str, dict[str, dict[str, dict[str, float]]]] = field(default_factory=dict)  # ... -> {mean, quantile}
    report_path: str | None = None  # the HTML report, when published
    mlflow_run_id: str | None = None  # the MLflow run holding it, when published
    validated_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def summary(self) -> str:
        """One line per failed check, for logs and alert mail."""
        lines = [f"{len(self.failed)} of {len(self.checks)} checks failed ({self.pipeline} {self.interval})"]
        for c in self.failed:
            column = f" [{c['column']}]" if c["column"] else ""
            lines.append(
                f"- {c['check']}{column}: observed {shorten(c['observed'])}, expected {shorten(c['expected'])}"
            )
        if self.report_path:
            lines.append(f"Report: {self.report_path}")
        if self.mlflow_run_id:
            lines.append(f"MLflow run: {mlflow_run_url(self.mlflow_run_id)}")
        return "\n".join(lines)


def shift_checks(
    check: ShiftCheck,
    kind: str,
    stats: dict[str, dict[str, float]],
    rows: int,
    reference_rows: int,
    nulls: dict[str, dict[str, dict[str, float]]] | None = None,
) -> list[dict[str, Any]]:
    """One check per feature and limited metric: an error only with enough rows on both sides.

    A value is over a limit when it exceeds the limit and, where `nulls` gives one, the quantile of
    the statistic's null distribution at these sizes. An undefined value (no row to measure) is skipped.
    """
    checks = []
    gating = min(rows, reference_rows) >= check.min_rows
    for feature, by_metric in sorted(stats.items()):
        if feature in check.exclude:
            continue
        for metric, value in sorted(by_metric.items()):
            limit = check.limit(feature, metric)
            if (limit.warn is None and limit.error is None) or np.isnan(value):
                continue
            null = (nulls or {}).get(feature, {}).get(metric)
            beyond_noise = null is None or not value <= null["quantile"]
            over_error = limit.error is not None and value > limit.error and beyond_noise
            over_warn = limit.warn is not None and value > limit.warn and beyond_noise
            expected = {
                "warn_above": limit.warn,
                "error_above": limit.error,
                "gates": gating,
                "rows": rows,
                "reference_rows": reference_rows,
            }
            if null is not None:
                expected |= {
                    "null_quantile": round(null["quantile"], 4),
                    "null_mean": round(null["mean"], 4),
                    "null_level": check.null_quantile,
                }
            checks.append(
                {
                    "check": f"{metric}_vs_{AGAINST[kind]}",
                    "column": feature,
                    "success": not (over_error or over_warn),
                    "severity": "error" if over_error and gating else "warning",
                    "observed": round(float(value), 4),
                    "expected": expected,
                }
            )
    return checks


def previous_partition(cfg: PipelineConfig, interval: Interval) -> Reference | None:
    """The profile of the day before the interval, when that partition exists and has rows."""
    day = interval.start - dt.timedelta(days=1)
    try:
        df = lake.read_partition(raw_dir(cfg.name), day.isoformat())
    except FileNotFoundError:
        return None
    if df.empty:
        return None
    return Reference(f"partition {day.isoformat()}", profile(df, cfg.features.categorical, cfg.features.numeric))


def champion_training_data(cfg: PipelineConfig, day: dt.date) -> Reference | None:
    """The training-data profile of the champion of `day` (see registry.champion_for)."""
    from mlops.io import registry

    champion = registry.champion_for(cfg.name, day)
    if champion is None:
        return None
    reference = registry.load_reference(cfg.name, champion.version)
    population = reference.get("population", "its labelled training rows")
    return Reference(f"training data of {cfg.name} v{champion.version} ({population})", reference)


def validate_frame(
    cfg: PipelineConfig,
    df: pd.DataFrame,
    key: str,
    n_days: int,
    references: dict[str, Reference | None],
    data_docs: bool = False,
    publish: bool = False,
    extra_checks: list[dict[str, Any]] | None = None,
) -> ValidationReport:
    """Run the suite and the shift checks on a frame covering `n_days` days; store the report under `key`.

    With `data_docs`, the Great Expectations run is stored and the Data Docs site rebuilt (about 1 s).
    With `publish`, the HTML report is written and logged with the JSON report to an MLflow run.
    `extra_checks` (records like the suite's, with a severity) join the report as they are.
    """
    suite = build_suite(cfg, n_days)
    checks = [{**c, "severity": "error"} for c in run_suite(suite, df, run_name=key, data_docs=data_docs)]
    checks += extra_checks or []
    shifts: dict[str, dict[str, dict[str, float]]] = {}
    nulls: dict[str, dict[str, dict[str, dict[str, float]]]] = {}
    for kind, reference in references.items():
        if reference is None:
            continue
        check = getattr(cfg.validation, kind)
        shifts[kind] = compare(reference.profile, df, exclude=check.exclude)
        if check.null_quantile is not None:
            nulls[kind] = null_distribution(
                reference.profile, df, check.null_quantile, check.null_resamples, exclude=check.exclude
            )
        checks += shift_checks(check, kind, shifts[kind], len(df), reference.profile["rows"], nulls.get(kind))
    names = {kind: (ref.name if ref else None) for kind, ref in references.items()}
    report = ValidationReport(cfg.name, key, len(df), checks, shifts, names, nulls)
    data = report.to_dict()  # once: a deep copy of 140 checks with their shifts (dataclasses.asdict)
    if publish:
        from mlops.reporting.report import log_to_mlflow, write_report

        profiles = {kind: ref.profile for kind, ref in references.items() if ref is not None}
        html_path = write_report(data, df, profiles)
        report.report_path = data["report_path"] = str(html_path)
        report.mlflow_run_id = log_to_mlflow(data, html_path)  # the JSON logged names no run: it is the run's
        data["mlflow_run_id"] = report.mlflow_run_id
    lake.write_json(validation_dir(cfg.name) / f"{key}.json", data)
    _write_scores(cfg.name, key, report)
    return report


def _write_scores(pipeline: str, key: str, report: ValidationReport) -> None:
    nan = {"mean": float("nan"), "quantile": float("nan")}
    rows = [
        (
            pipeline,
            key,
            kind,
            report.references.get(kind),
            feature,
            metric,
            float(value),
            report.rows,
            (null := report.nulls.get(kind, {}).get(feature, {}).get(metric, nan))["mean"],
            null["quantile"],
        )
        for kind, by_feature in report.shifts.items()
        for feature, by_metric in by_feature.items()
        for metric, value in by_metric.items()
    ]
    frame = pd.DataFrame(
        rows,
        columns=[
            *("pipeline", "interval", "comparison", "reference", "feature", "metric", "value", "rows"),
            *("null_mean", "null_quantile"),
        ],
    )
    lake.write_partition(frame, shift_scores_dir(pipeline), key, {"pipeline": pipeline, "interval": key})


def validate(
    cfg: PipelineConfig,
    interval: Interval,
    references: dict[str, Reference | None] | None = None,
    data_docs: bool = False,
    publish: bool = False,
) -> ValidationReport:
    """Validate the ingested partitions of `interval` (the report replaces an earlier one).

    Without `references`, drift compares with the previous day's partition and skew with the
    training data of the champion of the interval's first day. The days are then decided by that
    champion (`datasets.served_days`): the serving lock is held shared (`locks.serving`) from reading
    the registry until the report is stored, so a promotion commits before (the report names the new
    champion) or after (the new champion serves from a later day), never between.
    """
    if references is not None:
        return _validate(cfg, interval, references, data_docs, publish)
    with locks.serving(cfg.name):
        references = {DRIFT: previous_partition(cfg, interval), SKEW: champion_training_data(cfg, interval.start)}
        return _validate(cfg, interval, references, data_docs, publish)


def _validate(
    cfg: PipelineConfig, interval: Interval, references: dict[str, Reference | None], data_docs: bool, publish: bool
) -> ValidationReport:
    df = read_interval(cfg, interval)
    with_rows = [day for day in interval.days() if not is_empty(cfg, day)]
    volume = [volume_check_of(cfg, day) for day in with_rows]
    return validate_frame(cfg, df, interval.key, max(1, len(with_rows)), references, data_docs, publish, volume)


def volume_check_of(cfg: PipelineConfig, day: dt.date) -> dict[str, Any]:
    """The day's row count against the same weekday of recent weeks (see core.volume)."""
    rows = int(lake.read_manifest(raw_dir(cfg.name), day.isoformat())["row_count"])
    history = volume_history(cfg, history_days(day, cfg.validation.volume))
    return volume_check(day, rows, history, cfg.validation.volume)


def validate_training_set(
    cfg: PipelineConfig,
    training_key: str,
    n_days: int,
    references: dict[str, Reference | None] | None = None,
    data_docs: bool = False,
    publish: bool = False,
) -> ValidationReport:
    """Validate an assembled training window (skew against the current champion's training data)."""
    if references is None:
        window = Interval.parse(training_key)
        references = {SKEW: champion_training_data(cfg, window.end)}
    df = read_training_set(cfg.name, training_key)
    return validate_frame(cfg, df, f"training-{training_key}", n_days, references, data_docs, publish)
