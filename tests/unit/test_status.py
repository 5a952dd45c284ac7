"""`mlops status`: counts of passed and failed validations beside the keys it always had."""

from __future__ import annotations

import json

from mlops.core.interval import Interval
from mlops.local.cli import main
from mlops.local.status import pipeline_status
from mlops.stages.ingest import ingest
from mlops.stages.validate import validate


def test_status_counts_passed_and_failed_validations(mlops_home, flights_cfg, capsys):
    ingest(flights_cfg, Interval.parse("2013-02-06..2013-02-09"))
    for key in ("2013-02-06", "2013-02-07", "2013-02-08"):  # the 8th: the blizzard, too few labels
        validate(flights_cfg, Interval.parse(key), references={})

    status = pipeline_status(flights_cfg)

    assert status["counts"] == {
        "ingested": 3,
        "validated": 2,
        "validation_passed": 2,
        "validation_failed": 1,
        "scored": 0,
    }
    assert status["last_validated"] == "2013-02-07" and status["last_ingested"] == "2013-02-08"
    (alert,) = status["open_alerts"]
    assert alert["interval"] == "2013-02-08"
    assert alert["failed_checks"] == ["expect_column_values_to_not_be_null[arr_delay]"]
    assert alert["report"] is None  # the HTML report's path, once published (the validate task publishes it)

    assert main(["status", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["pipelines"]["flights"]["counts"]["validation_failed"] == 1
    assert main(["status"]) == 0
    assert "validations 2 passed, 1 failed; 1 open alerts" in capsys.readouterr().out
