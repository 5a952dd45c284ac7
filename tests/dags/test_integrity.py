"""DAG integrity: the DAG files import cleanly, fast, without heavy libraries, and every task is armed."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import pytest
from airflow.dag_processing.dagbag import DagBag

from mlops.airflow.notify import FailureMailNotifier
from mlops.airflow.operators.base import PipelineOperator
from mlops.airflow.timetables import EndingCronDataIntervalTimetable
from mlops.core.config import REPO_ROOT

DAGS_FOLDER = REPO_ROOT / "dags"
HEAVY = ["pandas", "numpy", "sklearn", "mlflow", "great_expectations", "pyarrow", "scipy"]


@pytest.fixture(scope="module")
def dagbag():
    return DagBag(dag_folder=str(DAGS_FOLDER))


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}
    assert {"flights_daily", "flights_retrain"} <= set(dagbag.dag_ids)


def test_task_chains(dagbag):
    daily, retrain = dagbag.dags["flights_daily"], dagbag.dags["flights_retrain"]
    assert daily.get_task("ingest").downstream_task_ids == {"validate"}
    assert daily.get_task("validate").downstream_task_ids == {"score"}
    assert daily.get_task("score").downstream_task_ids == {"monitor"}
    chain = ["assemble", "validate", "train", "recalibrate", "evaluate", "promote"]
    for upstream, downstream in itertools.pairwise(chain):
        assert retrain.get_task(upstream).downstream_task_ids == {downstream}


def test_every_task_is_a_stage_operator_with_retries_and_failure_mail(dagbag):
    for dag_id in ("flights_daily", "flights_retrain", "flights_rollback", "flights_rescore"):
        for task in dagbag.dags[dag_id].tasks:
            assert isinstance(task, PipelineOperator), task.task_id
            assert task.retries >= 1, f"{dag_id}.{task.task_id} has no retries"
            callbacks = task.on_failure_callback or []
            callbacks = callbacks if isinstance(callbacks, list) else [callbacks]
            assert any(isinstance(cb, FailureMailNotifier) for cb in callbacks), f"{dag_id}.{task.task_id}"


def test_a_new_champion_triggers_the_rescore_dag(dagbag):
    """Promote and rollback report to the alias whose events land on the asset the rescore DAG waits for."""
    for dag_id, task_id in (("flights_retrain", "promote"), ("flights_rollback", "rollback")):
        outlets = dagbag.dags[dag_id].get_task(task_id).outlets
        assert [o.name for o in outlets] == ["flights_champion_changes"], (dag_id, outlets)
    rescore = dagbag.dags["flights_rescore"]
    assert [asset.name for asset in rescore.timetable.asset_condition.objects] == ["flights_champion"]
    assert rescore.get_task("rescore").downstream_task_ids == {"monitor"}
    assert set(rescore.params.keys()) == {"day"}


def test_real_daily_and_weekly_data_intervals_within_the_data(dagbag):
    """Cron data intervals from 2013-01-01; no scheduled run after the replayed data ends (2013-12-31)."""
    for dag_id in ("flights_daily", "flights_retrain"):
        dag = dagbag.dags[dag_id]
        assert isinstance(dag.timetable, EndingCronDataIntervalTimetable)
        assert dag.start_date.date().isoformat() == "2013-01-01"
        assert dag.timetable.end.date().isoformat() == "2013-12-31"


def test_each_dag_file_imports_fast_and_light():
    """Measured in a fresh interpreter once Airflow is imported: under 0.5 s (best of 3), no heavy library."""
    for path in sorted(DAGS_FOLDER.glob("*.py")):
        best = min((_import_once(path) for _ in range(3)), key=lambda m: m["seconds"])
        assert best["heavy"] == [], f"{path.name} imports {best['heavy']} at parse time"
        assert best["seconds"] < 0.5, f"{path.name} took {best['seconds']:.3f} s to import"


def _import_once(path) -> dict:
    """Import time of one DAG file in a fresh interpreter, after `import airflow.sdk`, and heavy modules seen."""
    code = (
        "import json, runpy, sys, time\n"
        "import airflow.sdk\n"
        "t = time.perf_counter()\n"
        f"runpy.run_path({str(path)!r})\n"
        "elapsed = time.perf_counter() - t\n"
        f"print(json.dumps({{'seconds': elapsed, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_params_form(dagbag):
    retrain = dagbag.dags["flights_retrain"].params
    assert retrain.get_param("model_kind").schema["enum"] == ["hist_gradient_boosting", "logistic_regression"]
    assert retrain.get_param("force_retrain").schema["type"] == "boolean"
    assert retrain["allow_promotion"] is None  # yes, except in backfills
    assert {"flights_rollback"} <= set(dagbag.dag_ids)
    daily = dagbag.dags["flights_daily"].params
    assert set(daily.keys()) == {"start", "end", "model_version"}
