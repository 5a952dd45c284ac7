"""MLflow as the system of record: tracking setup, experiments, registered versions and aliases."""

from __future__ import annotations

import functools
import json
import logging
import os
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops.io.paths import mlflow_artifact_root, mlflow_tracking_uri

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"


@dataclass(frozen=True)
class VersionRef:
    """A registered model version and the threshold stored with it."""

    name: str
    version: str
    run_id: str
    threshold: float | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def client() -> MlflowClient:
    """A client on the configured tracking store (also sets the fluent API's URIs)."""
    _quiet()
    uri = mlflow_tracking_uri()
    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in before.items():  # MLflow exports the URIs; keep MLOPS_HOME in charge of the default
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return MlflowClient(uri, uri)


@functools.cache
def _quiet() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def experiment_id(pipeline: str) -> str:
    """The pipeline's experiment, created with an explicit artifact location on first use."""
    c = client()
    experiment = c.get_experiment_by_name(pipeline)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return c.create_experiment(pipeline, artifact_location=f"{mlflow_artifact_root()}/{pipeline}")
    except MlflowException:  # created concurrently by another task
        return c.get_experiment_by_name(pipeline).experiment_id


def version_by_alias(name: str, alias: str) -> VersionRef | None:
    """The version holding `alias`, or None when no version holds it (or no model exists yet)."""
    try:
        mv = client().get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    return _ref(mv)


def version(name: str, number: str | int) -> VersionRef:
    """One registered version; a missing one raises a clear error."""
    try:
        return _ref(client().get_model_version(name, str(number)))
    except MlflowException as exc:
        raise LookupError(f"model {name!r} has no version {number}") from exc


def _ref(mv) -> VersionRef:
    threshold = mv.tags.get("threshold")
    return VersionRef(mv.name, str(mv.version), mv.run_id, float(threshold) if threshold is not None else None)


def set_version_tags(name: str, number: str, tags: dict[str, object]) -> None:
    """Set several tags on a model version."""
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, number, key, str(value))


def clear_version_tag(name: str, number: str, key: str) -> None:
    """Remove a version tag if it is set."""
    c = client()
    if key in c.get_model_version(name, number).tags:
        c.delete_model_version_tag(name, number, key)


def load_sklearn(ref: VersionRef):
    """The sklearn model of a registered version."""
    client()
    import mlflow.sklearn

    return mlflow.sklearn.load_model(ref.uri)


def champion_for(name: str, day) -> VersionRef | None:
    """The champion of a data interval starting on `day`: stable under backfills.

    That is the promoted, not revoked, version with the latest training window that ended on or
    before `day` (so a re-run of an old day uses the model of that time, not today's). When no
    promoted version qualifies, the current `champion` alias.
    """
    import datetime as dt

    best, best_key = None, None
    for mv in client().search_model_versions(f"name = '{name}'"):
        tags = mv.tags
        if tags.get("promotion_decision") != "promoted" or tags.get("revoked") == "true" or "threshold" not in tags:
            continue
        window_end = dt.date.fromisoformat(tags.get("training_window", "").split("..")[-1] or "9999-12-31")
        if window_end <= day and (best_key is None or (window_end, int(mv.version)) > best_key):
            best, best_key = mv, (window_end, int(mv.version))
    return _ref(best) if best is not None else version_by_alias(name, CHAMPION)


def load_reference(run_id: str) -> dict:
    """The training-data profile logged with a training run."""
    client()
    import mlflow.artifacts

    return json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/reference/profile.json"))
