"""Stage 3, training: a time-ordered split, a scikit-learn model, an MLflow run, a registered version."""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import subprocess
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops.core.config import REPO_ROOT, PipelineConfig
from mlops.core.drift import profile
from mlops.core.features import labels
from mlops.core.interval import Interval
from mlops.core.metrics import counted_point_metrics
from mlops.core.modeling import build_estimator, model_input, predict_scores
from mlops.core.splits import Split, split_frame, split_window, window_rows
from mlops.io import registry
from mlops.io.datasets import read_training_set_and_digest
from mlops.io.lake import content_digest
from mlops.io.paths import training_dir

PIP_REQUIREMENTS = ["scikit-learn", "pandas", "numpy", "cloudpickle"]
PACKAGE_DIR = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class TrainResult:
    run_id: str
    model_name: str
    version: str
    training_key: str
    split: Split
    metrics: dict[str, float]
    fingerprint: str
    skipped: bool = False  # True: an identical training (data, config, code) was found and reused
    seconds: dict[str, float] = field(default_factory=dict)  # `timed_fit`'s durations ({}: nothing fitted)


def code_digest() -> str:
    """Digest of the mlops package's source: a change of code changes it."""
    h = hashlib.sha256()
    for path in sorted(PACKAGE_DIR.rglob("*.py")):
        h.update(path.relative_to(PACKAGE_DIR).as_posix().encode())
        h.update(path.read_bytes())
    return h.hexdigest()[:16]


def fingerprint(cfg: PipelineConfig, data_digest: str) -> str:
    """What makes a training unique: its data, its config and the code."""
    return hashlib.sha256(f"{data_digest}|{cfg.digest}|{code_digest()}".encode()).hexdigest()[:24]


def find_identical(cfg: PipelineConfig, fp: str) -> registry.VersionRef | None:
    """A registered version trained with the same fingerprint, if any (the newest)."""
    versions = registry.client().search_model_versions(f"name = '{cfg.name}' and tags.fingerprint = '{fp}'")
    if not versions:
        return None
    newest = max(versions, key=lambda v: int(v.version))
    return registry.version(cfg.name, newest.version)


def earlier_run_tag(ref: registry.VersionRef) -> str:
    """The Airflow run that registered a version (its `airflow_run_id` tag), "" when unknown."""
    return registry.client().get_model_version(ref.name, ref.version).tags.get("airflow_run_id", "")


def fit(cfg: PipelineConfig, parts: dict[str, pd.DataFrame]) -> Pipeline:
    """Fit the configured estimator on the train part; calibrate its probabilities on the calibration part."""
    return timed_fit(cfg, parts)[0]


def timed_fit(cfg: PipelineConfig, parts: dict[str, pd.DataFrame]) -> tuple[Pipeline, dict[str, float]]:
    """`fit`, and its durations in seconds: `fit_seconds` (the estimator's fit on the train part, wall
    time), `fit_cpu_seconds` (the same fit in CPU seconds of the process, all threads: the training time
    the feature audit's budget is counted in) and, when the probabilities are calibrated,
    `calibration_seconds` (the calibrator's fit on the calibration part). Model input is built outside
    both."""
    estimator = build_estimator(cfg.training.model, cfg.features)
    X, y = model_input(parts["train"], cfg.features), labels(parts["train"], cfg.target).to_numpy(dtype="int64")
    began, cpu = time.perf_counter(), time.process_time()
    estimator.fit(X, y)
    seconds = {
        registry.FIT_SECONDS: time.perf_counter() - began,
        registry.FIT_CPU_SECONDS: time.process_time() - cpu,
    }
    method = cfg.training.probability_calibration
    if method == "none":
        return estimator, seconds
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.frozen import FrozenEstimator

    calibrated = CalibratedClassifierCV(FrozenEstimator(estimator), method=method)
    X, y = model_input(parts["calibration"], cfg.features), labels(parts["calibration"], cfg.target).astype(int)
    began = time.perf_counter()
    calibrated.fit(X, y)
    seconds["calibration_seconds"] = time.perf_counter() - began
    return Pipeline([("model", calibrated)]), seconds


def train(
    cfg: PipelineConfig, training_key: str, window: Interval, airflow_run_id: str | None = None, force: bool = False
) -> TrainResult:
    """Fit the configured model on the train window and register it as a new version.

    Unless `force`, a training whose data, config and code equal an earlier one's is skipped: the
    earlier version is returned (`skipped=True`) and the skip is logged as an MLflow run. A version
    that an earlier attempt of the same Airflow run registered is adopted, not trained again; versions
    left without their tags by an interrupted registration are tagged `orphan` (registry.mark_orphans).
    """
    df, digest = read_training_set_and_digest(cfg.name, training_key)
    split = split_window(cfg, window)
    parts = {name: split_frame(df, cfg, getattr(split, name)) for name in ("train", "calibration", "evaluation")}
    for name, part in parts.items():
        if part.empty:
            raise ValueError(f"training window {window}: the {name} split {getattr(split, name)} has no labelled rows")
    fp = fingerprint(cfg, digest)
    tags = {
        "pipeline": cfg.name,
        "stage": "train",
        "training_window": window.key,
        "config_digest": cfg.digest,
        "code_digest": code_digest(),
        "git_commit": _git_commit(),
        "fingerprint": fp,
        "airflow_run_id": airflow_run_id or "",
        "split": json.dumps({k: getattr(split, k).key for k in ("train", "calibration", "evaluation")}),
    }
    import mlflow

    registry.mark_orphans(cfg.name)
    earlier = find_identical(cfg, fp)
    if earlier is not None and airflow_run_id and earlier_run_tag(earlier) == airflow_run_id:
        # registered by an earlier attempt of this very run, which stopped before it returned: adopt it
        registry.client().set_registered_model_alias(cfg.name, registry.CHALLENGER, earlier.version)
        return TrainResult(earlier.run_id, cfg.name, earlier.version, training_key, split, {}, fp)
    if not force and earlier is not None:
        with mlflow.start_run(experiment_id=registry.experiment_id(cfg.name), run_name=f"train {window.key} (skipped)"):
            mlflow.set_tags(
                {
                    **tags,
                    "skipped": "true",
                    "reused_version": earlier.version,
                    "skip_reason": "data, config and code unchanged since an earlier training",
                }
            )
        return TrainResult(earlier.run_id, cfg.name, earlier.version, training_key, split, {}, fp, skipped=True)

    estimator, seconds = timed_fit(cfg, parts)
    metrics = {}
    for name, part in parts.items():
        scores = predict_scores(estimator, model_input(part, cfg.features))
        for metric, value in counted_point_metrics(labels(part, cfg.target).to_numpy(), scores, None).items():
            metrics[f"{name}_{metric}"] = value
        metrics[f"{name}_rows"] = float(len(part))
    reference = reference_profile(cfg, window_rows(df, cfg, split.train), split.train)
    run_id, version = _log_and_register(
        cfg, estimator, parts, split, training_key, tags, {**metrics, **seconds}, reference
    )
    return TrainResult(run_id, cfg.name, version, training_key, split, metrics, fp, seconds=seconds)


def reference_profile(cfg: PipelineConfig, rows: pd.DataFrame, days: Interval) -> dict:
    """The skew reference: the profile of every row of the train days, labelled or not, as days are validated."""
    reference = profile(rows, cfg.features.categorical, cfg.features.numeric)
    reference["population"] = f"all rows of {days.key}, labelled or not"
    return reference


def _log_and_register(cfg, estimator, parts, split, training_key, tags, metrics, reference) -> tuple[str, str]:
    import mlflow
    import mlflow.sklearn
    from mlflow.models import infer_signature

    source = str(training_dir(cfg.name) / f"{training_key}.parquet")
    with (
        warnings.catch_warnings(),
        mlflow.start_run(
            experiment_id=registry.experiment_id(cfg.name), run_name=f"train {tags['training_window']}"
        ) as run,
    ):
        # MLflow warns that a path source is ambiguous and that int columns cannot hold NaN (ours are float)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\.")
        mlflow.set_tags(tags)
        mlflow.log_params(
            {
                "model_kind": cfg.training.model.kind,
                **{f"model.{k}": v for k, v in cfg.training.model.params.items()},
                "probability_calibration": cfg.training.probability_calibration,
                "features": ",".join(cfg.features.all),
                "window_days": cfg.training.window_days,
                "calibration_days": cfg.training.calibration_days,
                "evaluation_days": cfg.training.evaluation_days,
                **{f"split.{k}": getattr(split, k).key for k in ("train", "calibration", "evaluation")},
            }
        )
        mlflow.log_params({f"version.{p}": _version(p) for p in ("scikit-learn", "pandas", "numpy", "mlflow")})
        for name, part in parts.items():
            digest = content_digest(part)[:16]
            dataset = registry.pandas_dataset(part, source, f"{cfg.name}-{name}-{getattr(split, name).key}", digest)
            mlflow.log_input(dataset, context=name)
            mlflow.set_tag(f"lake_digest.{name}", digest)
        mlflow.log_dict(reference, registry.REFERENCE_PROFILE)
        mlflow.log_dict(cfg.masked_dump(), "config/pipeline.json")  # passwords and tokens masked
        example = model_input(parts["train"].head(5), cfg.features)
        version_tags = {
            "training_window": tags["training_window"],
            "config_digest": cfg.digest,
            "fingerprint": tags["fingerprint"],
            "data_validation_status": "passed",
            "airflow_run_id": tags["airflow_run_id"],
        }
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=infer_signature(example, predict_scores(estimator, example)),
            input_example=example,
            pip_requirements=[f"{p}=={_version(p)}" for p in PIP_REQUIREMENTS],
            serialization_format="cloudpickle",
            tags=version_tags,
        )
        # The metrics go to the run and to the logged model in one request. Logged before the model,
        # `log_model` would link them itself by reading each one's history (a request per metric).
        mlflow.log_metrics({k: v for k, v in metrics.items() if np.isfinite(v)}, model_id=info.model_id)
        # Registered last, with its tags in one request: a version exists only with its tags and metrics.
        registered = mlflow.register_model(info.model_uri, cfg.name, tags=version_tags)
    version = str(registered.version)
    registry.client().set_registered_model_alias(cfg.name, registry.CHALLENGER, version)
    return run.info.run_id, version


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=5)
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(package: str) -> str:
    return importlib.metadata.version(package)
