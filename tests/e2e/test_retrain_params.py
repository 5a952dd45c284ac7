"""End to end: the retrain DAG's params (model_kind, threshold_policy, force_retrain) with dag.test()."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops.core.interval import Interval
from mlops.io import registry
from mlops.io.feature_audit import read_feature_audit
from mlops.local import runs

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("one_openmp_thread")]
WINDOW = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 22))
CONF = {
    "window_start": WINDOW.start.isoformat(),
    "window_end": WINDOW.end.isoformat(),
    "model_kind": "logistic_regression",
    "threshold_policy": "recall_at_precision",
}


@pytest.fixture(scope="module")
def logistic(module_home, airflow_db):
    """The retrain DAG on a 21-day window with a logistic regression and a precision floor."""
    return runs.run("flights_retrain", WINDOW, CONF)


@pytest.fixture(scope="module")
def unchanged(logistic):
    """The same run again: same window, config and code, force_retrain false."""
    return runs.run("flights_retrain", WINDOW, {**CONF, "force_retrain": False})


def test_model_kind_and_threshold_policy_params(logistic, flights_cfg):
    assert logistic.succeeded, logistic.tasks
    assert set(logistic.tasks.values()) == {"success"}
    trained = logistic.xcoms["train"]
    c = registry.client()
    run = c.get_run(trained["run_id"])
    assert run.data.params["model_kind"] == "logistic_regression" != flights_cfg.training.model.kind
    assert not any(key.startswith("model.") for key in run.data.params)  # that kind's default params
    tags = c.get_model_version("flights", trained["version"]).tags
    assert tags["threshold_policy"] == "recall_at_precision"
    assert run.data.tags["threshold_policy"] == "recall_at_precision"
    assert logistic.xcoms["recalibrate"]["policy"] == "recall_at_precision"
    assert run.data.metrics["calibration_precision"] >= flights_cfg.threshold.min_precision
    assert float(tags["threshold"]) == logistic.xcoms["recalibrate"]["threshold"]
    model = registry.load_sklearn(registry.version("flights", trained["version"]))
    calibrated = model.named_steps["model"]  # flights.yaml calibrates probabilities (sigmoid)
    assert type(calibrated).__name__ == "CalibratedClassifierCV" and calibrated.method == "sigmoid"
    assert type(calibrated.estimator.estimator.named_steps["classifier"]).__name__ == "LogisticRegression"
    assert logistic.xcoms["promote"]["promoted"]
    assert registry.version_by_alias("flights", registry.CHAMPION).version == trained["version"]
    # every task of the run reads the params' config: the feature audit refits the kind that was trained
    audit = read_feature_audit(trained["run_id"])
    assert audit is not None and audit["model_kind"] == "logistic_regression", audit


def test_unchanged_window_reuses_the_version(logistic, unchanged):
    assert unchanged.tasks["train"] == "success"
    assert unchanged.xcoms["train"]["version"] == logistic.xcoms["train"]["version"]
    versions = registry.client().search_model_versions("name = 'flights'")
    assert [str(v.version) for v in versions] == [logistic.xcoms["train"]["version"]]
    experiment = registry.client().get_experiment_by_name("flights").experiment_id
    skips = registry.client().search_runs([experiment], "tags.skipped = 'true'")
    assert len(skips) == 1 and skips[0].data.tags["reused_version"] == logistic.xcoms["train"]["version"]


def test_unchanged_window_skips_the_stages_after_train(unchanged):
    assert unchanged.tasks == {
        "assemble": "success",
        "validate": "success",
        "train": "success",
        "recalibrate": "skipped",
        "evaluate": "skipped",
        "audit": "skipped",
        "promote": "skipped",
    }


def test_force_retrain_trains_a_new_version(logistic, unchanged):
    forced = runs.run("flights_retrain", WINDOW, {**CONF, "force_retrain": True})
    assert forced.tasks["train"] == "success"
    assert forced.xcoms["train"]["version"] != logistic.xcoms["train"]["version"]
