"""Runs refused or retried for the right reason, with dag.test() on the real DAGs: a trigger conf with an
unknown key is refused naming it, and an MLflow that cannot be reached is reported as unreachable and
retried, never as "no version 2".
"""

from __future__ import annotations

import copy
import html

import pytest
import yaml
from airflow.models import TaskInstance
from airflow.utils.session import create_session

from mlops.core.config import REPO_ROOT
from mlops.local import runs
from mlops.local.mailsink import body_text
from mlops.local.ports import free_port
from tests.conftest import day

pytestmark = pytest.mark.e2e
FLIGHTS_YAML = REPO_ROOT / "config" / "pipelines" / "flights.yaml"


def tries(dag_id: str, task_id: str) -> int:
    with create_session() as session:
        ti = (
            session.query(TaskInstance)
            .filter(TaskInstance.dag_id == dag_id, TaskInstance.task_id == task_id)
            .order_by(TaskInstance.start_date.desc())
            .first()
        )
        return ti.try_number


@pytest.mark.parametrize(
    ("dag_id", "conf", "unknown"),
    [
        ("flights_daily", {"model_verison": "3"}, ["model_verison"]),  # the misspelt pin of the issue
        (
            "flights_rollback",
            {"version": "1", "reason": "x", "to_version": "1", "force": True},
            ["force", "to_version"],
        ),
    ],
)
def test_a_conf_with_unknown_keys_is_refused_naming_them(mlops_home, airflow_db, smtp_sink, dag_id, conf, unknown):
    outcome = runs.run(dag_id, day("2013-02-01"), conf)
    assert outcome.state == "failed"
    first = next(iter(outcome.tasks))
    assert outcome.tasks[first] == "failed" and set(list(outcome.tasks.values())[1:]) <= {"upstream_failed"}
    assert tries(dag_id, first) == 1  # refused at once: retrying cannot fix a conf
    [mail] = smtp_sink.messages
    text = html.unescape(body_text(mail))  # the HTML part escapes quotes
    assert f"the run's conf has unknown keys {unknown}" in text and f"DAG {dag_id}" in text
    assert not (mlops_home / "lake" / "flights" / "raw").exists()  # nothing ran


@pytest.fixture
def flaky_config(tmp_path, monkeypatch):
    """The flights pipeline as `flaky`, with one retry and no delay, so dag.test() runs the retry at once."""
    data = yaml.safe_load(FLIGHTS_YAML.read_text())
    data["name"] = "flaky"
    data["alerts"] = {**copy.deepcopy(data["alerts"]), "retries": 1, "retry_delay_seconds": 0}
    (tmp_path / "flaky.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path))


def test_scoring_while_mlflow_is_down_is_unreachable_and_retried(
    mlops_home, airflow_db, smtp_sink, flaky_config, monkeypatch
):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"http://127.0.0.1:{free_port()}")  # nothing listens there
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    outcome = runs.run("flaky_daily", day("2013-02-01"), {"model_version": "2"}, mark_success="^validate$")
    assert outcome.tasks == {
        "ingest": "success",
        "validate": "success",
        "score": "failed",
        "monitor": "upstream_failed",
    }
    assert tries("flaky_daily", "score") == 2  # retried, as a transient fault is
    [mail] = smtp_sink.messages
    text = html.unescape(body_text(mail))  # the HTML part escapes quotes
    assert "is unreachable (get_model_version('flaky', '2'))" in text, text
    assert "has no version" not in text
