"""Schema inference (the committed GX suite), the HTML report in MLflow, and the shift-score series."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from mlops.core.interval import Interval
from mlops.io import registry
from mlops.io.datasets import shift_history
from mlops.io.gx_checks import build_suite, data_docs_index, suite_path
from mlops.io.schema import infer_schema
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
    assert _by_type(inferred, "expect_column_values_to_be_in_set", "origin")[0]["kwargs"]["value_set"] == [
        "EWR",
        "JFK",
        "LGA",
    ]
    assert not _by_type(inferred, "expect_column_values_to_be_in_set", "dest")  # too many values for a domain
    label = _by_type(inferred, "expect_column_values_to_not_be_null", "arr_delay")[0]
    assert 0.5 < label["kwargs"]["mostly"] < 1.0  # a tolerance, tighter than the blizzard's 51% missing
    assert not _by_type(inferred, "expect_column_values_to_not_be_null", "dep_time")  # leakage: types only
    # a column that is sometimes all missing gets no null bound rather than one that can never fail
    assert all(e["kwargs"].get("mostly", 1.0) > 0 for e in inferred["expectations"])
    temp = _by_type(inferred, "expect_column_values_to_be_between", "temp")[0]
    assert temp["kwargs"]["min_value"] < temp["meta"]["observed"][0]


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
    assert "FAILED" in html and "expect_column_values_to_not_be_null" in html and "data:image/png;base64," in html
    run = registry.client().get_run(report.mlflow_run_id)
    assert run.data.tags["interval"] == "2013-02-08" and run.data.metrics["checks_failed"] >= 1
    artifacts = {a.path for a in registry.client().list_artifacts(report.mlflow_run_id, "validation")}
    assert artifacts == {"validation/2013-02-08.html", "validation/report.json"}
    assert data_docs_index().is_file()
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
