"""The committed suite against the year it was inferred from, and against the first day of the next year.

The whole year runs in benchmarks/validation_year.py (about 4 minutes: 0.5 to 2 s of Great
Expectations a day); here, the first day of every month (season and year boundaries), two days
with values first seen in the second half of the year, and every day that fails, each for the cause
named in FAILING_DAYS. All with the plain stage functions: no Airflow, no Data Docs, no MLflow.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from mlops.core.features import ROW_KEY, row_keys
from mlops.core.interval import Interval
from mlops.io.datasets import read_interval
from mlops.stages.ingest import build_day, ingest
from mlops.stages.validate import validate_frame

LABEL_COMPLETENESS = ("expect_column_values_to_not_be_null", "arr_delay")
# Days of 2013 that fail validation with the committed suite, and why: each one's only failed check is
# `validation.label_completeness` (0.85): that many flights have no arrival delay, because that many
# were cancelled (no departure time) or diverted. The weather is the origin airports' (weather table).
FAILING_DAYS = {
    "2013-02-08": "blizzard: 472 of 930 flights cancelled, snow, visibility 0.5 mi",
    "2013-02-09": "blizzard, the day after: 393 of 684 flights cancelled",
    "2013-03-06": "nor'easter: 180 of 972 flights cancelled, wind gusts to 47 mph",
    "2013-03-08": "snow and rain (1.16 in), visibility 0.5 mi: 180 of 979 flights cancelled",
    "2013-05-23": "thunderstorms (0.33 in in an hour), visibility 0.25 mi: 221 cancelled, 11 diverted of 988",
    "2013-07-10": "storms: 121 cancelled and 37 diverted of 1004 flights",
    "2013-09-12": "heavy rain (0.68 in in an hour): 192 cancelled, 35 diverted of 992 flights",
    "2013-12-05": "fog, visibility 0 mi: 158 of 969 flights cancelled",
    "2013-12-10": "snow (0.77 in), visibility 0.25 mi: 204 of 943 flights cancelled",
    "2013-12-14": "snow and sleet (1.02 in), visibility 0.5 mi: 125 cancelled, 6 diverted of 692",
}
FIRST_SEEN = ["2013-07-06", "2013-11-24"]  # Anchorage (a summer route, new time zone); Lexington (new destination)
SAMPLE = sorted({f"2013-{m:02d}-01" for m in range(1, 13)} | set(FIRST_SEEN) | set(FAILING_DAYS))


def checks_failed(report) -> set[tuple[str, str | None]]:
    return {(c["check"], c["column"]) for c in report.failed}


@pytest.fixture(scope="module")
def sample_reports(module_home, flights_cfg):
    """Each sample day ingested and validated with the committed suite plus the config's rules."""
    reports = {}
    for key in SAMPLE:
        day = Interval.parse(key)
        ingest(flights_cfg, day)
        reports[key] = validate_frame(flights_cfg, read_interval(flights_cfg, day), key, 1, {})
    return reports


def test_every_sampled_day_passes_unless_its_data_names_the_cause(sample_reports, flights_cfg):
    missing_label_limit = 1 - flights_cfg.validation.label_completeness
    for key, report in sample_reports.items():
        if key not in FAILING_DAYS:
            assert report.success, f"{key}: {[(c['check'], c['column'], c['observed']) for c in report.failed]}"
            continue
        assert checks_failed(report) == {LABEL_COMPLETENESS}, (key, FAILING_DAYS[key], report.failed)
        observed = report.failed[0]["observed"]["unexpected_percent"] / 100
        assert observed > missing_label_limit, (key, observed)


def test_failing_days_are_the_days_with_too_many_flights_without_an_arrival(sample_reports, flights_cfg):
    """The cause is in the data: cancelled (no departure time) or diverted flights leave no label."""
    for key in FAILING_DAYS:
        df = read_interval(flights_cfg, Interval.parse(key))
        no_label = df["arr_delay"].isna()
        assert no_label.mean() > 1 - flights_cfg.validation.label_completeness
        assert (no_label & df["dep_time"].isna()).sum() > 0.6 * no_label.sum()  # mostly cancellations


def next_year(df: pd.DataFrame, cfg, day: dt.date) -> pd.DataFrame:
    """The rows of a 2013 day moved to `day`: calendar parts, dates and row keys of that day."""
    out = df.copy()
    out["year"], out["month"], out["day"] = day.year, day.month, day.day
    out[cfg.source.date_column] = pd.Timestamp(day).as_unit("ms")
    out["day_of_week"] = day.weekday()
    out["time_hour"] = day.isoformat() + out["time_hour"].str[10:]
    out[ROW_KEY] = row_keys(out.assign(**{cfg.source.date_column: day.isoformat()}), cfg.row_key)
    return out


def test_the_first_day_of_the_next_year_passes(mlops_home, flights_cfg):
    """Calendar parts, dates, identifiers and row keys never seen in 2013 are ordinary data in 2014."""
    df = next_year(build_day(flights_cfg, dt.date(2013, 12, 31)), flights_cfg, dt.date(2014, 1, 1))
    df.loc[df.index[:3], "flight"] = [9990, 9991, 9992]  # new flight numbers (2013: 1 to 8500)
    df.loc[df.index[:3], ROW_KEY] = row_keys(
        df.loc[df.index[:3]].assign(**{flights_cfg.source.date_column: "2014-01-01"}), flights_cfg.row_key
    )
    df.loc[df["plane_year"].notna().idxmax(), "plane_year"] = 2014.0  # a plane built in 2014
    report = validate_frame(flights_cfg, df, "2014-01-01", 1, {})
    assert report.success, [(c["check"], c["column"], c["observed"]) for c in report.failed]


def test_ranges_inferred_from_the_year_still_catch_broken_values(mlops_home, flights_cfg):
    """The full-cycle ranges are real checks: an impossible pressure and seat count fail."""
    df = build_day(flights_cfg, dt.date(2013, 6, 1))
    df.loc[df.index[:2], "pressure"] = 500.0
    df.loc[df.index[:2], "plane_seats"] = 2000.0
    report = validate_frame(flights_cfg, df, "2013-06-01", 1, {})
    assert checks_failed(report) == {
        ("expect_column_values_to_be_between", "pressure"),
        ("expect_column_values_to_be_between", "plane_seats"),
    }
