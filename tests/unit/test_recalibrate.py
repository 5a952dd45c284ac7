"""Threshold choice on real labels and real model scores, checked against brute-force scans.

The scan tries every distinct score and "predict nothing" (a threshold above every score), with
scikit-learn's confusion counts, and picks by the documented order: objective, then tie-breaks,
then the highest threshold.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import confusion_matrix, f1_score, fbeta_score, precision_score, recall_score

from mlops.core.config import Evaluation, Model, Threshold
from mlops.core.features import labels
from mlops.core.modeling import build_estimator, model_input, predict_scores
from mlops.stages.ingest import build_day
from mlops.stages.recalibrate import InfeasibleThresholdError, check_class_counts, choose_threshold

NOTHING = np.nextafter(1.0, 2.0)  # the "predict nothing" threshold for probabilities


def _labelled(cfg, days):
    df = pd.concat([build_day(cfg, dt.date(2013, 3, d)) for d in days], ignore_index=True)
    return df[labels(df, cfg.target).notna()]


@pytest.fixture(scope="module")
def calibration(flights_cfg):
    """Labels of three real March days and the scores of a logistic regression fit on three earlier days."""
    train = _labelled(flights_cfg, (1, 2, 3))
    model = build_estimator(Model(kind="logistic_regression"), flights_cfg.features)
    model.fit(model_input(train, flights_cfg.features), labels(train, flights_cfg.target).astype("int64"))
    held_out = _labelled(flights_cfg, (4, 5, 6))
    y = labels(held_out, flights_cfg.target).to_numpy(dtype="int64")
    scores = np.round(predict_scores(model, model_input(held_out, flights_cfg.features)), 2)  # many ties
    assert 0.05 < y.mean() < 0.5 and len(np.unique(scores)) > 20
    return y, scores


def scan(y, scores):
    """Precision, recall, F1 and F2 of `score >= t` for every unique score t and "nothing", by scikit-learn."""
    rows = []
    for t in [*np.unique(scores), NOTHING]:
        predicted = (scores >= t).astype("int64")
        rows.append(
            (
                t,
                precision_score(y, predicted, zero_division=np.nan),
                recall_score(y, predicted),
                f1_score(y, predicted),
                fbeta_score(y, predicted, beta=2),
                *confusion_matrix(y, predicted, labels=[0, 1]).ravel()[[1, 2]],  # fp, fn
            )
        )
    return pd.DataFrame(rows, columns=["threshold", "precision", "recall", "f1", "f2", "fp", "fn"])


def pick(table, keys, feasible=None):
    """The row maximising `keys` in order, then the highest threshold, among feasible rows (brute force)."""
    rows = table if feasible is None else table[feasible]
    best = max(
        rows.itertuples(),
        key=lambda r: (*(-np.inf if np.isnan(getattr(r, k)) else getattr(r, k) for k in keys), r.threshold),
    )
    return best


@pytest.fixture(scope="module")
def brute(calibration):
    return scan(*calibration)


def test_max_f1_is_the_argmax_of_a_brute_force_scan(calibration, brute):
    y, scores = calibration
    choice = choose_threshold(y, scores, Threshold(policy="max_f1"))
    best = pick(brute, ["f1", "precision"])
    assert choice.policy == "max_f1" and choice.rows == len(y)
    assert choice.f1 == pytest.approx(best.f1)
    assert choice.threshold == best.threshold
    predicted = scores >= choice.threshold
    assert choice.precision == pytest.approx(precision_score(y, predicted))
    assert choice.recall == pytest.approx(recall_score(y, predicted))
    assert f1_score(y, predicted) == pytest.approx(brute.f1.max())


@pytest.mark.parametrize("share", [0.6, 0.8, 1.0])
def test_recall_at_precision_has_max_recall_among_feasible(calibration, brute, share):
    """Precision floors between the base rate and the best reachable precision."""
    y, scores = calibration
    min_precision = share * brute.precision.max()
    assert min_precision > y.mean()
    choice = choose_threshold(y, scores, Threshold(policy="recall_at_precision", min_precision=min_precision))
    predicted = scores >= choice.threshold
    assert precision_score(y, predicted) >= min_precision
    feasible = brute[brute.precision >= min_precision]
    assert len(feasible) > 0
    assert choice.threshold == pick(brute, ["recall", "precision"], brute.precision >= min_precision).threshold
    assert recall_score(y, predicted) == pytest.approx(feasible.recall.max())
    assert choice.recall == pytest.approx(feasible.recall.max())
    assert choice.precision >= min_precision


def test_infeasible_precision_names_the_best_reachable(calibration, brute):
    y, scores = calibration
    best = brute.precision.max()
    assert best < 0.999
    with pytest.raises(InfeasibleThresholdError) as info:
        choose_threshold(y, scores, Threshold(policy="recall_at_precision", min_precision=0.999))
    message = str(info.value)
    assert f"{best:.4f}" in message
    assert "0.999" in message


def test_one_class_labels_are_infeasible(calibration):
    _, scores = calibration
    with pytest.raises(InfeasibleThresholdError, match="one class"):
        choose_threshold(np.zeros(len(scores), dtype="int64"), scores, Threshold())


def test_tiny_exact_example():
    """Scores 0.1 .. 0.6; the positives are 0.3, 0.5, 0.6."""
    y = np.array([0, 0, 1, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    # >= 0.3: precision 3/4, recall 1, F1 6/7; >= 0.5: precision 1, recall 2/3, F1 0.8
    choice = choose_threshold(y, scores, Threshold(policy="max_f1"))
    assert choice.threshold == 0.3 and choice.f1 == pytest.approx(6 / 7)
    strict = choose_threshold(y, scores, Threshold(policy="recall_at_precision", min_precision=0.9))
    assert strict.threshold == 0.5 and strict.precision == 1.0 and strict.recall == pytest.approx(2 / 3)


def test_max_fbeta_with_beta_two_is_the_argmax_of_a_brute_force_scan(calibration, brute):
    y, scores = calibration
    choice = choose_threshold(y, scores, Threshold(policy="max_fbeta", beta=2.0))
    best = brute.f2.max()
    assert choice.policy == "max_fbeta"
    assert choice.threshold == pick(brute, ["f2", "precision"]).threshold
    predicted = scores >= choice.threshold
    assert fbeta_score(y, predicted, beta=2) == pytest.approx(best)
    assert choice.recall == pytest.approx(recall_score(y, predicted))
    # F2 weighs recall: a lower threshold than F1's, with a higher recall
    f1_choice = choose_threshold(y, scores, Threshold(policy="max_f1"))
    assert choice.threshold < f1_choice.threshold and choice.recall > f1_choice.recall


@pytest.mark.parametrize("min_recall", [0.3, 0.6, 0.9, 1.0])
def test_precision_at_recall_has_max_precision_among_feasible(calibration, brute, min_recall):
    y, scores = calibration
    choice = choose_threshold(y, scores, Threshold(policy="precision_at_recall", min_recall=min_recall))
    feasible = brute[brute.recall >= min_recall]
    best = feasible.precision.max()
    assert choice.policy == "precision_at_recall"
    assert choice.threshold == pick(brute, ["precision", "recall"], brute.recall >= min_recall).threshold
    predicted = scores >= choice.threshold
    assert recall_score(y, predicted) >= min_recall
    assert precision_score(y, predicted) == pytest.approx(best) == pytest.approx(choice.precision)


def test_precision_at_recall_is_never_infeasible(calibration):
    """A recall floor is at most 1 and the lowest positive score reaches recall 1: always feasible.

    (So, unlike recall_at_precision, precision_at_recall can never raise InfeasibleThresholdError.)
    """
    y, scores = calibration
    choice = choose_threshold(y, scores, Threshold(policy="precision_at_recall", min_recall=1.0))
    assert choice.recall == 1.0
    assert choice.threshold == scores[y == 1].min()  # the highest threshold that keeps every positive


@pytest.mark.parametrize(("cost_fp", "cost_fn"), [(1.0, 5.0), (1.0, 1.0), (5.0, 1.0)])
def test_min_expected_cost_is_the_argmin_of_a_brute_force_scan(calibration, brute, cost_fp, cost_fn):
    y, scores = calibration
    policy = Threshold(policy="min_expected_cost", cost_false_positive=cost_fp, cost_false_negative=cost_fn)
    choice = choose_threshold(y, scores, policy)
    cost = cost_fp * brute.fp + cost_fn * brute.fn
    assert choice.policy == "min_expected_cost"
    assert choice.threshold == pick(brute.assign(saving=-cost), ["saving"]).threshold
    predicted = scores >= choice.threshold
    fp, fn = confusion_matrix(y, predicted).ravel()[[1, 2]]
    assert cost_fp * fp + cost_fn * fn == cost.min()
    assert choice.precision == pytest.approx(precision_score(y, predicted, zero_division=np.nan), nan_ok=True)
    assert choice.recall == pytest.approx(recall_score(y, predicted))
    assert choice.f1 == pytest.approx(f1_score(y, predicted))


def test_dearer_misses_lower_the_min_cost_threshold(calibration):
    y, scores = calibration
    thresholds = [
        choose_threshold(y, scores, Threshold(policy="min_expected_cost", cost_false_negative=c)).threshold
        for c in (1.0, 5.0)
    ]
    assert thresholds[1] < thresholds[0]


def test_infeasible_precision_error_names_policy_and_best_value(calibration, brute):
    y, scores = calibration
    floor = round(brute.precision.max() + 0.01, 3)
    with pytest.raises(InfeasibleThresholdError) as info:
        choose_threshold(y, scores, Threshold(policy="recall_at_precision", min_precision=floor))
    message = str(info.value)
    assert message.startswith("policy recall_at_precision: no threshold reaches precision >= ")
    assert f"the best reachable precision is {brute.precision.max():.4f}" in message
    # just at the best reachable precision it is feasible again
    best = float(brute.precision.max())
    choice = choose_threshold(y, scores, Threshold(policy="recall_at_precision", min_precision=best))
    assert choice.precision == pytest.approx(best)


def test_ties_in_the_objective_go_to_the_undominated_threshold():
    """Recall 1 at .5 (precision 2/3) and at .4 (precision 1/2): the dominated .4 is never chosen."""
    y = np.array([1, 0, 1, 0])
    scores = np.array([0.9, 0.6, 0.5, 0.4])
    choice = choose_threshold(y, scores, Threshold(policy="recall_at_precision", min_precision=0.5))
    assert (choice.threshold, choice.recall, choice.precision) == (0.5, 1.0, pytest.approx(2 / 3))
    # precision_at_recall: precision 1 at .9 (recall 1/2) only; the floor 0.5 keeps it
    choice = choose_threshold(y, scores, Threshold(policy="precision_at_recall", min_recall=0.5))
    assert (choice.threshold, choice.precision) == (0.9, 1.0)


def test_the_real_dominated_point_of_recall_at_precision(calibration, brute):
    """On real scores several thresholds share the best feasible recall; the highest precision among them wins."""
    y, scores = calibration
    for floor in sorted(brute.precision.dropna().unique()):
        feasible = brute[brute.precision >= floor]
        tied = feasible[feasible.recall == feasible.recall.max()]
        if tied.precision.nunique() > 1 and floor > y.mean():
            break
    else:
        pytest.fail("no precision floor leaves several thresholds at the best recall")
    choice = choose_threshold(y, scores, Threshold(policy="recall_at_precision", min_precision=floor))
    assert choice.precision == tied.precision.max() and choice.recall == feasible.recall.max()
    assert choice.threshold == tied.threshold[tied.precision == tied.precision.max()].max()


def test_min_expected_cost_may_predict_nothing():
    """False alarms five times dearer than misses, one positive ranked below the negatives: flag nothing (cost 1)."""
    y = np.array([1, 0, 0, 0])
    scores = np.array([0.1, 0.2, 0.3, 0.4])
    policy = Threshold(policy="min_expected_cost", cost_false_positive=5.0, cost_false_negative=1.0)
    choice = choose_threshold(y, scores, policy)
    assert choice.threshold == NOTHING and choice.recall == 0.0 and np.isnan(choice.precision)
    assert not (scores >= choice.threshold).any() and choice.threshold > 1.0
    cheaper_misses = choose_threshold(y, scores, policy.model_copy(update={"cost_false_positive": 0.2}))
    assert cheaper_misses.threshold == 0.1  # then flag everything: 3 x 0.2 < 1


def test_too_few_positives_in_the_calibration_window_are_refused():
    y = np.zeros(5913, dtype="int64")
    y[17] = 1
    with pytest.raises(InfeasibleThresholdError) as info:
        check_class_counts(y, Evaluation(min_positives=30), "pipeline 'flights', calibration window 2013-01-21..28")
    assert str(info.value).startswith(
        "pipeline 'flights', calibration window 2013-01-21..28: 1 positive and 5912 negative labels in "
        "5913 rows, fewer than evaluation.min_positives 30"
    )
    check_class_counts(np.r_[np.ones(30), np.zeros(30)], Evaluation(min_positives=30, min_negatives=30), "w")
