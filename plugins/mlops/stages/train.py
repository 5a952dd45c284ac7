"""Stage 3, training: a time-ordered split, a scikit-learn model, an MLflow run, a registered version."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import subprocess
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops import registry
from mlops.config import REPO_ROOT, PipelineConfig
from mlops.drift import profile
from mlops.features import labels
from mlops.interval import Interval
from mlops.lake import content_digest
from mlops.modeling import binary_metrics, build_estimator, model_input, predict_scores
from mlops.stages.assemble import read_training_set, training_dir

PIP_REQUIREMENTS = ["scikit-learn", "pandas", "numpy", "cloudpickle"]


@dataclass(frozen=True)
class Split:
    """Time-ordered windows: train, then calibration, then evaluation (the most recent days)."""

    train: Interval
    calibration: Interval
    evaluation: Interval


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    training_key: str
    split: Split
    metrics: dict[str, float]


def split_window(cfg: PipelineConfig, window: Interval) -> Split:
    """Cut the window into train | calibration | evaluation by date."""
    t = cfg.training
    evaluation_start = window.end - dt.timedelta(days=t.evaluation_days)
    calibration_start = evaluation_start - dt.timedelta(days=t.calibration_days)
    if calibration_start <= window.start:
        raise ValueError(
            f"window {window} is too short for {t.calibration_days} calibration and {t.evaluation_days} evaluation days"
        )
    return Split(
        Interval(window.start, calibration_start),
        Interval(calibration_start, evaluation_start),
        Interval(evaluation_start, window.end),
    )


def split_frame(df: pd.DataFrame, cfg: PipelineConfig, part: Interval) -> pd.DataFrame:
    """Rows of `df` whose date falls in `part`, with a known label."""
    dates = df[cfg.source.date_column]
    mask = (dates >= pd.Timestamp(part.start)) & (dates < pd.Timestamp(part.end))
    out = df.loc[mask]
    return out.loc[labels(out, cfg.target).notna()]


def train(cfg: PipelineConfig, training_key: str, window: Interval, airflow_run_id: str | None = None) -> TrainResult:
    """Fit the configured model on the train window and register it as a new version."""
    df = read_training_set(cfg.name, training_key)
    split = split_window(cfg, window)
    parts = {name: split_frame(df, cfg, getattr(split, name)) for name in ("train", "calibration", "evaluation")}
    for name, part in parts.items():
        if part.empty:
            raise ValueError(f"training window {window}: the {name} split {getattr(split, name)} has no labelled rows")
    X_train = model_input(parts["train"], cfg.features)
    y_train = labels(parts["train"], cfg.target).to_numpy(dtype="int64")
    estimator = build_estimator(cfg.training.model, cfg.features)
    estimator.fit(X_train, y_train)

    metrics = {}
    for name, part in parts.items():
        scores = predict_scores(estimator, model_input(part, cfg.features))
        for metric, value in binary_metrics(labels(part, cfg.target).to_numpy(), scores, None).items():
            metrics[f"{name}_{metric}"] = value
        metrics[f"{name}_rows"] = float(len(part))

    import mlflow
    import mlflow.data
    import mlflow.sklearn
    from mlflow.models import infer_signature

    registry.client()
    source = str(training_dir(cfg.name) / f"{training_key}.parquet")
    with (
        warnings.catch_warnings(),
        mlflow.start_run(experiment_id=registry.experiment_id(cfg.name), run_name=f"train {window.key}") as run,
    ):
        # MLflow warns that a path source is ambiguous and that int columns cannot hold NaN (ours are float)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
        mlflow.set_tags(
            {
                "pipeline": cfg.name,
                "stage": "train",
                "training_window": window.key,
                "config_digest": cfg.digest,
                "git_commit": _git_commit(),
                "airflow_run_id": airflow_run_id or "",
                "split": json.dumps({k: getattr(split, k).key for k in ("train", "calibration", "evaluation")}),
            }
        )
        mlflow.log_params(
            {
                "model_kind": cfg.training.model.kind,
                **{f"model.{k}": v for k, v in cfg.training.model.params.items()},
                "features": ",".join(cfg.features.all),
                "window_days": cfg.training.window_days,
                "calibration_days": cfg.training.calibration_days,
                "evaluation_days": cfg.training.evaluation_days,
            }
        )
        mlflow.log_params({f"version.{p}": _version(p) for p in ("scikit-learn", "pandas", "numpy", "mlflow")})
        for name, part in parts.items():
            dataset = mlflow.data.from_pandas(part, source=source, name=f"{cfg.name}-{name}-{getattr(split, name).key}")
            mlflow.log_input(dataset, context=name)
            mlflow.set_tag(f"lake_digest.{name}", content_digest(part)[:16])
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)})
        with tempfile.TemporaryDirectory() as tmp:
            ref_path = Path(tmp) / "profile.json"
            ref_path.write_text(json.dumps(profile(parts["train"], cfg.features.categorical, cfg.features.numeric)))
            mlflow.log_artifact(str(ref_path), artifact_path="reference")
        example = X_train.head(5)
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(example, predict_scores(estimator, example)),
            input_example=example,
            pip_requirements=[f"{p}=={_version(p)}" for p in PIP_REQUIREMENTS],
            serialization_format="cloudpickle",
            registered_model_name=cfg.name,
        )
    version = str(info.registered_model_version)
    registry.set_version_tags(
        cfg.name, version, {"training_window": window.key, "config_digest": cfg.digest, "validation_status": "passed"}
    )
    registry.client().set_registered_model_alias(cfg.name, registry.CHALLENGER, version)
    return TrainResult(run.info.run_id, cfg.name, version, training_key, split, metrics)


def load_reference(run_id: str) -> dict:
    """The training-data profile logged with a training run."""
    registry.client()
    import mlflow.artifacts

    return json.loads(mlflow.artifacts.load_text(f"runs:/{run_id}/reference/profile.json"))


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    return importlib.metadata.version(package)
