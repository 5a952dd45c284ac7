"""MLflow as the system of record: tracking setup, experiments, registered versions and aliases."""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops.paths import mlflow_artifact_root, mlflow_tracking_uri

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
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
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


def load_sklearn(ref: VersionRef):
    """The sklearn model of a registered version."""
    client()
    import mlflow.sklearn

    return mlflow.sklearn.load_model(ref.uri)
