"""Point metrics and vectorised bootstrap metrics, checked against scikit-learn on real flights.

Labels are real arrival delays of six April days; scores come from a logistic regression fit on three
earlier days. `tied` rounds those scores to two decimals, so many rows of both classes share a score.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mlops.core.config import Model
from mlops.core.features import labels
from mlops.core.metrics import ALL_METRICS, bootstrap_indices, bootstrap_metrics, interval, point_metrics
from mlops.core.modeling import build_estimator, model_input, predict_scores
from mlops.stages.ingest import build_day

THRESHOLD = 0.3
RESAMPLES = (0, 1, 7, 19)  # resamples checked one by one against scikit-learn


def _labelled(cfg, days):
    df = pd.concat([build_day(cfg, dt.date(2013, 4, d)) for d in days], ignore_index=True)
    return df[labels(df, cfg.target).notna()].reset_index(drop=True)


@pytest.fixture(scope="module")
def scored(flights_cfg):
    """(labels, continuous scores, scores rounded to 2 decimals) of real held-out rows."""
    train = _labelled(flights_cfg, (1, 2, 3))
    model = build_estimator(Model(kind="logistic_regression"), flights_cfg.features)
    model.fit(model_input(train, flights_cfg.features), labels(train, flights_cfg.target).astype("int64"))
    held_out = _labelled(flights_cfg, (8, 9, 10))
    y = labels(held_out, flights_cfg.target).to_numpy(dtype="int64")
    score = predict_scores(model, model_input(held_out, flights_cfg.features))
    tied = np.clip(np.round(score, 2), 0.01, 0.99)  # never exactly 0 or 1: see test_log_loss_of_certain_scores
    assert len(y) > 2000 and 0.05 < y.mean() < 0.5
    assert len(np.unique(score)) == len(score)  # no ties before rounding
    assert len(np.unique(tied)) < len(tied) / 20  # heavy ties after
    return y, score, tied


def sklearn_metrics(y, score, threshold):
    predicted = (score >= threshold).astype("int64")
    return {
        "roc_auc": roc_auc_score(y, score),
        "pr_auc": average_precision_score(y, score),
        "log_loss": log_loss(y, score, labels=[0, 1]),
        "brier": brier_score_loss(y, score),
        "positive_rate": y.mean(),
        "precision": precision_score(y, predicted),
        "recall": recall_score(y, predicted),
        "f1": f1_score(y, predicted),
        "predicted_positive_rate": predicted.mean(),
    }


# point metrics


@pytest.mark.parametrize("metric", ALL_METRICS)
@pytest.mark.parametrize("kind", ["continuous", "tied"])
def test_point_metric_equals_sklearn(scored, metric, kind):
    y, score, tied = scored
    s = score if kind == "continuous" else tied
    got = point_metrics(y, s, THRESHOLD)
    assert set(got) == set(ALL_METRICS)
    assert got[metric] == pytest.approx(sklearn_metrics(y, s, THRESHOLD)[metric], rel=1e-12, abs=1e-15)


def test_point_metrics_without_threshold_leave_out_threshold_metrics(scored):
    y, score, _ = scored
    got = point_metrics(y, score, None)
    assert set(got) == {"roc_auc", "pr_auc", "log_loss", "brier", "positive_rate"}


def test_point_metrics_on_one_class_and_on_no_rows(scored):
    y, score, _ = scored
    negatives = y == 0
    got = point_metrics(y[negatives], score[negatives], THRESHOLD)
    assert np.isnan(got["roc_auc"]) and np.isnan(got["pr_auc"]) and np.isnan(got["recall"])
    assert got["positive_rate"] == 0.0
    assert got["brier"] == pytest.approx(brier_score_loss(y[negatives], score[negatives], labels=[0, 1]))
    empty = point_metrics(np.array([], dtype="int64"), np.array([]), THRESHOLD)
    assert all(np.isnan(v) for v in empty.values())


# bootstrap metrics, resample by resample


@pytest.fixture(scope="module")
def resamples(scored):
    y, _, _ = scored
    return bootstrap_indices(len(y), 20, seed=3)


def test_bootstrap_indices_are_seeded_draws_with_replacement(scored):
    n = len(scored[0])
    a, b = bootstrap_indices(n, 5, 11), bootstrap_indices(n, 5, 11)
    assert a.shape == (5, n) and a.min() >= 0 and a.max() < n
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, bootstrap_indices(n, 5, 12))
    assert all(len(np.unique(row)) < n for row in a)  # with replacement: rows repeat


@pytest.mark.parametrize("kind", ["continuous", "tied"])
def test_bootstrap_auc_and_threshold_metrics_equal_sklearn_per_resample(scored, resamples, kind):
    """Resampled rows repeat (ties of one label) and `tied` adds ties across labels: AUC must still be exact."""
    y, score, tied = scored
    s = score if kind == "continuous" else tied
    boots = bootstrap_metrics(y, s, THRESHOLD, resamples)
    assert set(boots) == set(ALL_METRICS)
    for r in RESAMPLES:
        rows = resamples[r]
        expected = sklearn_metrics(y[rows], s[rows], THRESHOLD)
        for metric in ("roc_auc", "precision", "recall", "f1", "brier", "log_loss", "positive_rate"):
            assert boots[metric][r] == pytest.approx(expected[metric], rel=1e-12), (r, metric)
        assert boots["predicted_positive_rate"][r] == pytest.approx(expected["predicted_positive_rate"])


def test_bootstrap_average_precision_equals_sklearn_without_ties(scored):
    """Resamples that are permutations (no repeated row) of distinct scores: AP is exactly sklearn's."""
    y, score, _ = scored
    rng = np.random.default_rng(0)
    idx = np.stack([rng.permutation(len(y))[: len(y) // 2] for _ in range(4)])
    boots = bootstrap_metrics(y, score, THRESHOLD, idx)
    for r, rows in enumerate(idx):
        assert boots["pr_auc"][r] == pytest.approx(average_precision_score(y[rows], score[rows]), rel=1e-12)


@pytest.mark.parametrize("kind", ["continuous", "tied"])
def test_bootstrap_average_precision_equals_sklearn_with_ties(scored, resamples, kind):
    y, score, tied = scored
    s = score if kind == "continuous" else tied
    boots = bootstrap_metrics(y, s, THRESHOLD, resamples)
    for r in RESAMPLES:
        rows = resamples[r]
        assert boots["pr_auc"][r] == pytest.approx(average_precision_score(y[rows], s[rows]), rel=1e-9), r


def test_bootstrap_on_tiny_exact_example():
    """y=[1, 0, 1, 0], scores [.9, .4, .4, .1], threshold .5, three hand-made resamples."""
    y = np.array([1, 0, 1, 0])
    s = np.array([0.9, 0.4, 0.4, 0.1])
    boots = bootstrap_metrics(y, s, 0.5, np.array([[0, 1, 1, 3], [0, 2, 2, 2], [1, 1, 3, 3]]))
    assert boots["roc_auc"][0] == 1.0
    assert boots["precision"][0] == 1.0 and boots["recall"][0] == 1.0
    assert np.isnan(boots["roc_auc"][1]) and np.isnan(boots["pr_auc"][1])  # one class
    assert boots["recall"][1] == 0.25  # rows 0, 2, 2, 2 are all positive; only .9 reaches .5
    assert np.isnan(boots["roc_auc"][2]) and np.isnan(boots["precision"][2])  # no positives, none predicted
    assert boots["positive_rate"].tolist() == [0.25, 1.0, 0.0]
    # ties across labels: two positives at .4 and two negatives at .4 -> AUC counts each tie as one half
    tie = bootstrap_metrics(np.array([1, 0]), np.array([0.4, 0.4]), 0.5, np.array([[0, 1, 0, 1]]))
    assert tie["roc_auc"][0] == roc_auc_score([1, 0, 1, 0], [0.4, 0.4, 0.4, 0.4]) == 0.5


# intervals


@pytest.fixture(scope="module")
def intervals(scored):
    y, score, _ = scored

    def compute(seed, samples=200, s=score):
        boots = bootstrap_metrics(y, s, THRESHOLD, bootstrap_indices(len(y), samples, seed))
        return {m: interval(v, 0.95) for m, v in boots.items()}

    return compute


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_interval_contains_the_point_estimate(scored, intervals, metric):
    y, score, _ = scored
    point = point_metrics(y, score, THRESHOLD)[metric]
    low, high = intervals(0)[metric]
    assert low <= point <= high, (low, point, high)
    assert high - low < 0.15  # 2700 rows: a tight interval


def test_same_seed_same_intervals_and_another_seed_others(intervals):
    a, b, c = intervals(5, 50), intervals(5, 50), intervals(6, 50)
    assert a == b
    assert all(a[m] != c[m] for m in ALL_METRICS)


def test_log_loss_of_certain_scores(scored):
    y, score, _ = scored
    certain = np.round(score, 2)  # the lowest scores round to exactly 0.0
    assert (certain[y == 1] == 0).any()
    assert point_metrics(y, certain, None)["log_loss"] == pytest.approx(log_loss(y, certain), rel=1e-9)


def test_interval_ignores_nan_resamples():
    values = np.array([np.nan, 0.1, 0.2, 0.3, 0.4, np.nan])
    assert interval(values, 0.5) == pytest.approx(tuple(np.quantile([0.1, 0.2, 0.3, 0.4], [0.25, 0.75])))
    assert all(np.isnan(interval(np.array([np.nan, 0.5]), 0.95)))
