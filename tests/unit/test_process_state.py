"""In-process callers must not leave settings behind: an environment variable or an MLflow URI set for
one stack, sink or server would send the next caller to something that is gone (the CI failure of stop
15: a test pointed MLflow's registry at a closed port and the system tests after it inherited it)."""

from __future__ import annotations

import os

import pytest
from mlflow import MlflowClient

from mlops.airflow.environment import overridden
from mlops.io import registry
from mlops.local.ports import free_port

DEAD = f"http://127.0.0.1:{free_port()}"  # nothing listens there


def test_overridden_puts_back_a_value_and_removes_a_new_key(monkeypatch):
    monkeypatch.setenv("MLOPS_TEST_KEPT", "before")
    monkeypatch.delenv("MLOPS_TEST_NEW", raising=False)
    with pytest.raises(RuntimeError), overridden({"MLOPS_TEST_KEPT": "during", "MLOPS_TEST_NEW": "x"}):
        assert os.environ["MLOPS_TEST_KEPT"] == "during" and os.environ["MLOPS_TEST_NEW"] == "x"
        raise RuntimeError("the block failed")
    assert os.environ["MLOPS_TEST_KEPT"] == "before"
    assert "MLOPS_TEST_NEW" not in os.environ


def test_a_test_points_mlflow_at_a_server_that_is_gone(monkeypatch, tmp_path):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", DEAD)
    registry.client()  # sets the fluent API's tracking and registry URIs (module globals of MLflow)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"  # in the test's folder: a relative path lands in the clone
    assert MlflowClient(tracking_uri=uri)._registry_uri == DEAD  # the hazard, shown


def test_the_next_test_gets_the_registry_of_the_server_it_names(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert MlflowClient(tracking_uri=uri)._registry_uri == uri
