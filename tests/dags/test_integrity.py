"""DAG integrity: the DAG files import cleanly, fast, without heavy libraries, and every task is armed."""

from __future__ import annotations

import copy
import itertools
import json
import subprocess
import sys

import pytest
import yaml
from airflow.dag_processing.dagbag import DagBag

from mlops.airflow.notify import FailureMailNotifier
from mlops.airflow.operators.base import PipelineOperator
from mlops.airflow.timetables import EndingCronDataIntervalTimetable
from mlops.core.config import MODEL_KINDS, REPO_ROOT, THRESHOLD_POLICIES

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
        assert downstream in retrain.get_task(upstream).downstream_task_ids
    # the feature audit runs beside recalibrate -> evaluate (on the other core), and promote waits for it
    assert retrain.get_task("train").downstream_task_ids == {"recalibrate", "audit"}
    assert retrain.get_task("audit").upstream_task_ids == {"train"}
    assert retrain.get_task("audit").downstream_task_ids == {"promote"}
    assert retrain.get_task("promote").upstream_task_ids == {"evaluate", "audit"}
    for task_id in ("assemble", "validate", "recalibrate", "evaluate"):
        assert len(retrain.get_task(task_id).downstream_task_ids) == 1, task_id


def test_no_audit_task_when_the_audit_is_off():
    from mlops.airflow.dag_factory import retrain_dag
    from mlops.core.config import load_pipeline

    cfg = load_pipeline("flights")
    off = retrain_dag(cfg.model_copy(update={"audit": cfg.audit.model_copy(update={"enabled": False})}))
    assert "audit" not in off.task_ids
    assert off.get_task("evaluate").downstream_task_ids == {"promote"}


def test_every_task_is_a_stage_operator_with_retries_and_failure_mail(dagbag):
    for dag_id in ("flights_daily", "flights_retrain", "flights_rollback", "flights_rescore", "flights_outcomes"):
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
        timetable = dag.timetable if dag_id == "flights_daily" else dag.timetable.timetable  # retrain: cron or asset
        assert isinstance(timetable, EndingCronDataIntervalTimetable)
        assert dag.start_date.date().isoformat() == "2013-01-01"
        assert timetable.end.date().isoformat() == "2013-12-31"


def test_the_retrain_dag_runs_on_its_cron_or_on_degradation_and_serializes(dagbag):
    """AssetOrTimeSchedule(the plugin's cron timetable, [flights_degraded]); the outcomes task reports through
    the alias `flights_degradation_signals`; the serialized DAG (what the scheduler reads) keeps both parts."""
    from airflow.sdk import AssetOrTimeSchedule
    from airflow.serialization.serialized_objects import DagSerialization

    retrain = dagbag.dags["flights_retrain"]
    assert isinstance(retrain.timetable, AssetOrTimeSchedule)
    assert [a.name for a in retrain.timetable.asset_condition.objects] == ["flights_degraded"]
    outlets = dagbag.dags["flights_outcomes"].get_task("outcomes").outlets
    assert [o.name for o in outlets] == ["flights_degradation_signals"]
    scheduler_dag = DagSerialization.deserialize_dag(DagSerialization.serialize_dag(retrain))
    timetable = scheduler_dag.timetable
    assert timetable.summary == "Asset or 0 0 * * 1 until 2013-12-31"
    assert isinstance(timetable.timetable, EndingCronDataIntervalTimetable)
    assert timetable.timetable.end.date().isoformat() == "2013-12-31"


def test_the_outcomes_dag_runs_on_the_day_labels_are_due(dagbag):
    """flights delay_days is 1: the interval [D, D + 1) evaluates scored day D - 1: runs start and end a day later."""
    outcomes = dagbag.dags["flights_outcomes"]
    assert [t.task_id for t in outcomes.tasks] == ["outcomes", "alerts"]
    assert outcomes.get_task("outcomes").downstream_task_ids == {"alerts"}
    assert isinstance(outcomes.timetable, EndingCronDataIntervalTimetable)
    assert outcomes.start_date.date().isoformat() == "2013-01-02"
    assert outcomes.timetable.end.date().isoformat() == "2014-01-01"
    assert set(outcomes.params.keys()) == {"start", "end"}
    assert outcomes.max_active_runs == 1


def test_each_dag_file_imports_fast_and_light():
    """Measured in a fresh interpreter once Airflow is imported: under 0.5 s of CPU (best of 3; CPU time,
    not wall time, so a busy machine does not fail it), no heavy library."""
    for path in sorted(DAGS_FOLDER.glob("*.py")):
        best = min((_import_once(path) for _ in range(3)), key=lambda m: m["seconds"])
        assert best["heavy"] == [], f"{path.name} imports {best['heavy']} at parse time"
        assert best["seconds"] < 0.5, f"{path.name} took {best['seconds']:.3f} s of CPU to import"


def _import_once(path) -> dict:
    """CPU seconds to import one DAG file in a fresh interpreter, after `import airflow.sdk`, and heavy
    modules seen."""
    code = (
        "import json, runpy, sys, time\n"
        "import airflow.sdk\n"
        "t = time.process_time()\n"
        f"runpy.run_path({str(path)!r})\n"
        "elapsed = time.process_time() - t\n"
        f"print(json.dumps({{'seconds': elapsed, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_params_form(dagbag):
    retrain = dagbag.dags["flights_retrain"].params
    assert retrain.get_param("model_kind").schema["enum"] == list(MODEL_KINDS)  # from the config model
    assert retrain.get_param("threshold_policy").schema["enum"] == list(THRESHOLD_POLICIES)
    assert retrain.get_param("force_retrain").schema["type"] == "boolean"
    assert retrain["allow_promotion"] is None  # yes, except in backfills
    assert {"flights_rollback"} <= set(dagbag.dag_ids)
    daily = dagbag.dags["flights_daily"].params
    assert set(daily.keys()) == {"start", "end", "model_version"}


# one pipeline file broken among others


FLIGHTS_YAML = REPO_ROOT / "config" / "pipelines" / "flights.yaml"


def _pipeline(name: str) -> dict:
    data = yaml.safe_load(FLIGHTS_YAML.read_text())
    data["name"] = name
    return data


def _retyped(data: dict) -> dict:
    data["featurez"] = data.pop("features")
    return data


def _cron(expression: str):
    def mutate(data: dict) -> dict:
        data["schedules"]["daily"] = expression
        return data

    return mutate


BROKEN = {  # case: (how beta.yaml is broken, texts its import error must name)
    "key_typo": (_retyped, ["featurez", "Extra inputs are not permitted", "features", "Field required"]),
    "bad_cron": (_cron("61 0 * * *"), ["schedules", "daily: '61 0 * * *' is not a valid cron expression"]),
    "daily_cron_not_at_midnight": (_cron("0 6 * * *"), ["schedules", "daily: '0 6 * * *' fires", "midnight"]),
    "duplicate_key": ("twice", ["validation.max_rows: key given twice"]),
    "not_yaml": ("name: beta\nsource: [unclosed\n", ["not valid YAML"]),
}


def _bag(tmp_path, monkeypatch, beta) -> tuple[DagBag, str]:
    """A DagBag of the real DAG files over a config folder with pipelines alpha (valid) and beta."""
    configs = tmp_path / "pipelines"
    configs.mkdir()
    (configs / "alpha.yaml").write_text(yaml.safe_dump(_pipeline("alpha"), sort_keys=False))
    path = configs / "beta.yaml"
    if beta == "twice":
        text = FLIGHTS_YAML.read_text().replace("name: flights", "name: beta", 1)
        path.write_text(text.replace("  max_rows: 1200\n", "  max_rows: 1200\n  max_rows: 900\n", 1))
    elif isinstance(beta, str):
        path.write_text(beta)
    else:
        path.write_text(yaml.safe_dump(beta(_pipeline("beta")), sort_keys=False))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(configs))
    return DagBag(dag_folder=str(DAGS_FOLDER)), str(path)


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_pipeline_file_is_an_import_error_and_the_others_keep_their_dags(tmp_path, monkeypatch, case):
    beta, expected = BROKEN[case]
    bag, path = _bag(tmp_path, monkeypatch, beta)
    assert {d for d in bag.dag_ids if d.startswith(("alpha", "beta"))} == {
        "alpha_daily",
        "alpha_retrain",
        "alpha_rollback",
        "alpha_rescore",
        "alpha_outcomes",
    }
    assert [f for f in bag.import_errors if not f.endswith("invalid_pipelines.py")] == []  # pipelines.py is clean
    [error] = bag.import_errors.values()
    assert path in error, error  # the file
    for text in expected:  # the key and the rule
        assert text in error, (text, error)
    assert "the other pipelines are not affected" in error
    assert "alpha.yaml" not in error


def test_every_threshold_policy_builds_the_retrain_dag(tmp_path, monkeypatch):
    """The config model and the param enum agree: 'min_expected_cost' once broke every pipeline's DAGs."""

    def costs(data: dict) -> dict:
        data["threshold"] = {"policy": "min_expected_cost", "cost_false_negative": 5}
        data["training"]["model"] = {"kind": "logistic_regression"}
        return data

    bag, _ = _bag(tmp_path, monkeypatch, costs)
    assert bag.import_errors == {}
    params = bag.dags["beta_retrain"].params
    assert params["threshold_policy"] == "min_expected_cost" and params["model_kind"] == "logistic_regression"
    params.validate()
    assert {"alpha_retrain", "beta_retrain"} <= set(bag.dag_ids)
    for policy in THRESHOLD_POLICIES:  # any policy a trigger picks is accepted
        copy.deepcopy(params).__setitem__("threshold_policy", policy)
