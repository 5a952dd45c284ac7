"""The daily validate task's report is that of the code before issue 13's validation speed-ups.

`day_report` validates 2013-02-05 as the DAG's validate task does (`data_docs=True, publish=True`),
with drift against 2013-02-04's partition and skew against a profile of 2013-01-15's rows, then
validates the day again (a re-run: the stored suite is unchanged). GOLDEN_PATH holds the report
(minus its time stamp, HTML path and MLflow run id) that the code of commit 90a05a7 gave; regenerate
with `uv run python tests/unit/test_validation_golden.py` only for a change meant to alter the report.

`broken_day_report` validates the same day with one fault of each kind a row check reports (values
out of a set, out of a range, missing, a repeated row key, a dropped column): failed checks with
their unexpected percentages and examples. BROKEN_GOLDEN_PATH holds what the code of commit c718933
(before the checkpoint's results went from SUMMARY to BASIC) wrote.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import sys
from pathlib import Path

GOLDEN_PATH = Path(__file__).with_name("golden_validation_2013-02-05.json")
BROKEN_GOLDEN_PATH = Path(__file__).with_name("golden_validation_2013-02-05_broken.json")
VOLATILE = ("validated_at", "report_path", "mlflow_run_id")
DAY = "2013-02-05"


def _ingested_day(cfg) -> dict:
    """Ingest 2013-02-04..05 under the current MLOPS_HOME; the references of DAY (drift, skew)."""
    from mlops.core.drift import profile
    from mlops.core.interval import Interval
    from mlops.stages.ingest import build_day, ingest
    from mlops.stages.validate import DRIFT, SKEW, Reference, previous_partition

    ingest(cfg, Interval.parse("2013-02-04..2013-02-06"))
    january = build_day(cfg, dt.date(2013, 1, 15))
    skew = Reference("2013-01-15", profile(january, cfg.features.categorical, cfg.features.numeric))
    return {DRIFT: previous_partition(cfg, Interval.parse(DAY)), SKEW: skew}


def _published(cfg, references: dict) -> dict:
    """Validate DAY as the daily task does (Data Docs, published); the report's JSON dict, VOLATILE keys removed."""
    from mlops.core.interval import Interval
    from mlops.stages.validate import validate

    report = validate(cfg, Interval.parse(DAY), references=references, data_docs=True, publish=True)
    assert report.report_path and Path(report.report_path).exists()
    assert report.mlflow_run_id
    return _stable(report.to_dict())


def day_report() -> tuple[dict, dict]:
    """Validate 2013-02-05 twice under the current MLOPS_HOME; the two reports, VOLATILE keys removed.

    Returns (first run, re-run), each the report's JSON dict as `ValidationReport.to_dict` gives it.
    """
    from mlops.core.config import load_pipeline

    cfg = load_pipeline("flights")
    references = _ingested_day(cfg)
    return _published(cfg, references), _published(cfg, references)


def broken_day_report() -> dict:
    """Validate a broken 2013-02-05 (see `broken`) under the current MLOPS_HOME; its report, VOLATILE keys removed."""
    from mlops.core.config import load_pipeline
    from mlops.io import lake
    from mlops.io.paths import raw_dir

    cfg = load_pipeline("flights")
    references = _ingested_day(cfg)
    day = lake.read_partition(raw_dir(cfg.name), DAY)
    lake.write_partition(broken(day), raw_dir(cfg.name), DAY, {"pipeline": cfg.name, "broken": True})
    return _published(cfg, references)


def broken(df):
    """The day with 20 origins 'XXX' and 5 'YYY', 3 temperatures of 500, 2 distances missing, a row key
    repeated and the column dest_region dropped (each row check's failure, an error message among them)."""
    df = df.copy()
    df.loc[df.index[:20], "origin"] = "XXX"
    df.loc[df.index[20:25], "origin"] = "YYY"
    df.loc[df.index[30:33], "temp"] = 500.0
    df["distance"] = df["distance"].astype("float64")
    df.loc[df.index[50:52], "distance"] = None
    df.loc[df.index[41], "row_key"] = df.loc[df.index[40], "row_key"]
    return df.drop(columns=["dest_region"])


def _stable(report: dict) -> dict:
    """The report without VOLATILE keys, through JSON (as it is stored)."""
    return json.loads(json.dumps({k: v for k, v in report.items() if k not in VOLATILE}, default=str))


# Floats may differ in their last bits between CPUs (numpy's vectorised kernels sum in another order):
# the golden reports were written on another machine than the one this test ran on when it failed by
# 6e-15 (relative) in Wasserstein distances. Every other value must be equal.
REL_TOL = 1e-9


def assert_matches_golden(report, golden, path: str = "report") -> None:
    """`report` equals `golden` key for key and item for item; floats within REL_TOL (relative).

    Raises AssertionError naming the first path that differs (e.g. `report.shifts.drift.temp.psi`).
    """
    if isinstance(golden, dict):
        assert isinstance(report, dict) and sorted(report) == sorted(golden), f"{path}: keys {report} != {golden}"
        for key in golden:
            assert_matches_golden(report[key], golden[key], f"{path}.{key}")
    elif isinstance(golden, list):
        assert isinstance(report, list) and len(report) == len(golden), f"{path}: {report} != {golden}"
        for i, (r, g) in enumerate(zip(report, golden, strict=True)):
            assert_matches_golden(r, g, f"{path}[{i}]")
    elif isinstance(golden, float) and isinstance(report, float):
        same = math.isclose(report, golden, rel_tol=REL_TOL) or (math.isnan(report) and math.isnan(golden))
        assert same, f"{path}: {report!r} != {golden!r}"
    else:
        assert report == golden and type(report) is type(golden), f"{path}: {report!r} != {golden!r}"


def test_the_golden_comparison_tolerates_last_bits_only():
    import pytest

    golden = {"a": [1, "x", 0.9409536565104347, None, float("nan")], "b": {"c": True}}
    assert_matches_golden({"a": [1, "x", 0.9409536565104407, None, float("nan")], "b": {"c": True}}, golden)
    for wrong in (
        {"a": [1, "x", 0.9409537, None, float("nan")], "b": {"c": True}},  # a real change in the 7th digit
        {"a": [1, "x", 0.9409536565104347, None, 0.0], "b": {"c": True}},
        {"a": [1.0, "x", 0.9409536565104347, None, float("nan")], "b": {"c": True}},  # int became float
        {"a": [1, "x", 0.9409536565104347, None, float("nan")], "b": {"c": True, "d": 1}},
        {"a": [1, "x", 0.9409536565104347, None], "b": {"c": True}},
    ):
        with pytest.raises(AssertionError):
            assert_matches_golden(wrong, golden)


def test_the_daily_report_is_unchanged(mlops_home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # this test's own MLflow store
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    first, rerun = day_report()
    golden = json.loads(GOLDEN_PATH.read_text())
    assert_matches_golden(first, golden)
    assert_matches_golden(rerun, golden)


def test_the_report_of_a_broken_day_is_unchanged(mlops_home, monkeypatch):
    """Failed row checks keep their unexpected percentages and examples with BASIC results."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    report = broken_day_report()
    assert {(c["check"], c["column"]) for c in report["checks"] if not c["success"]} >= {
        ("expect_column_values_to_be_in_set", "origin"),
        ("expect_column_values_to_be_between", "temp"),
        ("expect_column_values_to_not_be_null", "distance"),
        ("expect_column_values_to_be_unique", "row_key"),
        ("expect_table_columns_to_match_set", None),
    }
    assert_matches_golden(report, json.loads(BROKEN_GOLDEN_PATH.read_text()))


def test_a_champion_profile_is_downloaded_once_and_then_read_from_the_local_cache(mlops_home, monkeypatch):
    """`registry.load_reference` reads through `artifact_cache`: once downloaded, a task (a new process)
    reads the kept copy, even with the artifact gone from MLflow; each call gets its own dict."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    from urllib.parse import urlparse

    import pytest

    from mlops.io import registry

    c = registry.client()
    run = c.create_run(registry.experiment_id("flights-reference-test"))
    c.log_dict(run.info.run_id, {"rows": 3, "numeric": {}, "categorical": {}}, registry.REFERENCE_PROFILE)
    name = "flights-reference-test"
    c.create_registered_model(name)
    version = c.create_model_version(name, f"runs:/{run.info.run_id}/model", run.info.run_id).version
    first = registry.load_reference(name, version)
    logged = Path(urlparse(c.get_run(run.info.run_id).info.artifact_uri).path) / registry.REFERENCE_PROFILE
    logged.unlink()  # MLflow no longer has it: the next read must come from the kept copy
    second = registry.load_reference(name, version)
    assert first == second == {"rows": 3, "numeric": {}, "categorical": {}} and first is not second
    import subprocess  # another process, as the next task is

    code = "import json, sys; from mlops.io import registry; print(json.dumps(registry.load_reference(*sys.argv[1:])))"
    command = [sys.executable, "-c", code, name, str(version)]
    child = subprocess.run(command, capture_output=True, text=True, check=True, env=os.environ)
    assert json.loads(child.stdout.strip().splitlines()[-1]) == first
    other = c.create_run(registry.experiment_id(name))  # a run that logged no profile
    without = c.create_model_version(name, "runs:/x/model", other.info.run_id).version
    with pytest.raises(LookupError, match=f"v{without} has no reference/profile.json"):
        registry.load_reference(name, without)


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLOPS_HOME"] = tmp
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        first, rerun = day_report()
    if first != rerun:
        sys.exit("the re-run's report differs from the first run's")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLOPS_HOME"] = tmp
        broken_report = broken_day_report()
    for path, report in ((GOLDEN_PATH, first), (BROKEN_GOLDEN_PATH, broken_report)):
        path.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
        print(f"wrote {path}")
