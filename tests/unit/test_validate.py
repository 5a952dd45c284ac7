"""Validation with real Great Expectations on real and deliberately broken partitions."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops import lake
from mlops.drift import profile
from mlops.interval import Interval
from mlops.stages.ingest import build_day, ingest, raw_dir
from mlops.stages.validate import drift_checks, read_report, results_dir, validate

DAY = Interval.parse("2013-02-01")


@pytest.fixture(scope="module")
def good_day(flights_cfg):
    """The real rows of 2013-02-01, built once (tests write copies of it)."""
    return build_day(flights_cfg, DAY.start)


def write_day(df, key="2013-02-01"):
    lake.write_partition(df, raw_dir("flights"), key, {"pipeline": "flights", "note": "written by a test"})


def failed(report):
    return {(c["check"], c["column"]) for c in report.failed}


def test_a_normal_day_passes(mlops_home, flights_cfg):
    ingest(flights_cfg, DAY)
    report = validate(flights_cfg, DAY)
    assert report.success, report.summary()
    assert report.rows == 926 and report.failed == [] and report.drift == {} and report.reference is None
    kinds = {c["check"] for c in report.checks}
    assert {
        "expect_table_columns_to_match_set",
        "expect_table_row_count_to_be_between",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_of_type",
        "expect_column_values_to_be_in_type_list",
    } <= kinds
    assert all(c["severity"] == "error" for c in report.checks)
    assert report.summary().startswith("flights 2013-02-01: 0 of")


def test_the_blizzard_day_fails_on_missing_arrival_delays(mlops_home, flights_cfg):
    blizzard = Interval.parse("2013-02-08")
    ingest(flights_cfg, blizzard)
    report = validate(flights_cfg, blizzard)
    assert not report.success
    assert failed(report) == {("expect_column_values_to_not_be_null", "arr_delay")}
    check = report.failed[0]
    assert check["observed"]["unexpected_percent"] > 50  # about half of the flights were cancelled
    assert check["expected"]["mostly"] == flights_cfg.validation.label_completeness
    summary = report.summary()
    assert "1 of" in summary and "expect_column_values_to_not_be_null [arr_delay]" in summary


def _unknown_origin(df):
    df.loc[df.index[:20], "origin"] = "XXX"
    return df


def _hot_temperature(df):
    df.loc[df.index[:3], "temp"] = 500.0
    return df


def _categorical_as_int(df):
    df["dest"] = range(len(df))
    return df


def _required_column_dropped(df):
    return df.drop(columns=["dest_region"])


def _too_few_rows(df):
    return df.head(400)


def _duplicated_row_key(df):
    df.loc[df.index[1], "row_key"] = df.loc[df.index[0], "row_key"]
    return df


def _null_distance(df):
    df["distance"] = df["distance"].astype("float64")
    df.loc[df.index[:2], "distance"] = None
    return df


BROKEN = {
    "unknown_origin": (_unknown_origin, {("expect_column_values_to_be_in_set", "origin")}),
    "temperature_out_of_range": (_hot_temperature, {("expect_column_values_to_be_between", "temp")}),
    "categorical_turned_int": (_categorical_as_int, {("expect_column_values_to_be_of_type", "dest")}),
    "required_column_dropped": (
        _required_column_dropped,
        {("expect_table_columns_to_match_set", None), ("expect_column_values_to_be_of_type", "dest_region")},
    ),
    "too_few_rows": (_too_few_rows, {("expect_table_row_count_to_be_between", None)}),
    "duplicated_row_key": (_duplicated_row_key, {("expect_column_values_to_be_unique", "row_key")}),
    "null_in_not_null_column": (_null_distance, {("expect_column_values_to_not_be_null", "distance")}),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_partition_fails_the_right_check(mlops_home, flights_cfg, good_day, case):
    breaker, expected = BROKEN[case]
    write_day(breaker(good_day.copy()))
    report = validate(flights_cfg, DAY)
    assert not report.success
    assert failed(report) == expected, report.summary()
    for check, column in expected:
        assert check in report.summary()
        if column:
            assert f"[{column}]" in report.summary()


def test_out_of_set_examples_are_reported(mlops_home, flights_cfg, good_day):
    write_day(_unknown_origin(good_day.copy()))
    check = validate(flights_cfg, DAY).failed[0]
    assert check["observed"]["unexpected_percent"] == pytest.approx(100 * 20 / len(good_day), abs=1e-3)
    assert set(check["observed"]["examples"]) == {"XXX"}
    assert check["expected"]["value_set"] == ["EWR", "JFK", "LGA"]


def test_row_count_bounds_scale_with_days(mlops_home, flights_cfg):
    three = Interval.parse("2013-02-01..2013-02-04")
    ingest(flights_cfg, three)
    report = validate(flights_cfg, three)
    assert report.success, report.summary()
    rows = next(c for c in report.checks if c["check"] == "expect_table_row_count_to_be_between")
    v = flights_cfg.validation
    assert rows["expected"] == {"min_value": 3 * v.min_rows, "max_value": 3 * v.max_rows}
    assert rows["observed"] == report.rows
    assert read_report("flights", "2013-02-01..2013-02-04")["rows"] == report.rows


def test_report_is_written_and_replaced_on_rerun(mlops_home, flights_cfg, good_day):
    write_day(_unknown_origin(good_day.copy()))
    first = validate(flights_cfg, DAY)
    path = results_dir("flights") / "2013-02-01.json"
    assert path.is_file() and path.is_relative_to(mlops_home)
    stored = read_report("flights", "2013-02-01")
    assert stored["success"] is False and stored["interval"] == "2013-02-01" and stored["rows"] == first.rows
    assert [c["column"] for c in stored["checks"] if not c["success"]] == ["origin"]

    write_day(good_day)
    validate(flights_cfg, DAY)
    again = read_report("flights", "2013-02-01")
    assert again["success"] is True
    assert sorted(p.name for p in results_dir("flights").iterdir()) == ["2013-02-01.json"]


def test_missing_report_reads_as_none(mlops_home):
    assert read_report("flights", "2013-02-01") is None


def test_missing_partition_is_named(mlops_home, flights_cfg):
    with pytest.raises(FileNotFoundError, match="2013-02-01"):
        validate(flights_cfg, DAY)


def test_drift_against_a_reference(mlops_home, flights_cfg):
    """A July reference against a February day: weather drifts; only warnings for weather features."""
    july = build_day(flights_cfg, dt.date(2013, 7, 10))
    reference = profile(july, flights_cfg.features.categorical, flights_cfg.features.numeric)
    ingest(flights_cfg, DAY)
    report = validate(flights_cfg, DAY, reference=reference, reference_name="july")
    assert report.reference == "july"
    assert report.drift["temp"] > 0.25
    temp = next(c for c in report.checks if c["check"] == "psi_vs_training_reference" and c["column"] == "temp")
    assert temp["success"] is False and temp["severity"] == "warning"  # psi_error: null for temp
    assert "day_of_week" not in {c["column"] for c in report.checks if c["check"] == "psi_vs_training_reference"}
    assert all(c["check"] != "psi_vs_training_reference" for c in report.failed)

    strict_drift = flights_cfg.validation.drift.model_copy(update={"features": {}, "exclude": []})
    strict = flights_cfg.model_copy(
        update={"validation": flights_cfg.validation.model_copy(update={"drift": strict_drift})}
    )
    report = validate(strict, DAY, reference=reference, reference_name="july")
    assert ("psi_vs_training_reference", "temp") in failed(report)
    assert not report.success


def _with_drift(cfg, **drift):
    d = cfg.validation.drift.model_copy(update=drift)
    return cfg.model_copy(update={"validation": cfg.validation.model_copy(update={"drift": d})})


def test_drift_checks_severity(flights_cfg):
    cfg = _with_drift(flights_cfg, psi_warn=0.1, psi_error=0.25, min_rows=200)
    psi = {"distance": 0.5, "hour": 0.15, "minute": 0.05, "temp": 0.9, "day_of_week": 3.0}
    checks = {c["column"]: c for c in drift_checks(cfg, psi, rows=200)}
    assert "day_of_week" not in checks  # excluded
    assert (checks["distance"]["success"], checks["distance"]["severity"]) == (False, "error")
    assert (checks["hour"]["success"], checks["hour"]["severity"]) == (False, "warning")
    assert checks["minute"]["success"] is True
    assert (checks["temp"]["success"], checks["temp"]["severity"]) == (False, "warning")  # psi_error: null
    assert checks["distance"]["expected"] == {"psi_warn": 0.1, "psi_error": 0.25, "gates": True}
    assert checks["distance"]["observed"] == 0.5


def test_drift_below_min_rows_only_warns(flights_cfg):
    cfg = _with_drift(flights_cfg, min_rows=200)
    checks = {c["column"]: c for c in drift_checks(cfg, {"distance": 0.5}, rows=199)}
    assert (checks["distance"]["success"], checks["distance"]["severity"]) == (False, "warning")
    assert checks["distance"]["expected"]["gates"] is False


def test_drift_without_error_limit_only_warns(flights_cfg):
    cfg = _with_drift(flights_cfg, psi_error=None, features={})
    checks = drift_checks(cfg, {"distance": 5.0, "hour": 5.0}, rows=10_000)
    assert {(c["success"], c["severity"]) for c in checks} == {(False, "warning")}


def test_drift_without_any_limit_passes(flights_cfg):
    cfg = _with_drift(flights_cfg, psi_warn=None, psi_error=None, features={})
    checks = drift_checks(cfg, {"distance": 5.0}, rows=10_000)
    assert checks[0]["success"] is True
