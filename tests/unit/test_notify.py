"""What the alert mail says about the processed days and the try (the mail itself: tests/e2e/test_dag_runs.py)."""

from __future__ import annotations

import datetime as dt

from airflow.sdk.exceptions import AirflowFailException

from mlops.airflow.notify import processed_interval, try_text
from mlops.airflow.operators.base import ChecksFailed

UTC = dt.UTC


def at(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_the_params_dates_win_over_the_data_interval():
    week = (at("2013-02-04T00:00"), at("2013-02-11T00:00"))
    assert processed_interval({}, *week) == "2013-02-04..2013-02-11"
    assert processed_interval({"start": "2013-02-08", "end": "2013-02-09"}, *week) == "2013-02-08"
    assert processed_interval({"window_start": "2013-01-01", "window_end": "2013-02-01"}, *week) == (
        "2013-01-01..2013-02-01"
    )
    assert processed_interval({"day": "2013-02-10"}, *week) == "2013-02-10"
    assert processed_interval({"start": None, "end": None}, *week) == "2013-02-04..2013-02-11"


def test_a_run_without_a_logical_date_still_names_its_day():
    assert processed_interval({"start": "2013-02-08", "end": "2013-02-09"}, None, None) == "2013-02-08"
    assert processed_interval({}, None, None) is None
    assert processed_interval({"start": "2013-02-09", "end": "2013-02-08"}, None, None) == "2013-02-09..2013-02-08"


def test_an_interval_of_no_whole_days_names_its_first_day():
    """A manual run of an unscheduled DAG has start == end (or a time of day): its first day."""
    assert processed_interval({}, at("2013-02-11T00:00"), at("2013-02-11T00:00")) == "2013-02-11"
    assert processed_interval({}, at("2026-11-29T10:23"), at("2026-11-30T10:23")) == "2026-11-29"


def test_a_failure_that_is_never_retried_never_reads_1_of_3():
    checks = try_text(1, 2, ChecksFailed("3 of 161 checks failed (flights 2013-02-08)", "3 of 161 checks failed"))
    assert checks.startswith("1, not retried: a failed check fails at once") and "of 3" not in checks
    final = try_text(1, 2, AirflowFailException("give both params"))
    assert final.startswith("1, not retried:") and "of 3" not in final
    assert try_text(3, 2, RuntimeError("database is locked")) == "3 of 3"
    assert try_text(1, 0, RuntimeError("boom")) == "1 of 1"
