"""Promotion gates: `judge` on constructed evaluation frames, then `promote` on real trained versions.

The real part trains two models once for the module on 2013-01-01..2013-01-22 (real MLflow under the
module's MLOPS_HOME): version 1, promoted champion; version 2, a weaker challenger evaluated against it.
"""

from __future__ import annotations

import datetime as dt
import math

import mlflow.artifacts
import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_recall_curve,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mlops.core.config import Evaluation, Gate, Model, Promotion, Threshold
from mlops.core.features import labels
from mlops.core.interval import Interval
from mlops.core.metrics import OVERALL
from mlops.core.modeling import model_input, predict_scores
from mlops.core.splits import split_frame, split_window
from mlops.io import audit, registry
from mlops.io.datasets import read_training_set
from mlops.stages.assemble import assemble
from mlops.stages.evaluate import COMPARISON_COLUMNS, SLICE_COLUMNS, evaluate, slice_seed, worst_slices
from mlops.stages.ingest import ingest_missing
from mlops.stages.promote import PromotionDecision, judge, load_evaluation, promote, rollback
from mlops.stages.recalibrate import InfeasibleThresholdError, recalibrate
from mlops.stages.train import train
from tests.oracles import ece_by_hand

pytestmark = pytest.mark.usefixtures("one_openmp_thread")

WINDOW = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 22))
NAN = float("nan")
LENIENT = Gate(metric="roc_auc", min_value=0.5)


def gated(cfg, *gates, min_slice_size=200, bootstrap_samples=50):
    evaluation = Evaluation(min_slice_size=min_slice_size, bootstrap_samples=bootstrap_samples, seed=0)
    return cfg.model_copy(update={"promotion": Promotion(gates=list(gates)), "evaluation": evaluation})


def with_model(cfg, **params):
    model = Model(kind="hist_gradient_boosting", params=params)
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"model": model})})


# judge on constructed frames


def metrics_frame(*rows, model="challenger", prevalence=0.25):
    """rows: (slice_feature, slice_value, metric, value, n); with the overall prevalence the guard reads."""
    n = next((r[4] for r in rows if r[0] == OVERALL), 6000)
    rows = [*rows, (OVERALL, OVERALL, "prevalence", prevalence, n)]
    return pd.DataFrame(
        [(f, v, model, m, x, n, NAN, NAN, "ok", "bootstrap", 200, 0) for f, v, m, x, n in rows], columns=SLICE_COLUMNS
    )


def comparison_frame(*rows):
    """rows: (slice_feature, slice_value, metric, difference, ci_low, ci_high, n[, ci_low_mc_se, ci_high_mc_se])."""
    full = [(*r[:7], "ok", 200, 0, *(r[7:] or (NAN, NAN))) for r in rows]
    return pd.DataFrame(full, columns=COMPARISON_COLUMNS)


NO_COMPARISON = comparison_frame()
SLICED = metrics_frame(
    (OVERALL, OVERALL, "roc_auc", 0.70, 6000),
    ("origin", "EWR", "roc_auc", 0.75, 2000),
    ("origin", "JFK", "roc_auc", 0.62, 1900),
    ("origin", "LGA", "roc_auc", NAN, 300),  # one class: undefined, never gates
    ("carrier", "HA", "roc_auc", 0.30, 40),  # below min_slice_size: never gates
)


GUARD = "evaluation_class_counts"


def outcome(checks):
    """Each gate's verdict, after the class-count guard (which must pass)."""
    assert checks[0].name == GUARD and checks[0].passed, checks[0]
    return {(c.name, c.scope): c.passed for c in checks[1:]}


def test_judge_passes(small_cfg):
    checks = judge(gated(small_cfg, Gate(metric="roc_auc", min_value=0.6)), SLICED, NO_COMPARISON, False)
    assert outcome(checks) == {("roc_auc_min_value", OVERALL): True}
    assert checks[1].detail == "challenger 0.7000 >= 0.6 (n=6000)"
    assert checks[0].detail == (
        "evaluation window: 1500 positive and 4500 negative labels in 6000 rows "
        "(evaluation.min_positives 30, min_negatives 30)"
    )


def test_judge_fails_overall(small_cfg):
    checks = judge(gated(small_cfg, Gate(metric="roc_auc", min_value=0.8)), SLICED, NO_COMPARISON, False)
    assert outcome(checks) == {("roc_auc_min_value", OVERALL): False}


def test_judge_fails_one_slice_only_and_small_slices_never_gate(small_cfg):
    """min_value 0.65 lies between the worst eligible slice (JFK, 0.62) and overall (0.70)."""
    gate = Gate(metric="roc_auc", min_value=0.65, per_slice=True)
    checks = judge(gated(small_cfg, gate), SLICED, NO_COMPARISON, False)
    assert outcome(checks) == {
        ("roc_auc_min_value", OVERALL): True,
        ("roc_auc_min_value", "origin=EWR"): True,
        ("roc_auc_min_value", "origin=JFK"): False,
        ("roc_auc_defined", "origin=LGA"): True,  # undefined on a large slice: reported, not judged
    }
    lga = next(c for c in checks if c.scope == "origin=LGA")
    assert lga.outcome == "not_judged" and lga.detail == "undefined on this slice (one class?), not judged (n=300)"
    assert "NOT JUDGED roc_auc_defined [origin=LGA]: undefined on this slice (one class?), not judged (n=300)" in (
        PromotionDecision("flights", "2", "1", False, False, checks).reasons
    )
    # the small slice gates once min_slice_size lets it in
    smaller = judge(gated(small_cfg, gate, min_slice_size=40), SLICED, NO_COMPARISON, False)
    assert outcome(smaller)[("roc_auc_min_value", "carrier=HA")] is False
    # without per_slice only overall is judged
    overall_only = judge(gated(small_cfg, gate.model_copy(update={"per_slice": False})), SLICED, NO_COMPARISON, False)
    assert outcome(overall_only) == {("roc_auc_min_value", OVERALL): True}


def test_judge_an_undefined_overall_metric_fails(small_cfg):
    frame = metrics_frame((OVERALL, OVERALL, "roc_auc", NAN, 500))
    checks = judge(gated(small_cfg, Gate(metric="roc_auc", min_value=0.5)), frame, NO_COMPARISON, False)
    assert outcome(checks) == {("roc_auc_defined", OVERALL): False}


def test_judge_max_value(small_cfg):
    frame = metrics_frame((OVERALL, OVERALL, "log_loss", 0.45, 6000))
    assert outcome(judge(gated(small_cfg, Gate(metric="log_loss", max_value=0.5)), frame, NO_COMPARISON, False)) == {
        ("log_loss_max_value", OVERALL): True
    }
    assert outcome(judge(gated(small_cfg, Gate(metric="log_loss", max_value=0.4)), frame, NO_COMPARISON, False)) == {
        ("log_loss_max_value", OVERALL): False
    }


@pytest.mark.parametrize(
    ("difference", "ci", "non_inferiority", "no_significant_regression"),
    [
        (-0.005, (-0.03, 0.02), False, True),  # possibly worse by more than 0.01, but not established
        (-0.03, (-0.05, -0.02), False, False),  # established regression beyond 0.01
        (0.0, (-0.008, 0.01), True, True),  # within the margin either way
        (-0.005, (NAN, NAN), True, True),  # no interval: the point gain is the bound
        (-0.02, (NAN, NAN), False, False),
    ],
)
def test_non_inferiority_and_no_significant_regression(
    small_cfg, difference, ci, non_inferiority, no_significant_regression
):
    frame = metrics_frame((OVERALL, OVERALL, "roc_auc", 0.7, 6000))
    comparison = comparison_frame((OVERALL, OVERALL, "roc_auc", difference, *ci, 6000))
    for test, expected in (
        ("non_inferiority", non_inferiority),
        ("no_significant_regression", no_significant_regression),
    ):
        gate = Gate(metric="roc_auc", max_regression=0.01, test=test)
        assert outcome(judge(gated(small_cfg, gate), frame, comparison, True)) == {
            (f"roc_auc_{test}", OVERALL): expected
        }


def test_comparison_gates_per_slice_skip_small_slices(small_cfg):
    frame = metrics_frame((OVERALL, OVERALL, "roc_auc", 0.7, 6000))
    comparison = comparison_frame(
        (OVERALL, OVERALL, "roc_auc", 0.0, -0.005, 0.005, 6000),
        ("origin", "JFK", "roc_auc", -0.05, -0.08, -0.03, 1900),  # established slice regression
        ("carrier", "HA", "roc_auc", -0.3, -0.5, -0.1, 40),  # too small to gate
        ("origin", "LGA", "roc_auc", NAN, NAN, NAN, 300),  # undefined: skipped
    )
    gate = Gate(metric="roc_auc", max_regression=0.02, per_slice=True, test="no_significant_regression")
    assert outcome(judge(gated(small_cfg, gate), frame, comparison, True)) == {
        ("roc_auc_no_significant_regression", OVERALL): True,
        ("roc_auc_no_significant_regression", "origin=JFK"): False,
        ("roc_auc_vs_champion", "origin=LGA"): True,  # undefined: not judged, and said so
    }


def test_min_improvement_is_judged_overall_only(small_cfg):
    frame = metrics_frame((OVERALL, OVERALL, "roc_auc", 0.7, 6000))
    comparison = comparison_frame(
        (OVERALL, OVERALL, "roc_auc", 0.02, 0.01, 0.03, 6000),
        ("origin", "JFK", "roc_auc", -0.01, -0.02, 0.0, 1900),
    )
    for need, passed in ((0.01, True), (0.02, True), (0.03, False)):
        gate = Gate(metric="roc_auc", min_improvement=need, per_slice=True)
        assert outcome(judge(gated(small_cfg, gate), frame, comparison, True)) == {
            ("roc_auc_min_improvement", OVERALL): passed
        }


def test_lower_is_better_metrics_turn_the_difference_around(small_cfg):
    frame = metrics_frame((OVERALL, OVERALL, "log_loss", 0.45, 6000), (OVERALL, OVERALL, "brier", 0.15, 6000))
    comparison = comparison_frame(
        (OVERALL, OVERALL, "log_loss", -0.02, -0.03, -0.01, 6000),  # challenger's loss is lower: better
        (OVERALL, OVERALL, "brier", 0.02, 0.01, 0.03, 6000),  # challenger's Brier is higher: worse
    )
    gates = [
        Gate(metric="log_loss", min_improvement=0.01),
        Gate(metric="log_loss", max_regression=0.0),
        Gate(metric="brier", min_improvement=-0.025),
        Gate(metric="brier", max_regression=0.015),
        Gate(metric="brier", max_regression=0.015, test="no_significant_regression"),
    ]
    checks = judge(gated(small_cfg, *gates), frame, comparison, True)[1:]
    assert [(c.name, c.passed) for c in checks] == [
        ("log_loss_min_improvement", True),  # gain +0.02
        ("log_loss_non_inferiority", True),  # gain CI [+0.01, +0.03]
        ("brier_min_improvement", True),  # gain -0.02 >= -0.025
        ("brier_non_inferiority", False),  # gain CI [-0.03, -0.01]: lower end -0.03 < -0.015
        ("brier_no_significant_regression", True),  # upper end -0.01 >= -0.015
    ]
    assert "gain +0.0200" in checks[0].detail and "gain -0.0200, CI lower end -0.0300" in checks[3].detail


def test_without_a_champion_comparison_gates_pass(small_cfg):
    frame = metrics_frame((OVERALL, OVERALL, "roc_auc", 0.7, 6000))
    gate = Gate(metric="roc_auc", max_regression=0.0, min_improvement=0.1)
    checks = judge(gated(small_cfg, gate), frame, NO_COMPARISON, False)
    assert outcome(checks) == {("roc_auc_vs_champion", OVERALL): True}
    assert checks[1].detail == "no champion yet: nothing to compare"


@pytest.mark.parametrize(("positives", "negatives"), [(1, 5912), (5912, 1), (29, 5000)])
def test_too_few_positives_or_negatives_are_not_judged(small_cfg, positives, negatives):
    """A target leaving 1 positive in 5,913 rows: no gate is judged, and the reason says why."""
    n = positives + negatives
    frame = metrics_frame((OVERALL, OVERALL, "roc_auc", 0.9, n), prevalence=positives / n)
    checks = judge(gated(small_cfg, Gate(metric="roc_auc", min_value=0.5)), frame, NO_COMPARISON, False)
    assert [(c.name, c.passed) for c in checks] == [(GUARD, False)]
    assert checks[0].detail == (
        f"evaluation window: {positives} positive and {negatives} negative labels in {n} rows "
        "(evaluation.min_positives 30, min_negatives 30): not judged"
    )
    decision = PromotionDecision("flights", "2", "1", False, False, checks)
    assert decision.reasons == [f"FAIL {GUARD} [overall]: {checks[0].detail}"]


@pytest.mark.parametrize(
    ("ci_low", "se", "rule", "outcome_name", "passed"),
    [
        (-0.0290, 0.0004, "fail", "pass", True),  # 0.001 from the limit -0.03 is 2.5 errors: conclusive
        (-0.0295, 0.0004, "fail", "inconclusive", False),  # within 2 errors of it
        (-0.0295, 0.0004, "pass", "inconclusive", True),  # the configured rule decides
        (-0.0305, 0.0004, "pass", "inconclusive", True),
        (-0.0295, 0.0001, "fail", "pass", True),  # a small Monte Carlo error: a clear pass
        (-0.0305, 0.0001, "pass", "fail", False),  # and a clear fail
        (-0.0295, NAN, "fail", "pass", True),  # no error known: read as it is
    ],
)
def test_a_bound_within_its_monte_carlo_error_is_inconclusive(small_cfg, ci_low, se, rule, outcome_name, passed):
    frame = metrics_frame((OVERALL, OVERALL, "pr_auc", 0.4, 6000))
    comparison = comparison_frame((OVERALL, OVERALL, "pr_auc", -0.01, ci_low, 0.01, 6000, se, se))
    cfg = gated(small_cfg, Gate(metric="pr_auc", max_regression=0.03))
    cfg = cfg.model_copy(update={"promotion": cfg.promotion.model_copy(update={"inconclusive": rule})})
    check = judge(cfg, frame, comparison, True)[1]
    assert (check.outcome, check.passed) == (outcome_name, passed), check
    if np.isfinite(se):
        assert f"CI lower end {ci_low:+.4f} ± {2 * se:.4f} (Monte Carlo, 200 resamples) >= -0.03" in check.detail
    if outcome_name == "inconclusive":
        assert check.detail.endswith(
            f"inconclusive, the limit lies within the Monte Carlo error; promotion.inconclusive={rule}"
        )
        decision = PromotionDecision("flights", "2", "1", passed, False, [check])
        line = ("INCONCLUSIVE " if passed else "FAIL ") + f"pr_auc_non_inferiority [overall]: {check.detail}"
        assert line in decision.reasons


# real versions


@pytest.fixture(scope="module")
def cfg(small_cfg):
    return gated(small_cfg, LENIENT)


@pytest.fixture(scope="module")
def assembled(module_home, cfg):
    ingest_missing(cfg, WINDOW)
    return assemble(cfg, WINDOW)


@pytest.fixture(scope="module")
def champion(assembled, cfg):
    """Version 1, the configured model: trained, recalibrated and given the champion alias.

    (Its own evaluation and promotion are covered by test_model_stages and test_model_lifecycle.)
    """
    trained = train(cfg, assembled.key, WINDOW)
    recalibrate(cfg, assembled.key, WINDOW, trained.version)
    registry.client().set_registered_model_alias("flights", registry.CHAMPION, trained.version)
    assert trained.version == "1"
    return registry.version("flights", trained.version)


def calibration_scores(cfg, key, version):
    part = split_frame(read_training_set("flights", key), cfg, split_window(cfg, WINDOW).calibration)
    model = registry.load_sklearn(registry.version("flights", version))
    return labels(part, cfg.target).to_numpy(dtype="int64"), predict_scores(model, model_input(part, cfg.features))


@pytest.fixture(scope="module")
def untuned(champion, assembled, cfg):
    """Version 2 (a weaker model) under an infeasible threshold policy; evaluated and promoted anyway."""
    weaker = with_model(cfg, max_iter=30, max_depth=2, learning_rate=0.1, random_state=0)
    trained = train(weaker, assembled.key, WINDOW)
    y, scores = calibration_scores(cfg, assembled.key, trained.version)
    reachable = precision_recall_curve(y, scores)[0][:-1].max()
    assert reachable < 1
    policy = Threshold(policy="recall_at_precision", min_precision=round((reachable + 1) / 2, 4))
    with pytest.raises(InfeasibleThresholdError) as info:
        recalibrate(weaker, assembled.key, WINDOW, trained.version, policy)
    tags = dict(registry.client().get_model_version("flights", trained.version).tags)
    evaluate(weaker, assembled.key, WINDOW, trained.version)
    decision = promote(weaker, trained.version, evaluated_champion=champion.version)
    return {"train": trained, "error": info.value, "reachable": reachable, "tags": tags, "decision": decision}


@pytest.fixture(scope="module")
def challenger(untuned, assembled, cfg):
    """Version 2 recalibrated (max_f1) and evaluated again against champion version 1."""
    version = untuned["train"].version
    recalibrate(cfg, assembled.key, WINDOW, version)
    result = evaluate(cfg, assembled.key, WINDOW, version)
    assert result.champion_version == "1"
    metrics, comparison = load_evaluation(untuned["train"].run_id)
    folder = mlflow.artifacts.download_artifacts(run_id=untuned["train"].run_id, artifact_path="evaluation")
    predictions = pd.read_parquet(f"{folder}/eval_predictions.parquet")
    return {
        "version": registry.version("flights", version),
        "result": result,
        "metrics": metrics,
        "comparison": comparison,
        "predictions": predictions,
    }


def assert_recorded(decision, outcome_name, validation_status):
    """The gate report artifact, the version tags and the audit entry of one promote call."""
    ref = registry.version("flights", decision.challenger_version)
    report = mlflow.artifacts.load_dict(f"runs:/{ref.run_id}/promotion/gate_report.json")
    assert report["passed"] == decision.passed and report["promoted"] == decision.promoted
    assert report["reasons"] == decision.reasons and report["blocked_by"] == decision.blocked_by
    assert [(c["name"], c["scope"], c["passed"]) for c in report["checks"]] == [
        (c.name, c.scope, c.passed) for c in decision.checks
    ]
    tags = registry.client().get_model_version("flights", ref.version).tags
    assert tags["validation_status"] == validation_status
    assert tags["promotion_decision"] == outcome_name
    assert registry.client().get_run(ref.run_id).data.tags["promotion_decision"] == outcome_name
    last = audit.history("flights")[-1]
    assert last["event"] == outcome_name and last["version"] == ref.version
    assert last["previous"] == decision.champion_version and last["reasons"] == decision.reasons
    assert last["run_id"] == ref.run_id


# the evaluation the gates read (real `evaluate`, read back from MLflow)


def sklearn_metrics(y, score, threshold):
    predicted = (score >= threshold).astype("int64")
    two = 0 < y.sum() < len(y)
    return {
        "roc_auc": roc_auc_score(y, score) if two else NAN,
        "pr_auc": average_precision_score(y, score) if two else NAN,
        "log_loss": log_loss(y, score, labels=[0, 1]),
        "brier": brier_score_loss(y, score, labels=[0, 1]),
        "ece": ece_by_hand(y, score),
        "prevalence": y.mean(),
        "precision": precision_score(y, predicted, zero_division=np.nan),
        "recall": recall_score(y, predicted, zero_division=np.nan),
        "f1": f1_score(y, predicted, zero_division=np.nan),
        "predicted_positive_rate": predicted.mean(),
    }


def test_slice_metrics_equal_sklearn_on_the_logged_predictions(challenger, champion):
    metrics, predictions = challenger["metrics"], challenger["predictions"]
    thresholds = {"challenger": challenger["version"].threshold, "champion": champion.threshold}
    assert set(metrics.model) == {"challenger", "champion"}
    assert "origin x hour_band" in set(metrics.slice_feature)
    checked = 0
    for (feature, value, model), part in metrics.groupby(["slice_feature", "slice_value", "model"]):
        if feature == OVERALL:
            rows = predictions
        else:
            columns = feature.split(" x ")
            mask = np.logical_and.reduce(
                [predictions[c].astype("str") == v for c, v in zip(columns, value.split(" x "), strict=True)]
            )
            rows = predictions[mask]
        assert set(part.n) == {len(rows)}, (feature, value)
        expected = sklearn_metrics(rows.label.to_numpy(), rows[f"{model}_score"].to_numpy(), thresholds[model])
        got = part.set_index("metric")["value"]
        assert set(got.index) == set(expected)
        for metric, v in expected.items():
            assert got[metric] == pytest.approx(v, rel=1e-9, nan_ok=True), (feature, value, model, metric)
        checked += 1
    assert checked > 2 * 40


def test_cross_slice_jfk_evening(challenger):
    metrics, predictions = challenger["metrics"], challenger["predictions"]
    rows = predictions[(predictions.origin == "JFK") & (predictions.hour_band == "evening")]
    assert len(rows) > 100
    row = metrics[
        (metrics.slice_feature == "origin x hour_band")
        & (metrics.slice_value == "JFK x evening")
        & (metrics.model == "challenger")
        & (metrics.metric == "roc_auc")
    ].iloc[0]
    assert row.n == len(rows)
    assert row.value == pytest.approx(roc_auc_score(rows.label, rows.challenger_score), rel=1e-12)
    assert row.ci_low <= row.value <= row.ci_high


def test_comparison_is_the_difference_of_the_two_models(challenger):
    metrics, comparison = challenger["metrics"], challenger["comparison"]
    table = metrics.set_index(["slice_feature", "slice_value", "model", "metric"])["value"]
    assert len(comparison) == len(metrics) // 2
    for row in comparison.itertuples():
        challenger_value = table[(row.slice_feature, row.slice_value, "challenger", row.metric)]
        champion_value = table[(row.slice_feature, row.slice_value, "champion", row.metric)]
        assert row.difference == pytest.approx(challenger_value - champion_value, abs=1e-12, nan_ok=True)
    overall = challenger["result"].overall
    roc = comparison[(comparison.slice_feature == OVERALL) & (comparison.metric == "roc_auc")].iloc[0]
    assert roc.difference == pytest.approx(overall["challenger"]["roc_auc"] - overall["champion"]["roc_auc"])


def test_comparison_interval_is_paired(challenger, cfg):
    """Same resample indices for both models: recomputed independently, and narrower than unpaired."""
    metrics, comparison, predictions = challenger["metrics"], challenger["comparison"], challenger["predictions"]
    y = predictions.label.to_numpy()
    rng = np.random.default_rng(slice_seed(cfg.evaluation.seed, 0))
    idx = rng.integers(0, len(y), size=(cfg.evaluation.bootstrap_samples, len(y)))
    diffs = [
        roc_auc_score(y[r], predictions.challenger_score.to_numpy()[r])
        - roc_auc_score(y[r], predictions.champion_score.to_numpy()[r])
        for r in idx
    ]
    roc = comparison[(comparison.slice_feature == OVERALL) & (comparison.metric == "roc_auc")].iloc[0]
    assert (roc.ci_low, roc.ci_high) == pytest.approx(tuple(np.quantile(diffs, [0.025, 0.975])), abs=1e-12)
    overall = metrics[metrics.slice_feature == OVERALL].set_index(["model", "metric"])
    for metric in ("roc_auc", "pr_auc", "brier"):
        row = comparison[(comparison.slice_feature == OVERALL) & (comparison.metric == metric)].iloc[0]
        widths = [
            overall.loc[(m, metric), "ci_high"] - overall.loc[(m, metric), "ci_low"] for m in ("challenger", "champion")
        ]
        naive = math.sqrt(widths[0] ** 2 + widths[1] ** 2)  # as if the two models were scored on other rows
        assert row.ci_high - row.ci_low < 0.75 * naive, metric


def test_worst_slices_respect_min_slice_size(challenger, cfg):
    metrics = challenger["metrics"]
    assert challenger["result"].worst_slices == worst_slices(metrics, cfg.evaluation.min_slice_size)
    sizes = sorted(set(metrics.n[metrics.slice_feature != OVERALL]))
    for min_size in (1, 200, sizes[len(sizes) // 2], sizes[-1]):
        worst = worst_slices(metrics, min_size)["challenger"]["roc_auc"]
        eligible = metrics[
            (metrics.slice_feature != OVERALL)
            & (metrics.n >= min_size)
            & (metrics.model == "challenger")
            & (metrics.metric == "roc_auc")
        ].dropna(subset=["value"])
        assert worst["n"] >= min_size
        assert worst["value"] == eligible.value.min()
        assert worst["slice"] in {f"{r.slice_feature}={r.slice_value}" for r in eligible.itertuples()}
    assert worst_slices(metrics, sizes[-1] + 1) == {}


# promote on real versions


def test_infeasible_threshold_policy_promotes_nothing(untuned, champion):
    message = str(untuned["error"])
    assert "policy recall_at_precision" in message
    assert f"the best reachable precision is {untuned['reachable']:.4f}" in message
    assert "threshold" not in untuned["tags"] and "threshold_policy" not in untuned["tags"]
    decision = untuned["decision"]
    assert not decision.passed and not decision.promoted
    assert [c.name for c in decision.checks if not c.passed] == ["threshold_set"]
    assert registry.version_by_alias("flights", registry.CHAMPION).version == champion.version
    assert_recorded(decision, "rejected", "failed")


def test_promote_fails_overall(challenger, cfg):
    decision = promote(gated(cfg, Gate(metric="roc_auc", min_value=0.99)), "2", evaluated_champion="1")
    assert not decision.passed and not decision.promoted
    assert [(c.name, c.scope) for c in decision.checks if not c.passed] == [("roc_auc_min_value", OVERALL)]
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "1"
    assert_recorded(decision, "rejected", "failed")


def test_promote_fails_on_one_slice_only(challenger, cfg):
    """min_value between the worst eligible slice and overall; a worse slice below min_slice_size never gates."""
    metrics = challenger["metrics"]
    auc = metrics[(metrics.model == "challenger") & (metrics.metric == "roc_auc")].dropna(subset=["value"])
    overall = auc[auc.slice_feature == OVERALL].value.iloc[0]
    slices = auc[auc.slice_feature != OVERALL]
    for min_size in sorted(set(slices.n)):
        eligible, small = slices[slices.n >= min_size], slices[slices.n < min_size]
        min_value = (eligible.value.min() + overall) / 2
        if eligible.value.min() < overall and (small.value < min_value).any():
            break
    else:
        pytest.fail("no slice size separates a small bad slice from an eligible one")
    gate = Gate(metric="roc_auc", min_value=round(min_value, 6), per_slice=True)
    decision = promote(gated(cfg, gate, min_slice_size=int(min_size)), "2", evaluated_champion="1")
    assert not decision.passed and not decision.promoted
    scope = {f"{r.slice_feature}={r.slice_value}": r for r in slices.itertuples()}
    gated_checks = [c for c in decision.checks if c.name == "roc_auc_min_value"]
    assert {c.scope for c in gated_checks} == {OVERALL, *(s for s, r in scope.items() if r.n >= min_size)}
    failed = {c.scope for c in gated_checks if not c.passed}
    assert OVERALL not in failed and failed
    assert failed == {s for s, r in scope.items() if r.n >= min_size and r.value < gate.min_value}
    worst = eligible.loc[eligible.value.idxmin()]
    assert f"{worst.slice_feature}={worst.slice_value}" in failed
    assert not any(scope[s].n < min_size for s in failed)
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "1"
    assert_recorded(decision, "rejected", "failed")


def test_promote_passes(challenger, cfg):
    decision = promote(cfg, "2", evaluated_champion="1", triggered_by="test")
    assert decision.passed and decision.promoted and decision.blocked_by is None
    assert decision.champion_version == "1"
    assert {c.name for c in decision.checks} == {
        "training_data_validated",
        "threshold_set",
        GUARD,
        "roc_auc_min_value",
    }
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "2"
    assert registry.version_by_alias("flights", registry.PREVIOUS_CHAMPION).version == "1"
    assert_recorded(decision, "promoted", "passed")
    assert audit.history("flights")[-1]["triggered_by"] == "test"
    events = [(e["event"], e["version"]) for e in audit.history("flights")]
    assert events == [("rejected", "2"), ("rejected", "2"), ("rejected", "2"), ("promoted", "2")]


def test_a_calibration_gate_reads_the_brier_difference_the_right_way_round(challenger, cfg):
    """Brier: lower is better, so non-inferiority judges minus the upper end of (challenger - champion)."""
    comparison = challenger["comparison"]
    brier = comparison[(comparison.slice_feature == OVERALL) & (comparison.metric == "brier")].iloc[0]
    margin = 0.001
    decision = promote(gated(cfg, Gate(metric="brier", max_regression=margin)), "2", evaluated_champion="1")
    check = next(c for c in decision.checks if c.name == "brier_non_inferiority")
    assert f"CI lower end {-brier.ci_high:+.4f}" in check.detail
    if check.outcome != "inconclusive":
        assert check.passed == (-brier.ci_high >= -margin)
    ece = Gate(metric="ece", max_value=0.5)  # a value gate on calibration error
    decision = promote(gated(cfg, ece), "2", evaluated_champion="1")
    assert [(c.name, c.passed) for c in decision.checks if c.name.startswith("ece")] == [("ece_max_value", True)]


def test_an_evaluation_window_with_too_few_positives_is_not_judged(challenger, cfg):
    strict = cfg.model_copy(update={"evaluation": cfg.evaluation.model_copy(update={"min_positives": 100_000})})
    if registry.version_by_alias("flights", registry.CHAMPION).version == "2":  # promoted by an earlier test
        rollback(cfg, "1", triggered_by="test", reason="judge version 2 afresh")
    decision = promote(strict, "2", evaluated_champion="1")
    assert not decision.passed and not decision.promoted
    assert [c.name for c in decision.checks if not c.passed] == [GUARD]
    assert not any(c.name.startswith("roc_auc") for c in decision.checks)  # nothing else judged
    assert decision.reasons[0].startswith(f"FAIL {GUARD} [overall]: evaluation window: ")
    assert decision.reasons[0].endswith("(evaluation.min_positives 100000, min_negatives 30): not judged")
