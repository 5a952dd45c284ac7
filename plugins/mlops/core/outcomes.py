"""Realized and estimated performance of scored rows, per slice, with intervals (pure numerics).

- Realized (labels known): the metrics of `core.metrics.point_metrics` on the labelled rows, plus the
  mean score and the prediction bias (mean score - observed positive rate), with a seeded percentile
  bootstrap for slices of at least `min_slice_size` rows and Wilson intervals for the shares of smaller
  slices, as the sliced evaluation does.
- Estimated (labels not needed): confidence-based performance estimation (CBPE; NannyML, "Estimating
  model performance without labels", docs.nannyml.com, "How it works: CBPE"). With calibrated scores
  each row is a positive with probability equal to its score, so the expected confusion matrix at
  threshold t is E[TP] = sum of s over rows with s >= t, E[FP] = sum of (1 - s) there, E[FN] = sum of s
  below t, E[TN] = sum of (1 - s) below t; precision and recall are computed from those expected counts,
  and ROC AUC from the expected true- and false-positive rates at every distinct score (the Mann-Whitney
  form of NannyML's trapezoid over the expected ROC curve). The interval is that of the realized metric
  if the scores were calibrated: labels drawn Bernoulli(score) `resamples` times, metric computed on
  each draw, percentile interval.

Every function takes numpy arrays: `y` (n,) 0/1 labels, `score` (n,) probabilities of class 1,
`threshold` a probability (predicted positive: score >= threshold). Definitions and sources:
docs/statistics.md, section 7.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlops.core.metrics import (
    CHUNK_DRAWS,
    Resampled,
    counted_point_metrics,
    percentile_interval,
    proportions,
    resample_draws,
    wilson_interval,
)

REALIZED, ESTIMATED = "realized", "estimated"
REALIZED_METRICS = (
    "roc_auc",
    "pr_auc",
    "precision",
    "recall",
    "log_loss",
    "brier",
    "observed_positive_rate",
    "predicted_positive_rate",
    "mean_score",
    "prediction_bias",
)
ESTIMATED_METRICS = ("roc_auc", "precision", "recall")
# realized metric name -> the name `core.metrics` gives it
_POINT_NAMES = {"observed_positive_rate": "prevalence"}
BOOTSTRAP, WILSON, LABEL_DRAWS, NONE = "bootstrap", "wilson", "calibrated_label_draws", "none"
OK, SMALL, UNDEFINED = "ok", "small", "undefined"


@dataclass(frozen=True)
class Value:
    """One metric on one set of rows: point value, interval (NaN: none), rows, and how the interval was made."""

    value: float
    ci_low: float
    ci_high: float
    n: int
    status: str  # ok, small (under min_slice_size rows: no bootstrap), undefined (NaN value)
    interval_method: str


def _status(value: float, small: bool) -> str:
    return SMALL if small else (UNDEFINED if np.isnan(value) else OK)


def realized(
    y: np.ndarray,
    score: np.ndarray,
    threshold: float,
    *,
    resamples: int,
    confidence: float,
    seed: int,
    min_slice_size: int,
) -> dict[str, Value]:
    """The realized metrics (`REALIZED_METRICS`) of labelled rows, with intervals.

    Point values are `point_metrics`' (scikit-learn's), computed by `counted_point_metrics`;
    `observed_positive_rate` is the share of positive labels, `mean_score` the mean score, `prediction_bias` =
    mean_score - observed_positive_rate (positive: the model predicts more positives than happen). With n >=
    `min_slice_size` and `resamples` > 0: percentile bootstrap of `resamples` resamples of the rows (seeded by
    `seed`; the same draws for every metric); below it, Wilson intervals for the shares (precision, recall,
    observed and predicted positive rate), none for the others. NaN where a metric is undefined (e.g. ROC AUC of
    one class).
    """
    y = np.asarray(y, dtype="int64")
    score = np.asarray(score, dtype="float64")
    n = len(y)
    points = counted_point_metrics(y, score, threshold)
    mean_score = float(score.mean()) if n else float("nan")
    values = {m: points[_POINT_NAMES.get(m, m)] for m in REALIZED_METRICS if _POINT_NAMES.get(m, m) in points}
    values["mean_score"] = mean_score
    values["prediction_bias"] = mean_score - values["observed_positive_rate"] if n else float("nan")
    small = n < min_slice_size
    out: dict[str, Value] = {}
    if not small and resamples > 0 and n > 0:
        boot = _bootstrap(y, score, threshold, resamples, seed)
        for metric in REALIZED_METRICS:
            ci = percentile_interval(boot[metric], confidence, mc_error=False)
            out[metric] = Value(values[metric], ci.low, ci.high, n, _status(values[metric], False), BOOTSTRAP)
        return out
    shares = proportions(y, score, threshold)
    for metric in REALIZED_METRICS:
        share = shares.get(_POINT_NAMES.get(metric, metric))
        if share is not None and share[1] > 0:
            low, high = wilson_interval(*share, confidence)
            out[metric] = Value(values[metric], low, high, n, _status(values[metric], small), WILSON)
        else:
            out[metric] = Value(values[metric], np.nan, np.nan, n, _status(values[metric], small), NONE)
    return out


def _bootstrap(y: np.ndarray, score: np.ndarray, threshold: float, resamples: int, seed: int) -> dict[str, np.ndarray]:
    """Each realized metric on `resamples` bootstrap resamples of the rows (metric -> (resamples,))."""
    model = Resampled(y, score, threshold)
    rng = np.random.default_rng(seed)
    per_chunk = max(1, CHUNK_DRAWS // max(len(y), 1))
    chunks: dict[str, list[np.ndarray]] = {m: [] for m in REALIZED_METRICS}
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        counts = model.counts(resample_draws(rng, len(y), k))
        metrics = model.metrics(counts)
        mean_score = counts.sum(axis=1) @ model.scores / len(y)
        metrics["observed_positive_rate"] = metrics["prevalence"]
        metrics["mean_score"] = mean_score
        metrics["prediction_bias"] = mean_score - metrics["prevalence"]
        for metric in REALIZED_METRICS:
            chunks[metric].append(metrics[metric])
        done += k
    return {m: np.concatenate(v) for m, v in chunks.items()}


def expected_counts(score: np.ndarray, threshold: float | None = None) -> tuple[Resampled, np.ndarray]:
    """The rows grouped by distinct score, and the expected (negatives, positives) per group: (1, 2, groups).

    Under calibration a row with score s is a positive with probability s: a group's expected
    positives are the sum of its scores, its expected negatives the sum of (1 - score). The returned
    `Resampled` (labels unused) turns such counts into metrics at `threshold`.
    """
    score = np.asarray(score, dtype="float64")
    model = Resampled(np.zeros(len(score), dtype="int64"), score, threshold)
    group = model.cell_of_row  # all labels 0 above: the cell is the distinct-score group
    positives = np.bincount(group, weights=score, minlength=model.groups)
    negatives = np.bincount(group, weights=1 - score, minlength=model.groups)
    return model, np.stack([negatives, positives])[None]


def estimated(score: np.ndarray, threshold: float, *, resamples: int, confidence: float, seed: int) -> dict[str, Value]:
    """CBPE estimates of ROC AUC, precision and recall at `threshold` from calibrated scores alone.

    `score`: (n,) probabilities, assumed calibrated (P(y = 1 | s) = s). Point values: the metrics of the
    expected confusion counts (module docstring). Interval: percentile interval of the metric over
    `resamples` label vectors drawn Bernoulli(score) (seeded by `seed`): where the realized value should
    fall if the scores are calibrated; it does not cover miscalibration, which the estimate's error
    against the realized value measures. NaN on no rows; precision NaN when no row reaches the threshold.
    """
    score = np.asarray(score, dtype="float64")
    n = len(score)
    if n == 0:
        return {m: Value(np.nan, np.nan, np.nan, 0, UNDEFINED, NONE) for m in ESTIMATED_METRICS}
    model, expected = expected_counts(score, threshold)
    wanted = frozenset(ESTIMATED_METRICS)
    points = {m: float(v[0]) for m, v in model.metrics(expected, wanted).items()}
    draws = _label_draws(model, score, resamples, seed, wanted) if resamples > 0 else {}
    out = {}
    for metric in ESTIMATED_METRICS:
        value = points[metric]
        if metric in draws:
            ci = percentile_interval(draws[metric], confidence, mc_error=False)
            out[metric] = Value(value, ci.low, ci.high, n, _status(value, False), LABEL_DRAWS)
        else:
            out[metric] = Value(value, np.nan, np.nan, n, _status(value, False), NONE)
    return out


def _label_draws(
    model: Resampled, score: np.ndarray, resamples: int, seed: int, wanted: frozenset[str]
) -> dict[str, np.ndarray]:
    """The metrics on `resamples` label vectors drawn Bernoulli(score), on the same rows and scores."""
    rng = np.random.default_rng(seed)
    n, groups = len(score), model.groups
    sizes = np.bincount(model.cell_of_row, minlength=groups).astype("float64")
    per_chunk = max(1, CHUNK_DRAWS // max(n, 1))
    chunks: dict[str, list[np.ndarray]] = {m: [] for m in wanted}
    done = 0
    while done < resamples:
        k = min(per_chunk, resamples - done)
        labels = rng.random((k, n)) < score  # (k, n) Bernoulli(score) draws
        cells = model.cell_of_row[None, :] + (np.arange(k, dtype="int64") * groups)[:, None]
        positives = np.bincount(cells[labels], minlength=k * groups).reshape(k, groups).astype("float64")
        counts = np.stack([sizes[None, :] - positives, positives], axis=1)
        for metric, values in model.metrics(counts, wanted).items():
            chunks[metric].append(values)
        done += k
    return {m: np.concatenate(v) for m, v in chunks.items()}


def estimate_errors(rows: pd.DataFrame, slice_feature: str = "overall") -> pd.DataFrame:
    """How far the estimates were from the realized values over days: one row per metric.

    `rows`: outcome rows of any number of days (columns of `stages.outcomes.OUTCOME_COLUMNS`).
    Returns metric, days (estimated rows with a realized value), median_absolute_error, mean_error
    (estimate - realized: positive when the estimate was optimistic for roc_auc) and max_absolute_error,
    over the estimated rows of `slice_feature` (default: the whole day).
    """
    columns = ["metric", "days", "median_absolute_error", "mean_error", "max_absolute_error"]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    est = rows[(rows["kind"] == ESTIMATED) & (rows["slice_feature"] == slice_feature)].dropna(subset=["estimate_error"])
    out = [
        (metric, len(g), g.estimate_error.abs().median(), g.estimate_error.mean(), g.estimate_error.abs().max())
        for metric, g in est.groupby("metric", sort=True)
    ]
    return pd.DataFrame(out, columns=columns)
