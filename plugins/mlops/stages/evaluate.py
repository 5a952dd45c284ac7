"""Stage 4, sliced evaluation: challenger and champion on the same evaluation rows, per slice.

Each model is judged at its own threshold. Point metrics are scikit-learn's on the slice's rows.
Intervals: for slices of at least `evaluation.min_slice_size` rows, a seeded percentile bootstrap
that resamples the same rows for both models (so the interval of their difference is paired);
smaller slices are marked `small`, their shares (prevalence, precision, recall, predicted positive
rate) get a Wilson interval and the other metrics none. A comparison that a promotion gate judges
is resampled further while its bound lies within the Monte Carlo error of the gate's limit.
Definitions: docs/statistics.md.
"""

from __future__ import annotations

import json
import logging
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.config import LOWER_IS_BETTER, Evaluation, Gate, PipelineConfig
from mlops.core.features import ROW_KEY, labels
from mlops.core.gating import gain_bound, inconclusive, judges_slice
from mlops.core.metrics import (
    NO_INTERVAL,
    OVERALL,
    BootstrapInterval,
    PairedBootstrap,
    counted_point_metrics,
    percentile_interval,
    proportions,
    wilson_interval,
)
from mlops.core.modeling import model_input, predict_scores
from mlops.core.slicing import slice_groups, slice_seed
from mlops.core.splits import split_frame, split_window
from mlops.io import registry
from mlops.io.datasets import model_columns, read_training_set

log = logging.getLogger(__name__)

SLICE_COLUMNS = [
    "slice_feature",
    "slice_value",
    "model",
    "metric",
    "value",
    "n",
    "ci_low",
    "ci_high",
    "status",
    "interval_method",
    "resamples",
    "undefined_resamples",
]
COMPARISON_COLUMNS = [
    "slice_feature",
    "slice_value",
    "metric",
    "difference",
    "ci_low",
    "ci_high",
    "n",
    "status",
    "resamples",
    "undefined_resamples",
    "ci_low_mc_se",
    "ci_high_mc_se",
]
WORST_SLICE_METRICS = ("roc_auc", "pr_auc", "recall", "precision")
OK, SMALL, UNDEFINED = "ok", "small", "undefined"  # status: under min_slice_size rows, or else NaN


@dataclass(frozen=True)
class EvaluationResult:
    challenger_version: str
    champion_version: str | None
    overall: dict[str, dict[str, float]]  # model -> metric -> value
    worst_slices: dict[str, dict[str, Any]]  # model -> metric -> {slice, value, gap}
    rows: int


def evaluate_slices(
    predictions: pd.DataFrame,
    slices: list[str],
    thresholds: dict[str, float | None],
    evaluation: Evaluation | None = None,
    gates: Sequence[Gate] = (),
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Tidy metrics per slice and model (with intervals), and the paired challenger - champion differences.

    `predictions`: label, `<model>_score` and slice columns; `thresholds`: model -> threshold (None: no
    threshold metrics); a model whose scores are missing is left out. `gates`: the promotion gates,
    whose comparisons get more resamples while their reading is inconclusive.
    """
    evaluation = evaluation or Evaluation()
    y_all = predictions["label"].to_numpy(dtype="int64")
    models = [m for m in thresholds if predictions[f"{m}_score"].notna().all()]
    paired = {"challenger", "champion"} <= set(models)
    rows, comparison = [], []
    for number, (feature, value, positions) in enumerate(slice_groups(predictions, slices)):
        y = y_all[positions]
        n = len(positions)
        small = n < evaluation.min_slice_size
        scores = {m: predictions[f"{m}_score"].to_numpy(dtype="float64")[positions] for m in models}
        points = {m: counted_point_metrics(y, scores[m], thresholds[m]) for m in models}
        boot = None
        if evaluation.bootstrap_samples and not small:
            boot = PairedBootstrap(
                y, {m: (scores[m], thresholds[m]) for m in models}, slice_seed(evaluation.seed, number)
            )
            boot.draw(evaluation.bootstrap_samples)
            if paired:
                judged = [g for g in gates if g.compares and judges_slice(g, feature, n, evaluation.min_slice_size)]
                _resample_until_clear(boot, judged, evaluation)
        status = SMALL if small else OK
        for model in models:
            shares = proportions(y, scores[model], thresholds[model]) if small else {}
            for metric, v in points[model].items():
                ci, method = _model_interval(boot, model, metric, shares.get(metric), evaluation)
                state = UNDEFINED if status == OK and np.isnan(v) else status
                rows.append(
                    (feature, value, model, metric, v, n, ci.low, ci.high, state, method, ci.resamples, ci.undefined)
                )
        if paired:
            for metric, v in points["challenger"].items():
                difference = v - points["champion"][metric]
                ci = percentile_interval(_differences(boot, metric), evaluation.confidence) if boot else NO_INTERVAL
                state = UNDEFINED if status == OK and np.isnan(difference) else status
                errors = (ci.resamples, ci.undefined, ci.low_se, ci.high_se)
                comparison.append((feature, value, metric, difference, ci.low, ci.high, n, state, *errors))
    return pd.DataFrame(rows, columns=SLICE_COLUMNS), pd.DataFrame(comparison, columns=COMPARISON_COLUMNS)


def _model_interval(
    boot: PairedBootstrap | None, model: str, metric: str, share: tuple[int, int] | None, evaluation: Evaluation
) -> tuple[BootstrapInterval, str]:
    """(interval, method) of one model's metric: bootstrap on large slices, Wilson for a small slice's shares."""
    if boot is not None:
        values = boot.values(model, metric, evaluation.bootstrap_samples)
        return percentile_interval(values, evaluation.confidence, mc_error=False), "bootstrap"
    if share is not None:
        low, high = wilson_interval(*share, evaluation.confidence)
        return BootstrapInterval(low, high, np.nan, np.nan, 0, 0), "wilson"
    return NO_INTERVAL, "none"


def _differences(boot: PairedBootstrap, metric: str) -> np.ndarray:
    return boot.values("challenger", metric) - boot.values("champion", metric)


def _resample_until_clear(boot: PairedBootstrap, gates: list[Gate], evaluation: Evaluation) -> None:
    """Resample a gated comparison further while its reading is unclear, up to max_gate_resamples.

    A bound farther than 2 x mc_z Monte Carlo errors from its limit after bootstrap_samples is read as
    it is. Otherwise the slice gets gate_resamples (with few resamples in a 2.5% tail the error
    estimate is itself rough), then, while a bound lies within mc_z errors of its limit, enough for its
    current distance to clear mc_z errors (the error falls as 1 / sqrt(resamples); a quarter to
    spare, at least twice as many). Only the gated metrics are computed on the extra resamples.
    """
    if not gates or not evaluation.max_gate_resamples or not _needed(boot, gates, evaluation, 2 * evaluation.mc_z):
        return
    metrics = frozenset(g.metric for g in gates)
    boot.draw(min(evaluation.gate_resamples, evaluation.max_gate_resamples), metrics)
    while boot.resamples < evaluation.max_gate_resamples and (needed := _needed(boot, gates, evaluation)):
        boot.draw(min(needed, evaluation.max_gate_resamples), metrics)


def _needed(boot: PairedBootstrap, gates: list[Gate], evaluation: Evaluation, z: float | None = None) -> int:
    """Resamples that would make every gate's reading clear at `z` (default mc_z) errors; 0 when all are."""
    z = z or evaluation.mc_z
    needed = 0
    for gate in gates:
        ci = percentile_interval(_differences(boot, gate.metric), evaluation.confidence)
        bound, se, _ = gain_bound(gate, ci.low, ci.high, ci.low_se, ci.high_se)
        limit = -gate.max_regression
        if inconclusive(bound, limit, se, z):
            distance = abs(bound - limit)
            factor = (z * se / distance) ** 2 * 1.25 if distance > 0 else math.inf
            needed = max(needed, 2 * boot.resamples, math.ceil(boot.resamples * min(factor, 1e9)))
    return needed


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
    df = read_training_set(cfg.name, training_key, model_columns(cfg, ROW_KEY, *cfg.slice_columns))
    split = split_window(cfg, window)
    part = split_frame(df, cfg, split.evaluation)
    X = model_input(part, cfg.features)
    predictions = part[[ROW_KEY, *cfg.slice_columns]].reset_index(drop=True)
    predictions["label"] = labels(part, cfg.target).to_numpy(dtype="int64")
    predictions["challenger_score"] = predict_scores(registry.load_sklearn(challenger), X)
    predictions["champion_score"] = predict_scores(registry.load_sklearn(champion), X) if champion else np.nan
    thresholds = {"challenger": challenger.threshold}
    if champion:
        thresholds["champion"] = champion.threshold
    metrics, comparison = evaluate_slices(predictions, cfg.slices, thresholds, cfg.evaluation, cfg.promotion.gates)
    worst = worst_slices(metrics, cfg.evaluation.min_slice_size)

    c = registry.client()
    overall = metrics[metrics.slice_feature == OVERALL]
    summary = {m: dict(zip(g.metric, g.value, strict=True)) for m, g in overall.groupby("model")}
    logged = {}
    for model, values in summary.items():
        logged |= {f"eval_{model}_{metric}": value for metric, value in values.items() if np.isfinite(value)}
        logged |= {f"eval_{model}_worst_slice_gap_{metric}": w["gap"] for metric, w in worst.get(model, {}).items()}
    registry.log_values(
        challenger.run_id, logged, {"evaluation_champion_version": champion.version if champion else "none"}
    )
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
