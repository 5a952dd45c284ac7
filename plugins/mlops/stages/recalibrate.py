"""Stage 5, decision-threshold recalibration on the calibration window, stored with the model version."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve

from mlops.core.config import PipelineConfig, Threshold
from mlops.core.features import labels
from mlops.core.modeling import model_input, predict_scores
from mlops.core.splits import split_frame, split_window
from mlops.io import registry
from mlops.io.datasets import read_training_set


class InfeasibleThresholdError(ValueError):
    """No threshold satisfies the policy on the calibration window."""


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    policy: str
    precision: float
    recall: float
    f1: float
    rows: int


def choose_threshold(y: np.ndarray, scores: np.ndarray, policy: Threshold) -> ThresholdChoice:
    """Pick the decision threshold that the policy asks for (predict positive when score >= threshold)."""
    y = np.asarray(y, dtype="int64")
    if len(np.unique(y)) < 2:
        raise InfeasibleThresholdError(f"calibration labels hold one class only ({len(y)} rows): no threshold fits")
    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if policy.policy == "min_expected_cost":
        return _min_expected_cost(y, np.asarray(scores, dtype="float64"), policy)
    best = _pick(policy, precision, recall)
    return ThresholdChoice(
        float(thresholds[best]),
        policy.policy,
        float(precision[best]),
        float(recall[best]),
        float(f1[best]),
        len(y),
    )


def _min_expected_cost(y: np.ndarray, scores: np.ndarray, policy: Threshold) -> ThresholdChoice:
    """The threshold with the lowest total cost of false positives and false negatives."""
    fpr, tpr, thresholds = roc_curve(y, scores, drop_intermediate=False)
    keep = np.isfinite(thresholds)
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    fp, tp = fpr[keep] * negatives, tpr[keep] * positives
    cost = policy.cost_false_positive * fp + policy.cost_false_negative * (positives - tp)
    best = int(np.argmin(cost))
    precision = tp[best] / (tp[best] + fp[best]) if tp[best] + fp[best] else float("nan")
    recall = tp[best] / positives
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return ThresholdChoice(
        float(thresholds[keep][best]), policy.policy, float(precision), float(recall), float(f1), len(y)
    )


def _pick(policy: Threshold, precision: np.ndarray, recall: np.ndarray) -> int:
    if policy.policy in ("max_f1", "max_fbeta"):
        b2 = 1.0 if policy.policy == "max_f1" else policy.beta**2
        with np.errstate(divide="ignore", invalid="ignore"):
            fbeta = np.where(precision + recall > 0, (1 + b2) * precision * recall / (b2 * precision + recall), 0.0)
        return int(np.argmax(fbeta))
    if policy.policy == "recall_at_precision":
        return _best_subject_to(recall, precision, policy.min_precision, "recall_at_precision", "precision")
    return _best_subject_to(precision, recall, policy.min_recall, "precision_at_recall", "recall")


def _best_subject_to(objective: np.ndarray, constraint: np.ndarray, floor: float, name: str, what: str) -> int:
    feasible = np.flatnonzero(constraint >= floor)
    if not len(feasible):
        raise InfeasibleThresholdError(
            f"policy {name}: no threshold reaches {what} >= {floor}; "
            f"the best reachable {what} is {constraint.max():.4f}"
        )
    return int(feasible[np.argmax(objective[feasible])])


def recalibrate(
    cfg: PipelineConfig, training_key: str, window, model_version: str, policy: Threshold | None = None
) -> ThresholdChoice:
    """Choose the threshold of `model_version` on the calibration window and store it on the version."""
    policy = policy or cfg.threshold
    ref = registry.version(cfg.name, model_version)
    model = registry.load_sklearn(ref)
    part = split_frame(read_training_set(cfg.name, training_key), cfg, split_window(cfg, window).calibration)
    choice = choose_threshold(
        labels(part, cfg.target).to_numpy(), predict_scores(model, model_input(part, cfg.features)), policy
    )
    registry.set_version_tags(
        cfg.name, model_version, {"threshold": choice.threshold, "threshold_policy": choice.policy}
    )
    c = registry.client()
    for key, value in (
        ("threshold", choice.threshold),
        ("calibration_precision", choice.precision),
        ("calibration_recall", choice.recall),
        ("calibration_f1", choice.f1),
    ):
        c.log_metric(ref.run_id, key, value)
    c.set_tag(ref.run_id, "threshold_policy", choice.policy)
    return choice
