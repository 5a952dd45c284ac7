"""Validation with real Great Expectations on real and deliberately broken partitions."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from mlops.core.config import Limit, ShiftCheck
from mlops.core.drift import profile
from mlops.core.interval import Interval
from mlops.core.volume import CHECK as VOLUME
from mlops.io import lake
from mlops.io.datasets import read_report, shift_history
from mlops.io.paths import raw_dir, shift_scores_dir, validation_dir
from mlops.stages.ingest import build_day, ingest
from mlops.stages.validate import DRIFT, SKEW, Reference, shift_checks, validate

DAY = Interval.parse("2013-02-01")


@pytest.fixture(scope="module")
def good_day(flights_cfg):
    """The real rows of 2013-02-01, built once (tests write copies of it)."""
    return build_day(flights_cfg, DAY.start)


@pytest.fixture
def fresh_store(mlops_home, monkeypatch):
    """An MLflow store of this test's own (see test_model_stages.store for why the variable is cleared)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    return mlops_home


def write_day(df, key="2013-02-01"):
    lake.write_partition(df, raw_dir("flights"), key, {"pipeline": "flights", "note": "written by a test"})


def failed(report):
    return {(c["check"], c["column"]) for c in report.failed}


def test_a_normal_day_passes(mlops_home, flights_cfg):
    ingest(flights_cfg, DAY)
    report = validate(flights_cfg, DAY, references={})
    assert report.success, report.summary()
    assert report.rows == 926 and report.failed == [] and report.shifts == {} and report.references == {}
    kinds = {c["check"] for c in report.checks}
    assert {
        "expect_table_columns_to_match_set",
        "expect_table_row_count_to_be_between",
        "expect_column_values_to_be_unique",
        "expect_column_values_to_not_be_null",
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
        "expect_column_values_to_be_of_type",
    } <= kinds
    assert all(c["severity"] == "error" for c in report.checks if c["check"] != VOLUME)
    volume = next(c for c in report.checks if c["check"] == VOLUME)  # no history yet: reported, not judged
    assert (volume["success"], volume["severity"]) == (True, "warning")
    assert volume["observed"] == {"day": DAY.key, "rows": 926}
    assert report.summary().startswith("0 of") and "(flights 2013-02-01)" in report.summary()


def test_the_blizzard_day_fails_on_missing_arrival_delays(mlops_home, flights_cfg):
    blizzard = Interval.parse("2013-02-08")
    ingest(flights_cfg, blizzard)
    report = validate(flights_cfg, blizzard, references={})
    assert not report.success
    assert ("expect_column_values_to_not_be_null", "arr_delay") in failed(report)
    check = next(
        c
        for c in report.failed
        if c["column"] == "arr_delay" and c["expected"]["mostly"] == flights_cfg.validation.label_completeness
    )
    assert check["observed"]["unexpected_percent"] > 50  # about half of the flights were cancelled
    summary = report.summary()
    assert "expect_column_values_to_not_be_null [arr_delay]" in summary


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
    report = validate(flights_cfg, DAY, references={})
    assert not report.success
    assert expected <= failed(report), report.summary()
    for check, column in expected:
        assert check in report.summary()
        if column:
            assert f"[{column}]" in report.summary()


def test_out_of_set_examples_are_reported(mlops_home, flights_cfg, good_day):
    write_day(_unknown_origin(good_day.copy()))
    check = validate(flights_cfg, DAY, references={}).failed[0]
    assert check["observed"]["unexpected_percent"] == pytest.approx(100 * 20 / len(good_day), abs=1e-3)
    assert set(check["observed"]["examples"]) == {"XXX"}
    assert check["expected"]["value_set"] == ["EWR", "JFK", "LGA"]


def test_row_count_bounds_scale_with_days(mlops_home, flights_cfg):
    three = Interval.parse("2013-02-01..2013-02-04")
    ingest(flights_cfg, three)
    report = validate(flights_cfg, three, references={})
    assert report.success, report.summary()
    v = flights_cfg.validation
    rows = next(
        c
        for c in report.checks
        if c["check"] == "expect_table_row_count_to_be_between" and c["expected"]["min_value"] == 3 * v.min_rows
    )
    assert rows["expected"] == {"min_value": 3 * v.min_rows, "max_value": 3 * v.max_rows}
    assert rows["observed"] == report.rows
    assert read_report("flights", "2013-02-01..2013-02-04")["rows"] == report.rows


def test_report_is_written_and_replaced_on_rerun(mlops_home, flights_cfg, good_day):
    write_day(_unknown_origin(good_day.copy()))
    first = validate(flights_cfg, DAY, references={})
    path = validation_dir("flights") / "2013-02-01.json"
    assert path.is_file() and path.is_relative_to(mlops_home)
    stored = read_report("flights", "2013-02-01")
    assert stored["success"] is False and stored["interval"] == "2013-02-01" and stored["rows"] == first.rows
    assert [c["column"] for c in stored["checks"] if not c["success"]] == ["origin"]

    write_day(good_day)
    validate(flights_cfg, DAY, references={})
    again = read_report("flights", "2013-02-01")
    assert again["success"] is True
    assert sorted(p.name for p in validation_dir("flights").iterdir()) == ["2013-02-01.json"]


def test_missing_report_reads_as_none(mlops_home):
    assert read_report("flights", "2013-02-01") is None


def test_missing_partition_is_named(mlops_home, flights_cfg):
    with pytest.raises(FileNotFoundError, match="2013-02-01"):
        validate(flights_cfg, DAY, references={})


def test_default_references_compare_with_the_previous_day(fresh_store, flights_cfg):
    """Drift against 2013-01-31's partition; no champion yet, so no skew reference."""
    ingest(flights_cfg, Interval.parse("2013-01-31..2013-02-02"))
    report = validate(flights_cfg, DAY)
    assert report.references == {DRIFT: "partition 2013-01-31", SKEW: None}
    assert set(report.shifts) == {DRIFT}
    drift = report.shifts[DRIFT]
    assert set(drift) == set(flights_cfg.features.all) - {"day_of_week"}  # excluded
    assert {"psi", "ks", "wasserstein"} <= set(drift["distance"])
    assert {"psi", "js_distance", "unseen_share"} <= set(drift["carrier"])
    shift = [c for c in report.checks if c["check"].endswith("_vs_previous_partition")]
    assert shift and all(c["severity"] == "warning" for c in shift)  # drift only ever warns in flights.yaml
    assert report.success, report.summary()

    history = shift_history("flights")
    assert set(history["interval"]) == {"2013-02-01"} and set(history["comparison"]) == {DRIFT}
    assert len(history) == sum(len(m) for m in drift.values())
    row = history[(history.feature == "distance") & (history.metric == "psi")]
    assert row["value"].item() == pytest.approx(drift["distance"]["psi"])
    validate(flights_cfg, DAY)
    assert len(shift_history("flights")) == len(history)  # a re-run replaces its scores
    assert lake.list_partitions(shift_scores_dir("flights")) == ["2013-02-01"]


def test_first_day_has_no_drift_reference(fresh_store, flights_cfg):
    ingest(flights_cfg, DAY)
    report = validate(flights_cfg, DAY)
    assert report.references == {DRIFT: None, SKEW: None}
    assert report.shifts == {}


def test_skew_against_a_july_reference(mlops_home, flights_cfg):
    """A July training reference against a February day: weather moves, and only warns for weather."""
    july = build_day(flights_cfg, dt.date(2013, 7, 10))
    reference = Reference("july", profile(july, flights_cfg.features.categorical, flights_cfg.features.numeric))
    ingest(flights_cfg, DAY)
    report = validate(flights_cfg, DAY, references={SKEW: reference})
    assert report.references == {SKEW: "july"}
    assert report.shifts[SKEW]["temp"]["psi"] > 0.25
    # temp is record_only in flights.yaml: measured and stored, never flagged
    assert not [c for c in report.checks if c["column"] == "temp" and c["check"].endswith("_vs_training_data")]

    skew = flights_cfg.validation.skew.model_copy(update={"features": {}, "record_only": []})
    strict = flights_cfg.model_copy(update={"validation": flights_cfg.validation.model_copy(update={"skew": skew})})
    report = validate(strict, DAY, references={SKEW: reference})
    assert ("psi_vs_training_data", "temp") in failed(report)
    assert not report.success
    assert "psi_vs_training_data [temp]" in report.summary()


CHECK = ShiftCheck(
    min_rows=200,
    exclude=["day_of_week"],
    limits={"psi": Limit(warn=0.1, error=0.25)},
    features={"temp": {"psi": Limit(error=None)}},
)


def by_column(checks):
    return {c["column"]: c for c in checks}


def test_shift_check_severity():
    stats = {f: {"psi": v} for f, v in {"distance": 0.5, "hour": 0.15, "minute": 0.05, "temp": 0.9}.items()}
    stats["day_of_week"] = {"psi": 3.0}
    checks = by_column(shift_checks(CHECK, SKEW, stats, rows=200, reference_rows=5000))
    assert "day_of_week" not in checks  # excluded
    assert (checks["distance"]["success"], checks["distance"]["severity"]) == (False, "error")
    assert (checks["hour"]["success"], checks["hour"]["severity"]) == (False, "warning")
    assert checks["minute"]["success"] is True
    assert (checks["temp"]["success"], checks["temp"]["severity"]) == (False, "warning")  # error: null override
    assert checks["temp"]["expected"]["warn_above"] == 0.1  # the override keeps the default warn
    assert checks["distance"]["expected"]["gates"] is True and checks["distance"]["observed"] == 0.5
    assert checks["distance"]["check"] == "psi_vs_training_data"


@pytest.mark.parametrize(("rows", "reference_rows"), [(199, 5000), (5000, 199)])
def test_shift_below_min_rows_on_either_side_only_warns(rows, reference_rows):
    check = by_column(shift_checks(CHECK, DRIFT, {"distance": {"psi": 0.5}}, rows, reference_rows))["distance"]
    assert (check["success"], check["severity"]) == (False, "warning")
    assert check["expected"]["gates"] is False
    assert check["check"] == "psi_vs_previous_partition"


def test_shift_without_error_limit_only_warns():
    check = ShiftCheck(limits={"psi": Limit(warn=0.1)})
    checks = shift_checks(check, SKEW, {"distance": {"psi": 5.0}, "hour": {"psi": 5.0}}, 10_000, 10_000)
    assert {(c["success"], c["severity"]) for c in checks} == {(False, "warning")}


def test_metric_without_limits_makes_no_check():
    check = ShiftCheck(limits={"psi": Limit(warn=0.1, error=0.2)})
    checks = shift_checks(check, SKEW, {"distance": {"psi": 0.05, "ks": 0.9, "wasserstein": 3.0}}, 10_000, 10_000)
    assert [(c["check"], c["success"]) for c in checks] == [("psi_vs_training_data", True)]


# volume against the same weekday of recent weeks


@pytest.fixture
def fridays(mlops_home, flights_cfg):
    """The real Fridays 2013-01-18 and 2013-01-25, ingested: the history of 2013-02-01."""
    ingest(flights_cfg, Interval.parse("2013-01-18"))
    ingest(flights_cfg, Interval.parse("2013-01-25"))
    return {key: lake.read_manifest(raw_dir("flights"), key)["row_count"] for key in ("2013-01-18", "2013-01-25")}


def volume_of(report):
    return next(c for c in report.checks if c["check"] == VOLUME)


def test_a_day_that_arrives_with_70_percent_of_its_rows_fails(fridays, flights_cfg, good_day):
    write_day(good_day.head(int(0.7 * len(good_day))))  # cut at a row boundary; min_rows (500) still passes
    report = validate(flights_cfg, DAY, references={})
    assert failed(report) == {(VOLUME, None)}, report.summary()
    check = volume_of(report)
    median = sorted(fridays.values())[0] / 2 + sorted(fridays.values())[1] / 2
    assert check["observed"] == {"day": "2013-02-01", "rows": 648, "ratio": round(648 / median, 4)}
    assert check["expected"]["history"] == fridays and check["expected"]["error_below"] == 0.8
    assert f"{VOLUME}: observed {{'day': '2013-02-01', 'rows': 648" in report.summary()


def test_the_whole_day_passes_the_volume_check(fridays, flights_cfg):
    ingest(flights_cfg, DAY)
    check = volume_of(validate(flights_cfg, DAY, references={}))
    assert (check["success"], check["severity"]) == (True, "error")  # judged: it could have failed
    assert 0.9 < check["observed"]["ratio"] < 1.1


def test_history_leaves_out_failed_and_exempt_days(fridays, flights_cfg, good_day):
    lake.write_json(validation_dir("flights") / "2013-01-25.json", {"success": False, "checks": []})
    write_day(good_day.head(600))
    check = volume_of(validate(flights_cfg, DAY, references={}))
    assert check["expected"]["history"] == {"2013-01-18": fridays["2013-01-18"]}
    assert (check["success"], check["severity"]) == (True, "warning") and "not judged" in check["expected"]["note"]

    volume = flights_cfg.validation.volume.model_copy(update={"min_history": 1, "exempt": [DAY.start]})
    exempt = flights_cfg.model_copy(update={"validation": flights_cfg.validation.model_copy(update={"volume": volume})})
    check = volume_of(validate(exempt, DAY, references={}))
    assert (check["success"], check["severity"]) == (False, "warning") and "exempt" in check["expected"]["note"]


# the row key and number widths, for a pipeline without a committed suite


@pytest.fixture
def uninferred(flights_cfg):
    """The flights config under a name that has no committed suite: only the config's rules apply."""
    return flights_cfg.model_copy(update={"name": "uninferred"})


def test_the_config_suite_always_checks_the_row_key(mlops_home, uninferred, good_day):
    broken = good_day.copy()
    broken.loc[broken.index[3], "row_key"] = None
    broken["flight"] = broken["flight"].astype("float64")
    broken.loc[broken.index[5], "flight"] = None
    lake.write_partition(broken, raw_dir(uninferred.name), DAY.key, {"pipeline": uninferred.name})
    report = validate(uninferred, DAY, references={})
    assert {
        ("expect_column_values_to_not_be_null", "row_key"),
        ("expect_column_values_to_not_be_null", "flight"),
    } <= failed(report), report.summary()


def test_numbers_of_any_width_pass_the_numeric_type_checks(mlops_home, uninferred, good_day):
    narrow = good_day.astype(
        {"hour": "int8", "minute": "uint8", "distance": "Int16", "temp": "float32", "plane_year": "Float64"}
    )
    lake.write_partition(narrow, raw_dir(uninferred.name), DAY.key, {"pipeline": uninferred.name})
    report = validate(uninferred, DAY, references={})
    assert report.success, report.summary()
    typed = {c["column"] for c in report.checks if c["check"] == "expect_column_values_to_be_in_type_list"}
    assert {"hour", "minute", "distance", "temp", "plane_year"} <= typed


NULLS = {"distance": {"psi": {"mean": 0.12, "quantile": 0.3}}, "hour": {"psi": {"mean": 0.01, "quantile": 0.05}}}


def test_a_shift_within_the_noise_of_its_sample_size_is_not_flagged():
    """PSI 0.28 is past the error limit 0.25 but within the null's 99% quantile 0.3 at these sizes: not flagged."""
    stats = {"distance": {"psi": 0.28}, "hour": {"psi": 0.28}, "minute": {"psi": float("nan")}}
    checks = by_column(shift_checks(CHECK, SKEW, stats, 900, 25_000, NULLS))
    assert checks["distance"]["success"] is True
    assert (checks["hour"]["success"], checks["hour"]["severity"]) == (False, "error")
    assert checks["distance"]["expected"] | {} == {
        "warn_above": 0.1,
        "error_above": 0.25,
        "gates": True,
        "rows": 900,
        "reference_rows": 25_000,
        "null_quantile": 0.3,
        "null_mean": 0.12,
        "null_level": 0.99,
    }
    assert "minute" not in checks  # nothing measured (e.g. no row of a known category): no check
    beyond = by_column(shift_checks(CHECK, SKEW, {"distance": {"psi": 0.31}}, 900, 25_000, NULLS))["distance"]
    assert (beyond["success"], beyond["severity"]) == (False, "error")


def test_reports_and_scores_carry_the_null_distribution(mlops_home, flights_cfg, good_day):
    write_day(good_day)
    reference = Reference("day", profile(good_day, flights_cfg.features.categorical, flights_cfg.features.numeric))
    report = validate(flights_cfg, DAY, references={SKEW: reference})
    assert report.success  # a day against itself
    assert set(report.nulls[SKEW]["dest"]) == {"psi", "js_distance"}
    assert set(report.nulls[SKEW]["distance"]) == {"psi", "ks", "wasserstein"}
    dest = next(c for c in report.checks if c["column"] == "dest" and c["check"] == "psi_vs_training_data")
    assert dest["expected"]["null_quantile"] == round(report.nulls[SKEW]["dest"]["psi"]["quantile"], 4) > 0
    history = shift_history("flights")
    row = history[(history.feature == "dest") & (history.metric == "psi")].iloc[0]
    assert row.null_quantile == report.nulls[SKEW]["dest"]["psi"]["quantile"]
    assert history[history.metric == "unseen_share"].null_quantile.isna().all()  # no noise without unseen rows


def test_the_skew_reference_holds_the_rows_days_are_compared_on(flights_cfg):
    """All rows of the train days, labelled or not, as a validated day: cancelled flights count on both sides."""
    from mlops.core.features import labels
    from mlops.stages.train import reference_profile

    days = Interval.parse("2013-02-07..2013-02-09")
    rows = pd.concat([build_day(flights_cfg, d) for d in days.days()], ignore_index=True)
    labelled = labels(rows, flights_cfg.target).notna()
    assert 0.2 < 1 - labelled.mean() < 0.5  # the blizzard: many flights without an arrival
    reference = reference_profile(flights_cfg, rows, days)
    assert reference["rows"] == len(rows) and reference["population"] == f"all rows of {days.key}, labelled or not"
    seats = rows["plane_seats"]
    assert reference["numeric"]["plane_seats"]["null_fraction"] == pytest.approx(seats.isna().mean())
    assert seats.isna().mean() > seats[labelled].isna().mean()  # a reference of labelled rows would miss them
