"""Sliced evaluation metrics, checked slice by slice against scikit-learn on real flights."""

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

from mlops.core.config import Evaluation
from mlops.core.features import MISSING_SLICE, labels
from mlops.core.metrics import OVERALL
from mlops.stages.evaluate import SLICE_COLUMNS, evaluate_slices, slice_metrics
from mlops.stages.ingest import build_day

SLICES = ["carrier", "origin", "hour_band", "dest_region"]
THRESHOLDS = {"challenger": 0.3, "champion": 0.45}
FAST = Evaluation(bootstrap_samples=0)


@pytest.fixture(scope="module")
def predictions(flights_cfg):
    """Real rows and labels of three March days; scores from simple deterministic functions of real columns."""
    df = pd.concat([build_day(flights_cfg, dt.date(2013, 3, d)) for d in (11, 12, 13)], ignore_index=True)
    df = df[labels(df, flights_cfg.target).notna()].reset_index(drop=True)
    out = df[["row_key", *SLICES]].copy()
    out["label"] = labels(df, flights_cfg.target).to_numpy(dtype="int64")
    late = (df["hour"] + df["minute"] / 60 - 14) / 4
    weather = (df["precip"].fillna(0) * 20 + (10 - df["visib"].fillna(10))) / 5
    out["challenger_score"] = 1 / (1 + np.exp(-(late + weather - 1.0)))
    out["champion_score"] = 1 / (1 + np.exp(-(late - 1.2)))
    return out


@pytest.fixture(scope="module")
def metrics(predictions):
    return slice_metrics(predictions, SLICES, THRESHOLDS, FAST)


def sklearn_metrics(y, score, threshold):
    predicted = (score >= threshold).astype("int64")
    two_classes = 0 < y.sum() < len(y)
    return {
        "roc_auc": roc_auc_score(y, score) if two_classes else np.nan,
        "pr_auc": average_precision_score(y, score) if two_classes else np.nan,
        "log_loss": log_loss(y, score, labels=[0, 1]),
        "brier": brier_score_loss(y, score),
        "positive_rate": y.mean(),
        "precision": precision_score(y, predicted, zero_division=np.nan),
        "recall": recall_score(y, predicted, zero_division=np.nan),
        "f1": f1_score(y, predicted, zero_division=np.nan),
        "predicted_positive_rate": predicted.mean(),
    }


def test_columns(metrics):
    assert list(metrics.columns) == SLICE_COLUMNS
    assert SLICE_COLUMNS == ["slice_feature", "slice_value", "model", "metric", "value", "n", "ci_low", "ci_high"]


def test_overall_rows(metrics, predictions):
    overall = metrics[metrics.slice_feature == OVERALL]
    assert set(overall.slice_value) == {OVERALL}
    assert set(overall.n) == {len(predictions)}
    assert set(overall.model) == {"challenger", "champion"}
    assert metrics.iloc[0].slice_feature == OVERALL
    y = predictions["label"].to_numpy()
    for model, threshold in THRESHOLDS.items():
        values = overall[overall.model == model].set_index("metric")["value"]
        expected = sklearn_metrics(y, predictions[f"{model}_score"].to_numpy(), threshold)
        for metric in ("roc_auc", "pr_auc", "precision", "recall"):
            assert values[metric] == pytest.approx(expected[metric], rel=1e-12), (model, metric)


def test_every_slice_equals_sklearn_on_its_rows(metrics, predictions):
    checked = 0
    for (feature, value, model), part in metrics[metrics.slice_feature != OVERALL].groupby(
        ["slice_feature", "slice_value", "model"]
    ):
        rows = predictions[predictions[feature].astype("str") == value]
        assert set(part.n) == {len(rows)}
        y = rows["label"].to_numpy()
        expected = sklearn_metrics(y, rows[f"{model}_score"].to_numpy(), THRESHOLDS[model])
        got = part.set_index("metric")["value"]
        for metric in ("roc_auc", "pr_auc", "precision", "recall", "f1", "brier", "log_loss", "positive_rate"):
            assert got[metric] == pytest.approx(expected[metric], rel=1e-9, nan_ok=True), (feature, value, metric)
        checked += 1
    assert checked > 2 * 20  # two models, more than 20 slice values in all


def test_slices_cover_every_row(metrics, predictions):
    for feature in SLICES:
        part = metrics[
            (metrics.slice_feature == feature) & (metrics.model == "challenger") & (metrics.metric == "roc_auc")
        ]
        assert part.n.sum() == len(predictions), feature
        assert sorted(part.slice_value) == sorted(predictions[feature].astype("str").unique())


def test_cross_slice(predictions):
    m = slice_metrics(predictions, ["origin x hour_band"], {"challenger": 0.3}, FAST)
    cross = m[(m.slice_feature == "origin x hour_band") & (m.metric == "roc_auc")]
    assert "EWR x morning" in set(cross.slice_value)
    assert cross.n.sum() == len(predictions)
    row = cross[cross.slice_value == "JFK x evening"].iloc[0]
    rows = predictions[(predictions.origin == "JFK") & (predictions.hour_band == "evening")]
    assert row.n == len(rows)
    assert row.value == pytest.approx(roc_auc_score(rows.label, rows.challenger_score))


def test_one_class_slice_has_undefined_auc(predictions):
    data = predictions.copy()
    data.loc[data.origin == "LGA", "label"] = 0
    m = slice_metrics(data, ["origin"], {"challenger": 0.3}, FAST).set_index(["slice_value", "metric"])
    assert np.isnan(m.loc[("LGA", "roc_auc"), "value"]) and np.isnan(m.loc[("LGA", "pr_auc"), "value"])
    assert np.isnan(m.loc[("LGA", "recall"), "value"])  # no positives: recall undefined, not 0
    assert m.loc[("LGA", "positive_rate"), "value"] == 0.0
    assert np.isfinite(m.loc[("EWR", "roc_auc"), "value"])


def test_model_without_scores_or_threshold(predictions):
    data = predictions.assign(champion_score=np.nan)
    m = slice_metrics(data, ["origin"], {"challenger": None, "champion": 0.5}, FAST)
    assert set(m.model) == {"challenger"}  # no champion scores: no champion rows
    assert {"precision", "recall", "f1"}.isdisjoint(m.metric)  # no threshold: no threshold metrics
    assert {"roc_auc", "pr_auc", "brier", "log_loss"} <= set(m.metric)


def test_comparison_is_challenger_minus_champion(predictions, metrics):
    _, comparison = evaluate_slices(predictions, SLICES, THRESHOLDS, FAST)
    table = metrics.set_index(["slice_feature", "slice_value", "model", "metric"])["value"]
    for row in comparison.itertuples():
        expected = table[(row.slice_feature, row.slice_value, "challenger", row.metric)]
        expected -= table[(row.slice_feature, row.slice_value, "champion", row.metric)]
        assert row.difference == pytest.approx(expected, nan_ok=True)
    assert np.isnan(comparison.ci_low).all()  # no bootstrap asked


def test_bootstrap_intervals_are_seeded(predictions):
    slices = ["origin"]
    a = slice_metrics(predictions, slices, THRESHOLDS, Evaluation(bootstrap_samples=50, seed=1))
    b = slice_metrics(predictions, slices, THRESHOLDS, Evaluation(bootstrap_samples=50, seed=1))
    c = slice_metrics(predictions, slices, THRESHOLDS, Evaluation(bootstrap_samples=50, seed=2))
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a.ci_low, c.ci_low, equal_nan=True)
    pd.testing.assert_series_equal(a.value, c.value)  # point values never depend on the seed
    finite = a.dropna(subset=["ci_low", "ci_high"])
    assert len(finite) > 0 and (finite.ci_low <= finite.ci_high).all()
    auc = a[(a.slice_feature == OVERALL) & (a.metric == "roc_auc")]
    assert ((auc.ci_low <= auc.value) & (auc.value <= auc.ci_high)).all()


def test_comparison_of_a_model_with_itself_has_a_zero_width_interval(predictions):
    """Paired resampling: the same scores on the same resampled rows differ by exactly 0 on every resample."""
    same = predictions.assign(champion_score=predictions.challenger_score)
    metrics, comparison = evaluate_slices(
        same, ["origin"], {"challenger": 0.3, "champion": 0.3}, Evaluation(bootstrap_samples=30)
    )
    finite = comparison.dropna(subset=["difference"])
    assert len(finite) > 0 and (finite.difference == 0).all()
    assert (finite.ci_low == 0).all() and (finite.ci_high == 0).all()
    widths = metrics.ci_high - metrics.ci_low
    assert (widths[metrics.metric == "roc_auc"] > 0).all()  # each model alone has a real interval


def test_rows_without_a_slice_value_form_their_own_slice(predictions):
    """Missing values in slice columns (a real carrier code left blank, an unknown hour) used to crash evaluate."""
    data = predictions.copy()
    data.loc[data.index[:31], "carrier"] = None
    data.loc[data.index[100:140], "hour_band"] = np.nan
    m = slice_metrics(data, ["carrier", "origin x hour_band"], {"challenger": 0.3}, FAST)
    auc = m[m.metric == "roc_auc"].set_index(["slice_feature", "slice_value"])
    assert auc.loc[("carrier", MISSING_SLICE), "n"] == 31
    crossed = auc.loc["origin x hour_band"]
    assert crossed[crossed.index.str.endswith(f" x {MISSING_SLICE}")].n.sum() == 40
    assert crossed.n.sum() == auc.loc[("carrier", slice(None)), "n"].sum() == len(data)
