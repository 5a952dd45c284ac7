"""Where everything the pipelines write lives: one folder, `$MLOPS_HOME` (default `.mlops/` in the repo)."""

from __future__ import annotations

import os
from pathlib import Path

from mlops.config import REPO_ROOT


def mlops_home() -> Path:
    """The root folder of all outputs."""
    return Path(os.environ.get("MLOPS_HOME", REPO_ROOT / ".mlops")).resolve()


def lake_dir(pipeline: str) -> Path:
    """The pipeline's data lake (partitions, validation results, predictions)."""
    return mlops_home() / "lake" / pipeline


def mlflow_tracking_uri() -> str:
    """`$MLFLOW_TRACKING_URI`, or a SQLite store under `$MLOPS_HOME/mlflow`."""
    uri = os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return uri
    folder = mlops_home() / "mlflow"
    folder.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{folder / 'mlflow.db'}"


def mlflow_artifact_root() -> str:
    """Artifact root for new experiments: `$MLOPS_ARTIFACT_ROOT` or `$MLOPS_HOME/mlflow/artifacts`."""
    return os.environ.get("MLOPS_ARTIFACT_ROOT", (mlops_home() / "mlflow" / "artifacts").as_uri())


def mail_dir() -> Path:
    """Where the demo's SMTP sink keeps the mails it received."""
    return mlops_home() / "mail"
