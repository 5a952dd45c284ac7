"""The model stages with real MLflow (SQLite under MLOPS_HOME): assemble, train, recalibrate, evaluate,
promote, rollback, score. Two models are trained once per module on 2013-01-01..2013-01-22."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from mlops.core.config import Gate, Promotion
from mlops.core.features import labels
from mlops.core.interval import Interval
from mlops.core.metrics import OVERALL
from mlops.core.modeling import model_input, predict_scores
from mlops.core.splits import split_frame, split_window, window_rows
from mlops.io import audit, lake, paths, registry
from mlops.io.datasets import read_training_set
from mlops.io.paths import predictions_dir, raw_dir, training_dir
from mlops.io.registry import load_reference
from mlops.stages.assemble import assemble
from mlops.stages.evaluate import SLICE_COLUMNS, evaluate
from mlops.stages.ingest import build_day, ingest, ingest_missing
from mlops.stages.promote import promote, rollback
from mlops.stages.recalibrate import choose_threshold, recalibrate
from mlops.stages.score import PREDICTION_COLUMNS, score
from mlops.stages.train import train
from mlops.stages.validate import validate

WINDOW = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 22))
BROKEN_DAY = dt.date(2013, 1, 3)  # in the train split
PASSING_DAY = dt.date(2013, 1, 4)


def with_gates(cfg, *gates):
    return cfg.model_copy(update={"promotion": Promotion(gates=list(gates))})


def download(run_id, path, tmp_path):
    registry.client()
    import mlflow.artifacts

    return mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=path, dst_path=str(tmp_path))


@pytest.fixture(scope="module")
def store(module_home):
    """This module's own MLflow store under module_home (the store follows MLOPS_HOME)."""
    return module_home / "mlflow"


@pytest.fixture(scope="module")
def assembled(store, small_cfg):
    """The window assembled after one day failed its daily validation (a broken origin) and one passed."""
    broken = build_day(small_cfg, BROKEN_DAY)
    broken.loc[broken.index[:30], "origin"] = "XXX"
    lake.write_partition(broken, raw_dir("flights"), BROKEN_DAY.isoformat(), {"pipeline": "flights", "broken": True})
    failed = validate(small_cfg, Interval(BROKEN_DAY, BROKEN_DAY + dt.timedelta(days=1)), references={})
    ingest(small_cfg, Interval(PASSING_DAY, PASSING_DAY + dt.timedelta(days=1)))
    passed = validate(small_cfg, Interval(PASSING_DAY, PASSING_DAY + dt.timedelta(days=1)), references={})
    assert not failed.success and passed.success
    ingest_missing(small_cfg, WINDOW)
    return assemble(small_cfg, WINDOW)


@pytest.fixture(scope="module")
def first(assembled, small_cfg):
    """Version 1: trained, recalibrated, evaluated (no champion yet)."""
    trained = train(small_cfg, assembled.key, WINDOW)
    choice = recalibrate(small_cfg, assembled.key, WINDOW, trained.version)
    evaluation = evaluate(small_cfg, assembled.key, WINDOW, trained.version)
    return {"train": trained, "threshold": choice, "evaluation": evaluation}


@pytest.fixture(scope="module")
def first_promoted(first, small_cfg):
    decision = promote(small_cfg, first["train"].version, evaluated_champion=first["evaluation"].champion_version)
    return {"decision": decision, "champion": registry.version_by_alias("flights", registry.CHAMPION)}


@pytest.fixture(scope="module")
def second(first_promoted, assembled, small_cfg):
    """Version 2: the same training forced again, recalibrated and evaluated against champion v1."""
    trained = train(small_cfg, assembled.key, WINDOW, force=True)
    recalibrate(small_cfg, assembled.key, WINDOW, trained.version)
    evaluation = evaluate(small_cfg, assembled.key, WINDOW, trained.version)
    return {"train": trained, "evaluation": evaluation}


# assemble


def test_assemble_ingests_missing_days_and_excludes_failed_ones(assembled):
    days = [d.isoformat() for d in WINDOW.days()]
    assert lake.list_partitions(raw_dir("flights")) == days
    assert assembled.key == "2013-01-01..2013-01-22"
    assert list(assembled.excluded) == [BROKEN_DAY.isoformat()]
    assert "failed daily validation" in assembled.excluded[BROKEN_DAY.isoformat()]
    assert assembled.days == [d for d in days if d != BROKEN_DAY.isoformat()]
    assert PASSING_DAY.isoformat() in assembled.days


def test_training_set_holds_exactly_the_kept_days(assembled):
    df = read_training_set("flights", assembled.key)
    assert len(df) == assembled.rows
    kept = sum(lake.read_manifest(raw_dir("flights"), d)["row_count"] for d in assembled.days)
    assert len(df) == kept
    dates = set(df["flight_date"].dt.date)
    assert BROKEN_DAY not in dates and len(dates) == len(WINDOW.days()) - 1
    assert "XXX" not in set(df["origin"])
    manifest = lake.read_manifest(training_dir("flights"), assembled.key)
    assert manifest["excluded"] == assembled.excluded
    assert manifest["content_digest"] == assembled.content_digest == lake.content_digest(df)


def test_assemble_refuses_a_window_without_valid_days(module_home, small_cfg, assembled):
    one_day = Interval(BROKEN_DAY, BROKEN_DAY + dt.timedelta(days=1))
    with pytest.raises(ValueError, match="no day that passed validation"):
        assemble(small_cfg, one_day)


# train


def test_train_registers_version_one_as_challenger(first, small_cfg):
    trained = first["train"]
    assert trained.version == "1" and not trained.skipped
    c = registry.client()
    assert str(c.get_model_version_by_alias("flights", registry.CHALLENGER).version) == "1"
    tags = c.get_model_version("flights", "1").tags
    assert tags["config_digest"] == small_cfg.digest
    assert tags["training_window"] == WINDOW.key
    run = c.get_run(trained.run_id)
    assert run.data.tags["config_digest"] == small_cfg.digest
    assert run.data.tags["training_window"] == WINDOW.key
    assert json.loads(run.data.tags["split"]) == {
        "train": "2013-01-01..2013-01-08",
        "calibration": "2013-01-08..2013-01-15",
        "evaluation": "2013-01-15..2013-01-22",
    }
    assert run.data.metrics["train_rows"] == trained.metrics["train_rows"] > 0
    assert 0.5 < run.data.metrics["evaluation_roc_auc"] < 1


def test_the_version_holds_its_tags_metrics_and_run(first, small_cfg):
    """The version names the train run and its logged model; the run's metrics (the fit's seconds
    included) are each logged once, linked to that model, so the model's page shows them too."""
    trained = first["train"]
    c = registry.client()
    mv = c.get_model_version("flights", trained.version)
    assert mv.run_id == trained.run_id
    assert mv.tags["fingerprint"] == trained.fingerprint and mv.tags["data_validation_status"] == "passed"
    assert mv.source.startswith("models:/")  # the logged model (the SQLite store leaves mv.model_id empty)
    model = c.get_logged_model(mv.source.removeprefix("models:/"))
    assert model.source_run_id == trained.run_id
    assert model.tags["training_window"] == WINDOW.key
    run_metrics = c.get_run(trained.run_id).data.metrics
    assert registry.FIT_SECONDS in run_metrics and "evaluation_roc_auc" in run_metrics
    assert run_metrics[registry.FIT_CPU_SECONDS] > 0  # the feature audit's T, in CPU seconds
    linked = {m.key: m.value for m in model.metrics}  # later stages log more to the run, not to the model
    assert linked == {k: run_metrics[k] for k in {**trained.metrics, **trained.seconds}}
    for key in ("evaluation_roc_auc", registry.FIT_SECONDS):
        history = c.get_metric_history(trained.run_id, key)
        assert len(history) == 1  # once: not logged to the run, then again by `log_model` to link it


def test_train_logs_dataset_inputs_and_the_reference_profile(first, small_cfg, assembled):
    run = registry.client().get_run(first["train"].run_id)
    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 3
    contexts = {t.value for i in inputs for t in i.tags if t.key == "mlflow.data.context"}
    assert contexts == {"train", "calibration", "evaluation"}
    assert {i.dataset.name for i in inputs} >= {"flights-train-2013-01-01..2013-01-08"}
    for i in inputs:  # the lake's content digest, and the schema MLflow itself infers from the rows
        context = next(t.value for t in i.tags if t.key == "mlflow.data.context")
        assert i.dataset.digest == run.data.tags[f"lake_digest.{context}"]
        schema = {c["name"]: c for c in json.loads(i.dataset.schema)["mlflow_colspec"]}
        assert schema["row_key"] == {"type": "string", "name": "row_key", "required": True}
        assert schema["arr_delay"] == {"type": "double", "name": "arr_delay", "required": True}  # labelled rows
        assert schema["wind_gust"] == {"type": "double", "name": "wind_gust", "required": False}  # mostly missing

    reference = load_reference(small_cfg.name, first["train"].version)
    days = split_window(small_cfg, WINDOW).train
    train_rows = window_rows(read_training_set("flights", assembled.key), small_cfg, days)
    labelled = split_frame(read_training_set("flights", assembled.key), small_cfg, days)
    assert len(labelled) == first["train"].metrics["train_rows"] < len(train_rows)  # January has cancellations
    assert reference["rows"] == len(train_rows)  # every row of the train days, as days are validated
    assert reference["population"] == f"all rows of {days.key}, labelled or not"
    assert set(reference["numeric"]) == set(small_cfg.features.numeric)
    assert set(reference["categorical"]) == set(small_cfg.features.categorical)


def test_unchanged_training_is_skipped(first, small_cfg, assembled):
    again = train(small_cfg, assembled.key, WINDOW)
    assert again.skipped
    assert again.fingerprint == first["train"].fingerprint
    assert registry.version("flights", again.version).run_id == again.run_id


# recalibrate


def test_recalibrate_sets_threshold_tags(first, small_cfg, assembled):
    choice = first["threshold"]
    tags = registry.client().get_model_version("flights", "1").tags
    assert float(tags["threshold"]) == choice.threshold
    assert tags["threshold_policy"] == "max_f1" == choice.policy
    assert registry.version("flights", "1").threshold == choice.threshold
    # the same choice, recomputed from the registered model on the calibration rows
    part = split_frame(
        read_training_set("flights", assembled.key), small_cfg, split_window(small_cfg, WINDOW).calibration
    )
    model = registry.load_sklearn(registry.version("flights", "1"))
    scores = predict_scores(model, model_input(part, small_cfg.features))
    again = choose_threshold(labels(part, small_cfg.target).to_numpy(), scores, small_cfg.threshold)
    assert again.threshold == choice.threshold and again.rows == choice.rows == len(part)


# evaluate


def test_evaluate_logs_slice_metrics_and_predictions(first, small_cfg, tmp_path):
    run_id = first["train"].run_id
    metrics = pd.read_csv(download(run_id, "evaluation/slice_metrics.csv", tmp_path))
    predictions = pd.read_parquet(download(run_id, "evaluation/eval_predictions.parquet", tmp_path))
    assert list(metrics.columns) == SLICE_COLUMNS
    assert list(predictions.columns) == [
        "row_key",
        *small_cfg.slice_columns,
        "label",
        "challenger_score",
        "champion_score",
    ]
    evaluation = first["evaluation"]
    assert evaluation.champion_version is None
    assert len(predictions) == evaluation.rows and predictions.row_key.is_unique
    assert predictions.champion_score.isna().all()
    assert set(predictions.label) == {0, 1}
    assert (predictions.row_key.str[:10] >= "2013-01-15").all()  # the evaluation split only
    overall = metrics[(metrics.slice_feature == OVERALL) & (metrics.model == "challenger")].set_index("metric")
    assert overall.loc["roc_auc", "n"] == len(predictions)
    assert overall.loc["roc_auc", "value"] == pytest.approx(evaluation.overall["challenger"]["roc_auc"])
    assert set(metrics.model) == {"challenger"}
    logged = registry.client().get_run(run_id).data.metrics
    assert logged["eval_challenger_roc_auc"] == pytest.approx(overall.loc["roc_auc", "value"])


def test_evaluate_against_the_champion_uses_the_same_rows(first, second, tmp_path):
    assert second["evaluation"].champion_version == "1"
    predictions = pd.read_parquet(download(second["train"].run_id, "evaluation/eval_predictions.parquet", tmp_path))
    first_predictions = pd.read_parquet(
        download(first["train"].run_id, "evaluation/eval_predictions.parquet", tmp_path / "v1")
    )
    assert predictions.champion_score.notna().all()
    assert predictions.row_key.tolist() == first_predictions.row_key.tolist()
    np.testing.assert_allclose(predictions.champion_score, first_predictions.challenger_score)
    overall = second["evaluation"].overall
    assert overall["champion"]["roc_auc"] == pytest.approx(first["evaluation"].overall["challenger"]["roc_auc"])


# promote and roll back


def test_first_promotion_makes_the_champion(first, first_promoted):
    decision = first_promoted["decision"]
    assert decision.promoted and decision.passed and decision.champion_version is None
    assert first_promoted["champion"].version == "1"
    assert registry.client().get_model_version("flights", "1").tags["promotion_decision"] == "promoted"
    events = [e for e in audit.history("flights") if e["event"] == "promoted"]
    assert events[0]["version"] == "1" and events[0]["previous"] is None


def test_too_small_an_improvement_is_rejected(second, small_cfg):
    cfg = with_gates(small_cfg, Gate(metric="roc_auc", min_improvement=0.05))
    decision = promote(cfg, second["train"].version, evaluated_champion="1")
    assert not decision.promoted and not decision.passed
    assert any("roc_auc_min_improvement" in r for r in decision.reasons)
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "1"
    assert registry.client().get_model_version("flights", "2").tags["promotion_decision"] == "rejected"
    last = audit.history("flights")[-1]
    assert last["event"] == "rejected" and last["version"] == "2" and last["previous"] == "1"
    assert last["reasons"] == decision.reasons


def test_a_high_min_value_is_rejected(second, small_cfg):
    cfg = with_gates(small_cfg, Gate(metric="roc_auc", min_value=0.99))
    decision = promote(cfg, second["train"].version, evaluated_champion="1")
    assert not decision.promoted
    failed = [c for c in decision.checks if not c.passed]
    assert [c.name for c in failed] == ["roc_auc_min_value"]
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "1"
    assert audit.history("flights")[-1]["event"] == "rejected"


def test_rollback_restores_the_previous_champion(second, small_cfg):
    lenient = with_gates(small_cfg, Gate(metric="roc_auc", min_value=0.5))
    decision = promote(lenient, second["train"].version, evaluated_champion="1")
    assert decision.promoted
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "2"
    assert registry.version_by_alias("flights", registry.PREVIOUS_CHAMPION).version == "1"

    restored = rollback(small_cfg, reason="test rollback")
    assert restored == "1"
    assert registry.version_by_alias("flights", registry.CHAMPION).version == "1"
    assert registry.version_by_alias("flights", registry.PREVIOUS_CHAMPION).version == "2"
    last = audit.history("flights")[-1]
    assert last["event"] == "rollback" and last["version"] == "1" and last["previous"] == "2"
    assert last["reasons"] == ["test rollback"]


# score


def test_score_writes_one_prediction_per_row(first_promoted, small_cfg):
    target = Interval.parse("2013-01-22")
    ingest(small_cfg, target)
    champion = registry.version_by_alias("flights", registry.CHAMPION)
    result = score(small_cfg, target)
    raw = lake.read_partition(raw_dir("flights"), "2013-01-22")
    scored = lake.read_partition(predictions_dir("flights"), "2013-01-22")
    assert list(scored.columns) == PREDICTION_COLUMNS
    assert len(scored) == len(raw) == result.rows
    assert sorted(scored.row_key) == sorted(raw.row_key)
    assert set(scored.model_version) == {champion.version} == {result.model_version}
    assert set(scored.threshold) == {champion.threshold}
    assert set(scored.mlflow_run_id) == {champion.run_id}
    assert ((scored.score >= scored.threshold).astype("int8") == scored.predicted_label).all()
    assert (scored.data_interval_start == pd.Timestamp("2013-01-22", tz="UTC")).all()
    assert (scored.data_interval_end == pd.Timestamp("2013-01-23", tz="UTC")).all()
    assert result.predicted_positive_rate == pytest.approx(scored.predicted_label.mean())

    again = score(small_cfg, target)
    assert again.rows == result.rows
    assert [p for p in lake.list_partitions(predictions_dir("flights")) if p == "2013-01-22"] == ["2013-01-22"]
    assert len(lake.read_partition(predictions_dir("flights"), "2013-01-22")) == len(raw)
    assert sorted(p.name for p in predictions_dir("flights").iterdir()) == ["2013-01-22.parquet"]


def test_score_without_a_champion_raises(small_cfg, assembled):
    other = small_cfg.model_copy(update={"name": "nochampion"})
    with pytest.raises(LookupError, match="'nochampion' has no champion"):
        score(other, Interval.parse("2013-01-22"))


def test_tracking_store_follows_mlops_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # restore whatever was there after the test
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "first"))
    registry.client()
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "second"))
    assert str(tmp_path / "second") in paths.mlflow_tracking_uri()
