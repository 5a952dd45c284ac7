"""The daily validate task's report is that of the code before issue 13's validation speed-ups.

`day_report` validates 2013-02-05 as the DAG's validate task does (`data_docs=True, publish=True`),
with drift against 2013-02-04's partition and skew against a profile of 2013-01-15's rows, then
validates the day again (a re-run: the stored suite is unchanged). GOLDEN_PATH holds the report
(minus its time stamp, HTML path and MLflow run id) that the code of commit 90a05a7 gave; regenerate
with `uv run python tests/unit/test_validation_golden.py` only for a change meant to alter the report.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path

GOLDEN_PATH = Path(__file__).with_name("golden_validation_2013-02-05.json")
VOLATILE = ("validated_at", "report_path", "mlflow_run_id")


def day_report() -> tuple[dict, dict]:
    """Validate 2013-02-05 twice under the current MLOPS_HOME; the two reports, VOLATILE keys removed.

    Returns (first run, re-run), each the report's JSON dict as `ValidationReport.to_dict` gives it.
    """
    from mlops.core.config import load_pipeline
    from mlops.core.drift import profile
    from mlops.core.interval import Interval
    from mlops.stages.ingest import build_day, ingest
    from mlops.stages.validate import DRIFT, SKEW, Reference, previous_partition, validate

    cfg = load_pipeline("flights")
    day = Interval.parse("2013-02-05")
    ingest(cfg, Interval.parse("2013-02-04..2013-02-06"))
    january = build_day(cfg, dt.date(2013, 1, 15))
    skew = Reference("2013-01-15", profile(january, cfg.features.categorical, cfg.features.numeric))
    references = {DRIFT: previous_partition(cfg, day), SKEW: skew}
    reports = [validate(cfg, day, references=references, data_docs=True, publish=True) for _ in range(2)]
    for report in reports:
        assert report.report_path and Path(report.report_path).exists()
        assert report.mlflow_run_id
    return tuple(_stable(r.to_dict()) for r in reports)


def _stable(report: dict) -> dict:
    """The report without VOLATILE keys, through JSON (as it is stored)."""
    return json.loads(json.dumps({k: v for k, v in report.items() if k not in VOLATILE}, default=str))


def test_the_daily_report_is_unchanged(mlops_home, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")  # this test's own MLflow store
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    first, rerun = day_report()
    golden = json.loads(GOLDEN_PATH.read_text())
    assert first == golden
    assert rerun == golden


def test_a_champion_profile_is_read_from_mlflow_once_per_process(mlops_home, monkeypatch):
    """`registry.load_reference` keeps the artifact's text; each call still gets its own dict."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "")
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    from mlops.io import registry

    c = registry.client()
    run = c.create_run(registry.experiment_id("flights-reference-test"))
    c.log_dict(run.info.run_id, {"rows": 3, "numeric": {}, "categorical": {}}, "reference/profile.json")
    hits = registry._reference_text.cache_info().hits
    first, second = registry.load_reference(run.info.run_id), registry.load_reference(run.info.run_id)
    assert first == second == {"rows": 3, "numeric": {}, "categorical": {}} and first is not second
    assert registry._reference_text.cache_info().hits == hits + 1


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["MLOPS_HOME"] = tmp
        os.environ.pop("MLFLOW_TRACKING_URI", None)
        first, rerun = day_report()
    if first != rerun:
        sys.exit("the re-run's report differs from the first run's")
    GOLDEN_PATH.write_text(json.dumps(first, indent=1, sort_keys=True) + "\n")
    print(f"wrote {GOLDEN_PATH}")
