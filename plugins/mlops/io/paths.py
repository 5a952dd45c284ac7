"""Where everything the pipelines write lives: one folder, `$MLOPS_HOME` (default `.mlops/` in the repo)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

from mlops.core.config import REPO_ROOT


def mlops_home() -> Path:
    """The root folder of all outputs (`$MLOPS_HOME`, resolved; a relative one against the working directory)."""
    home = os.environ.get("MLOPS_HOME", str(REPO_ROOT / ".mlops"))
    return _resolved(home, "" if os.path.isabs(home) else os.getcwd())


@functools.lru_cache(maxsize=16)
def _resolved(path: str, cwd: str) -> Path:
    """`path` resolved (symlinks followed): every path of the lake starts here, a dozen times a day's task."""
    return Path(path).resolve()


def lake_dir(pipeline: str) -> Path:
    """The pipeline's data lake (partitions, validation results, predictions)."""
    return mlops_home() / "lake" / pipeline


def raw_dir(pipeline: str) -> Path:
    """Folder of the ingested daily partitions (`raw/<date>.parquet`)."""
    return lake_dir(pipeline) / "raw"


def training_dir(pipeline: str) -> Path:
    """Folder of assembled training windows (`training/<start>..<end>.parquet`)."""
    return lake_dir(pipeline) / "training"


def predictions_dir(pipeline: str) -> Path:
    """Folder of prediction partitions, one per day."""
    return lake_dir(pipeline) / "predictions"


def scored_dir(pipeline: str) -> Path:
    """Folder of the scored days' records (`scored/<date>.json`): done in Parquet and SQL, or retracted."""
    return lake_dir(pipeline) / "scored"


def validation_dir(pipeline: str) -> Path:
    """Folder of validation reports, one JSON per interval."""
    return lake_dir(pipeline) / "validation"


def shift_scores_dir(pipeline: str) -> Path:
    """Folder of the shift-score series: one Parquet file per interval, every feature and metric."""
    return lake_dir(pipeline) / "shift_scores"


def monitoring_dir(pipeline: str) -> Path:
    """Folder of the monitoring reports, one JSON per interval."""
    return lake_dir(pipeline) / "monitoring"


def outcomes_dir(pipeline: str) -> Path:
    """Folder of the outcomes series: `outcomes/<scored day>.parquet` (tidy metrics) and `.json` (label counts)."""
    return lake_dir(pipeline) / "outcomes"


def cache_dir() -> Path:
    """Folder of local copies of what does not change once written (e.g. registered versions' artifacts).

    Safe to delete: its content is fetched again when needed.
    """
    return mlops_home() / "cache"


def mlflow_ui_url() -> str:
    """Base address of the MLflow UI for links: `$MLOPS_MLFLOW_UI_URL`, default http://localhost:5000."""
    return os.environ.get("MLOPS_MLFLOW_UI_URL", "http://localhost:5000").rstrip("/")


def mlflow_run_url(run_id: str) -> str:
    """Link to a run in the MLflow UI."""
    return f"{mlflow_ui_url()}/#/runs/{run_id}"


def mlflow_artifact_url(experiment_id: str, run_id: str, path: str) -> str:
    """Link to one artifact of a run in the MLflow UI (its artifact browser opens the file; HTML is previewed)."""
    return f"{mlflow_ui_url()}/#/experiments/{experiment_id}/runs/{run_id}/artifacts/{path}"


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
