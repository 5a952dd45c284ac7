"""System test: the DAGs under a real Airflow deployment (scheduler, dag-processor, api-server on
PostgreSQL), a real MLflow server on PostgreSQL and a real SMTP server, driven through the REST API v2.

LocalExecutor: retrain, one daily run, a week's backfill and the blizzard day. CeleryExecutor (Redis and
one worker): retrain and one daily run.
"""

from __future__ import annotations

import datetime as dt
import time

import pandas as pd
import pytest
import sqlalchemy as sa
from mlflow import MlflowClient

from mlops.stack import wait_until
from tests.system.airflow_stack import Stack, airflow_stack

pytestmark = pytest.mark.system

RETRAIN_CONF = {"window_start": "2013-01-01", "window_end": "2013-01-22"}


def _days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=i)).isoformat() for i in range((end - start).days + 1)]


def _wait_for_dags(stack: Stack) -> None:
    def parsed() -> bool:
        found = {d["dag_id"] for d in stack.api.get("/dags", dag_id_pattern="flights")["dags"]}
        return {"flights_daily", "flights_retrain", "flights_rollback"} <= found

    wait_until(parsed, 180, "the flights DAGs to be parsed", stack.services)


def _unpause(stack: Stack, *dag_ids: str) -> None:
    for dag_id in dag_ids:
        r = stack.api.patch(f"/dags/{dag_id}", {"is_paused": False})
        assert r.status_code == 200 and r.json()["is_paused"] is False, r.text


def _retrain_and_check_champion(stack: Stack) -> str:
    stack.api.trigger("flights_retrain", "retrain_2013-01-22", "2013-01-22T00:00:00Z", RETRAIN_CONF)
    assert stack.wait_run("flights_retrain", "retrain_2013-01-22", 420) == "success"
    assert set(stack.api.tasks("flights_retrain", "retrain_2013-01-22").values()) == {"success"}
    champion = MlflowClient(tracking_uri=stack.mlflow_uri).get_model_version_by_alias("flights", "champion")
    assert champion.tags["promotion_decision"] == "promoted"
    return champion.version


def _daily(stack: Stack, day: str, conf: dict | None = None) -> tuple[str, str]:
    """Trigger flights_daily for the day `day` (logical date: the next day); returns (run_id, state)."""
    end = dt.date.fromisoformat(day) + dt.timedelta(days=1)
    run_id = f"daily_{day}"
    stack.api.trigger("flights_daily", run_id, f"{end.isoformat()}T00:00:00Z", conf or {})
    return run_id, stack.wait_run("flights_daily", run_id, 300)


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

        _unpause(stack, "flights_retrain", "flights_daily")
        version = _retrain_and_check_champion(stack)

        run_id, state = _daily(stack, "2013-01-22", {"start": "2013-01-22", "end": "2013-01-23"})
        assert state == "success"
        assert set(stack.api.tasks("flights_daily", run_id).values()) == {"success"}

        # a week's backfill, one run at a time: concurrent validate tasks race on the shared Great
        # Expectations file context (ExpectationSuite refresh fails with a TypeError)
        r = stack.api.post(
            "/backfills",
            {
                "dag_id": "flights_daily",
                "from_date": "2013-01-23T00:00:00Z",
                "to_date": "2013-01-30T00:00:00Z",
                "max_active_runs": 1,
            },
        )
        assert r.status_code == 200, r.text
        backfill_id = r.json()["id"]

        def backfill_done() -> bool:
            return stack.api.get(f"/backfills/{backfill_id}")["completed_at"] is not None

        wait_until(backfill_done, 600, f"backfill {backfill_id}", stack.services)
        runs = stack.api.get("/dags/flights_daily/dagRuns", run_type="backfill", limit=50)["dag_runs"]
        assert runs, "the backfill created no runs"
        failed = [run["dag_run_id"] for run in runs if run["state"] != "success"]
        for run_id in failed:
            stack.dump("flights_daily", run_id)
        assert not failed, failed
        backfilled = sorted(run["data_interval_start"][:10] for run in runs)
        # Airflow 3.3 gives the 7 intervals [Jan 24, Jan 25) .. [Jan 30, Jan 31) (run ids: the intervals' ends)
        assert len(backfilled) == 7 and backfilled == _days(backfilled[0], backfilled[-1]), backfilled
        assert set(backfilled) <= set(_days("2013-01-23", "2013-01-30")), backfilled
        first = min(runs, key=lambda run: run["data_interval_start"])
        print(
            f"system: backfill 2013-01-23..2013-01-30: {len(runs)} runs, first {first['dag_run_id']} "
            f"logical {first['logical_date']} interval {first['data_interval_start']}..{first['data_interval_end']}"
        )

        # the blizzard: half the flights cancelled, validation fails, nothing is scored, a mail goes out
        run_id, state = _daily(stack, "2013-02-08")
        assert state == "failed"
        tasks = stack.api.tasks("flights_daily", run_id)
        assert tasks["ingest"] == "success" and tasks["validate"] == "failed", tasks
        assert tasks["score"] in ("upstream_failed", None), tasks
        assert not (stack.home / "lake" / "flights" / "predictions" / "2013-02-08.parquet").exists()
        wait_until(lambda: stack.mails("flights", "2013-02-08"), 60, "the alert mail", stack.services)

        rows = _check_predictions(stack, ["2013-01-22", *backfilled])
        champion = MlflowClient(tracking_uri=stack.mlflow_uri).get_model_version_by_alias("flights", "champion")
        assert champion.version == version
        assert stack.mails("flights", "2013-02-08")
        print(
            f"system (LocalExecutor): {time.monotonic() - started:.0f} s in all, "
            f"{time.monotonic() - ready:.0f} s of runs; {1 + len(runs) + 1} daily runs, {rows} predictions, "
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
