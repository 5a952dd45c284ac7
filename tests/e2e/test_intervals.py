"""Intervals that cannot be wrong: a run never writes a day its logical date does not define, and a run
after the data's end fails at its first task instead of succeeding with no work."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

import pytest

from mlops.airflow.dag_factory import build_all
from mlops.core.interval import Interval
from mlops.io import lake
from mlops.io.paths import raw_dir
from mlops.local import runs

pytestmark = pytest.mark.e2e
UTC = dt.UTC


def _context(dag, run_type: str, logical: dt.datetime, start: dt.datetime, end: dt.datetime) -> dict:
    return {
        "dag": dag,
        "dag_run": SimpleNamespace(run_type=run_type, dag_id=dag.dag_id, run_id="r"),
        "logical_date": logical,
        "data_interval_start": start,
        "data_interval_end": end,
        "run_id": "r",
        "params": {},
    }


@pytest.fixture(scope="module")
def daily():
    return build_all()["flights_daily"]


def test_a_cli_trigger_processes_the_day_its_logical_date_defines(daily):
    """`airflow dags trigger --logical-date 2013-01-23` gets the interval of the trigger time from
    Airflow 3 (here 2026-11-28..29); the run processes 2013-01-22..23, the day that ends at the logical date."""
    op = daily.get_task("ingest")
    logical = dt.datetime(2013, 1, 23, tzinfo=UTC)
    context = _context(
        daily, "manual", logical, dt.datetime(2026, 11, 28, tzinfo=UTC), dt.datetime(2026, 11, 29, tzinfo=UTC)
    )
    assert op.interval(context) == Interval(dt.date(2013, 1, 22), dt.date(2013, 1, 23))


@pytest.mark.parametrize("run_type", ["scheduled", "backfill"])
def test_scheduled_and_backfill_runs_keep_their_interval(daily, run_type):
    start, end = dt.datetime(2013, 1, 23, tzinfo=UTC), dt.datetime(2013, 1, 24, tzinfo=UTC)
    context = _context(daily, run_type, start, start, end)
    assert daily.get_task("ingest").interval(context) == Interval(dt.date(2013, 1, 23), dt.date(2013, 1, 24))


def test_a_manual_run_whose_interval_agrees_is_left_alone(daily):
    start, end = dt.datetime(2013, 1, 22, tzinfo=UTC), dt.datetime(2013, 1, 23, tzinfo=UTC)
    context = _context(daily, "manual", end, start, end)
    assert daily.get_task("ingest").interval(context) == Interval(dt.date(2013, 1, 22), dt.date(2013, 1, 23))


def test_params_win_over_the_data_interval(daily):
    context = {**_context(daily, "manual", None, None, None), "params": {"start": "2013-03-01", "end": "2013-03-03"}}
    assert daily.get_task("ingest").interval(context) == Interval(dt.date(2013, 3, 1), dt.date(2013, 3, 3))


def test_the_cron_dags_stop_scheduling_at_the_end_date_but_their_tasks_do_not_end():
    """Scheduled runs stop at schedules.end_date (the timetable); tasks have no end, so a run triggered
    after it creates its tasks and fails at the first instead of succeeding with none."""
    from airflow.timetables.base import DataInterval, TimeRestriction

    dags = build_all()
    for dag_id in ("flights_daily", "flights_retrain"):
        dag = dags[dag_id]
        assert dag.end_date is None and all(task.end_date is None for task in dag.tasks), dag_id
        timetable = dag.timetable
        if dag_id == "flights_retrain":  # its cron OR the flights_degraded asset: the cron part ends
            assert [a.name for a in timetable.asset_condition.objects] == ["flights_degraded"]
            timetable = timetable.timetable
        restriction = TimeRestriction(dt.datetime(2013, 1, 1, tzinfo=UTC), None, True)
        last = DataInterval(dt.datetime(2013, 12, 30, tzinfo=UTC), dt.datetime(2013, 12, 31, tzinfo=UTC))
        info = timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction)
        if dag_id == "flights_daily":  # the interval that starts on the end date is the last one
            assert info.data_interval.start == dt.datetime(2013, 12, 31, tzinfo=UTC)
            after = DataInterval(info.data_interval.start, info.data_interval.end)
            assert timetable.next_dagrun_info(last_automated_data_interval=after, restriction=restriction) is None
        # an unpaused DAG with catchup=False, long after the data ended, schedules nothing
        late = TimeRestriction(dt.datetime(2013, 1, 1, tzinfo=UTC), None, False)
        assert timetable.next_dagrun_info(last_automated_data_interval=None, restriction=late) is None, dag_id
        assert type(timetable).deserialize(timetable.serialize()).end == timetable.end


def test_a_run_after_the_data_ends_fails_at_ingest_and_writes_nothing(module_home, airflow_db):
    """The UI's default logical date (now) lies after schedules.end_date: the run fails, never a green no-op."""
    late = Interval(dt.date(2026, 11, 28), dt.date(2026, 11, 29))
    outcome = runs.run("flights_daily", late)
    assert outcome.state == "failed"
    assert outcome.tasks["ingest"] == "failed"
    assert "2026-11-28" not in lake.list_partitions(raw_dir("flights"))
