"""A day validates the same whatever the order of a backfill's runs: the ingest task writes the
reference days that validation reads (the day before, the volume history) when they are missing."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops.core.config import Volume
from mlops.core.interval import Interval
from mlops.core.volume import reference_days
from mlops.io import lake
from mlops.io.datasets import read_report
from mlops.io.paths import raw_dir
from mlops.stages.ingest import ingest, ingest_references
from mlops.stages.validate import validate

D = dt.date


def _interval(day: str) -> Interval:
    d = D.fromisoformat(day)
    return Interval(d, d + dt.timedelta(days=1))


def test_reference_days_are_the_day_before_and_the_same_weekday_of_recent_weeks():
    volume = Volume(weeks=2, min_history=1)
    assert reference_days([D(2013, 3, 20)], volume) == [D(2013, 3, 6), D(2013, 3, 13), D(2013, 3, 19)]
    # an interval of two days: the day before the first, each day's history, never the days themselves
    days = [D(2013, 3, 20), D(2013, 3, 21)]
    assert reference_days(days, volume) == [
        D(2013, 3, 6),
        D(2013, 3, 7),
        D(2013, 3, 13),
        D(2013, 3, 14),
        D(2013, 3, 19),
    ]
    assert reference_days([D(2013, 3, 20), D(2013, 3, 27)], volume) == [D(2013, 3, 6), D(2013, 3, 13), D(2013, 3, 19)]


def _report(cfg, day: str) -> dict:
    validate(cfg, _interval(day))
    report = read_report(cfg.name, day)
    return {k: report[k] for k in ("rows", "checks", "shifts", "references", "success")}


def test_a_day_validated_before_its_reference_days_ran_gives_the_report_of_a_run_in_order(
    tmp_path, monkeypatch, flights_cfg
):
    day = "2013-03-20"  # a Wednesday: the volume history is 13, 6 March, 27 and 20 February
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "in-order"))
    for d in ["2013-02-20", "2013-02-27", "2013-03-06", "2013-03-13", "2013-03-19", day]:
        ingest(flights_cfg, _interval(d))
    in_order = _report(flights_cfg, day)
    assert in_order["references"]["drift"] == "partition 2013-03-19"

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "alone"))
    ingest(flights_cfg, _interval(day))
    without = _report(flights_cfg, day)  # what the race gave: no drift reference, no volume history
    assert without["references"]["drift"] is None and without != in_order
    written = ingest_references(flights_cfg, _interval(day))
    assert written == {d: "ingested" for d in ["2013-02-20", "2013-02-27", "2013-03-06", "2013-03-13", "2013-03-19"]}
    assert _report(flights_cfg, day) == in_order
    assert ingest_references(flights_cfg, _interval(day)) == {}  # nothing missing any more


def test_days_before_the_start_date_are_not_ingested(mlops_home, flights_cfg):
    written = ingest_references(flights_cfg, _interval("2013-01-02"))
    assert written == {"2013-01-01": "ingested"}  # December 2012 lies before schedules.start_date
    assert lake.list_partitions(raw_dir(flights_cfg.name)) == ["2013-01-01"]


@pytest.mark.parametrize("weekday", range(7))
def test_reference_days_never_include_the_interval(weekday):
    first = D(2013, 6, 3) + dt.timedelta(days=weekday)
    days = [first + dt.timedelta(days=i) for i in range(10)]
    refs = reference_days(days, Volume(weeks=4, min_history=2))
    assert not set(refs) & set(days) and refs == sorted(refs) and refs[-1] == first - dt.timedelta(days=1)
