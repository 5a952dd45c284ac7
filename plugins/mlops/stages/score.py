"""Stage 7, batch scoring: the champion at its threshold, every row stamped with model and interval."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

import pandas as pd

from mlops import lake, registry
from mlops.config import PipelineConfig
from mlops.interval import Interval
from mlops.modeling import model_input, predict_scores
from mlops.paths import lake_dir
from mlops.stages.ingest import ROW_KEY, raw_dir

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


DEFAULT_BATCH_ROWS = 100_000


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


def resolve_model(cfg: PipelineConfig, day: dt.date, model_version: str | None = None) -> registry.VersionRef:
    """The pinned version, or the champion of `day` (registry.champion_for); either must carry a threshold."""
    ref = registry.version(cfg.name, model_version) if model_version else registry.champion_for(cfg.name, day)
    if ref is None:
        raise LookupError(f"model {cfg.name!r} has no champion yet: run the {cfg.name}_retrain DAG first")
    if ref.threshold is None:
        raise ValueError(f"version {ref.version} of {cfg.name!r} has no threshold tag")
    return ref


def score_batches(
    cfg: PipelineConfig,
    model,
    ref: registry.VersionRef,
    day: dt.date,
    batch_rows: int,
    tally: dict[str, int] | None = None,
) -> Iterator[pd.DataFrame]:
    """Predictions for one day's partition, batch by batch (counting positives into `tally`)."""
    start, end = pd.Timestamp(day, tz="UTC"), pd.Timestamp(day + dt.timedelta(days=1), tz="UTC")
    scored_at = pd.Timestamp.now(tz="UTC").floor("s")
    for df in lake.iter_partition(raw_dir(cfg.name), day.isoformat(), batch_rows):
        scores = predict_scores(model, model_input(df, cfg.features))
        if tally is not None:
            tally["positives"] += int((scores >= ref.threshold).sum())
        yield pd.DataFrame(
            {
                "pipeline": cfg.name,
                ROW_KEY: df[ROW_KEY].to_numpy(),
                "model_name": ref.name,
                "model_version": ref.version,
                "mlflow_run_id": ref.run_id,
                "threshold": ref.threshold,
                "score": scores,
                "predicted_label": (scores >= ref.threshold).astype("int8"),
                "data_interval_start": start,
                "data_interval_end": end,
                "scored_at": scored_at,
            }
        )


def score(
    cfg: PipelineConfig, interval: Interval, model_version: str | None = None, batch_rows: int = DEFAULT_BATCH_ROWS
) -> ScoreResult:
    """Score each day of the interval with the champion of that day (or a pinned version), in batches.

    A re-run replaces that day's predictions; memory stays bounded by `batch_rows`, not the partition.
    """
    total, positives, models = 0, 0, {}
    for day in interval.days():
        ref = resolve_model(cfg, day, model_version)
        if ref.version not in models:
            models[ref.version] = registry.load_sklearn(ref)
        tally = {"positives": 0}
        manifest = lake.write_partition_stream(
            score_batches(cfg, models[ref.version], ref, day, batch_rows, tally),
            predictions_dir(cfg.name),
            day.isoformat(),
            {"pipeline": cfg.name, "model_version": ref.version, "threshold": ref.threshold},
        )
        total += manifest["row_count"]
        positives += tally["positives"]
    return ScoreResult(cfg.name, interval.key, ref.version, ref.threshold, total, positives / total if total else 0.0)
