"""Stage 5, decision-threshold recalibration on the calibration window, stored with the model version.

Every policy is an exact optimum over all candidate thresholds: each distinct calibration score
(predict positive when score >= threshold) plus "predict nothing" (a threshold above every
probability). Ties are broken in a stated order (`TIE_BREAKS`), ending with the highest threshold
(the fewest rows predicted positive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mlops.core.config import Evaluation, PipelineConfig, Threshold
from mlops.core.features import labels
from mlops.core.modeling import model_input, predict_scores
from mlops.core.splits import split_frame, split_window
from mlops.io import registry
from mlops.io.datasets import model_columns, read_training_set

# policy -> what it maximises, in order: the objective first, then the tie-breaks; the last resort
# is always the highest threshold
TIE_BREAKS = {
    "max_f1": ("fbeta", "precision"),
    "max_fbeta": ("fbeta", "precision"),
    "recall_at_precision": ("recall", "precision"),
    "precision_at_recall": ("precision", "recall"),
    "min_expected_cost": ("-cost",),
}


class InfeasibleThresholdError(ValueError):
    """No threshold satisfies the policy on the calibration window, or the window cannot support a choice."""


@dataclass(frozen=True)
class ThresholdChoice:
    threshold: float
    policy: str
    precision: float
    recall: float
    f1: float
    rows: int


@dataclass(frozen=True)
class Candidates:
    """Every candidate threshold (increasing) with its confusion counts on the calibration rows."""

    threshold: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    positives: int
    negatives: int

    @property
    def fn(self) -> np.ndarray:
        return self.positives - self.tp

    @property
    def precision(self) -> np.ndarray:
        """TP / (TP + FP); NaN where nothing is predicted positive."""
        predicted = self.tp + self.fp
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(predicted > 0, self.tp / predicted, np.nan)

    @property
    def recall(self) -> np.ndarray:
        return self.tp / self.positives

    def fbeta(self, beta: float) -> np.ndarray:
        """(1 + b^2) TP / ((1 + b^2) TP + b^2 FN + FP): 0 when TP = 0, as scikit-learn's fbeta_score."""
        b2 = beta**2
        return (1 + b2) * self.tp / ((1 + b2) * self.tp + b2 * self.fn + self.fp)


def candidates(y: np.ndarray, scores: np.ndarray) -> Candidates:
    """Confusion counts of `score >= t` for every distinct score t, and of "predict nothing" (the last)."""
    y = np.asarray(y, dtype="int64")
    scores = np.asarray(scores, dtype="float64")
    distinct, inverse = np.unique(scores, return_inverse=True)
    pos = np.bincount(inverse, weights=y, minlength=len(distinct))
    total = np.bincount(inverse, minlength=len(distinct))
    tp = np.cumsum(pos[::-1])[::-1]  # rows scored at or above each distinct score
    predicted = np.cumsum(total[::-1])[::-1]
    nothing = np.nextafter(max(1.0, float(distinct[-1])), np.inf)  # above every probability
    return Candidates(
        np.append(distinct, nothing),
        np.append(tp, 0).astype("int64"),
        np.append(predicted - tp, 0).astype("int64"),
        int(y.sum()),
        int(len(y) - y.sum()),
    )


def check_class_counts(y: np.ndarray, minimum: Evaluation, window: str) -> None:
    """Refuse a window with fewer positive or negative labels than the configured minimum."""
    y = np.asarray(y, dtype="int64")
    positives, negatives = int(y.sum()), int(len(y) - y.sum())
    if positives < minimum.min_positives or negatives < minimum.min_negatives:
        raise InfeasibleThresholdError(
            f"{window}: {positives} positive and {negatives} negative labels in {len(y)} rows, fewer than "
            f"evaluation.min_positives {minimum.min_positives} / min_negatives {minimum.min_negatives}: "
            "no threshold is chosen on so few"
        )


def choose_threshold(y: np.ndarray, scores: np.ndarray, policy: Threshold) -> ThresholdChoice:
    """Pick the decision threshold that the policy asks for (predict positive when score >= threshold).

    `y`: (n,) 0/1 labels; `scores`: (n,) probabilities. Raises InfeasibleThresholdError when the labels
    hold one class or no threshold meets the policy's floor.
    """
    y = np.asarray(y, dtype="int64")
    if len(np.unique(y)) < 2:
        raise InfeasibleThresholdError(f"calibration labels hold one class only ({len(y)} rows): no threshold fits")
    c = candidates(y, scores)
    precision, recall = c.precision, c.recall
    objectives = {
        "fbeta": c.fbeta(policy.beta if policy.policy == "max_fbeta" else 1.0),
        "precision": np.nan_to_num(precision, nan=-np.inf),
        "recall": recall,
        "-cost": -(policy.cost_false_positive * c.fp + policy.cost_false_negative * c.fn),
    }
    feasible = np.ones(len(c.threshold), dtype=bool)
    if policy.policy == "recall_at_precision":
        feasible = _floor(precision, policy.min_precision, "recall_at_precision", "precision")
    elif policy.policy == "precision_at_recall":
        feasible = _floor(recall, policy.min_recall, "precision_at_recall", "recall")
    keys = [objectives[k] for k in TIE_BREAKS[policy.policy]]
    # lexsort: the last key is the primary one; candidates are in increasing threshold order
    order = np.lexsort([np.arange(len(c.threshold)), *reversed(keys)])
    best = int(next(i for i in order[::-1] if feasible[i]))
    f1 = c.fbeta(1.0)
    return ThresholdChoice(
        float(c.threshold[best]), policy.policy, float(precision[best]), float(recall[best]), float(f1[best]), len(y)
    )


def _floor(values: np.ndarray, floor: float, name: str, what: str) -> np.ndarray:
    feasible = np.nan_to_num(values, nan=-np.inf) >= floor
    if not feasible.any():
        best = np.nanmax(values)
        raise InfeasibleThresholdError(
            f"policy {name}: no threshold reaches {what} >= {floor}; the best reachable {what} is {best:.4f}"
        )
    return feasible


def recalibrate(
    cfg: PipelineConfig, training_key: str, window, model_version: str, policy: Threshold | None = None
) -> ThresholdChoice:
    """Choose the threshold of `model_version` on the calibration window and store it on the version."""
    policy = policy or cfg.threshold
    ref = registry.version(cfg.name, model_version)
    model = registry.load_sklearn(ref)
    calibration = split_window(cfg, window).calibration
    part = split_frame(read_training_set(cfg.name, training_key, model_columns(cfg)), cfg, calibration)
    y = labels(part, cfg.target).to_numpy()
    check_class_counts(y, cfg.evaluation, f"pipeline {cfg.name!r}, calibration window {calibration}")
    choice = choose_threshold(y, predict_scores(model, model_input(part, cfg.features)), policy)
    registry.set_version_tags(
        cfg.name, model_version, {"threshold": choice.threshold, "threshold_policy": choice.policy}
    )
    registry.log_values(
        ref.run_id,
        {
            "threshold": choice.threshold,
            "calibration_precision": choice.precision,
            "calibration_recall": choice.recall,
            "calibration_f1": choice.f1,
        },
        {"threshold_policy": choice.policy},
    )
    return choice
