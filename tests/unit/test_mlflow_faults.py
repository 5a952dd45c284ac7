"""Registration, promotion, rollback and scoring against a real MLflow server (its basic-auth app, as
compose runs it) that goes away mid-operation: SIGKILLed right after it moved the `champion` alias (and
before it answered), or cut off by a dropped connection. Written ahead, a half-done promotion or
rollback keeps `champion_for` and the alias in agreement, and its retry completes it with one audit
line; an unreachable server reads as unreachable, never as a fact such as "no version 2".

The steps build on each other (one server, started twice): the tests run in file order.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import mlflow
import pytest
import requests
from mlflow import MlflowClient
from threadpoolctl import threadpool_limits

from mlops.core.config import Evaluation, Gate, Promotion
from mlops.core.interval import Interval
from mlops.io import audit, registry
from mlops.stages.assemble import assemble
from mlops.stages.evaluate import evaluate
from mlops.stages.ingest import ingest_missing
from mlops.stages.promote import promote, rollback
from mlops.stages.recalibrate import recalibrate
from mlops.stages.score import resolve_model
from mlops.stages.train import train
from tests.fixtures.mlflow_server import KillSwitchProxy, MlflowServer, alias_move, requests_reach

WINDOW = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 11))  # 4 days to train on, 3 to calibrate, 3 to evaluate
AFTER = dt.date(2013, 1, 25)
NAME = "flights"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow-server")).launch()  # ready before the first MLflow call
    proxy = KillSwitchProxy(srv)
    home = tmp_path_factory.mktemp("faults-home")
    with pytest.MonkeyPatch.context() as mp, threadpool_limits(limits=1, user_api="openmp"):
        mp.setenv("MLOPS_HOME", str(home))
        mp.setenv("MLFLOW_TRACKING_URI", proxy.url)
        mp.setenv("MLOPS_ARTIFACT_ROOT", "mlflow-artifacts:")
        mp.setenv("MLFLOW_TRACKING_USERNAME", srv.username)
        mp.setenv("MLFLOW_TRACKING_PASSWORD", srv.password)
        mp.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")  # fail at once: the task's retries are Airflow's
        try:
            yield srv, proxy
        finally:
            proxy.close()
            srv.stop()


@pytest.fixture(scope="module")
def cfg(flights_cfg):
    training = flights_cfg.training.model_copy(update={"window_days": 10, "calibration_days": 3, "evaluation_days": 3})
    return flights_cfg.model_copy(
        update={
            "training": training,
            "promotion": Promotion(gates=[Gate(metric="roc_auc", min_value=0.5)]),
            "evaluation": Evaluation(min_slice_size=200, bootstrap_samples=0, seed=0),
        }
    )


@pytest.fixture(scope="module")
def window(server, cfg):
    ingest_missing(cfg, WINDOW)  # no MLflow needed: while the server starts
    key = assemble(cfg, WINDOW).key
    server[0].ready()
    return key


@pytest.fixture(scope="module")
def champion_one(window, cfg):
    first = train(cfg, window, WINDOW, airflow_run_id="retrain-1")
    recalibrate(cfg, window, WINDOW, first.version)
    evaluate(cfg, window, WINDOW, first.version)
    assert promote(cfg, first.version, airflow_run_id="retrain-1").promoted
    return first.version


def aliases() -> tuple[str | None, str | None]:
    found = [registry.version_by_alias(NAME, a) for a in (registry.CHAMPION, registry.PREVIOUS_CHAMPION)]
    return tuple(v.version if v else None for v in found)


def promotions(version: str) -> list[dict]:
    return [e for e in audit.history(NAME) if e["event"] == "promoted" and e["version"] == version]


def decision(version: str) -> str | None:
    return registry.client().get_model_version(NAME, version).tags.get("promotion_decision")


def test_mlflow_refuses_requests_without_the_credentials(server, window):
    srv, _ = server
    url = f"{srv.url}/api/2.0/mlflow/registered-models/alias"
    anonymous = requests.post(url, json={"name": NAME, "alias": "champion", "version": "1"}, timeout=10)
    assert anonymous.status_code == 401
    wrong = requests.post(url, json={"name": NAME, "alias": "x", "version": "1"}, auth=(srv.username, "no"), timeout=10)
    assert wrong.status_code == 401
    assert requests.get(f"{srv.url}/health", timeout=10).status_code == 200  # what the compose healthcheck asks


@pytest.fixture(scope="module")
def challenger_two(server, champion_one, window, cfg):
    """Version 2, whose first training attempt lost MLflow after registering it (the challenger alias move)."""
    _, proxy = server
    forced = cfg.model_copy(update={"description": "forced"})
    proxy.arm(alias_move(registry.CHALLENGER, "drop"))
    with pytest.raises(registry.RegistryUnavailableError, match="unreachable"):
        train(forced, window, WINDOW, airflow_run_id="retrain-2", force=True)
    assert proxy.hit, "the fault did not fire"
    retried = train(forced, window, WINDOW, airflow_run_id="retrain-2", force=True)
    recalibrate(cfg, window, WINDOW, retried.version)
    evaluate(cfg, window, WINDOW, retried.version)
    return retried


def test_a_retried_training_adopts_the_version_its_first_attempt_registered(challenger_two):
    assert challenger_two.version == "2" and not challenger_two.skipped
    versions = sorted(int(v.version) for v in registry.client().search_model_versions(f"name = '{NAME}'"))
    assert versions == [1, 2]  # not a third, untouched version
    tags = registry.client().get_model_version(NAME, "2").tags
    assert tags["airflow_run_id"] == "retrain-2" and tags["training_window"] == WINDOW.key
    assert registry.version_by_alias(NAME, registry.CHALLENGER).version == "2"


@pytest.fixture(scope="module")
def killed_after_commit(server, challenger_two, cfg):
    """Version 2 promoted while MLflow is SIGKILLed right after it moved `champion`, before it answered."""
    srv, proxy = server
    proxy.arm(alias_move(registry.CHAMPION, "after"))
    with pytest.raises(registry.RegistryUnavailableError, match="unreachable"):
        promote(cfg, "2", evaluated_champion="1", airflow_run_id="retrain-2")
    assert proxy.hit and not requests_reach(srv), "the server survived its kill"


def test_an_unreachable_mlflow_reads_as_unreachable_not_as_a_missing_model(killed_after_commit, cfg):
    """The server is down: no call may answer "no version 2" or "no champion" (LookupError, None)."""
    for ask in (
        lambda: resolve_model(cfg, AFTER, "2"),  # scoring a pinned version
        lambda: resolve_model(cfg, AFTER),  # scoring with the champion of the day
        lambda: registry.version_by_alias(NAME, registry.CHAMPION),
        lambda: registry.pending_move(NAME),
        lambda: registry.mark_orphans(NAME),
    ):
        with pytest.raises(
            registry.RegistryUnavailableError, match=r"MLflow at http://127\.0\.0\.1:\d+ is unreachable"
        ):
            ask()
    assert not issubclass(registry.RegistryUnavailableError, LookupError)  # the score task fails LookupError at once


def test_a_promotion_killed_after_the_alias_moved_agrees_and_its_retry_completes_it(
    server, killed_after_commit, challenger_two, cfg
):
    srv, _ = server
    srv.start()  # MLflow is back, with whatever it committed before it died
    assert aliases()[0] == "2"  # the alias moved before the kill
    assert registry.champion_for(NAME, AFTER).version == "2"  # and scoring follows it: one answer
    assert decision("2") == "promoting" and promotions("2") == []  # the decision was recorded ahead
    assert registry.pending_move(NAME)["version"] == "2"

    retried = promote(cfg, "2", evaluated_champion="1", airflow_run_id="retrain-2")  # the task's retry
    assert retried.promoted and retried.champion_version == "1"
    assert aliases() == ("2", "1") and registry.champion_for(NAME, AFTER).version == "2"
    assert decision("2") == "promoted" and registry.pending_move(NAME) is None
    [line] = promotions("2")
    assert (line["previous"], line["airflow_run_id"], line["run_id"]) == ("1", "retrain-2", challenger_two.run_id)
    assert line["decision_id"].startswith("promoted-2-")
    assert registry.client().get_run(challenger_two.run_id).data.tags["promotion_decision"] == "promoted"
    path = registry.client().download_artifacts(challenger_two.run_id, "promotion/gate_report.json")
    assert json.loads(Path(path).read_text())["promoted"] is True


def test_promoting_the_same_challenger_twice_writes_one_audit_line(killed_after_commit, cfg):
    before = audit.history(NAME)
    again = promote(cfg, "2", evaluated_champion="2", airflow_run_id="retrain-2-again")
    assert again.promoted and again.champion_version == "1"
    assert audit.history(NAME) == before and aliases() == ("2", "1")


def test_a_rollback_cut_before_the_alias_moves_is_completed_by_its_retry(server, killed_after_commit, cfg):
    _, proxy = server
    proxy.arm(alias_move(registry.CHAMPION, "drop"))
    with pytest.raises(registry.RegistryUnavailableError, match="unreachable"):
        rollback(cfg, reason="drill", triggered_by="dag manual__r", airflow_run_id="manual__r")
    assert aliases()[0] == "2" and registry.champion_for(NAME, AFTER).version == "2"  # nothing moved yet
    assert registry.client().get_model_version(NAME, "2").tags["revoked"] == "true"  # written ahead
    assert registry.pending_move(NAME)["event"] == "rollback"

    assert rollback(cfg, reason="drill", triggered_by="dag manual__r", airflow_run_id="manual__r") == "1"
    assert aliases() == ("1", "2") and registry.champion_for(NAME, AFTER).version == "1"
    assert rollback(cfg, airflow_run_id="manual__r") == "1"  # a retry of the completed run: no flip back to 2
    rollbacks = [e for e in audit.history(NAME) if e["event"] == "rollback"]
    assert [(e["version"], e["previous"], e["revoked"], e["reasons"]) for e in rollbacks] == [
        ("1", "2", ["2"], ["drill"])
    ]
    assert aliases() == ("1", "2") and registry.pending_move(NAME) is None


def test_a_version_registered_without_its_tags_is_marked_orphan(killed_after_commit, window, cfg):
    """What an interrupted registration leaves (a version and no tags) is marked at the next training."""
    c = MlflowClient()
    one = c.get_model_version(NAME, "1")
    orphan = mlflow.register_model(one.source, NAME)  # registered, then the crash: no tags
    result = train(cfg, window, WINDOW)  # unchanged inputs: skipped, but it looks at the registry first
    assert result.skipped
    tags = c.get_model_version(NAME, orphan.version).tags
    assert tags["orphan"] == "true" and "without its training tags" in tags["orphan_reason"]
    assert registry.mark_orphans(NAME) == []  # marked once
    assert registry.champion_for(NAME, AFTER).version == "1"
