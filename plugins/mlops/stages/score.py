"""Stage 7, batch scoring: the champion at its threshold, every row stamped with model and interval."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from mlops import lake, registry
from mlops.config import PipelineConfig
from mlops.interval import Interval
from mlops.modeling import model_input, predict_scores
from mlops.paths import lake_dir
from mlops.stages.ingest import ROW_KEY, read_interval

PREDICTION_COLUMNS = [
    "pipeline",
    ROW_KEY,
    "model_name",
    "model_version",
    "mlflow_run_id",
    "threshold",
    "score",
    "predicted_label",
    "data_interval_start",
    "data_interval_end",
    "scored_at",
]


@dataclass(frozen=True)
class ScoreResult:
    pipeline: str
    interval: str
    model_version: str
    threshold: float
    rows: int
    positive_rate: float


def predictions_dir(pipeline: str):
    """Folder of prediction partitions, one per day."""
    return lake_dir(pipeline) / "predictions"


def resolve_model(cfg: PipelineConfig, model_version: str | None = None) -> registry.VersionRef:
    """The pinned version, or the champion; either must carry a threshold."""
    ref = (
        registry.version(cfg.name, model_version)
        if model_version
        else registry.version_by_alias(cfg.name, registry.CHAMPION)
    )
    if ref is None:
        raise LookupError(f"model {cfg.name!r} has no champion yet: run the {cfg.name}_retrain DAG first")
    if ref.threshold is None:
        raise ValueError(f"version {ref.version} of {cfg.name!r} has no threshold tag")
    return ref


def score(cfg: PipelineConfig, interval: Interval, model_version: str | None = None) -> ScoreResult:
    """Score each day of the interval; a re-run replaces that day's predictions."""
    ref = resolve_model(cfg, model_version)
    model = registry.load_sklearn(ref)
    total, positives = 0, 0
    for day in interval.days():
        df = read_interval(cfg, interval, [day])
        scores = predict_scores(model, model_input(df, cfg.features))
        out = pd.DataFrame(
            {
                "pipeline": cfg.name,
                ROW_KEY: df[ROW_KEY].to_numpy(),
                "model_name": ref.name,
                "model_version": ref.version,
                "mlflow_run_id": ref.run_id,
                "threshold": ref.threshold,
                "score": scores,
            }
        )
        out["predicted_label"] = (out["score"] >= ref.threshold).astype("int8")
        out["data_interval_start"] = pd.Timestamp(day, tz="UTC")
        out["data_interval_end"] = pd.Timestamp(day + dt.timedelta(days=1), tz="UTC")
        out["scored_at"] = pd.Timestamp.now(tz="UTC").floor("s")
        lake.write_partition(
            out[PREDICTION_COLUMNS],
            predictions_dir(cfg.name),
            day.isoformat(),
            {"pipeline": cfg.name, "model_version": ref.version, "threshold": ref.threshold},
        )
        total += len(out)
        positives += int(out["predicted_label"].sum())
    return ScoreResult(cfg.name, interval.key, ref.version, ref.threshold, total, positives / total if total else 0.0)
