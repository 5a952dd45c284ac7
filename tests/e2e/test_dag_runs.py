"""End to end: the real DAGs run with dag.test() on the real data, a real MLflow store and a real SMTP server."""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.parse
from pathlib import Path

import mlflow.artifacts
import pandas as pd
import pytest

from mlops.airflow import environment as airflow_env
from mlops.core.interval import Interval
from mlops.io import lake, outcome_runs, registry
from mlops.io.paths import outcomes_dir, predictions_dir, raw_dir
from mlops.local import runs
from mlops.local.mailsink import MailSink, body_text
from mlops.stages.ingest import build_day
from mlops.stages.score import PREDICTION_COLUMNS

pytestmark = pytest.mark.e2e
FIRST_WINDOW = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 22))


@pytest.fixture(scope="module")
def mail(module_home):
    """A real SMTP server on loopback for the whole module, as Airflow's smtp_default connection."""
    with MailSink() as sink:
        os.environ["AIRFLOW_CONN_SMTP_DEFAULT"] = airflow_env.smtp_connection(sink.host, sink.port)
        yield sink
        os.environ.pop("AIRFLOW_CONN_SMTP_DEFAULT", None)


@pytest.fixture(scope="module")
def first_model(module_home, airflow_db, mail):
    """The retrain DAG run once on a 21-day January window (7 train, 7 calibration, 7 evaluation days)."""
    conf = {"window_start": FIRST_WINDOW.start.isoformat(), "window_end": FIRST_WINDOW.end.isoformat()}
    return runs.run("flights_retrain", FIRST_WINDOW, conf)


def test_retrain_registers_a_champion_with_threshold_and_slice_metrics(first_model):
    assert first_model.succeeded, first_model.tasks
    assert set(first_model.tasks.values()) == {"success"}
    champion = registry.version_by_alias("flights", "champion")
    assert champion is not None and champion.version == first_model.xcoms["train"]["version"]
    assert 0 < champion.threshold < 1
    tags = registry.client().get_model_version("flights", champion.version).tags
    assert tags["threshold_policy"] == "max_f1"
    assert tags["promotion_decision"] == "promoted"

    run_id = first_model.xcoms["train"]["run_id"]
    metrics = pd.read_csv(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/slice_metrics.csv")
    )
    assert list(metrics.columns) == [
        "slice_feature",
        "slice_value",
        "model",
        "metric",
        "value",
        "n",
        "ci_low",
        "ci_high",
        "status",
        "interval_method",
        "resamples",
        "undefined_resamples",
    ]
    overall = metrics[(metrics.slice_feature == "overall") & (metrics.model == "challenger")].set_index("metric")
    assert {"roc_auc", "pr_auc", "precision", "recall"} <= set(overall.index)
    assert overall.loc["roc_auc", "value"] > 0.55
    assert {"carrier", "origin", "hour_band", "origin x hour_band"} <= set(metrics.slice_feature)
    assert "JFK x evening" in set(metrics.slice_value)
    assert (overall.ci_low <= overall.value).all() and (overall.value <= overall.ci_high).all()
    artifacts = {a.path for a in registry.client().list_artifacts(run_id, "evaluation/plots")}
    assert {"evaluation/plots/roc_pr_calibration.png", "evaluation/plots/metric_vs_threshold.png"} <= artifacts
    promotion = {a.path for a in registry.client().list_artifacts(run_id, "promotion")}
    assert promotion == {"promotion/gate_report.json", "promotion/report.html"}
    page = mlflow.artifacts.load_text(f"runs:/{run_id}/promotion/report.html")
    assert "PROMOTED" in page and all(
        reason.split(" [")[0] in page for reason in first_model.xcoms["promote"]["reasons"]
    )
    where = stored_xcom(first_model, "promote", "promotion_report")  # what the "Promotion report" link opens
    assert where == {
        "experiment_id": registry.experiment_id("flights"),
        "run_id": run_id,
        "path": "promotion/report.html",
    }
    assert tags["validation_status"] == "passed"

    predictions = pd.read_parquet(
        mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/eval_predictions.parquet")
    )
    assert {"row_key", "carrier", "origin", "hour_band", "label", "challenger_score", "champion_score"} <= set(
        predictions.columns
    )
    assert len(predictions) == overall.loc["roc_auc", "n"]


def stored_xcom(outcome, task_id: str, key: str):
    """An XCom a task pushed under `key` (not its return value), read from Airflow's database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        query = XComModel.get_many(run_id=outcome.run_id, key=key, task_ids=task_id, dag_ids=outcome.dag_id)
        row = session.scalars(query).first()
        return XComModel.deserialize_value(row) if row is not None else None


def test_daily_run_scores_every_row_stamped_with_model_and_interval(first_model):
    target = Interval.parse("2013-01-22")
    outcome = runs.run("flights_daily", target)
    assert outcome.succeeded, outcome.tasks
    champion = registry.version_by_alias("flights", "champion")
    scored = lake.read_partition(predictions_dir("flights"), "2013-01-22")
    raw = lake.read_partition(raw_dir("flights"), "2013-01-22")
    assert list(scored.columns) == PREDICTION_COLUMNS
    assert len(scored) == len(raw) and scored.row_key.is_unique
    assert set(scored.model_version) == {champion.version} and set(scored.threshold) == {champion.threshold}
    assert (scored.data_interval_start == pd.Timestamp("2013-01-22", tz="UTC")).all()
    assert (scored.data_interval_end == pd.Timestamp("2013-01-23", tz="UTC")).all()
    assert ((scored.score >= scored.threshold).astype("int8") == scored.predicted_label).all()

    again = runs.run("flights_daily", target)
    assert again.succeeded
    assert lake.list_partitions(predictions_dir("flights")).count("2013-01-22") == 1
    assert len(lake.read_partition(predictions_dir("flights"), "2013-01-22")) == len(raw)
    assert lake.read_manifest(raw_dir("flights"), "2013-01-22")["content_digest"] == lake.content_digest(raw)


def test_outcomes_run_evaluates_the_day_scored_delay_days_before(first_model):
    """flights_outcomes for 2013-01-23 (labels.delay_days 1) evaluates 2013-01-22, scored by the daily run above."""
    outcome = runs.run("flights_outcomes", Interval.parse("2013-01-23"))
    assert outcome.succeeded, outcome.tasks
    [summary] = outcome.xcoms["outcomes"]
    assert summary["day"] == "2013-01-22" and summary["status"] in ("complete", "partial")
    counts = summary["counts"]
    assert counts["predictions"] == len(lake.read_partition(raw_dir("flights"), "2013-01-22"))
    assert counts["labelled"] + counts["missing"] + counts["unknown"] == counts["predictions"]
    assert counts["unmatched"] == 0
    rows = lake.read_partition(outcomes_dir("flights"), "2013-01-22")
    assert {
        "day",
        "model_version",
        "slice_feature",
        "slice_value",
        "metric",
        "kind",
        "value",
        "ci_low",
        "ci_high",
        "n",
    } <= set(rows.columns)
    champion = registry.version_by_alias("flights", "champion")
    assert set(rows.model_version) == {champion.version} and set(rows.kind) == {"realized", "estimated"}
    overall = rows[(rows.slice_feature == "overall") & (rows.metric == "roc_auc")].set_index("kind")
    assert 0.5 < overall.loc["realized", "value"] < 1 and 0.5 < overall.loc["estimated", "value"] < 1
    assert overall.loc["realized", "n"] == counts["labelled"]
    assert {"carrier", "origin x hour_band"} <= set(rows.slice_feature)
    run = registry.client().get_run(summary["mlflow"]["run_id"])
    assert run.data.tags["month"] == "2013-01" and "realized/roc_auc/overall" in run.data.metrics


def _crafted_decay(day: str, version: str) -> pd.DataFrame:
    """A scored day's outcomes as a decayed model would give them: realized ROC AUC 0.52 [0.48, 0.56], 800 rows."""
    row = {"day": day, "model_version": version, "slice_feature": "overall", "slice_value": "overall"}
    numbers = {"value": 0.52, "ci_low": 0.48, "ci_high": 0.56, "n": 800, "status": "ok"}
    extra = {"interval_method": "bootstrap", "estimate_error": float("nan")}
    return pd.DataFrame([{**row, "metric": "roc_auc", "kind": "realized", **numbers, **extra}])


def test_sustained_decay_emits_the_degraded_event_once_and_mails_the_alert(first_model, mail):
    """Crafted outcomes of 18-21 January below the floor (and 0.05 under the evaluation value): with the
    real 22 January, 4 of the last 5 scored days breach (monitoring.persistence 3 of 5), so flights_outcomes
    for 2013-01-23 emits an event on flights_degraded and its alerts task mails; a second run within
    retrain.min_days_between emits none (rate limit, judged from the audit trail)."""
    from mlops.io import audit

    version = registry.version_by_alias("flights", "champion").version
    for day in ("2013-01-18", "2013-01-19", "2013-01-20", "2013-01-21"):
        lake.write_partition(_crafted_decay(day, version), outcomes_dir("flights"), day, {"pipeline": "flights"})
    sent_before = len(mail.messages)

    outcome = runs.run("flights_outcomes", Interval.parse("2013-01-23"))

    assert outcome.tasks == {"outcomes": "success", "alerts": "failed"}
    [summary] = outcome.xcoms["outcomes"]
    judgement = summary["judgement"]
    assert judgement["trigger"] == {"emit": True, "why": "sustained degradation"}
    assert judgement["degradation"]["signal"] == "realized"
    assert judgement["degradation"]["days"][:4] == ["2013-01-18", "2013-01-19", "2013-01-20", "2013-01-21"]
    rules = {a["rule"] for a in judgement["alerts"]}
    assert {"realized roc_auc min_value 0.6", "realized roc_auc max_drop 0.05"} <= rules
    assert lake.read_json(outcomes_dir("flights") / "2013-01-22.json")["judgement"] == judgement
    [event] = asset_events("flights_degraded")
    assert event["dag_id"] == "flights_outcomes" and event["task_id"] == "outcomes"
    assert event["extra"]["day"] == "2013-01-22" and event["extra"]["signal"] == "realized"
    assert event["extra"]["days"] == judgement["degradation"]["days"]
    assert [v["value"] for v in event["extra"]["values"]][:4] == [0.52] * 4
    assert f"version {version}" in event["extra"]["reason"]
    [trigger] = [e for e in audit.history("flights") if e["event"] == "degradation_trigger"]
    assert trigger["day"] == "2013-01-22" and trigger["run_id"] == outcome.run_id

    (message,) = mail.messages[sent_before:]
    assert message["Subject"].startswith("[mlops] flights: flights_outcomes.alerts failed for 2013-01-23: ")
    assert message["Subject"].endswith("performance alert(s)")
    plain = message.get_body(preferencelist=("plain",)).get_content()
    line = next(x for x in plain.splitlines() if "min_value 0.6" in x)
    assert f"flights version {version}, slice overall: realized roc_auc" in line
    assert "interval [0.48, 0.56]" in plain and "limit realized roc_auc min_value 0.6 -> 0.6" in line
    assert "degradation (realized) on 2013-01-22: retrain triggered" in plain

    again = runs.run("flights_outcomes", Interval.parse("2013-01-23"))
    assert again.tasks == {"outcomes": "success", "alerts": "failed"}
    assert again.xcoms["outcomes"][0]["judgement"]["trigger"]["why"].startswith("rate limit: a retrain was triggered")
    logged = again.xcoms["outcomes"][0]["mlflow"]  # a day logged before: its month's run rebuilt once, at the end
    assert logged["rebuilt"] == outcome_runs.PENDING
    assert logged["run_id"] == outcome_runs.find_month_run("flights", "2013-01") != summary["mlflow"]["run_id"]
    assert len(asset_events("flights_degraded")) == 1

    # the same judgement in a backfill run: no event, whatever the rate limit says
    start, end = (dt.datetime(2013, 1, d, tzinfo=dt.UTC) for d in (23, 24))
    [(state, [summary])] = run_tasks_in_run("flights_outcomes", ["outcomes"], "backfill", start, (start, end)).values()
    assert state == "success"
    assert summary["judgement"]["degradation"]["signal"] == "realized"
    assert summary["judgement"]["trigger"] == {"emit": False, "why": "backfill run: backfills never trigger retraining"}
    assert len(asset_events("flights_degraded")) == 1
    for day in ("2013-01-18", "2013-01-19", "2013-01-20", "2013-01-21"):  # later tests judge real days only
        lake.partition_path(outcomes_dir("flights"), day).unlink()


def test_a_retrain_triggered_by_the_degraded_event_trains_up_to_its_day_and_records_why(first_model):
    """An asset-triggered run of flights_retrain has no data interval: its assemble task takes the window that
    ends the day after the event's scored day (2013-01-22) and records the reason in the audit trail; the
    version it trains carries the reason as tags (promotion left to the tasks not run here)."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    from mlops.io import audit

    with create_session() as session:
        event_id = session.scalars(
            select(AssetEvent.id)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == "flights_degraded")
        ).one()
    tasks = ["assemble", "train"]  # train reads assemble's XCom only; validate is the weekly test's business
    done = run_tasks_in_run("flights_retrain", tasks, "asset_triggered", None, None, [event_id])
    assert [state for state, _ in done.values()] == ["success"] * 2, done
    assembled, trained = done["assemble"][1], done["train"][1]
    assert assembled["training_key"] == "2013-01-01..2013-01-23"
    assert assembled["trigger"]["signal"] == "realized" and assembled["trigger"]["day"] == "2013-01-22"
    entry = next(e for e in reversed(audit.history("flights")) if e["event"] == "triggered_retrain")
    assert entry["window"] == "2013-01-01..2013-01-23" and entry["day"] == "2013-01-22"
    assert entry["reasons"][0].startswith("degradation (realized): flights version ")
    assert not trained["skipped"]
    tags = registry.client().get_model_version("flights", trained["version"]).tags
    assert tags["retrain_trigger"] == "realized"
    assert tags["retrain_reason"].startswith("degradation (realized) on 2013-01-22: flights version ")


def run_tasks_in_run(dag_id, task_ids, run_type, logical_date, data_interval, event_ids=()):
    """Run tasks of a DAG, in order, in a new run of type `run_type` (backfill, asset_triggered: runs dag.test()
    cannot make) that consumed the asset events `event_ids`; returns {task_id: (state, returned value)},
    stopping at the first task that does not succeed.

    Uses dag.test()'s own in-process task runner (airflow.sdk.definitions.dag._run_task); the run ends in
    the last task's state (its other tasks never run)."""
    import uuid

    from airflow.models.asset import AssetEvent
    from airflow.models.dagrun import DagRun
    from airflow.models.taskinstance import TaskInstance
    from airflow.sdk.definitions.dag import _run_task
    from airflow.serialization.serialized_objects import DagSerialization
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState, TaskInstanceState
    from airflow.utils.types import DagRunTriggeredByType, DagRunType
    from sqlalchemy import select

    dag = runs.load_dags()[dag_id]
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(dag))
    with create_session() as session:
        run = scheduler_dag.create_dagrun(
            run_id=f"{run_type}__e2e_{uuid.uuid4().hex[:8]}",
            logical_date=logical_date,
            data_interval=data_interval,
            run_after=dt.datetime.now(dt.UTC),
            run_type=DagRunType(run_type),
            triggered_by=DagRunTriggeredByType.TEST,
            state=DagRunState.RUNNING,
            session=session,
        )
        run.consumed_asset_events.extend(session.get(AssetEvent, i) for i in event_ids)
        session.commit()
        run_id = run.run_id
    results, state = {}, "success"
    for task_id in task_ids:
        with create_session() as session:
            ti = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
                )
            ).one()
            ti.try_number, ti.state = 1, TaskInstanceState.SCHEDULED
        _run_task(ti=ti, task=dag.get_task(task_id))
        with create_session() as session:
            ti = session.scalars(
                select(TaskInstance).where(
                    TaskInstance.dag_id == dag_id, TaskInstance.run_id == run_id, TaskInstance.task_id == task_id
                )
            ).one()
            state = str(getattr(ti.state, "value", ti.state))
            results[task_id] = (state, ti.xcom_pull(task_ids=task_id, session=session) if state == "success" else None)
        if state != "success":
            break
    with create_session() as session:
        run = session.scalars(select(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id)).one()
        run.state = DagRunState.SUCCESS if state == "success" else DagRunState.FAILED
    return results


def test_broken_partition_stops_the_chain_and_mails_the_failed_checks(first_model, flights_cfg, mail):
    broken = build_day(flights_cfg, dt.date(2013, 1, 23))
    broken.loc[broken.index[:50], "origin"] = "XXX"
    broken.loc[broken.index[:5], "temp"] = 500.0
    lake.write_partition(broken, raw_dir("flights"), "2013-01-23", {"pipeline": "flights", "note": "broken on purpose"})
    sent_before = len(mail.messages)

    outcome = runs.run("flights_daily", Interval.parse("2013-01-23"), mark_success="^ingest$")

    assert outcome.state == "failed"
    assert outcome.tasks == {
        "ingest": "success",
        "validate": "failed",
        "score": "upstream_failed",
        "monitor": "upstream_failed",
    }
    assert "2013-01-23" not in lake.list_partitions(predictions_dir("flights"))
    new_mail = mail.messages[sent_before:]
    assert len(new_mail) == 1, [m["Subject"] for m in new_mail]
    message = new_mail[0]
    subject = message["Subject"]
    assert subject.startswith("[mlops] flights: flights_daily.validate failed for 2013-01-23: ")
    assert subject.endswith(" checks failed") and not subject.split(": ")[-1].startswith("0 of")
    plain, html = (message.get_body(preferencelist=(kind,)) for kind in ("plain", "html"))
    assert plain is not None and html is not None, "the mail has a plain-text and an HTML part"
    plain, html = plain.get_content(), html.get_content()
    assert body_text(message) == html
    for body in (plain, html):
        assert "expect_column_values_to_be_in_set" in body and "origin" in body
        assert "expect_column_values_to_be_between" in body and "temp" in body
    fields = {line.split(":", 1)[0]: line.split(":", 1)[1].strip() for line in plain.splitlines() if ": " in line}
    assert fields["Processed"] == "2013-01-23"
    assert fields["Try"].startswith("1, not retried: a failed check fails at once") and " of " not in fields["Try"]
    report_url, mlflow_url = fields["Report"], fields["MLflow run"]
    assert report_url.startswith("file:///") and report_url.endswith("/reports/2013-01-23.html")
    assert Path(urllib.parse.unquote(urllib.parse.urlparse(report_url).path)).is_file()
    assert f'<a href="{report_url}">' in html and f'<a href="{mlflow_url}">' in html
    run_id = mlflow_url.split("/#/runs/")[1]
    report = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="validation/report.json")
    assert json.loads(Path(report).read_text())["success"] is False


def test_runs_keep_their_true_start_and_end_times(first_model):
    """dag.test() starts a run at its logical date (2013); the demo's runs must not last for years."""
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        run = session.scalars(
            select(DagRun).where(DagRun.dag_id == "flights_retrain", DagRun.run_id == first_model.run_id)
        ).one()
        assert run.logical_date.year == 2013
        now = dt.datetime.now(dt.UTC)
        assert now - dt.timedelta(minutes=20) < run.start_date <= run.end_date <= now


def test_weekly_retrain_skips_failed_days_and_compares_with_the_champion(first_model, mail):
    blizzard = runs.run("flights_daily", Interval.parse("2013-02-08"))
    assert blizzard.tasks["validate"] == "failed" and blizzard.tasks["score"] == "upstream_failed"
    assert any("2013-02-08" in m["Subject"] for m in mail.messages)

    week = Interval(dt.date(2013, 2, 4), dt.date(2013, 2, 11))
    outcome = runs.run("flights_retrain", week)
    assert outcome.succeeded, outcome.tasks
    assembled = outcome.xcoms["assemble"]
    # the 182-day window starts no earlier than the pipeline's start date: all days since 1 January
    assert assembled["training_key"] == "2013-01-01..2013-02-11"
    assert "2013-02-08" in assembled["excluded"] and "2013-02-08" not in assembled["days"]
    assert outcome.xcoms["evaluate"]["champion_version"] == first_model.xcoms["train"]["version"]
    overall = outcome.xcoms["evaluate"]["overall"]
    assert set(overall) == {"challenger", "champion"}
    decision = outcome.xcoms["promote"]
    champion = registry.version_by_alias("flights", "champion")
    expected = decision["version"] if decision["promoted"] else first_model.xcoms["train"]["version"]
    assert champion.version == expected


def test_a_new_champion_rescores_the_latest_scored_day_unless_it_trained_on_it(first_model):
    """flights_rescore (scheduled on the champion asset) scores the last scored day with today's champion,
    which serves that day from then on (a re-run gives the same predictions); a day inside the champion's
    training window is left as it is: the champion would score its own training data."""
    first = first_model.xcoms["train"]["version"]
    champion = registry.version_by_alias("flights", "champion")
    assert champion.version != first, "the weekly retrain was to promote a new champion"
    day = lake.list_partitions(predictions_dir("flights"))[-1]
    assert day < "2013-02-11"  # inside the new champion's window, 2013-01-01..2013-02-11
    before = lake.read_partition(predictions_dir("flights"), day)

    skipped = runs.run("flights_rescore", Interval.parse("2013-02-11"))

    assert skipped.tasks == {"rescore": "skipped", "monitor": "skipped"}, skipped.tasks
    pd.testing.assert_frame_equal(lake.read_partition(predictions_dir("flights"), day), before)

    # the first day after the window, scored by the first model (pinned), is the champion's to re-score
    pinned = runs.run("flights_daily", Interval.parse("2013-02-11"), {"model_version": first})
    assert pinned.succeeded, pinned.tasks
    outcome = runs.run("flights_rescore", Interval.parse("2013-02-12"))

    assert outcome.succeeded, outcome.tasks
    rescored = outcome.xcoms["rescore"]
    assert (rescored["interval"], rescored["model_version"], rescored["serves_day"]) == (
        "2013-02-11",
        champion.version,
        True,
    )
    after = lake.read_partition(predictions_dir("flights"), "2013-02-11")
    assert set(after.model_version) == {champion.version} and set(after.threshold) == {champion.threshold}
    assert outcome.xcoms["monitor"]["interval"] == "2013-02-11"
    assert registry.champion_for("flights", dt.date(2013, 2, 11)).version == champion.version
    assert {e["extra"]["event"] for e in champion_events()} >= {"promotion"}


def champion_events() -> list[dict]:
    """The events Airflow recorded on the asset `flights_champion`, oldest first."""
    return asset_events("flights_champion")


def asset_events(name: str) -> list[dict]:
    """The events Airflow recorded on the asset `name`, oldest first."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session
    from sqlalchemy import select

    with create_session() as session:
        found = session.scalars(
            select(AssetEvent)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .where(AssetModel.name == name)
            .order_by(AssetEvent.id)
        ).all()
        return [{"extra": e.extra, "dag_id": e.source_dag_id, "task_id": e.source_task_id} for e in found]


def test_rollback_dag_restores_a_version_and_records_it(first_model, mail):
    """The manual flights_rollback DAG gives the champion alias back to the version its param names."""
    from mlops.io import audit

    first = first_model.xcoms["train"]["version"]
    outcome = runs.run("flights_rollback", Interval.parse("2013-02-11"), {"version": first, "reason": "e2e test"})
    assert outcome.succeeded, outcome.tasks
    assert outcome.xcoms["rollback"] == {"champion": first}
    assert registry.version_by_alias("flights", "champion").version == first
    event = audit.history("flights")[-1]
    assert event["event"] == "rollback" and event["version"] == first and event["reasons"] == ["e2e test"]
    assert champion_events()[-1] == {
        "extra": {"version": first, "event": "rollback"},
        "dag_id": "flights_rollback",
        "task_id": "rollback",
    }

    sent_before = len(mail.messages)
    missing = runs.run("flights_rollback", Interval.parse("2013-02-11"), {"version": "999"})
    assert missing.tasks == {"rollback": "failed"}
    assert registry.version_by_alias("flights", "champion").version == first
    (message,) = mail.messages[sent_before:]
    # an unscheduled DAG's run has the empty data interval [logical date, logical date]: its day
    assert message["Subject"] == "[mlops] flights: flights_rollback.rollback failed for 2013-02-12"
    plain = message.get_body(preferencelist=("plain",)).get_content()
    assert "Try:           1, not retried: this failure does not go away by retrying" in plain
    assert "has no version 999" in plain


def test_a_run_triggered_with_params_and_no_logical_date_mails_the_day_it_processed(first_model, mail):
    """The UI's and the REST API's manual run without a logical date: no data interval, the day is in params."""
    sent_before = len(mail.messages)
    dag_run = runs.load_dags()["flights_daily"].test(
        logical_date=None, run_conf={"start": "2013-02-09", "end": "2013-02-10"}
    )
    assert dag_run.data_interval_start is None
    states = {ti.task_id: str(getattr(ti.state, "value", ti.state)) for ti in dag_run.get_task_instances()}
    assert states["ingest"] == "success" and states["validate"] == "failed"  # the blizzard's second day
    (message,) = mail.messages[sent_before:]
    assert message["Subject"].startswith("[mlops] flights: flights_daily.validate failed for 2013-02-09: ")
    plain = message.get_body(preferencelist=("plain",)).get_content()
    assert "Processed:     2013-02-09" in plain and "Data interval: none (run without a logical date)" in plain
