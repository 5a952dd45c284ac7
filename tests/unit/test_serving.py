"""core.serving: a promoted version's first day, and the days a scheduled retrain's version starts on,
against brute force over the calendar."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops.core.config import Schedules
from mlops.core.serving import first_served_day, scheduled_retrain_starts


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def test_first_served_day():
    assert first_served_day(d("2013-06-07"), d("2013-06-09")) == d("2013-06-10")  # scored past the window
    assert first_served_day(d("2013-06-10"), d("2013-06-09")) == d("2013-06-10")  # the usual weekly case
    assert first_served_day(d("2013-06-10"), None) == d("2013-06-10")
    assert first_served_day(None, d("2013-06-09")) == d("2013-06-10")
    assert first_served_day(None, None) is None


@pytest.mark.parametrize(
    ("cron", "weekday"),
    [("0 0 * * 1", 0), ("0 0 * * 4", 3), ("0 0 * * *", None)],
    ids=["mondays", "thursdays", "daily"],
)
def test_scheduled_retrains_start_on_the_crons_days_within_the_schedule(cron, weekday):
    schedules = Schedules(retrain=cron, start_date=d("2013-01-01"), end_date=d("2013-12-31"))
    days = [d("2012-12-01") + dt.timedelta(days=i) for i in range(430)]
    step = 1 if weekday is None else 7
    fires = [day for day in days if weekday is None or day.weekday() == weekday]
    # brute force: an interval [P, P + step) ends on D when it starts on or after 1 January and its
    # last day is on or before 31 December
    expected = {day for day in fires if day - dt.timedelta(days=step) >= schedules.start_date}
    expected = {day for day in expected if day - dt.timedelta(days=1) <= schedules.end_date}
    assert {day for day in days if scheduled_retrain_starts(day, schedules)} == expected
    assert min(expected) == (d("2013-01-14") if weekday == 0 else min(expected))


def test_without_an_end_date_the_schedule_goes_on():
    schedules = Schedules(start_date=d("2013-01-01"))
    assert scheduled_retrain_starts(d("2030-01-07"), schedules)  # a Monday
    assert not scheduled_retrain_starts(d("2030-01-08"), schedules)
