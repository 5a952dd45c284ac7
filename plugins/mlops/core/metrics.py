"""Binary-classification metrics: exact point values (scikit-learn) and seeded bootstrap intervals (numpy).

The bootstrap draws one set of row indices per resample and applies it to every model, so the
interval of a difference between two models on the same rows is a paired one.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

RANKING = ("roc_auc", "pr_auc")
PROBABILITY = ("log_loss", "brier")
AT_THRESHOLD = ("precision", "recall", "f1")
ALL_METRICS = (*RANKING, *PROBABILITY, *AT_THRESHOLD, "positive_rate", "predicted_positive_rate")
OVERALL = "overall"  # the slice name of all rows together
EPS = np.finfo(np.float64).eps  # scikit-learn's clipping in log_loss


def point_metrics(y: np.ndarray, score: np.ndarray, threshold: float | None) -> dict[str, float]:
    """Every metric on one set of rows; NaN where a metric is undefined (e.g. AUC on one class)."""
    y = np.asarray(y, dtype="int64")
    score = np.asarray(score, dtype="float64")
    nan = float("nan")
    if len(y) == 0:
        return dict.fromkeys(ALL_METRICS, nan)
    two_classes = 0 < y.sum() < len(y)
    out = {
        "roc_auc": float(roc_auc_score(y, score)) if two_classes else nan,
        "pr_auc": float(average_precision_score(y, score)) if two_classes else nan,
        "log_loss": float(log_loss(y, score, labels=[0, 1])),
        "brier": float(brier_score_loss(y, score, labels=[0, 1])),
        "positive_rate": float(y.mean()),
    }
    if threshold is not None:
        predicted = (score >= threshold).astype("int64")
        out["precision"] = float(precision_score(y, predicted, zero_division=np.nan))
        out["recall"] = float(recall_score(y, predicted, zero_division=np.nan))
        out["f1"] = float(f1_score(y, predicted, zero_division=np.nan))
        out["predicted_positive_rate"] = float(predicted.mean())
    return out


def bootstrap_indices(n: int, samples: int, seed: int) -> np.ndarray:
    """`samples` x `n` row indices drawn with replacement, reproducible from `seed`."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n), dtype=np.int64)


def bootstrap_metrics(
    y: np.ndarray, score: np.ndarray, threshold: float | None, idx: np.ndarray
) -> dict[str, np.ndarray]:
    """Every metric on each resample (one row of `idx` each), vectorised; NaN where undefined."""
    yb = np.asarray(y, dtype="float64")[idx]
    sb = np.asarray(score, dtype="float64")[idx]
    n = idx.shape[1]
    positives = yb.sum(axis=1)
    negatives = n - positives
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "roc_auc": _auc_rows(yb, sb, positives, negatives),
            "pr_auc": _average_precision_rows(yb, sb, positives),
            "log_loss": -np.mean(
                yb * np.log(np.clip(sb, EPS, 1 - EPS)) + (1 - yb) * np.log(np.clip(1 - sb, EPS, 1 - EPS)), axis=1
            ),
            "brier": np.mean((sb - yb) ** 2, axis=1),
            "positive_rate": positives / n,
        }
        if threshold is not None:
            pred = sb >= threshold
            tp = (pred & (yb == 1)).sum(axis=1)
            predicted = pred.sum(axis=1)
            precision = np.where(predicted > 0, tp / predicted, np.nan)
            recall = np.where(positives > 0, tp / positives, np.nan)
            out["precision"] = precision
            out["recall"] = recall
            out["f1"] = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), np.nan)
            out["predicted_positive_rate"] = predicted / n
    return out


def _auc_rows(yb: np.ndarray, sb: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> np.ndarray:
    """ROC AUC per row by the rank-sum (Mann-Whitney) formula, ties sharing their average rank."""
    from scipy.stats import rankdata

    ranks = rankdata(sb, axis=1)
    rank_sum = (ranks * yb).sum(axis=1)
    auc = (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)
    return np.where((positives > 0) & (negatives > 0), auc, np.nan)


def _average_precision_rows(yb: np.ndarray, sb: np.ndarray, positives: np.ndarray) -> np.ndarray:
    """Average precision per row, as scikit-learn defines it: tied scores form one step of the curve."""
    order = np.argsort(-sb, axis=1, kind="stable")
    scores = np.take_along_axis(sb, order, axis=1)
    hits = np.take_along_axis(yb, order, axis=1)
    tp = np.cumsum(hits, axis=1)
    precision = tp / np.arange(1, yb.shape[1] + 1)
    recall = tp / positives[:, None]
    group_end = np.ones_like(scores, dtype=bool)  # the last row of each run of tied scores
    group_end[:, :-1] = scores[:, :-1] != scores[:, 1:]
    recall_at_ends = np.maximum.accumulate(np.where(group_end, recall, 0.0), axis=1)
    previous = np.concatenate([np.zeros((yb.shape[0], 1)), recall_at_ends[:, :-1]], axis=1)
    ap = np.where(group_end, (recall - previous) * precision, 0.0).sum(axis=1)
    return np.where((positives > 0) & (positives < yb.shape[1]), ap, np.nan)


def interval(values: np.ndarray, confidence: float) -> tuple[float, float]:
    """Percentile interval of bootstrap values, ignoring NaN resamples."""
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return float("nan"), float("nan")
    alpha = (1 - confidence) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    return float(low), float(high)
