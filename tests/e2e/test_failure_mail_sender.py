"""The alert mail goes out when the SMTP connection names no sender: the pipeline's `alerts.from_email`,
else Airflow's `[email] from_email`. A real SMTP server on loopback receives it (dag.test() of a
rollback DAG that fails on an unknown version).
"""

from __future__ import annotations

import json

import pytest
import yaml
from airflow.providers.smtp.hooks.smtp import SmtpHook

from mlops.airflow.dag_factory import failure_notifier
from mlops.core.config import REPO_ROOT, load_pipeline
from mlops.local import runs
from tests.conftest import day

pytestmark = pytest.mark.e2e
FLIGHTS_YAML = REPO_ROOT / "config" / "pipelines" / "flights.yaml"


@pytest.fixture
def no_sender(smtp_sink, monkeypatch):
    """smtp_default on the sink, without `from_email` (SmtpNotifier alone then sends nothing)."""
    conn = {"conn_type": "smtp", "host": smtp_sink.host, "port": smtp_sink.port}
    conn["extra"] = {"disable_tls": True, "disable_ssl": True}
    monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", json.dumps(conn))
    monkeypatch.delenv("AIRFLOW__EMAIL__FROM_EMAIL", raising=False)
    return smtp_sink


@pytest.fixture
def pipeline_sender(tmp_path, monkeypatch):
    data = yaml.safe_load(FLIGHTS_YAML.read_text())
    data["alerts"]["from_email"] = "flights-alerts@example.com"
    (tmp_path / "flights.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path))


def failed_rollback():
    outcome = runs.run("flights_rollback", day("2013-02-01"), {"version": "99", "reason": "mail test"})
    assert outcome.tasks == {"rollback": "failed"}


def test_sender_from_the_pipeline_config(mlops_home, airflow_db, no_sender, pipeline_sender, monkeypatch):
    monkeypatch.setenv("AIRFLOW__EMAIL__FROM_EMAIL", "airflow@example.com")  # the config's own sender wins
    failed_rollback()
    [mail] = no_sender.messages
    assert mail["From"] == "flights-alerts@example.com"
    assert mail["To"] == "ml-team@example.com" and "flights_rollback.rollback failed" in mail["Subject"]


def test_sender_from_airflow_email_settings(mlops_home, airflow_db, no_sender, monkeypatch):
    monkeypatch.setenv("AIRFLOW__EMAIL__FROM_EMAIL", "airflow-alerts@example.com")
    failed_rollback()
    [mail] = no_sender.messages
    assert mail["From"] == "airflow-alerts@example.com"


def test_no_sender_anywhere_says_where_to_set_one(no_sender):
    notifier = failure_notifier(load_pipeline("flights"))
    with SmtpHook(smtp_conn_id="smtp_default") as hook, pytest.raises(ValueError) as info:
        notifier._build_email_content(hook, {})
    assert "no sender for the alert mail" in str(info.value)
    for where in ("'smtp_default' has no from_email", "alerts.from_email", "[email] from_email"):
        assert where in str(info.value)
