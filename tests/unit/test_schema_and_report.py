"""Schema inference (the committed GX suite), the HTML report in MLflow, and the shift-score series."""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import pandas as pd
import pytest

from mlops.core.interval import Interval
from mlops.io import registry
from mlops.io.datasets import shift_history
from mlops.io.gx_checks import NUMERIC_TYPES, build_suite, data_docs_index, suite_path
from mlops.io.schema import infer_expectations, infer_schema, no_range_reasons, type_expectation
from mlops.stages.ingest import ingest, ingest_missing
from mlops.stages.validate import DRIFT, previous_partition, validate

REFERENCE = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 15))


@pytest.fixture
def inferred(mlops_home, flights_cfg, tmp_path):
    ingest_missing(flights_cfg, REFERENCE)
    path = infer_schema(flights_cfg, REFERENCE, tmp_path / "flights.json")
    return json.loads(path.read_text())


def _by_type(suite, kind, column=None):
    return [e for e in suite["expectations"] if e["type"] == kind and e["kwargs"].get("column") == column]


def test_inferred_suite_is_reviewable_and_robust(inferred):
    assert inferred["meta"]["reference_window"] == "2013-01-01..2013-01-15"
    rows = _by_type(inferred, "expect_table_row_count_to_be_between")[0]
    low, high = rows["meta"]["observed_daily"]
    assert rows["kwargs"]["min_value"] < low <= high < rows["kwargs"]["max_value"]
    assert _by_type(inferred, "expect_column_values_to_be_of_type", "carrier")[0]["kwargs"]["type_"] == "str"
    assert _by_type(inferred, "expect_column_values_to_be_in_type_list", "distance")[0]["kwargs"]["type_list"] == (
        NUMERIC_TYPES
    )
    assert _by_type(inferred, "expect_column_values_to_be_in_set", "origin")[0]["kwargs"]["value_set"] == [
        "EWR",
        "JFK",
        "LGA",
    ]
    assert not _by_type(inferred, "expect_column_values_to_be_in_set", "tailnum")  # thousands of values: no domain
    # TFDV's presence: not null only when no day had a missing value; the label's completeness is a config rule
    assert _by_type(inferred, "expect_column_values_to_not_be_null", "carrier")
    assert not _by_type(inferred, "expect_column_values_to_not_be_null", "temp")  # 4.6% missing on 1 January
    assert _by_type(inferred, "expect_column_proportion_of_non_null_values_to_be_between", "temp")
    for known_after in ("arr_delay", "dep_time"):  # the label and leakage: their type only
        on_it = [e["type"] for e in inferred["expectations"] if e["kwargs"].get("column") == known_after]
        assert on_it == ["expect_column_values_to_be_in_type_list"], (known_after, on_it)
    assert all(e["kwargs"].get("mostly", 1.0) > 0 for e in inferred["expectations"])
    # 14 days are no seasonal cycle: no numeric range at all (the config's validation.ranges still apply)
    assert not [e for e in inferred["expectations"] if e["type"] == "expect_column_values_to_be_between"]
    assert inferred["meta"]["numeric_ranges"].startswith("none inferred: 14 days < 365")


def _synthetic_days(n_days: int, rows: int = 3) -> list[pd.DataFrame]:
    """Tiny daily frames with a column of every kind the inference treats apart."""
    days = []
    for i in range(n_days):
        day = dt.date(2013, 1, 1) + dt.timedelta(days=i)
        days.append(
            pd.DataFrame(
                {
                    "row_key": [f"{day}_{r}" for r in range(rows)],
                    "year": day.year,
                    "month": day.month,
                    "day": day.day,
                    "flight_date": pd.Timestamp(day).as_unit("ms"),
                    "day_of_week": day.weekday(),
                    "flight": [100 * i + r for r in range(rows)],
                    "station_id": [i + r for r in range(rows)],
                    "sched_dep_time": [500 + r for r in range(rows)],
                    "plane_year": [1990.0 + r for r in range(rows)],
                    "arr_delay": [float(r) for r in range(rows)],
                    "hour": [5 + r for r in range(rows)],
                    "pressure": pd.array([1000 + i % 30 + r for r in range(rows)], dtype="int16"),
                    "always": [1.0] * rows,
                    "sometimes": [None if r == 0 else 2.0 for r in range(rows)],
                    "gappy": [float("nan")] * rows if i % 7 == 0 else [3.0] * rows,
                    "code": [f"c{(i * rows + r) % 100}" for r in range(rows)],
                    "wide": [f"w{(i * rows + r) % 101}" for r in range(rows)],
                }
            )
        )
    return days


def _ranged(expectations) -> set[str]:
    return {e["kwargs"]["column"] for e in expectations if e["type"] == "expect_column_values_to_be_between"}


def test_no_inferred_range_on_calendar_parts_identifiers_row_keys_dates_or_declared_columns(flights_cfg):
    """From a full year, only measurements get ranges; a day short of it, nothing does."""
    year = infer_expectations(_synthetic_days(365), flights_cfg, Interval(dt.date(2013, 1, 1), dt.date(2014, 1, 1)))
    assert _ranged(year) == {"pressure", "always", "sometimes", "gappy"}
    reasons = no_range_reasons(flights_cfg, pd.concat(_synthetic_days(2)))
    assert reasons["month"] == reasons["day"] == reasons["year"] == "calendar part (source.date_columns)"
    assert reasons["day_of_week"] == "calendar part (derived weekday)"
    assert reasons["flight"] == reasons["row_key"] == "row key"
    assert reasons["flight_date"] in ("row key", "date")
    assert reasons["station_id"] == "identifier (name)"
    assert reasons["sched_dep_time"].startswith("calendar or clock part")
    assert reasons["plane_year"].startswith("calendar or clock part")
    assert reasons["hour"] == "range declared in validation.ranges"
    assert reasons["arr_delay"].startswith("known only after the fact")
    short = infer_expectations(_synthetic_days(364), flights_cfg, Interval(dt.date(2013, 1, 1), dt.date(2013, 12, 31)))
    assert _ranged(short) == set()


def test_presence_types_and_domains_follow_tfdv(flights_cfg):
    days = _synthetic_days(40)  # 120 rows: 100 distinct values of `code`, 101 of `wide`
    found = infer_expectations(days, flights_cfg, Interval(dt.date(2013, 1, 1), dt.date(2013, 2, 10)))
    presence = {
        e["kwargs"]["column"]: e["type"]
        for e in found
        if e["type"]
        in ("expect_column_values_to_not_be_null", "expect_column_proportion_of_non_null_values_to_be_between")
    }
    assert presence["always"] == "expect_column_values_to_not_be_null"  # min_fraction 1
    assert presence["sometimes"] == "expect_column_proportion_of_non_null_values_to_be_between"  # min_count 1
    assert "gappy" not in presence  # all missing on some days: no presence bound
    assert "arr_delay" not in presence  # the target: label_completeness of the config
    kinds = {e["kwargs"]["column"]: e["meta"].get("kind") for e in found if e["type"].endswith("_in_type_list")}
    assert kinds["pressure"] == kinds["flight"] == kinds["always"] == "numeric"
    assert kinds["flight_date"] == "datetime"
    domains = {e["kwargs"]["column"] for e in found if e["type"] == "expect_column_values_to_be_in_set"}
    assert "code" in domains and "wide" not in domains  # at most 100 distinct values, as TFDV's default


def test_any_integer_or_float_width_passes_a_numeric_type_check(mlops_home):
    """int16 in the reference; int8, float32 and pandas' nullable Int64 and Float64 on a later day."""
    from mlops.io.gx_checks import _context, run_suite

    gx, _, _ = _context()
    found = type_expectation("pressure", pd.Series([1000, 1001], dtype="int16"))
    later = pd.DataFrame(
        {
            "a": pd.Series([1, 2], dtype="int8"),
            "b": pd.Series([1.5, 2.5], dtype="float32"),
            "c": pd.array([1, None], dtype="Int64"),
            "d": pd.array([1.5, None], dtype="Float64"),
            "e": ["x", "y"],
        }
    )
    suite = gx.ExpectationSuite(
        name="widths",
        expectations=[
            {"type": found["type"], "kwargs": {**found["kwargs"], "column": column}} for column in later.columns
        ],
    )
    checks = {c["column"]: c["success"] for c in run_suite(suite, later, data_docs=False)}
    assert checks == {"a": True, "b": True, "c": True, "d": True, "e": False}


def test_the_committed_suite_is_part_of_validation(flights_cfg):
    committed = json.loads(suite_path("flights").read_text())
    suite = build_suite(flights_cfg)
    kinds = [e.expectation_type if hasattr(e, "expectation_type") else e.configuration.type for e in suite.expectations]
    assert len(kinds) >= len(committed["expectations"])
    assert committed["meta"]["inferred_by"] == "mlops infer-schema"
    assert all(e["kwargs"].get("mostly", 1.0) > 0 for e in committed["expectations"])
    multi = build_suite(flights_cfg, n_days=7)
    rows = [
        e.configuration.kwargs
        for e in multi.expectations
        if e.configuration.type == "expect_table_row_count_to_be_between"
    ]
    committed_rows = _by_type(committed, "expect_table_row_count_to_be_between")[0]["kwargs"]
    assert {"min_value": committed_rows["min_value"] * 7, "max_value": committed_rows["max_value"] * 7} in [
        {k: r[k] for k in ("min_value", "max_value")} for r in rows
    ]


def test_published_report_lands_in_mlflow_with_plots_and_docs(mlops_home, flights_cfg):
    ingest(flights_cfg, Interval.parse("2013-02-07..2013-02-09"))
    day = Interval.parse("2013-02-08")
    report = validate(
        flights_cfg, day, references={DRIFT: previous_partition(flights_cfg, day)}, data_docs=True, publish=True
    )
    assert not report.success  # the blizzard
    html = Path(report.report_path).read_text()
    assert "FAILED" in html and "expect_column_values_to_not_be_null" in html and "data:image/svg+xml;base64," in html
    run = registry.client().get_run(report.mlflow_run_id)
    assert run.data.tags["interval"] == "2013-02-08" and run.data.metrics["checks_failed"] >= 1
    artifacts = {a.path for a in registry.client().list_artifacts(report.mlflow_run_id, "validation")}
    assert artifacts == {"validation/2013-02-08.html", "validation/report.json"}
    assert data_docs_index().is_file()
    # the report is what a person is linked to offline: nothing to fetch, unlike GX's Data Docs (README)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", html) and "<script" not in html
    assert re.search(r"""<link[^>]+href=["']https://""", data_docs_index().read_text())
    assert "Report: " in report.summary() and report.mlflow_run_id in report.summary()


def test_shift_scores_are_kept_for_every_run(mlops_home, flights_cfg):
    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-04"))
    for text in ("2013-02-02", "2013-02-03"):
        day = Interval.parse(text)
        validate(flights_cfg, day, references={DRIFT: previous_partition(flights_cfg, day)})
    history = shift_history("flights")
    assert set(history.interval) == {"2013-02-02", "2013-02-03"}
    assert set(history.comparison) == {"drift"}
    assert {"psi", "ks", "wasserstein", "js_distance", "unseen_share"} <= set(history.metric)
    again = validate(
        flights_cfg,
        Interval.parse("2013-02-03"),
        references={DRIFT: previous_partition(flights_cfg, Interval.parse("2013-02-03"))},
    )
    assert again.references[DRIFT] == "partition 2013-02-02"
    assert len(shift_history("flights")) == len(history)  # a re-run replaces its own scores
