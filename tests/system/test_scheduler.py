"""System test: the DAGs under a real Airflow deployment (scheduler, dag-processor, api-server on
PostgreSQL), a real MLflow server on PostgreSQL and a real SMTP server, driven through the REST API v2.

LocalExecutor: a run without dates, retrain, two daily runs triggered from the API, a three-day
backfill that must reproduce them, and the blizzard day. CeleryExecutor (Redis and
one worker): retrain and one daily run.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from mlops.io import lake
from mlops.local.stack import wait_until
from tests.system.airflow_stack import TERMINAL, Stack, airflow_stack

pytestmark = pytest.mark.system

RETRAIN_CONF = {"window_start": "2013-01-01", "window_end": "2013-01-22"}


def _days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _wait_for_dags(stack: Stack) -> None:
    def parsed() -> bool:
        found = {d["dag_id"] for d in stack.api.get("/dags", dag_id_pattern="flights")["dags"]}
        return {"flights_daily", "flights_retrain", "flights_rollback", "flights_rescore"} <= found

    wait_until(parsed, 180, "the flights DAGs to be parsed", stack.services)


def _unpause(stack: Stack, *dag_ids: str) -> None:
    for dag_id in dag_ids:
        r = stack.api.patch(f"/dags/{dag_id}", {"is_paused": False})
        assert r.status_code == 200 and r.json()["is_paused"] is False, r.text


def _retrain_and_check_champion(stack: Stack) -> str:
    stack.api.trigger("flights_retrain", "retrain_2013-01-22", "2013-01-22T00:00:00Z", RETRAIN_CONF)
    assert stack.wait_run("flights_retrain", "retrain_2013-01-22", 420) == "success"
    assert set(stack.api.tasks("flights_retrain", "retrain_2013-01-22").values()) == {"success"}
    champion = MlflowClient(tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri).get_model_version_by_alias(
        "flights", "champion"
    )
    assert champion.tags["promotion_decision"] == "promoted"
    return champion.version


def _daily(stack: Stack, day: str, by_params: bool = False) -> tuple[str, str]:
    """Trigger flights_daily for the day `day`; returns (run_id, state).

    By default with the logical date of the next midnight (Airflow infers the interval that ends there);
    `by_params`: without a logical date, the day given by the `start` and `end` params (as from the UI).
    """
    end = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
    run_id = f"daily_{day}"
    if by_params:
        stack.api.trigger("flights_daily", run_id, None, {"start": day, "end": end})
    else:
        stack.api.trigger("flights_daily", run_id, f"{end}T00:00:00Z", {})
    return run_id, stack.wait_run("flights_daily", run_id, 300)


def _outputs(stack: Stack, day: str) -> dict:
    """What a daily run leaves for `day`, without what names the run or its time."""
    lake_dir = stack.home / "lake" / "flights"
    report = json.loads((lake_dir / "validation" / f"{day}.json").read_text())
    predictions = pd.read_parquet(lake_dir / "predictions" / f"{day}.parquet").drop(columns="scored_at")
    return {
        "raw digest": lake.read_manifest(lake_dir / "raw", day)["content_digest"],
        "validation": {k: report[k] for k in ("rows", "checks", "shifts", "references", "success")},
        "shift scores digest": lake.read_manifest(lake_dir / "shift_scores", day)["content_digest"],
        "predictions": predictions.sort_values("row_key", ignore_index=True),
    }


def _assert_same_outputs(original: dict, again: dict, day: str) -> None:
    for key in ("raw digest", "validation", "shift scores digest"):
        assert original[key] == again[key], f"{day}: the backfill gave another {key}"
    pd.testing.assert_frame_equal(original["predictions"], again["predictions"], obj=f"{day} predictions")


def _check_predictions(stack: Stack, days: list[str]) -> int:
    """Raw partitions and predictions for each day, no duplicate row key; the SQL sink when it exists."""
    lake = stack.home / "lake" / "flights"
    rows = 0
    for day in days:
        assert (lake / "raw" / f"{day}.parquet").exists(), f"no raw partition for {day}"
        path = lake / "predictions" / f"{day}.parquet"
        assert path.exists(), f"no predictions for {day}"
        predictions = pd.read_parquet(path)
        assert len(predictions) > 500, day
        assert not predictions.row_key.duplicated().any(), f"duplicate row keys on {day}"
        assert predictions.model_version.notna().all() and predictions.threshold.between(0, 1).all()
        rows += len(predictions)

    engine = sa.create_engine(stack.scores_url)
    try:
        if sa.inspect(engine).has_table("predictions"):  # the PostgreSQL predictions sink
            with engine.connect() as conn:  # (pd.read_sql fails on SQLAlchemy 2.1 rows)
                found = conn.execute(
                    sa.text(
                        "SELECT CAST(data_interval_start AS DATE)::text, COUNT(*), COUNT(DISTINCT row_key) "
                        "FROM predictions WHERE pipeline = 'flights' GROUP BY 1"
                    )
                ).all()
            per_day = {day: (n, keys) for day, n, keys in found}
            assert set(days) <= set(per_day), per_day
            assert all(n == keys for n, keys in per_day.values()), (
                f"duplicate row keys in the predictions table: {per_day}"
            )
            assert sum(per_day[day][0] for day in days) == rows, per_day
            print(f"system: predictions table holds {rows} rows for {len(days)} days, no duplicate row key")
        else:
            print("system: no `predictions` table in the scores database (PostgreSQL sink not there yet)")
    finally:
        engine.dispose()
    return rows


def test_local_executor_retrain_daily_backfill_and_blizzard():
    started = time.monotonic()
    with airflow_stack("LocalExecutor", preload=True) as stack:
        ready = time.monotonic()
        _wait_for_dags(stack)

        # a bad param is refused before any run exists
        r = stack.api.post("/dags/flights_retrain/dagRuns", {"logical_date": None, "conf": {"model_kind": "xgboost"}})
        assert r.status_code == 400, r.text
        assert "model_kind" in r.text

        _unpause(stack, "flights_retrain", "flights_daily", "flights_rescore")

        # no logical date and no dates in the params: the first task fails with a clear message
        stack.api.trigger("flights_daily", "no_dates", None, {})
        assert stack.wait_run("flights_daily", "no_dates", 180) == "failed"
        assert stack.api.tasks("flights_daily", "no_dates")["ingest"] == "failed"
        log = stack.task_log("flights_daily", "no_dates", "ingest")
        assert "has no data interval (triggered without a logical date)" in log, log[-2000:]
        assert "KeyError" not in log
        # and the failure mail still goes out, its subject without a day
        wait_until(lambda: stack.mails("flights_daily.ingest failed"), 60, "the no-dates mail", stack.services)
        assert (
            str(stack.mails("flights_daily.ingest failed")[0]["Subject"])
            == "[mlops] flights: flights_daily.ingest failed"
        )

        version = _retrain_and_check_champion(stack)

        # the new champion is an event on the asset flights_champion, which starts flights_rescore; with
        # nothing scored yet, it has nothing to do
        def rescored() -> list[dict]:
            runs = stack.api.get("/dags/flights_rescore/dagRuns")["dag_runs"]
            return [run for run in runs if run["state"] in TERMINAL]

        wait_until(rescored, 180, "the rescore run started by the new champion", stack.services)
        run = rescored()[0]
        assert run["run_type"] == "asset_triggered" and run["state"] == "success", run
        assert stack.api.tasks("flights_rescore", run["dag_run_id"]) == {"rescore": "skipped", "monitor": "skipped"}

        # the original daily runs, triggered from the API without a logical date: the days are params
        for day in ("2013-01-23", "2013-01-24"):
            run_id, state = _daily(stack, day, by_params=True)
            assert state == "success"
            assert set(stack.api.tasks("flights_daily", run_id).values()) == {"success"}
        original = _outputs(stack, "2013-01-24")

        # the validate task links to the MLflow run holding its report (operator extra link)
        links = stack.api.get("/dags/flights_daily/dagRuns/daily_2013-01-24/taskInstances/validate/links")
        report_run = json.loads((stack.home / "lake" / "flights" / "validation" / "2013-01-24.json").read_text())[
            "mlflow_run_id"
        ]
        assert report_run and links["extra_links"]["MLflow run"].endswith(f"/#/runs/{report_run}"), links

        # a backfill of three days, run at once (the daily DAG's max_active_runs is 4): their validate
        # tasks share the Great Expectations file context, which io.gx_checks locks
        backfill_days = _days("2013-01-24", "2013-01-26")
        r = stack.api.post(
            "/backfills",
            {
                "dag_id": "flights_daily",
                "from_date": f"{backfill_days[0]}T00:00:00Z",
                "to_date": f"{backfill_days[-1]}T00:00:00Z",
                "max_active_runs": 4,
            },
        )
        assert r.status_code == 200, r.text
        backfill_id = r.json()["id"]
        runs: list[dict] = []

        def backfill_ended() -> bool:
            # every run of the backfill has ended (the scheduler sets the backfill's completed_at only
            # on a fixed 30 s timer of Airflow 3.3, which `mlops replay` does not wait for either)
            runs[:] = stack.api.get("/dags/flights_daily/dagRuns", run_type="backfill", limit=50)["dag_runs"]
            return len(runs) >= len(backfill_days) and all(run["state"] in TERMINAL for run in runs)

        wait_until(backfill_ended, 600, f"backfill {backfill_id}", stack.services)
        assert runs, "the backfill created no runs"
        failed = [run["dag_run_id"] for run in runs if run["state"] != "success"]
        for run_id in failed:
            stack.dump("flights_daily", run_id)
        assert not failed, failed
        backfilled = sorted(run["data_interval_start"][:10] for run in runs)
        # a backfill run's logical date is its interval's start: Jan 24 .. Jan 26
        assert backfilled == backfill_days, backfilled
        # the backfill of Jan 24 gives what the original run gave: partition, validation, predictions
        _assert_same_outputs(original, _outputs(stack, "2013-01-24"), "2013-01-24")
        print(f"system: backfill of {len(runs)} days from {backfill_days[0]}; 2013-01-24 same as the original run")

        # the blizzard: half the flights cancelled, validation fails, nothing is scored, a mail goes out
        run_id, state = _daily(stack, "2013-02-08")
        assert state == "failed"
        tasks = stack.api.tasks("flights_daily", run_id)
        assert tasks["ingest"] == "success" and tasks["validate"] == "failed", tasks
        assert tasks["score"] in ("upstream_failed", None), tasks
        assert not (stack.home / "lake" / "flights" / "predictions" / "2013-02-08.parquet").exists()
        wait_until(lambda: stack.mails("flights", "2013-02-08"), 60, "the alert mail", stack.services)

        rows = _check_predictions(stack, ["2013-01-23", *backfilled])
        # unpaused all along, yet no scheduled run: the DAGs end with the data (schedules.end_date)
        for dag_id in ("flights_daily", "flights_retrain"):
            assert stack.api.get(f"/dags/{dag_id}/dagRuns", run_type="scheduled")["total_entries"] == 0, dag_id
        champion = MlflowClient(
            tracking_uri=stack.mlflow_uri, registry_uri=stack.mlflow_uri
        ).get_model_version_by_alias("flights", "champion")
        assert champion.version == version
        assert stack.mails("flights", "2013-02-08")
        print(
            f"system (LocalExecutor): {time.monotonic() - started:.0f} s in all, "
            f"{time.monotonic() - ready:.0f} s of runs; {3 + len(runs) + 1} daily runs, {rows} predictions, "
            f"{len(stack.sink.messages)} mails",
            flush=True,
        )


def test_celery_executor_retrain_and_one_day():
    started = time.monotonic()
    with airflow_stack("CeleryExecutor") as stack:
        _wait_for_dags(stack)
        _unpause(stack, "flights_retrain", "flights_daily")
        _retrain_and_check_champion(stack)
        run_id, state = _daily(stack, "2013-01-22")
        assert state == "success"
        assert set(stack.api.tasks("flights_daily", run_id).values()) == {"success"}
        rows = _check_predictions(stack, ["2013-01-22"])
        print(f"system (CeleryExecutor): {time.monotonic() - started:.0f} s in all, {rows} predictions", flush=True)
