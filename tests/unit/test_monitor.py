"""Scoring into PostgreSQL and prediction monitoring, with a model trained once per module (real MLflow).

The model trains on 2013-01-01..2013-01-08 (3 days train, 2 calibration, 2 evaluation).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from mlops.core.config import Evaluation, Scoring
from mlops.core.interval import Interval
from mlops.core.modeling import model_input, predict_scores
from mlops.io import artifact_cache, lake, registry
from mlops.io.paths import cache_dir, monitoring_dir, predictions_dir, raw_dir
from mlops.io.sinks import COLUMNS
from mlops.stages import monitor
from mlops.stages.assemble import assemble
from mlops.stages.evaluate import evaluate
from mlops.stages.ingest import build_day, ingest, ingest_missing
from mlops.stages.monitor import EVALUATION_SCORES, GATING_ROWS, monitor_predictions, read_monitoring
from mlops.stages.recalibrate import recalibrate
from mlops.stages.score import SCORES_URL_ENV, score
from mlops.stages.train import train

WINDOW = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 8))
NORMAL = Interval.parse("2013-01-08")  # the day after the training window
SHIFTED = Interval.parse("2013-01-09")  # an upstream change lowercases every category code
SMALL = Interval.parse("2013-01-10")  # the same change on a day of only a few rows


def with_scoring(cfg, **changes):
    return cfg.model_copy(update={"scoring": cfg.scoring.model_copy(update=changes)})


@pytest.fixture(scope="module")
def cfg(small_cfg):
    """A quick training setup, scoring with wide positive-rate action limits."""
    training = small_cfg.training.model_copy(update={"window_days": 7, "calibration_days": 2, "evaluation_days": 2})
    return small_cfg.model_copy(
        update={
            "training": training,
            "evaluation": Evaluation(bootstrap_samples=0),
            "scoring": Scoring(predicted_positive_rate=(0.02, 0.98)),
        }
    )


@pytest.fixture(scope="module")
def model(module_home, cfg):
    """Version 1: trained, given a threshold and evaluated (its evaluation scores are the reference)."""
    ingest_missing(cfg, WINDOW)
    assembled = assemble(cfg, WINDOW)
    trained = train(cfg, assembled.key, WINDOW)
    recalibrate(cfg, assembled.key, WINDOW, trained.version)
    evaluation = evaluate(cfg, assembled.key, WINDOW, trained.version)
    return {"ref": registry.version(cfg.name, trained.version), "evaluation_rows": evaluation.rows}


@pytest.fixture(scope="module")
def scored(model, cfg):
    """The normal day, ingested and scored with version 1 (Parquet only)."""
    ingest(cfg, NORMAL)
    return score(cfg, NORMAL, model["ref"].version)


@pytest.fixture(scope="module")
def shifted(model, cfg):
    """A day whose category codes all arrive lowercased (unknown to the model), scored with version 1."""
    df = build_day(cfg, SHIFTED.start)
    df = df.assign(**{c: df[c].str.lower() for c in cfg.features.categorical})
    lake.write_partition(df, raw_dir(cfg.name), SHIFTED.key, {"pipeline": cfg.name, "lowercased": True})
    return score(cfg, SHIFTED, model["ref"].version)


def read_sql(url: str, table: str) -> pd.DataFrame:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(f"SELECT {', '.join(COLUMNS)} FROM {table} ORDER BY row_key", conn)
    finally:
        engine.dispose()


def assert_same_rows(sql: pd.DataFrame, parquet: pd.DataFrame) -> None:
    assert len(sql) == len(parquet)
    parquet = parquet.sort_values("row_key").reset_index(drop=True)
    sql = sql.astype({"predicted_label": "int8"})
    for column in ("data_interval_start", "data_interval_end", "scored_at"):
        sql[column] = sql[column].dt.tz_convert("UTC").astype(parquet[column].dtype)
    pd.testing.assert_frame_equal(sql, parquet, check_dtype=False)
    assert (sql.score.to_numpy() == parquet.score.to_numpy()).all()


# scoring into PostgreSQL


def test_score_writes_the_same_rows_to_parquet_and_postgresql(model, cfg, postgres_url, monkeypatch):
    table_cfg = with_scoring(cfg, table="scored_flights")
    monkeypatch.setenv(SCORES_URL_ENV, postgres_url)
    ingest(cfg, NORMAL)
    first = score(table_cfg, NORMAL, model["ref"].version, batch_rows=200)  # several batches
    parquet = lake.read_partition(predictions_dir(cfg.name), NORMAL.key)
    raw = lake.read_partition(raw_dir(cfg.name), NORMAL.key)
    assert parquet.row_key.tolist() == raw.row_key.tolist()  # batches predicted in parallel, written in order
    expected = predict_scores(registry.load_sklearn(model["ref"]), model_input(raw, cfg.features))
    assert (parquet.score.to_numpy() == expected).all()
    assert first.rows == first.sink_rows == len(parquet) > 200
    assert first.sink is not None and "scored_flights" in first.sink
    assert_same_rows(read_sql(postgres_url, "scored_flights"), parquet)

    monkeypatch.delenv(SCORES_URL_ENV)  # the re-run finds the URL in the config instead
    again = score(with_scoring(table_cfg, sink_url=postgres_url), NORMAL, model["ref"].version)
    stored = read_sql(postgres_url, "scored_flights")
    assert again.sink_rows == len(stored) == first.rows
    assert not stored.duplicated(["pipeline", "row_key", "data_interval_start"]).any()
    assert_same_rows(stored, lake.read_partition(predictions_dir(cfg.name), NORMAL.key))


# monitoring


def test_a_normal_day_passes_and_is_stored(scored, model, cfg):
    report = monitor_predictions(cfg, NORMAL)
    assert report.success and not report.failed
    assert [c["check"] for c in report.checks] == ["score_psi_vs_evaluation", "predicted_positive_rate"]
    day = report.days[NORMAL.key]
    assert day["model_version"] == model["ref"].version
    assert day["reference_rows"] == model["evaluation_rows"]  # the version's own evaluation scores
    assert day["score_psi"] < cfg.scoring.score_psi_error
    parquet = lake.read_partition(predictions_dir(cfg.name), NORMAL.key)
    assert day["rows"] == report.rows == len(parquet)
    assert day["predicted_positive_rate"] == pytest.approx(parquet.predicted_label.mean())
    assert sum(day["fractions"]) == pytest.approx(1.0)
    assert read_monitoring(cfg.name, NORMAL.key) == json.loads(json.dumps(report.to_dict(), default=str))


def test_a_predicted_positive_rate_outside_the_action_limits_is_an_error(scored, cfg):
    report = monitor_predictions(with_scoring(cfg, predicted_positive_rate=(0.9, 1.0)), NORMAL)
    assert not report.success
    assert [(c["check"], c["severity"]) for c in report.failed] == [("predicted_positive_rate", "error")]
    assert report.failed[0]["observed"] == round(scored.predicted_positive_rate, 4)
    assert "predicted_positive_rate on 2013-01-08 (version 1)" in report.summary()
    stored = read_monitoring(cfg.name, NORMAL.key)
    assert stored["success"] is False and stored["checks"][1]["expected"]["between"] == [0.9, 1.0]


def test_a_shifted_score_distribution_is_an_error(shifted, cfg):
    report = monitor_predictions(cfg, SHIFTED)
    assert [(c["check"], c["severity"]) for c in report.failed] == [("score_psi_vs_evaluation", "error")]
    assert report.failed[0]["observed"] > cfg.scoring.score_psi_error
    assert read_monitoring(cfg.name, SHIFTED.key)["success"] is False
    assert (monitoring_dir(cfg.name) / f"{NORMAL.key}.json").exists()  # other reports stay

    warn_only = monitor_predictions(with_scoring(cfg, score_psi_error=None), SHIFTED)
    assert warn_only.success
    assert [(c["check"], c["severity"]) for c in warn_only.warnings] == [("score_psi_vs_evaluation", "warning")]


def test_a_breach_on_a_day_of_few_rows_only_warns(model, cfg):
    df = build_day(cfg, SMALL.start).head(GATING_ROWS // 2)
    df = df.assign(**{c: df[c].str.lower() for c in cfg.features.categorical})
    lake.write_partition(df, raw_dir(cfg.name), SMALL.key, {"pipeline": cfg.name})
    score(cfg, SMALL, model["ref"].version)
    report = monitor_predictions(with_scoring(cfg, predicted_positive_rate=(0.9, 1.0)), SMALL)
    assert report.success
    assert {(c["check"], c["severity"]) for c in report.warnings} == {
        ("score_psi_vs_evaluation", "warning"),
        ("predicted_positive_rate", "warning"),
    }


def test_the_operators_score_then_fail_on_a_breach(scored, cfg, postgres_url, tmp_path, monkeypatch):
    from airflow.sdk.exceptions import AirflowFailException

    from mlops.airflow.operators.data import MonitorOperator, ScoreOperator

    breached = with_scoring(
        cfg, predicted_positive_rate=(0.9, 1.0), sink_conn_id="mlops_scores", table="operator_scores"
    )
    (tmp_path / "flights.yaml").write_text(yaml.safe_dump(breached.model_dump(mode="json")))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_MLOPS_SCORES", postgres_url.replace("postgresql+psycopg2://", "postgresql://"))
    context = {"params": {"model_version": "1", "start": "2013-01-08", "end": "2013-01-09"}, "run_id": "test"}
    written = ScoreOperator(task_id="score", pipeline="flights").execute(context)
    parquet = lake.read_partition(predictions_dir(cfg.name), NORMAL.key)
    assert written["rows"] == written["sink_rows"] == len(parquet)
    assert_same_rows(read_sql(postgres_url, "operator_scores"), parquet)  # through the Airflow connection
    with pytest.raises(AirflowFailException, match=r"predicted_positive_rate on 2013-01-08 .*observed 0\.\d+"):
        MonitorOperator(task_id="monitor", pipeline="flights").execute(context)
    assert read_monitoring(cfg.name, NORMAL.key)["success"] is False
    assert_same_rows(read_sql(postgres_url, "operator_scores"), parquet)  # monitoring does not undo scoring


# the evaluation scores, downloaded once per MLOPS_HOME (io.artifact_cache)


def stable(report) -> dict:
    """A monitoring report as stored, without its time stamp."""
    return {k: v for k, v in json.loads(json.dumps(report.to_dict(), default=str)).items() if k != "monitored_at"}


CHILD = """
import json, sys
from mlops.core.config import load_pipeline
from mlops.core.interval import Interval
from mlops.stages.monitor import monitor_predictions
report = monitor_predictions(load_pipeline("flights"), Interval.parse(sys.argv[1]))
print(json.dumps({"report": report.to_dict(), "mlflow": sorted(m for m in sys.modules if m.split(".")[0] == "mlflow")},
                 default=str))
"""


def test_a_new_process_reads_the_kept_scores_without_mlflow(scored, model, cfg, module_home, tmp_path):
    """The first task downloads the version's evaluation scores; the next (a new process) asks MLflow nothing."""
    shutil.rmtree(cache_dir(), ignore_errors=True)
    monitor._SCORES.clear()  # as in a new process
    first = monitor_predictions(cfg, NORMAL)
    copy = artifact_cache.cached(cfg.name, model["ref"].version, EVALUATION_SCORES)
    assert copy is not None and list((cache_dir() / artifact_cache.FOLDER).rglob("*.parquet")) == [copy]
    assert first.days[NORMAL.key]["reference_rows"] == model["evaluation_rows"]

    (tmp_path / "flights.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    store, away = module_home / "mlflow", tmp_path / "mlflow-away"
    store.rename(away)  # MLflow's database and artifacts: any MLflow call would now fail or find nothing
    try:
        env = os.environ | {"MLOPS_HOME": str(module_home), "MLOPS_CONFIG_DIR": str(tmp_path)}
        proc = subprocess.run([sys.executable, "-c", CHILD, NORMAL.key], env=env, capture_output=True, text=True)
    finally:
        shutil.rmtree(store, ignore_errors=True)  # an empty folder the child's tracking URI made
        away.rename(store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(proc.stdout.strip().splitlines()[-1])
    assert child["mlflow"] == []  # not even imported
    assert {k: v for k, v in child["report"].items() if k != "monitored_at"} == stable(first)


@pytest.mark.parametrize("damage", ["truncated", "one byte changed"])
def test_a_damaged_copy_is_found_and_fetched_again(scored, model, cfg, damage):
    monitor_predictions(cfg, NORMAL)
    expected = stable(monitor_predictions(cfg, NORMAL))
    copy = artifact_cache.cached(cfg.name, model["ref"].version, EVALUATION_SCORES)
    good = copy.read_bytes()
    middle = len(good) // 2
    bad = good[:middle] if damage == "truncated" else good[:middle] + bytes([good[middle] ^ 0xFF]) + good[middle + 1 :]
    copy.write_bytes(bad)
    assert artifact_cache.cached(cfg.name, model["ref"].version, EVALUATION_SCORES) is None  # found...
    assert not copy.exists()  # ...and removed

    copy.write_bytes(bad)
    monitor._SCORES.clear()  # as in a new process
    assert stable(monitor_predictions(cfg, NORMAL)) == expected  # the stage fetched the scores again
    assert copy.read_bytes() == good


def test_tasks_fetching_at_once_keep_one_whole_copy(scored, model, cfg):
    shutil.rmtree(cache_dir(), ignore_errors=True)
    version = model["ref"].version
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: artifact_cache.fetch(cfg.name, version, EVALUATION_SCORES), range(4)))
    assert len(set(paths)) == 1
    assert [p.name for p in artifact_cache.folder(cfg.name, version, EVALUATION_SCORES).iterdir()] == [paths[0].name]


def test_an_artifact_the_version_lacks_is_not_remembered(model, cfg):
    missing = "evaluation/not_logged.parquet"
    assert artifact_cache.fetch(cfg.name, model["ref"].version, missing) is None
    assert not artifact_cache.folder(cfg.name, model["ref"].version, missing).exists()
    with pytest.raises(LookupError):
        artifact_cache.fetch(cfg.name, "99", EVALUATION_SCORES)


# the version's model folder, downloaded once per MLOPS_HOME and loaded once per process (registry.load_sklearn)

MODEL_CHILD = """
import json, sys
import pandas as pd
from mlops.core.modeling import predict_scores
from mlops.io import registry
model = registry.load_sklearn(registry.VersionRef(sys.argv[1], sys.argv[2], "no-run", None))
X = pd.read_parquet(sys.argv[3])
print(json.dumps(predict_scores(model, X).tolist()))
"""


def fresh_model_cache():
    shutil.rmtree(cache_dir(), ignore_errors=True)
    registry._MODELS.clear()
    registry.client()  # points MLflow's fluent API (the oracle's load_model) at this home's store


def test_the_model_is_downloaded_once_and_loaded_once_per_process(scored, model, cfg, module_home, tmp_path):
    import mlflow.sklearn

    fresh_model_cache()
    ref = model["ref"]
    X = model_input(lake.read_partition(raw_dir(cfg.name), NORMAL.key), cfg.features)
    expected = predict_scores(mlflow.sklearn.load_model(ref.uri), X)  # MLflow's own load, the oracle
    loaded = registry.load_sklearn(ref)
    assert registry.load_sklearn(ref) is loaded  # once per process
    folder = artifact_cache.cached_model(cfg.name, ref.version)
    assert folder is not None and (folder / "MLmodel").is_file()
    assert (predict_scores(loaded, X) == expected).all()

    X.to_parquet(tmp_path / "X.parquet")
    store, away = module_home / "mlflow", tmp_path / "mlflow-away"
    store.rename(away)  # a new process finds the kept folder and asks MLflow nothing
    try:
        env = os.environ | {"MLOPS_HOME": str(module_home)}
        args = [cfg.name, ref.version, str(tmp_path / "X.parquet")]
        proc = subprocess.run([sys.executable, "-c", MODEL_CHILD, *args], env=env, capture_output=True, text=True)
    finally:
        shutil.rmtree(store, ignore_errors=True)
        away.rename(store)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == expected.tolist()


@pytest.mark.parametrize("damage", ["model pickle changed", "manifest changed", "file removed"])
def test_a_damaged_model_folder_is_found_removed_and_fetched_again(scored, model, cfg, damage):
    fresh_model_cache()
    ref = model["ref"]
    folder = artifact_cache.fetch_model(cfg.name, ref.version)
    pickle_name = next(p.name for p in folder.iterdir() if p.suffix == ".pkl")
    if damage == "model pickle changed":
        data = (folder / pickle_name).read_bytes()
        (folder / pickle_name).write_bytes(data[:-1] + bytes([data[-1] ^ 0xFF]))
    elif damage == "manifest changed":
        (folder / artifact_cache.MANIFEST).write_text("{}")
    else:
        (folder / "MLmodel").unlink()
    assert artifact_cache.cached_model(cfg.name, ref.version) is None
    assert not folder.exists()
    X = model_input(lake.read_partition(raw_dir(cfg.name), NORMAL.key), cfg.features)
    import mlflow.sklearn

    expected = predict_scores(mlflow.sklearn.load_model(ref.uri), X)
    assert (predict_scores(registry.load_sklearn(ref), X) == expected).all()  # fetched again, whole
    assert artifact_cache.cached_model(cfg.name, ref.version) == folder


def test_tasks_fetching_a_model_at_once_keep_one_whole_folder(scored, model, cfg):
    fresh_model_cache()
    version = model["ref"].version
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: artifact_cache.fetch_model(cfg.name, version), range(4)))
    assert len(set(paths)) == 1
    kept = artifact_cache.folder(cfg.name, version, artifact_cache.MODEL)
    assert [p.name for p in kept.iterdir()] == [paths[0].name]  # no download folder left behind
    with pytest.raises(LookupError):
        artifact_cache.fetch_model(cfg.name, "99")


def test_a_process_reads_the_scores_once_and_profiles_them_once(scored, model, cfg):
    from mlops.core.drift import profile
    from mlops.stages.monitor import evaluation_scores, score_profile

    monitor._SCORES.clear()
    first = evaluation_scores(cfg.name, model["ref"].version)
    assert evaluation_scores(cfg.name, model["ref"].version) is first
    assert not first.flags.writeable and len(first) == model["evaluation_rows"]
    with pytest.raises(ValueError):
        first[0] = 0.5  # shared: read-only
    expected = profile(pd.DataFrame({"score": first.copy()}), [], ["score"])["numeric"]["score"]
    assert score_profile(first) == expected
    assert score_profile(first) is score_profile(first.copy())  # by identity, then by content
    other = first.copy()
    other[0] = 1.0 - other[0]
    assert score_profile(other) == profile(pd.DataFrame({"score": other}), [], ["score"])["numeric"]["score"]
