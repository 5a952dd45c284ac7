"""The feature audit's pure computations on a tiny synthetic problem with a noise feature and a duplicate.

y depends on `a` and `b`; `a_copy` is `a` plus a hair of noise (a duplicate); `noise` is independent of y.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression

from mlops.core import feature_audit as fa

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

    def fit_score(columns: list[str]) -> np.ndarray:
        model = LogisticRegression().fit(X_train[columns], y_train)
        return model.predict_proba(X_eval[columns])[:, 1]

    model = LogisticRegression().fit(X_train, y_train)
    return {"X_train": X_train, "X_eval": X_eval, "y_eval": y_eval, "model": model, "fit_score": fit_score}


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
    table = pd.DataFrame({"feature": ["noise"], "includes_zero": [True]})
    assert fa.verdicts(table, none) == {"noise": fa.NOT_TESTED}
    assert fa.verdicts(table, one) == {"noise": fa.FLAGGED}
