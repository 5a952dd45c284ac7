"""Point metrics and the streamed bootstrap, checked against scikit-learn and brute force.

Labels are real arrival delays of six April days; scores come from a logistic regression fit on three
earlier days. `tied` rounds those scores to two decimals, so many rows of both classes share a score.
"""

from __future__ import annotations

import datetime as dt
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.calibration import calibration_curve
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mlops.core import metrics as m
from mlops.core.config import Model
from mlops.core.features import labels
from mlops.core.metrics import (
    ALL_METRICS,
    PairedBootstrap,
    Resampled,
    counted_point_metrics,
    expected_calibration_error,
    percentile_interval,
    point_metrics,
    proportions,
    wilson_interval,
)
from mlops.core.modeling import build_estimator, model_input, predict_scores
from mlops.stages.ingest import build_day
from tests.oracles import ece_by_hand

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
    two = 0 < y.sum() < len(y)
    return {
        "roc_auc": roc_auc_score(y, score) if two else np.nan,
        "pr_auc": average_precision_score(y, score) if two else np.nan,
        "log_loss": log_loss(y, score, labels=[0, 1]),
        "brier": brier_score_loss(y, score, labels=[0, 1]),
        "ece": ece_by_hand(y, score),
        "prevalence": y.mean(),
        "precision": precision_score(y, predicted, zero_division=np.nan),
        "recall": recall_score(y, predicted, zero_division=np.nan),
        "f1": f1_score(y, predicted, zero_division=np.nan),
        "predicted_positive_rate": predicted.mean(),
    }


def draws(n, samples, seed):
    """The resamples' row indices, as the bootstrap defines them."""
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


# point metrics


POINTS = [point_metrics, counted_point_metrics]  # counted: the same values from counts per distinct score


@pytest.mark.parametrize("points", POINTS)
@pytest.mark.parametrize("metric", ALL_METRICS)
@pytest.mark.parametrize("kind", ["continuous", "tied", "certain"])
def test_point_metric_equals_sklearn(scored, metric, kind, points):
    y, score, tied = scored
    s = {"continuous": score, "tied": tied, "certain": np.where(y == 1, 1.0, np.where(score > 0.5, 1.0, 0.0))}[kind]
    got = points(y, s, THRESHOLD)
    assert list(got) == list(ALL_METRICS)
    assert got[metric] == pytest.approx(sklearn_metrics(y, s, THRESHOLD)[metric], rel=1e-12, abs=1e-15)


def test_ece_equals_the_calibration_curve_of_sklearn(scored):
    """ECE = sum over non-empty bins of (rows in bin / n) |observed rate - mean score|, bins as calibration_curve's."""
    y, score, tied = scored
    for s in (score, tied, np.r_[0.0, 0.1, 0.2, 0.35, 1.0]):
        yy = y[: len(s)]
        prob_true, prob_pred = calibration_curve(yy, s, n_bins=10, strategy="uniform")
        sizes = np.bincount(np.searchsorted(np.linspace(0, 1, 11)[1:-1], s), minlength=10)
        sizes = sizes[sizes > 0]
        expected = np.sum(sizes / len(s) * np.abs(prob_true - prob_pred))
        assert expected_calibration_error(yy, s) == pytest.approx(expected, rel=1e-12)
        assert expected_calibration_error(yy, s) == pytest.approx(ece_by_hand(yy, s), rel=1e-12)
    assert expected_calibration_error(np.array([1, 0]), np.array([1.0, 0.0])) == 0.0
    assert expected_calibration_error(np.array([1, 1]), np.array([0.0, 0.0])) == 1.0


@pytest.mark.parametrize("points", POINTS)
def test_point_metrics_without_threshold_leave_out_threshold_metrics(scored, points):
    y, score, _ = scored
    got = points(y, score, None)
    assert set(got) == {"roc_auc", "pr_auc", "log_loss", "brier", "ece", "prevalence"}


@pytest.mark.parametrize("points", POINTS)
def test_point_metrics_on_one_class_and_on_no_rows(scored, points):
    y, score, _ = scored
    negatives = y == 0
    got = points(y[negatives], score[negatives], THRESHOLD)
    assert np.isnan(got["roc_auc"]) and np.isnan(got["pr_auc"]) and np.isnan(got["recall"])
    assert got["f1"] == 0.0  # false positives but no positive: 2TP / (2TP + FP + FN) = 0
    assert got["prevalence"] == 0.0
    assert got["brier"] == pytest.approx(brier_score_loss(y[negatives], score[negatives], labels=[0, 1]))
    empty = points(np.array([], dtype="int64"), np.array([]), THRESHOLD)
    assert all(np.isnan(v) for v in empty.values())


# one resample at a time, against scikit-learn on the resampled rows


@pytest.mark.parametrize("kind", ["continuous", "tied"])
def test_every_resample_metric_equals_sklearn_on_the_resampled_rows(scored, kind):
    """Resampled rows repeat (ties of one label) and `tied` adds ties across labels: every metric stays exact."""
    y, score, tied = scored
    s = score if kind == "continuous" else tied
    idx = draws(len(y), 20, seed=3)
    model = Resampled(y, s, THRESHOLD)
    boots = model.metrics(model.counts(idx))
    assert list(boots) == list(ALL_METRICS)
    for r in RESAMPLES:
        expected = sklearn_metrics(y[idx[r]], s[idx[r]], THRESHOLD)
        for metric in ALL_METRICS:
            assert boots[metric][r] == pytest.approx(expected[metric], rel=1e-11), (r, metric)


def test_undefined_cases_match_the_point_definition_resample_by_resample():
    """Brute force over every resample of a tiny set: F1 without a true positive is 0, never undefined.

    y = [1, 0, 1], scores [.9, .4, .4], threshold .5: resamples often hold no positive, or predict
    none positive. Each resample's metrics equal point_metrics on its rows, NaN for NaN.
    """
    y = np.array([1, 0, 1])
    s = np.array([0.9, 0.4, 0.4])
    grid = np.array(np.meshgrid(*[range(3)] * 3)).reshape(3, -1).T  # all 27 ordered resamples
    model = Resampled(y, s, 0.5)
    boots = model.metrics(model.counts(grid))
    f1_zero = 0
    for r, rows in enumerate(grid):
        expected = point_metrics(y[rows], s[rows], 0.5)
        for metric, value in expected.items():
            assert boots[metric][r] == pytest.approx(value, nan_ok=True, rel=1e-12), (rows, metric)
        f1_zero += expected["f1"] == 0.0
    assert f1_zero == 7  # e.g. rows 1, 1, 2: a positive at .4 missed, nothing at .9
    assert np.isnan(boots["f1"]).sum() == ((y[grid] == 0) & (s[grid] < 0.5)).all(axis=1).sum()


def test_only_the_wanted_metrics_are_computed(scored):
    y, score, _ = scored
    model = Resampled(y, score, THRESHOLD)
    counts = model.counts(draws(len(y), 5, 1))
    every = model.metrics(counts)
    some = model.metrics(counts, frozenset({"pr_auc", "brier"}))
    assert list(some) == ["pr_auc", "brier"]
    np.testing.assert_array_equal(some["pr_auc"], every["pr_auc"])


# the stream of resamples


def test_the_paired_stream_is_the_seeded_draws_in_any_chunking(scored, monkeypatch):
    """Resample r is row r of default_rng(seed).integers(0, n, (B, n)), whatever the chunk size."""
    y, score, tied = scored
    models = {"a": (score, THRESHOLD), "b": (tied, 0.4)}
    monkeypatch.setattr(m, "CHUNK_DRAWS", 3 * len(y) + 5)  # chunks of 3 resamples
    small = PairedBootstrap(y, models, seed=11)
    small.draw(7)
    small.draw(12)  # extends the same stream
    monkeypatch.undo()
    whole = PairedBootstrap(y, models, seed=11)
    whole.draw(12)
    idx = draws(len(y), 12, seed=11)
    for name, (s, _) in models.items():
        for metric in ALL_METRICS:  # equal up to the summation order of another chunking
            np.testing.assert_allclose(small.values(name, metric), whole.values(name, metric), rtol=1e-13)
        assert whole.values(name, "roc_auc")[9] == pytest.approx(roc_auc_score(y[idx[9]], s[idx[9]]), rel=1e-12)
        assert len(whole.values(name, "f1", 5)) == 5


def test_memory_is_flat_in_the_number_of_resamples():
    """Ten times more resamples: peak memory grows by the resamples' values only, never by resamples x rows."""
    rng = np.random.default_rng(0)
    n = 10_000
    y = (rng.random(n) < 0.25).astype("int64")
    models = {"a": (rng.random(n), 0.5), "b": (rng.random(n), 0.5)}

    def peak(samples):
        boot = PairedBootstrap(y, models, seed=1)
        tracemalloc.start()
        boot.draw(samples)
        _, high = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return high

    few, many = peak(40), peak(400)
    values = 400 * len(ALL_METRICS) * 2 * 8  # what the 400 resamples' values themselves take
    assert many < few + 2 * values + 1_000_000
    assert many < 100 * m.CHUNK_DRAWS  # a chunk's few arrays (26 MB); 400 x 10,000 resampled rows: 32 MB each


# intervals


def test_percentile_interval_counts_and_leaves_out_undefined_resamples():
    values = np.array([np.nan, 0.1, 0.2, 0.3, 0.4, np.nan])
    ci = percentile_interval(values, 0.5)
    assert (ci.low, ci.high) == pytest.approx(tuple(np.quantile([0.1, 0.2, 0.3, 0.4], [0.25, 0.75])))
    assert (ci.resamples, ci.undefined) == (6, 2)
    none = percentile_interval(np.array([np.nan, 0.5]), 0.95)
    assert np.isnan(none.low) and np.isnan(none.high) and none.undefined == 1


def test_monte_carlo_error_of_an_interval_end_matches_its_spread_over_seeds():
    """Brute force: the 2.5% quantile of 400 draws, over 300 seeds; its spread is the Maritz-Jarrett estimate."""
    ends, errors = [], []
    for seed in range(300):
        ci = percentile_interval(np.random.default_rng(seed).normal(size=400), 0.95)
        ends.append(ci.low)
        errors.append(ci.low_se)
    assert np.mean(errors) == pytest.approx(np.std(ends), rel=0.2)
    # and the asymptotic standard error of a normal quantile, sqrt(p (1 - p) / B) / density
    assert np.std(ends) == pytest.approx(np.sqrt(0.025 * 0.975 / 400) / norm.pdf(norm.ppf(0.025)), rel=0.2)


@pytest.mark.parametrize(("k", "trials"), [(0, 3), (1, 1), (3, 9), (9, 9), (40, 200)])
def test_wilson_interval_by_its_formula(k, trials):
    z = norm.ppf(0.975)
    p = k / trials
    center = (p + z**2 / (2 * trials)) / (1 + z**2 / trials)
    half = z / (1 + z**2 / trials) * np.sqrt(p * (1 - p) / trials + z**2 / (4 * trials**2))
    assert wilson_interval(k, trials, 0.95) == pytest.approx((center - half, center + half), abs=1e-12)
    low, high = wilson_interval(k, trials, 0.95)
    assert 0 <= low < high <= 1  # never the certain [1, 1] of a tiny bootstrap
    assert all(np.isnan(wilson_interval(0, 0, 0.95)))


@pytest.mark.parametrize("confidence", [0.8, 0.9, 0.95, 0.99])
def test_wilson_interval_is_scipys_bit_for_bit(confidence):
    """The closed form equals scipy's `binomtest(...).proportion_ci(method="wilson")` exactly, edges included."""
    from scipy.stats import binomtest

    cases = [(k, n) for n in (1, 2, 3, 7, 50, 901) for k in sorted({0, 1, n // 3, n // 2, n - 1, n}) if 0 <= k <= n]
    for k, n in cases:
        ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
        assert wilson_interval(k, n, confidence) == (float(ci.low), float(ci.high)), (k, n)


def test_proportions_are_the_counts_behind_the_shares(scored):
    y, score, _ = scored
    shares = proportions(y, score, THRESHOLD)
    point = point_metrics(y, score, THRESHOLD)
    for metric, (k, trials) in shares.items():
        assert k / trials == pytest.approx(point[metric], rel=1e-12), metric


@pytest.mark.parametrize("metric", ALL_METRICS)
def test_interval_contains_the_point_estimate(scored, metric):
    y, score, _ = scored
    boot = PairedBootstrap(y, {"a": (score, THRESHOLD)}, seed=0)
    boot.draw(200)
    ci = percentile_interval(boot.values("a", metric), 0.95)
    point = point_metrics(y, score, THRESHOLD)[metric]
    assert ci.low <= point <= ci.high, (ci, point)
    assert ci.high - ci.low < 0.15  # 2700 rows: a tight interval
    assert ci.undefined == 0


def test_log_loss_of_certain_scores(scored):
    y, score, _ = scored
    certain = np.round(score, 2)  # the lowest scores round to exactly 0.0
    assert (certain[y == 1] == 0).any()
    assert point_metrics(y, certain, None)["log_loss"] == pytest.approx(log_loss(y, certain), rel=1e-9)
    model = Resampled(y, certain, None)
    idx = draws(len(y), 2, 5)
    assert model.metrics(model.counts(idx))["log_loss"][1] == pytest.approx(log_loss(y[idx[1]], certain[idx[1]]))


def test_monte_carlo_error_equals_scipys_maritz_jarrett():
    from scipy.stats.mstats import mjci

    values = np.sort(np.random.default_rng(2).gamma(2.0, size=500))
    assert m.quantile_mc_se(values, (0.025, 0.975)) == pytest.approx(tuple(mjci(values, prob=[0.025, 0.975])))
    assert m.quantile_mc_se(np.full(300, 0.25), (0.025,)) == (0.0,)  # identical resamples: no error
    assert np.isnan(m.quantile_mc_se(values[:20], (0.025,))[0])  # 20 resamples cannot place a 2.5% tail
