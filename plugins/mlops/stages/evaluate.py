"""Stage 4, sliced evaluation: challenger and champion on the same evaluation rows, per slice.

Each model is judged at its own threshold. Point metrics are scikit-learn's on the slice's rows;
95% intervals come from a seeded bootstrap that resamples the same rows for both models, so the
interval of their difference is paired.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.config import CROSS, LOWER_IS_BETTER, Evaluation, PipelineConfig
from mlops.core.features import MISSING_SLICE, ROW_KEY, labels
from mlops.core.metrics import OVERALL, bootstrap_indices, bootstrap_metrics, interval, point_metrics
from mlops.core.modeling import model_input, predict_scores
from mlops.core.splits import split_frame, split_window
from mlops.io import registry
from mlops.io.datasets import read_training_set

SLICE_COLUMNS = ["slice_feature", "slice_value", "model", "metric", "value", "n", "ci_low", "ci_high"]
COMPARISON_COLUMNS = ["slice_feature", "slice_value", "metric", "difference", "ci_low", "ci_high", "n"]
WORST_SLICE_METRICS = ("roc_auc", "pr_auc", "recall", "precision")


@dataclass(frozen=True)
class EvaluationResult:
    challenger_version: str
    champion_version: str | None
    overall: dict[str, dict[str, float]]  # model -> metric -> value
    worst_slices: dict[str, dict[str, Any]]  # model -> metric -> {slice, value, gap}
    rows: int


def slice_groups(predictions: pd.DataFrame, slices: list[str]) -> list[tuple[str, str, np.ndarray]]:
    """(slice_feature, slice_value, row positions): overall first, then each slice value, sorted.

    Rows whose slice column has no value form their own slice, `(missing)`.
    """
    groups = [(OVERALL, OVERALL, np.arange(len(predictions)))]
    for spec in slices:
        columns = [c.strip() for c in spec.split(CROSS)]
        keys = predictions[columns].astype("str").fillna(MISSING_SLICE)
        for value, positions in sorted(keys.groupby(columns, sort=False, dropna=False).indices.items()):
            parts = value if isinstance(value, tuple) else (value,)
            groups.append((spec, CROSS.join(str(p) for p in parts), positions))
    return groups


def evaluate_slices(
    predictions: pd.DataFrame,
    slices: list[str],
    thresholds: dict[str, float | None],
    evaluation: Evaluation | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy metrics per slice and model (with intervals), and the paired challenger - champion differences."""
    evaluation = evaluation or Evaluation()
    y_all = predictions["label"].to_numpy(dtype="int64")
    models = [m for m in thresholds if predictions[f"{m}_score"].notna().all()]
    rows, comparison = [], []
    for number, (feature, value, positions) in enumerate(slice_groups(predictions, slices)):
        y = y_all[positions]
        n = len(positions)
        idx = None
        if evaluation.bootstrap_samples and n >= 2:
            idx = bootstrap_indices(n, evaluation.bootstrap_samples, evaluation.seed * 100_003 + number)
        points, boots = {}, {}
        for model in models:
            score = predictions[f"{model}_score"].to_numpy()[positions]
            points[model] = point_metrics(y, score, thresholds[model])
            boots[model] = bootstrap_metrics(y, score, thresholds[model], idx) if idx is not None else {}
            for metric, v in points[model].items():
                low, high = (
                    interval(boots[model][metric], evaluation.confidence) if idx is not None else (np.nan, np.nan)
                )
                rows.append((feature, value, model, metric, v, n, low, high))
        if {"challenger", "champion"} <= set(models):
            for metric, v in points["challenger"].items():
                low, high = np.nan, np.nan
                if idx is not None:
                    low, high = interval(boots["challenger"][metric] - boots["champion"][metric], evaluation.confidence)
                comparison.append((feature, value, metric, v - points["champion"][metric], low, high, n))
    return pd.DataFrame(rows, columns=SLICE_COLUMNS), pd.DataFrame(comparison, columns=COMPARISON_COLUMNS)


def slice_metrics(
    predictions: pd.DataFrame,
    slices: list[str],
    thresholds: dict[str, float | None],
    evaluation: Evaluation | None = None,
) -> pd.DataFrame:
    """Tidy metrics per slice value and model; the whole set is slice `overall`."""
    return evaluate_slices(predictions, slices, thresholds, evaluation)[0]


def worst_slices(metrics: pd.DataFrame, min_slice_size: int) -> dict[str, dict[str, Any]]:
    """Per model and metric: the worst slice of at least `min_slice_size` rows and its gap to overall."""
    out: dict[str, dict[str, Any]] = {}
    eligible = metrics[(metrics.slice_feature != OVERALL) & (metrics.n >= min_slice_size) & metrics.value.notna()]
    for (model, metric), part in eligible[eligible.metric.isin(WORST_SLICE_METRICS)].groupby(["model", "metric"]):
        overall = metrics[(metrics.slice_feature == OVERALL) & (metrics.model == model) & (metrics.metric == metric)]
        worst = part.loc[part.value.idxmax() if metric in LOWER_IS_BETTER else part.value.idxmin()]
        out.setdefault(model, {})[metric] = {
            "slice": f"{worst.slice_feature}={worst.slice_value}",
            "value": float(worst.value),
            "n": int(worst.n),
            "gap": float(worst.value - overall.value.iloc[0]),
        }
    return out


def evaluate(cfg: PipelineConfig, training_key: str, window, challenger_version: str) -> EvaluationResult:
    """Score the evaluation window with challenger and champion; log metrics, artifacts and plots to the run."""
    from mlops.reporting.plots import evaluation_plots

    challenger = registry.version(cfg.name, challenger_version)
    champion = registry.version_by_alias(cfg.name, registry.CHAMPION)
    if champion is not None and champion.version == challenger.version:
        champion = None
    part = split_frame(read_training_set(cfg.name, training_key), cfg, split_window(cfg, window).evaluation)
    X = model_input(part, cfg.features)
    predictions = part[[ROW_KEY, *cfg.slice_columns]].reset_index(drop=True)
    predictions["label"] = labels(part, cfg.target).to_numpy(dtype="int64")
    predictions["challenger_score"] = predict_scores(registry.load_sklearn(challenger), X)
    predictions["champion_score"] = predict_scores(registry.load_sklearn(champion), X) if champion else np.nan
    thresholds = {"challenger": challenger.threshold}
    if champion:
        thresholds["champion"] = champion.threshold
    metrics, comparison = evaluate_slices(predictions, cfg.slices, thresholds, cfg.evaluation)
    worst = worst_slices(metrics, cfg.evaluation.min_slice_size)

    c = registry.client()
    overall = metrics[metrics.slice_feature == OVERALL]
    summary = {m: dict(zip(g.metric, g.value, strict=True)) for m, g in overall.groupby("model")}
    for model, values in summary.items():
        for metric, value in values.items():
            if np.isfinite(value):
                c.log_metric(challenger.run_id, f"eval_{model}_{metric}", value)
        for metric, w in worst.get(model, {}).items():
            c.log_metric(challenger.run_id, f"eval_{model}_worst_slice_gap_{metric}", w["gap"])
    c.set_tag(challenger.run_id, "evaluation_champion_version", champion.version if champion else "none")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "evaluation"
        folder.mkdir()
        metrics.to_csv(folder / "slice_metrics.csv", index=False)
        comparison.to_csv(folder / "comparison.csv", index=False)
        predictions.to_parquet(folder / "eval_predictions.parquet", index=False)
        (folder / "worst_slices.json").write_text(json.dumps(worst, indent=2))
        evaluation_plots(predictions, metrics, thresholds, folder / "plots")
        c.log_artifacts(challenger.run_id, str(folder), "evaluation")
    return EvaluationResult(
        challenger.version, champion.version if champion else None, summary, worst, len(predictions)
    )
