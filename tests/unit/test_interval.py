"""Data intervals: parsing, keys, days, and Airflow datetimes."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops.core.interval import Interval


def test_parse_one_day():
    interval = Interval.parse("2013-02-01")
    assert interval == Interval(dt.date(2013, 2, 1), dt.date(2013, 2, 2))
    assert interval.key == "2013-02-01"
    assert interval.days() == [dt.date(2013, 2, 1)]


def test_parse_range_is_end_exclusive():
    interval = Interval.parse("2013-02-27..2013-03-02")
    assert interval.start == dt.date(2013, 2, 27) and interval.end == dt.date(2013, 3, 2)
    assert interval.key == "2013-02-27..2013-03-02"
    assert interval.days() == [dt.date(2013, 2, 27), dt.date(2013, 2, 28), dt.date(2013, 3, 1)]
    assert str(interval) == "[2013-02-27, 2013-03-02)"


@pytest.mark.parametrize("text", ["2013-02-01", "2013-01-01..2013-01-22", "2012-12-30..2013-01-02"])
def test_key_round_trips_through_parse(text):
    interval = Interval.parse(text)
    assert interval.key == text
    assert Interval.parse(interval.key) == interval


def test_one_day_range_has_the_day_key():
    assert Interval.parse("2013-02-01..2013-02-02").key == "2013-02-01"


def test_days_cross_a_leap_day():
    days = Interval.parse("2012-02-28..2012-03-01").days()
    assert days == [dt.date(2012, 2, 28), dt.date(2012, 2, 29)]


@pytest.mark.parametrize("text", ["2013-02-01..2013-02-01", "2013-02-05..2013-02-01"])
def test_empty_or_reversed_interval_is_rejected(text):
    with pytest.raises(ValueError, match="empty data interval"):
        Interval.parse(text)


def test_constructor_rejects_empty_interval():
    with pytest.raises(ValueError, match="empty data interval"):
        Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 1))


def test_parse_rejects_bad_dates():
    with pytest.raises(ValueError):
        Interval.parse("2013-02-30")


def test_from_datetimes_at_utc_midnight():
    utc = dt.UTC
    interval = Interval.from_datetimes(dt.datetime(2013, 2, 1, tzinfo=utc), dt.datetime(2013, 2, 8, tzinfo=utc))
    assert interval == Interval(dt.date(2013, 2, 1), dt.date(2013, 2, 8))
    naive = Interval.from_datetimes(dt.datetime(2013, 2, 1), dt.datetime(2013, 2, 2))
    assert naive.key == "2013-02-01"


def test_from_datetimes_converts_other_zones_to_utc():
    est = dt.timezone(dt.timedelta(hours=-5))
    interval = Interval.from_datetimes(
        dt.datetime(2013, 1, 31, 19, tzinfo=est), dt.datetime(2013, 2, 1, 19, tzinfo=est)
    )
    assert interval.key == "2013-02-01"


@pytest.mark.parametrize(
    ("start", "end", "which"),
    [
        (dt.datetime(2013, 2, 1, 6, tzinfo=dt.UTC), dt.datetime(2013, 2, 2, tzinfo=dt.UTC), "start"),
        (dt.datetime(2013, 2, 1, tzinfo=dt.UTC), dt.datetime(2013, 2, 2, 0, 0, 1, tzinfo=dt.UTC), "end"),
        (dt.datetime(2013, 2, 1), dt.datetime(2013, 2, 1, 0, 0, 0, 1), "end"),
        # local midnight in New York is 05:00 UTC
        (dt.datetime(2013, 2, 1, tzinfo=dt.timezone(dt.timedelta(hours=-5))), dt.datetime(2013, 2, 3), "start"),
    ],
)
def test_from_datetimes_rejects_non_midnight(start, end, which):
    with pytest.raises(ValueError, match=f"data interval {which} .* is not at midnight UTC"):
        Interval.from_datetimes(start, end)


def test_intervals_order_and_hash():
    a, b = Interval.parse("2013-01-01"), Interval.parse("2013-01-02")
    assert a < b
    assert len({a, Interval.parse("2013-01-01"), b}) == 2
