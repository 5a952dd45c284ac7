"""Stage 5, decision-threshold recalibration on the calibration window, stored with the model version."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import precision_recall_curve

from mlops import registry
from mlops.config import PipelineConfig, Threshold
from mlops.features import labels
from mlops.modeling import model_input, predict_scores
from mlops.stages.assemble import read_training_set
from mlops.stages.train import split_frame, split_window


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
    """Pick the decision threshold that the policy asks for."""
    y = np.asarray(y, dtype="int64")
    if len(np.unique(y)) < 2:
        raise InfeasibleThresholdError(f"calibration labels hold one class only ({len(y)} rows): no threshold fits")
    precision, recall, thresholds = precision_recall_curve(y, scores)
    precision, recall = precision[:-1], recall[:-1]  # the last point has no threshold
    with np.errstate(divide="ignore", invalid="ignore"):
        f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), 0.0)
    if policy.policy == "max_f1":
        best = int(np.argmax(f1))
    else:
        feasible = precision >= policy.min_precision
        if not feasible.any():
            raise InfeasibleThresholdError(
                f"policy recall_at_precision: no threshold reaches precision >= {policy.min_precision}; "
                f"the best reachable precision is {precision.max():.4f}"
            )
        candidates = np.flatnonzero(feasible)
        best = int(candidates[np.argmax(recall[candidates])])
    return ThresholdChoice(
        float(thresholds[best]),
        policy.policy,
        float(precision[best]),
        float(recall[best]),
        float(f1[best]),
        len(y),
    )


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
