"""Stage 4, sliced evaluation: challenger and champion on the same evaluation rows, per slice."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops import registry
from mlops.config import PipelineConfig
from mlops.features import labels
from mlops.modeling import binary_metrics, model_input, predict_scores
from mlops.stages.assemble import read_training_set
from mlops.stages.ingest import ROW_KEY
from mlops.stages.train import split_frame, split_window

SLICE_COLUMNS = ["slice_feature", "slice_value", "model", "metric", "value", "n"]
OVERALL = "overall"


@dataclass(frozen=True)
class EvaluationResult:
    challenger_version: str
    champion_version: str | None
    overall: dict[str, dict[str, float]]  # model -> metric -> value
    rows: int


def slice_metrics(predictions: pd.DataFrame, slices: list[str], thresholds: dict[str, float | None]) -> pd.DataFrame:
    """Tidy metrics per slice value and model, the whole set as slice `overall`."""
    groups = [(OVERALL, OVERALL, predictions)]
    for feature in slices:
        for value, part in predictions.groupby(predictions[feature].astype("str"), sort=True, dropna=False):
            groups.append((feature, value, part))
    rows = []
    for feature, value, part in groups:
        for model, threshold in thresholds.items():
            scores = part[f"{model}_score"]
            if scores.isna().all():
                continue
            for metric, v in binary_metrics(part["label"].to_numpy(), scores.to_numpy(), threshold).items():
                rows.append((feature, value, model, metric, v, len(part)))
    return pd.DataFrame(rows, columns=SLICE_COLUMNS)


def evaluate(cfg: PipelineConfig, training_key: str, window, challenger_version: str) -> EvaluationResult:
    """Score the evaluation window with challenger and champion, log metrics and artifacts to the run."""
    challenger = registry.version(cfg.name, challenger_version)
    champion = registry.version_by_alias(cfg.name, registry.CHAMPION)
    if champion is not None and champion.version == challenger.version:
        champion = None
    part = split_frame(read_training_set(cfg.name, training_key), cfg, split_window(cfg, window).evaluation)
    X = model_input(part, cfg.features)
    predictions = part[[ROW_KEY, *cfg.slices]].reset_index(drop=True)
    predictions["label"] = labels(part, cfg.target).to_numpy(dtype="int64")
    predictions["challenger_score"] = predict_scores(registry.load_sklearn(challenger), X)
    predictions["champion_score"] = predict_scores(registry.load_sklearn(champion), X) if champion else np.nan
    thresholds = {"challenger": challenger.threshold}
    if champion:
        thresholds["champion"] = champion.threshold
    metrics = slice_metrics(predictions, cfg.slices, thresholds)

    c = registry.client()
    overall = metrics[metrics.slice_feature == OVERALL]
    summary = {m: dict(zip(g.metric, g.value, strict=True)) for m, g in overall.groupby("model")}
    for model, values in summary.items():
        for metric, value in values.items():
            if np.isfinite(value):
                c.log_metric(challenger.run_id, f"eval_{model}_{metric}", value)
    c.set_tag(challenger.run_id, "evaluation_champion_version", champion.version if champion else "none")
    with tempfile.TemporaryDirectory() as tmp:
        metrics.to_csv(Path(tmp) / "slice_metrics.csv", index=False)
        predictions.to_parquet(Path(tmp) / "eval_predictions.parquet", index=False)
        c.log_artifact(challenger.run_id, str(Path(tmp) / "slice_metrics.csv"), "evaluation")
        c.log_artifact(challenger.run_id, str(Path(tmp) / "eval_predictions.parquet"), "evaluation")
    return EvaluationResult(challenger.version, champion.version if champion else None, summary, len(predictions))
