"""A model's life in the registry on real flights and real MLflow: skip-when-unchanged, forced and
reproducible retraining, probability calibration, promotion permissions, a stale promotion, rollbacks
(as functions and through the `mlops` CLI) and the audit trail.

Three versions are trained once for the module on 2013-01-01..2013-01-22: 1 (the configured model),
2 (the same training forced again) and 3 (the same model with sigmoid-calibrated probabilities).
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pytest
from sklearn.metrics import brier_score_loss

from mlops.core.config import Evaluation, Gate, Promotion
from mlops.core.features import labels
from mlops.core.interval import Interval
from mlops.core.modeling import model_input, predict_scores
from mlops.core.splits import split_frame, split_window
from mlops.io import audit, registry
from mlops.io.datasets import read_training_set
from mlops.io.lake import content_digest
from mlops.local.cli import main
from mlops.stages.assemble import assemble
from mlops.stages.evaluate import evaluate
from mlops.stages.ingest import ingest_missing
from mlops.stages.promote import promote, promotion_allowed, rollback
from mlops.stages.recalibrate import recalibrate
from mlops.stages.train import code_digest, fingerprint, fit, train

pytestmark = pytest.mark.usefixtures("one_openmp_thread")

WINDOW = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 22))
AFTER_WINDOW = dt.date(2013, 1, 25)


def calibrated(cfg, method):
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"probability_calibration": method})})


def with_params(cfg, **params):
    model = cfg.training.model.model_copy(update={"params": {**cfg.training.model.params, **params}})
    return cfg.model_copy(update={"training": cfg.training.model_copy(update={"model": model})})


# promotion permissions (no registry involved)


@pytest.mark.parametrize(
    ("allow", "run_type", "allowed"),
    [
        (None, "scheduled", True),
        (None, "manual", True),
        (None, "backfill", False),
        (True, "backfill", True),
        (True, "scheduled", True),
        (False, "scheduled", False),
        (False, "manual", False),
        (False, "backfill", False),
    ],
)
def test_promotion_allowed(allow, run_type, allowed):
    ok, reason = promotion_allowed(allow, run_type)
    assert ok is allowed
    assert (reason == "") is allowed
    if allow is None and run_type == "backfill":
        assert "backfill" in reason and "allow_promotion" in reason
    if allow is False:
        assert reason == "param allow_promotion is false"


# training


@pytest.fixture(scope="module")
def cfg(small_cfg):
    """Uncalibrated probabilities (flights.yaml calibrates them): the tests below change that and retrain."""
    evaluation = Evaluation(min_slice_size=200, bootstrap_samples=20, seed=0)
    return calibrated(small_cfg, "none").model_copy(
        update={"promotion": Promotion(gates=[Gate(metric="roc_auc", min_value=0.5)]), "evaluation": evaluation}
    )


@pytest.fixture(scope="module")
def assembled(module_home, cfg):
    ingest_missing(cfg, WINDOW)
    return assemble(cfg, WINDOW)


@pytest.fixture(scope="module")
def parts(assembled, cfg):
    df = read_training_set("flights", assembled.key)
    split = split_window(cfg, WINDOW)
    return {name: split_frame(df, cfg, getattr(split, name)) for name in ("train", "calibration", "evaluation")}


@pytest.fixture(scope="module")
def first(assembled, cfg):
    return train(cfg, assembled.key, WINDOW)


@pytest.fixture(scope="module")
def skipped(first, assembled, cfg):
    if code_digest() != registry.client().get_run(first.run_id).data.tags["code_digest"]:
        pytest.skip("the mlops package's code changed while the tests ran: a new training is due")
    return train(cfg, assembled.key, WINDOW)


@pytest.fixture(scope="module")
def forced(skipped, assembled, cfg):
    return train(cfg, assembled.key, WINDOW, force=True)


@pytest.fixture(scope="module")
def sigmoid(forced, assembled, cfg):
    return train(calibrated(cfg, "sigmoid"), assembled.key, WINDOW)


def versions():
    return sorted(int(v.version) for v in registry.client().search_model_versions("name = 'flights'"))


def test_unchanged_training_is_skipped_and_logged(first, skipped, assembled):
    assert first.version == "1" and not first.skipped
    assert skipped.skipped and skipped.version == "1" and skipped.run_id == first.run_id
    assert skipped.fingerprint == first.fingerprint and skipped.metrics == {}
    c = registry.client()
    experiment = c.get_experiment_by_name("flights").experiment_id
    runs = c.search_runs([experiment], "tags.skipped = 'true'")
    assert len(runs) == 1
    tags = runs[0].data.tags
    assert tags["reused_version"] == "1" and tags["fingerprint"] == first.fingerprint
    assert tags["training_window"] == WINDOW.key and "unchanged" in tags["skip_reason"]
    assert runs[0].info.run_id != first.run_id
    assert not runs[0].data.metrics  # nothing trained, nothing measured


def test_force_trains_a_new_version(forced, first):
    assert not forced.skipped and forced.version == "2"
    assert forced.fingerprint == first.fingerprint  # same inputs, trained anyway
    assert registry.client().get_model_version("flights", "2").tags["fingerprint"] == first.fingerprint


def test_forced_retraining_is_reproducible(first, forced, parts, cfg):
    assert forced.metrics == first.metrics
    X = model_input(parts["evaluation"], cfg.features)
    a = predict_scores(registry.load_sklearn(registry.version("flights", "1")), X)
    b = predict_scores(registry.load_sklearn(registry.version("flights", "2")), X)
    np.testing.assert_array_equal(a, b)
    timings = set(first.seconds) | set(forced.seconds)  # fit durations, never reproducible
    runs = [registry.client().get_run(r.run_id).data.metrics for r in (first, forced)]
    logged = [{k: v for k, v in metrics.items() if k not in timings} for metrics in runs]
    assert "fit_seconds" in timings and logged[0] == logged[1]


def test_a_changed_config_trains(sigmoid, first, cfg, assembled):
    assert not sigmoid.skipped and sigmoid.version == "3"
    assert sigmoid.fingerprint != first.fingerprint
    assert versions() == [1, 2, 3]
    # a changed model parameter changes the fingerprint just the same
    data = read_training_set("flights", assembled.key)
    digest = content_digest(data)
    assert digest == assembled.content_digest
    assert fingerprint(with_params(cfg, max_iter=60), digest) != fingerprint(cfg, digest)
    configured = cfg.training.model.params["max_iter"]
    assert configured != 60
    assert fingerprint(with_params(cfg, max_iter=configured), digest) == fingerprint(cfg, digest)


def test_sigmoid_calibration_trains_and_does_not_worsen_brier(sigmoid, first):
    run = registry.client().get_run(sigmoid.run_id)
    assert run.data.params["probability_calibration"] == "sigmoid"
    model = registry.load_sklearn(registry.version("flights", sigmoid.version))
    assert type(model.named_steps["model"]).__name__ == "CalibratedClassifierCV"
    assert model.named_steps["model"].method == "sigmoid"
    assert sigmoid.metrics["calibration_brier"] <= first.metrics["calibration_brier"]
    assert run.data.metrics["calibration_brier"] == pytest.approx(sigmoid.metrics["calibration_brier"])
    # the model itself is unchanged: ranking (AUC) on the calibration window is the same
    assert sigmoid.metrics["calibration_roc_auc"] == pytest.approx(first.metrics["calibration_roc_auc"], abs=1e-9)


@pytest.mark.parametrize("method", ["sigmoid", "isotonic"])
def test_calibrated_brier_on_the_calibration_window(method, cfg, parts, first):
    """The calibrated pipeline, fitted exactly as `train` fits it, recomputed with scikit-learn."""
    model = fit(calibrated(cfg, method), parts)
    y = labels(parts["calibration"], cfg.target).to_numpy(dtype="int64")
    calibrated_brier = brier_score_loss(y, predict_scores(model, model_input(parts["calibration"], cfg.features)))
    assert calibrated_brier <= first.metrics["calibration_brier"]
    assert model.named_steps["model"].method == method


# promotion


@pytest.fixture(scope="module")
def champion_one(first, sigmoid, assembled, cfg):
    recalibrate(cfg, assembled.key, WINDOW, "1")
    evaluate(cfg, assembled.key, WINDOW, "1")
    decision = promote(cfg, "1")
    assert decision.promoted
    return decision


@pytest.fixture(scope="module")
def evaluated_three(champion_one, sigmoid, assembled, cfg):
    """Version 3 recalibrated and evaluated against champion version 1."""
    recalibrate(cfg, assembled.key, WINDOW, "3")
    return evaluate(cfg, assembled.key, WINDOW, "3")


def test_not_allowed_promotion_leaves_the_champion(evaluated_three, cfg):
    assert evaluated_three.champion_version == "1"
    allowed, reason = promotion_allowed(None, "backfill")
    decision = promote(cfg, "3", allow_promotion=allowed, blocked_reason=reason, evaluated_champion="1")
    assert decision.passed and not decision.promoted and decision.blocked_by == reason
    assert decision.reasons[-1] == f"not promoted: {reason}"
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "1"
    tags = registry.client().get_model_version("flights", "3").tags
    assert tags["validation_status"] == "passed" and tags["promotion_decision"] == "not_promoted"
    last = audit.history("flights")[-1]
    assert last["event"] == "not_promoted" and last["version"] == "3" and last["previous"] == "1"
    assert last["reasons"] == decision.reasons


@pytest.mark.parametrize("evaluated_champion", [None, "2"])
def test_promotion_is_blocked_when_the_champion_moved_since_evaluation(evaluated_three, cfg, evaluated_champion):
    """The evaluation compared against no champion / version 2, but version 1 holds the alias now."""
    decision = promote(cfg, "3", evaluated_champion=evaluated_champion, airflow_run_id="manual__x")
    assert decision.passed and not decision.promoted
    assert decision.blocked_by == f"the champion moved from {evaluated_champion} to 1 during this run: re-run it"
    assert decision.champion_version == "1"
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "1"
    assert registry.client().get_model_version("flights", "3").tags["promotion_decision"] == "not_promoted"
    last = audit.history("flights")[-1]
    assert (last["event"], last["version"], last["previous"]) == ("not_promoted", "3", "1")
    assert last["airflow_run_id"] == "manual__x"


@pytest.fixture(scope="module")
def champion_three(evaluated_three, cfg):
    decision = promote(cfg, "3", evaluated_champion=evaluated_three.champion_version)
    assert decision.promoted and decision.champion_version == "1"
    return decision


def test_champion_for_follows_promotions(champion_three):
    assert registry.champion_for("flights", AFTER_WINDOW).version == "3"
    # a day before the window ended: no promoted version qualifies, so the current alias
    assert registry.champion_for("flights", dt.date(2013, 1, 10)).version == "3"


# rollback


@pytest.fixture(scope="module")
def rolled_back(champion_three, cfg):
    return rollback(cfg, reason="bad calibration")


def test_rollback_to_the_previous_champion(rolled_back):
    assert rolled_back == "1"
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "1"
    assert registry.version_by_alias("flights", registry.PREVIOUS_CHAMPION).version == "3"
    c = registry.client()
    assert c.get_model_version("flights", "3").tags["revoked"] == "true"
    assert "revoked" not in c.get_model_version("flights", "1").tags
    assert "revoked" not in c.get_model_version("flights", "2").tags  # never promoted
    assert c.get_model_version("flights", "1").tags["restored_by_rollback_from"] == "3"
    last = audit.history("flights")[-1]
    assert last["event"] == "rollback" and last["version"] == "1" and last["previous"] == "3"
    assert "3" in last["revoked"] and last["reasons"] == ["bad calibration"] and last["triggered_by"] == "cli"
    assert registry.champion_for("flights", AFTER_WINDOW).version == "1"


def test_cli_rollback_to_an_explicit_version(rolled_back, capsys):
    assert main(["rollback", "flights", "--to-version", "3", "--reason", "calibration fixed"]) == 0
    assert capsys.readouterr().out.strip() == "flights: champion is now version 3"
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "3"
    assert registry.version_by_alias("flights", registry.PREVIOUS_CHAMPION).version == "1"
    assert "revoked" not in registry.client().get_model_version("flights", "3").tags
    assert registry.champion_for("flights", AFTER_WINDOW).version == "3"
    last = audit.history("flights")[-1]
    assert (last["event"], last["version"], last["previous"]) == ("rollback", "3", "1")
    assert last["reasons"] == ["calibration fixed"]


def test_rollback_audit_does_not_list_the_restored_version_as_revoked(rolled_back):
    entry = next(e for e in reversed(audit.history("flights")) if e["event"] == "rollback" and e["version"] == "1")
    assert entry["revoked"] == ["3"]


def test_rollback_never_revokes_older_versions(rolled_back):
    """After `mlops rollback flights --to-version 3` (the test above), version 1 is older than 3."""
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "3"
    assert "revoked" not in registry.client().get_model_version("flights", "1").tags


def test_cli_history_prints_the_audit_trail(rolled_back, capsys):
    assert main(["history", "flights", "--json"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    events = [json.loads(line) for line in lines]
    assert events == audit.history("flights")
    assert [(e["event"], e["version"]) for e in events] == [
        ("promoted", "1"),
        ("not_promoted", "3"),
        ("not_promoted", "3"),
        ("not_promoted", "3"),
        ("promoted", "3"),
        ("rollback", "1"),
        ("rollback", "3"),
    ]
    assert all(e["pipeline"] == "flights" and e["at"] for e in events)


def test_cli_history_is_a_table_a_person_reads(rolled_back, capsys):
    """One row per event under a header, reasons one a line under their column; no JSON."""
    assert main(["history", "flights"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[0].split() == ["at", "event", "version", "previous", "by", "reasons"]
    reasons_at = lines[0].index("reasons")
    events = audit.history("flights")
    rows = [line for line in lines[1:] if line[:reasons_at].strip()]
    assert len(rows) == len(events)
    for row, event in zip(rows, events, strict=True):
        at, time, kind, version = row.split()[:4]
        assert f"{at}T{time}".replace("Z", "+00:00") == event["at"]
        assert (kind, version) == (event["event"], event["version"])
        reasons = event["reasons"] + ([f"revoked: {', '.join(event['revoked'])}"] if event.get("revoked") else [])
        assert row[reasons_at:] == (reasons[0] if reasons else "-")
    continued = [line[reasons_at:] for line in lines[1:] if not line[:reasons_at].strip()]
    assert continued and all(line and not line.startswith(" ") for line in continued)
    assert not any(line.lstrip().startswith("{") for line in lines)


def test_rollback_refusals(rolled_back, cfg, assembled):
    other = cfg.model_copy(update={"name": "nomodel"})
    with pytest.raises(LookupError, match="no previous_champion"):
        rollback(other)
    with pytest.raises(LookupError, match="has no version 99"):
        rollback(cfg, "99")
    assert main(["history", "nomodel"]) == 0
