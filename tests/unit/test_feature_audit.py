"""The feature audit's pure computations on a tiny synthetic problem with a noise feature and a duplicate.

y depends on `a` and `b`; `a_copy` is `a` plus a hair of noise (a duplicate); `noise` is independent of y.
The last test times the whole audit on a larger problem with the flights model (HistGradientBoosting).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from mlops.core import feature_audit as fa
from mlops.core.config import Audit, Features
from mlops.core.metrics import point_metrics
from mlops.core.modeling import build_estimator

FEATURES = ["a", "a_copy", "b", "noise"]


@pytest.fixture(scope="module")
def problem():
    rng = np.random.default_rng(0)

    def rows(n: int) -> tuple[pd.DataFrame, np.ndarray]:
        a, b, noise = rng.normal(size=n), rng.normal(size=n), rng.normal(size=n)
        X = pd.DataFrame({"a": a, "a_copy": a + 1e-3 * rng.normal(size=n), "b": b, "noise": noise})
        y = (rng.random(n) < 1 / (1 + np.exp(-(1.5 * a + 1.0 * b)))).astype("int64")
        return X, y

    X_train, y_train = rows(3000)
    X_eval, y_eval = rows(2000)
    X_train.index += 10_000  # positions and labels differ: a fit on the wrong rows shows

    def fit_score(columns: list[str]) -> np.ndarray:
        model = LogisticRegression().fit(X_train[columns], y_train)
        return model.predict_proba(X_eval[columns])[:, 1]

    model = LogisticRegression().fit(X_train, y_train)
    return {
        "X_train": X_train,
        "y_train": y_train,
        "X_eval": X_eval,
        "y_eval": y_eval,
        "model": model,
        "fit_score": fit_score,
    }


def test_permutation_importance_is_sklearns_with_a_t_interval(problem):
    X, y, model = problem["X_eval"], problem["y_eval"], problem["model"]
    table, raw = fa.permutation_importances(model, X, y, repeats=5, seed=3)
    expected = permutation_importance(model, X, y, scoring="roc_auc", n_repeats=5, random_state=3)
    np.testing.assert_allclose(raw, expected.importances)
    np.testing.assert_allclose(table.importance, expected.importances_mean)
    assert table.feature.tolist() == FEATURES
    half = 2.7764451051977987 * table.sd / np.sqrt(5)  # t(0.975, 4)
    np.testing.assert_allclose(table.ci_high - table.importance, half)
    by = table.set_index("feature")
    assert by.at["noise", "includes_zero"]
    assert not by.at["b", "includes_zero"] and by.at["b", "ci_low"] > 0.05
    with pytest.raises(ValueError, match="at least 2 repeats"):
        fa.permutation_importances(model, X, y, repeats=1, seed=0)


def test_the_duplicate_pair_is_named_and_the_noise_pairs_with_nothing(problem):
    pairs = fa.correlated_pairs(problem["X_train"], FEATURES, threshold=0.9)
    assert [(p.feature_a, p.feature_b) for p in pairs.itertuples()] == [("a", "a_copy")]
    assert pairs.pearson.iloc[0] > 0.999 and pairs.spearman.iloc[0] > 0.999 and pairs.n.iloc[0] == 3000
    assert fa.correlated_pairs(problem["X_train"], FEATURES, threshold=0.5).shape[0] == 1


def test_lofo_flags_the_noise_and_keeps_the_signal(problem):
    fit_score, y = problem["fit_score"], problem["y_eval"]
    table, _ = fa.permutation_importances(problem["model"], problem["X_eval"], y, repeats=5, seed=0)
    result = fa.lofo(
        fit_score,
        FEATURES,
        ["noise", "b"],
        y,
        fit_score(FEATURES),
        max_features=5,
        budget_seconds=60.0,
        fit_seconds=0.01,
        bootstrap_samples=200,
        confidence=0.95,
        seed=0,
    )
    assert result.tested == ["noise", "b"] and not result.skipped
    d = result.deltas.set_index(["feature", "metric"])
    # without b the model is clearly worse: ROC AUC down, log loss up, both beyond the paired interval
    assert d.at[("b", "roc_auc"), "delta"] < 0 and d.at[("b", "roc_auc"), "ci_high"] < 0
    assert d.at[("b", "log_loss"), "delta"] > 0 and d.at[("b", "log_loss"), "ci_low"] > 0
    # without the noise nothing moves beyond noise
    for metric in fa.LOFO_METRICS:
        assert d.at[("noise", metric), "ci_low"] <= 0 <= d.at[("noise", metric), "ci_high"], metric
    # the intervals are those of one paired bootstrap of both models (the same resamples of the rows)
    from mlops.core.metrics import PairedBootstrap, percentile_interval

    full = fit_score(FEATURES)
    for feature in ("noise", "b"):
        boot = PairedBootstrap(
            y, {"with": (full, None), "without": (fit_score([f for f in FEATURES if f != feature]), None)}, 0
        )
        boot.draw(200)
        for metric in fa.LOFO_METRICS:
            ci = percentile_interval(boot.values("without", metric) - boot.values("with", metric), 0.95, mc_error=False)
            assert (d.at[(feature, metric), "ci_low"], d.at[(feature, metric), "ci_high"]) == (ci.low, ci.high)
    forced = table.assign(includes_zero=table.feature.isin(["noise", "b"]))  # b forced into LOFO
    verdicts = fa.verdicts(forced, result)
    assert verdicts == {"a": fa.CONTRIBUTES, "a_copy": fa.CONTRIBUTES, "b": fa.LOFO_CONTRIBUTES, "noise": fa.FLAGGED}


def test_lofo_beyond_its_budget_or_count_is_skipped_and_says_why(problem):
    fit_score, y = problem["fit_score"], problem["y_eval"]
    common = {"fit_seconds": 1.0, "bootstrap_samples": 0, "confidence": 0.95, "seed": 0}
    none = fa.lofo(fit_score, FEATURES, ["noise"], y, fit_score(FEATURES), max_features=5, budget_seconds=0.5, **common)
    assert none.tested == [] and "time budget" in none.skipped["noise"] and none.deltas.empty
    one = fa.lofo(
        fit_score, FEATURES, ["noise", "b"], y, fit_score(FEATURES), max_features=1, budget_seconds=60, **common
    )
    assert one.tested == ["noise"] and "max_lofo_features=1" in one.skipped["b"]
    assert one.deltas.ci_low.isna().all()  # no bootstrap: no interval
    # "with" and one refit, estimated at 1 s each, fit in 2.2 s but not with the headroom for timing noise
    assert 2 * 1.0 < 2.2 < 2 * 1.0 * fa.LOFO_HEADROOM
    tight = fa.lofo(fit_score, FEATURES, ["noise"], y, None, max_features=5, budget_seconds=2.2, **common)
    assert tight.tested == [] and "headroom 1.25 included" in tight.skipped["noise"]
    table = pd.DataFrame({"feature": ["noise"], "includes_zero": [True]})
    assert fa.verdicts(table, none) == {"noise": fa.NOT_TESTED}
    assert fa.verdicts(table, one) == {"noise": fa.FLAGGED}


def test_the_budget_counts_cpu_seconds_so_waiting_for_a_core_costs_the_audit_nothing(problem):
    """The audit runs beside recalibrate -> evaluate: time its process spends off the CPU (here asleep, as
    when the other task holds the cores) is not charged to it. Each refit waits 0.4 s, and LOFO still
    tests every candidate within 0.6 CPU seconds; on a wall clock it would stop after the first."""
    fit_score, y = problem["fit_score"], problem["y_eval"]

    def waiting(columns: list[str]) -> np.ndarray:
        time.sleep(0.4)
        return fit_score(columns)

    wall = time.perf_counter()
    result = fa.lofo(
        waiting,
        FEATURES,
        ["noise", "a_copy", "b"],
        y,
        fit_score(FEATURES),
        max_features=5,
        budget_seconds=0.6,
        fit_seconds=0.05,
        bootstrap_samples=0,
        confidence=0.95,
        seed=0,
    )
    wall = time.perf_counter() - wall
    assert result.tested == ["noise", "a_copy", "b"] and result.skipped == {}
    assert wall >= 1.2 > 0.6 >= result.seconds, (wall, result.seconds)
    began = fa.cpu_seconds()
    time.sleep(0.2)
    assert fa.cpu_seconds() - began < 0.1  # the clock is CPU time: asleep, it stands still


def test_sample_rows_is_seeded_stratified_and_exact():
    y = np.r_[np.zeros(9_000, dtype="int64"), np.ones(1_000, dtype="int64")]
    rows = fa.sample_rows(y, 2_000, seed=4)
    assert len(rows) == 2_000 and len(np.unique(rows)) == 2_000 and (np.diff(rows) > 0).all()
    assert y[rows].sum() == 200  # the window's 10% positives, to the row
    np.testing.assert_array_equal(rows, fa.sample_rows(y, 2_000, seed=4))
    assert not np.array_equal(rows, fa.sample_rows(y, 2_000, seed=5))
    rare = np.r_[np.zeros(9_999, dtype="int64"), 1]
    few = fa.sample_rows(rare, 1_000, seed=0)
    assert few.size == 1_000 and rare[few].sum() == 1  # the one positive kept
    np.testing.assert_array_equal(fa.sample_rows(y, None, seed=0), np.arange(10_000))
    np.testing.assert_array_equal(fa.sample_rows(y, 10_000, seed=0), np.arange(10_000))


def _recording_fits(seen: list) -> type:
    """A real LogisticRegression that records the columns, row index and labels of every fit."""

    class Recording(LogisticRegression):
        def fit(self, X, y, sample_weight=None):
            seen.append((list(X.columns), X.index.to_numpy().copy(), np.asarray(y).copy()))
            return super().fit(X, y, sample_weight)

    return Recording


def test_lofo_fits_with_and_without_the_feature_on_the_same_sampled_rows(problem):
    X_train, y_train, X_eval, y_eval = problem["X_train"], problem["y_train"], problem["X_eval"], problem["y_eval"]
    seen: list = []
    recording = _recording_fits(seen)
    settings = Audit(lofo_max_train_rows=1_000, max_lofo_features=4, budget_factor=1e6, bootstrap_samples=50)
    result = fa.audit(
        problem["model"], lambda columns: recording(), X_train, y_train, X_eval, y_eval, FEATURES, settings, 1.0
    )
    rows = fa.sample_rows(y_train, 1_000, settings.seed)
    assert result.lofo_train_rows == 1_000 and result.lofo.tested and not result.lofo.skipped
    assert result.pairs[["feature_a", "feature_b", "n"]].values.tolist() == [["a", "a_copy", 1_000]]  # same rows
    # the model with every feature first, then one model without each candidate: all on the same 1000 rows
    assert [columns for columns, _, _ in seen] == [
        FEATURES,
        *([f for f in FEATURES if f != candidate] for candidate in result.lofo.tested),
    ]
    for _, index, labels in seen:
        np.testing.assert_array_equal(index, X_train.index[rows])
        np.testing.assert_array_equal(labels, y_train[rows])
    # the "with" side of every delta is that sampled model, scored on the same evaluation rows
    with_model = LogisticRegression().fit(X_train.iloc[rows], y_train[rows])
    auc = point_metrics(y_eval, with_model.predict_proba(X_eval)[:, 1], None)["roc_auc"]
    lofo_auc = result.lofo.deltas[result.lofo.deltas.metric == "roc_auc"]
    np.testing.assert_allclose(lofo_auc.with_feature, auc)
    assert (lofo_auc.n == len(y_eval)).all() and result.lofo.with_seconds > 0

    # fewer train rows than the limit: every row, and the caller's reference fit is the model with every feature
    seen.clear()
    every = settings.model_copy(update={"lofo_max_train_rows": len(y_train)})
    reference = LogisticRegression().fit(X_train, y_train).predict_proba(X_eval)[:, 1]
    again = fa.audit(
        problem["model"], lambda columns: recording(), X_train, y_train, X_eval, y_eval, [], every, 1.0, reference
    )
    assert again.lofo_train_rows == len(y_train) and again.lofo.with_seconds == 0
    assert [columns for columns, _, _ in seen] == [[f for f in FEATURES if f != c] for c in again.lofo.tested]
    assert all(np.array_equal(index, X_train.index) for _, index, _ in seen)


@pytest.fixture(scope="module")
def large_problem(flights_cfg):
    """200,000 train rows: y depends on `a` and `b`; `noise_1` and `noise_2` are independent of it."""
    rng = np.random.default_rng(1)

    def rows(n: int) -> tuple[pd.DataFrame, np.ndarray]:
        X = pd.DataFrame({f: rng.normal(size=n) for f in ("a", "b", "noise_1", "noise_2")})
        y = (rng.random(n) < 1 / (1 + np.exp(-(X.a - 0.8 * X.b - 1.0)))).astype("int64")
        return X, y.to_numpy()

    X_train, y_train = rows(200_000)
    X_eval, y_eval = rows(4_000)

    def build(columns: list[str]):  # the flights pipeline's model
        return build_estimator(flights_cfg.training.model, Features(categorical=[], numeric=columns))

    with threadpool_limits(limits=1, user_api="openmp"):
        model = build(list(X_train.columns))
        began = time.perf_counter()
        model.fit(X_train, y_train)  # as the train stage times it: T
        fit_seconds = time.perf_counter() - began
        yield {
            "args": (model, build, X_train, y_train, X_eval, y_eval, list(X_train.columns)),
            "fit_seconds": fit_seconds,
        }


def test_on_a_large_window_lofo_tests_every_candidate_within_budget_and_flags_the_noise(large_problem):
    settings = Audit(enabled=True, permutation_max_rows=2_000, max_lofo_features=4)  # 20,000 LOFO rows, 2 x T
    fit_seconds = large_problem["fit_seconds"]
    result = fa.audit(*large_problem["args"], settings, fit_seconds)
    verdicts = fa.verdicts(result.importances, result.lofo)
    print("T", round(fit_seconds, 2), "audit", round(result.seconds, 2), "with", round(result.lofo.with_seconds, 2))
    assert result.lofo_train_rows == 20_000
    assert sorted(result.lofo.tested) == ["noise_1", "noise_2"] and not result.lofo.skipped
    assert verdicts == {"a": fa.CONTRIBUTES, "b": fa.CONTRIBUTES, "noise_1": fa.FLAGGED, "noise_2": fa.FLAGGED}
    assert result.seconds <= result.budget_seconds == pytest.approx(2 * fit_seconds)
    # LOFO on every train row (the audit before lofo_max_train_rows) has no room for the model with every
    # feature and one refit, each about T, after permutation importance: no candidate is tested
    unsampled = fa.audit(*large_problem["args"], settings.model_copy(update={"lofo_max_train_rows": None}), fit_seconds)
    assert unsampled.lofo_train_rows == 200_000 and unsampled.lofo.tested == []
    assert all("time budget" in why for why in unsampled.lofo.skipped.values()) and len(unsampled.lofo.skipped) == 2


def test_batched_permutation_drops_equal_sklearns_on_a_calibrated_pipeline_with_categories(flights_cfg):
    """The flights model (HistGradientBoosting on a categorical and numeric features) calibrated as the
    train stage calibrates it: no `decision_function`, so the `roc_auc` scorer ranks `predict_proba`;
    the category dtype survives the shuffled copies. Oracle: scikit-learn's own permutation_importance,
    one prediction call per shuffle."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    rng = np.random.default_rng(5)

    def rows(n: int) -> tuple[pd.DataFrame, np.ndarray]:
        carrier = rng.choice(["AA", "B6", "DL", "UA"], size=n)
        X = pd.DataFrame(
            {"carrier": pd.Categorical(carrier), "a": rng.normal(size=n), "noise": rng.normal(size=n)},
            index=np.arange(n) + 500,  # not positions
        )
        logit = X.a + np.where(carrier == "B6", 1.0, 0.0) - 1.0
        return X, (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int64")

    X_train, y_train = rows(3_000)
    X_cal, y_cal = rows(1_000)
    X_eval, y_eval = rows(800)
    model = build_estimator(flights_cfg.training.model, Features(categorical=["carrier"], numeric=["a", "noise"]))
    model.fit(X_train, y_train)
    calibrated = CalibratedClassifierCV(FrozenEstimator(model), method="sigmoid").fit(X_cal, y_cal)
    assert not hasattr(calibrated, "decision_function")
    for estimator in (calibrated, model):  # predict_proba, then the uncalibrated model's decision_function
        expected = permutation_importance(estimator, X_eval, y_eval, scoring="roc_auc", n_repeats=4, random_state=7)
        # every feature in one call; two features per call; a call per feature (chunks smaller than a feature)
        for chunk_rows in (fa.CHUNK_ROWS, 2 * 4 * 800, 1):
            drops = fa.permutation_drops(estimator, X_eval, y_eval, repeats=4, seed=7, chunk_rows=chunk_rows)
            np.testing.assert_allclose(drops, expected.importances, rtol=0, atol=1e-12)
            assert drops.shape == (3, 4) and (drops[1] > 0.05).all()  # `a` carries the signal


def test_roc_auc_rows_is_sklearns_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(2)
    y = (rng.random(500) < 0.3).astype("int64")
    scores = np.vstack([rng.random(500), np.round(rng.random(500), 1), np.full(500, 0.5), y + rng.random(500)])
    expected = [roc_auc_score(y, row) for row in scores]
    np.testing.assert_allclose(fa.roc_auc_rows(y, scores), expected, rtol=0, atol=1e-12)
    assert fa.roc_auc_rows(y, scores)[2] == 0.5 and fa.roc_auc_rows(y, scores)[3] == 1.0
    with pytest.raises(ValueError, match="one class"):
        fa.roc_auc_rows(np.zeros(5, dtype="int64"), np.ones((1, 5)))


def test_the_permutation_sample_is_the_most_rows_whose_cost_fits():
    cost = fa.permutation_cost  # rows, features, repeats, call, row, auc
    assert cost(1000, 21, 5, 0.02, 1e-5, 1e-3, chunk_rows=250_000) == pytest.approx(
        2 * 0.02 + 106 * 1000 * 1e-5 + 105 * 1e-3
    )
    assert cost(1000, 21, 5, 0.02, 0.0, 0.0, chunk_rows=10_000) == pytest.approx((1 + 11) * 0.02)  # 105,000 rows
    args = (21, 5, 0.02, 1e-5, 1e-3, 200)
    assert fa.permutation_rows_within(1000, 10.0, *args) == 1000  # it all fits
    rows = fa.permutation_rows_within(1000, 0.6, *args)
    assert cost(rows, *args[:-1]) <= 0.6 < cost(rows + 1, *args[:-1])  # the last row count that fits
    assert rows == int((0.6 - 2 * 0.02 - 105 * 1e-3) / (106 * 1e-5))
    assert fa.permutation_rows_within(1000, 0.0, *args) == 200  # the floor, when nothing fits
    assert fa.permutation_rows_within(150, 0.0, *args) == 150  # a floor above the rows there are


def test_the_permutation_plan_probes_the_model_and_says_why_it_shrinks(problem):
    X, y, model = problem["X_eval"], problem["y_eval"], problem["model"]
    roomy = fa.plan_permutation(model, X, y, repeats=5, limit_seconds=1e6, min_rows=100)
    assert roomy.rows == roomy.probe_rows == len(X) and roomy.reason == ""
    assert roomy.row_seconds > 0 and roomy.call_seconds >= 0 and roomy.probe_seconds > 0
    none = fa.plan_permutation(model, X, y, repeats=5, limit_seconds=0.0, min_rows=100)
    assert none.rows == 100 and f"{len(X)} rows would take about" in none.reason
    assert "kept at audit.permutation_min_rows=100, beyond it" in none.reason
    # the plan's rows are the cost model's, for the costs it probed and the time left after the probe
    some = fa.plan_permutation(model, X, y, repeats=5, limit_seconds=0.05, min_rows=100)
    left = (0.05 - some.probe_seconds) / fa.PERMUTATION_HEADROOM
    costs = (some.call_seconds, some.row_seconds, some.auc_seconds)
    assert some.rows == fa.permutation_rows_within(len(X), left, 4, 5, *costs, 100)


def test_a_small_budget_shrinks_permutation_to_its_share_and_records_why(problem):
    """A training fit of 1 ms: 2 ms of budget, so permutation importance runs on its floor of rows and
    LOFO on nothing; the plan and its reason are in the result."""
    args = (problem["model"], None, problem["X_train"], problem["y_train"], problem["X_eval"], problem["y_eval"])
    settings = Audit(enabled=True, permutation_min_rows=300, max_lofo_features=4, bootstrap_samples=0)
    tight = fa.audit(*args, FEATURES, settings, fit_seconds=0.001)
    assert tight.permutation_rows == tight.permutation_plan.rows == 300
    assert tight.permutation_plan.probe_rows == len(problem["y_eval"]) and "permutation_min_rows=300" in (
        tight.permutation_plan.reason
    )
    assert tight.permutation_plan.limit_seconds == pytest.approx(0.5 * 0.002)
    assert tight.lofo.tested == [] and set(tight.lofo.skipped) == set(
        tight.importances[tight.importances.includes_zero].feature
    )
    shuffled = fa.sample_rows(problem["y_eval"], 300, settings.seed)  # the floor's sample, seeded
    expected, _ = fa.permutation_importances(
        problem["model"], problem["X_eval"].iloc[shuffled], problem["y_eval"][shuffled], 5, settings.seed
    )
    pd.testing.assert_frame_equal(tight.importances, expected)
    roomy = fa.audit(*args, FEATURES, settings.model_copy(update={"permutation_max_rows": 1500}), fit_seconds=1e4)
    assert roomy.permutation_rows == 1500 and roomy.permutation_plan.reason == ""
