"""The feature audit's MLflow artifacts on the challenger's training run, under `audit/`.

`audit/feature_audit.json` (the summary: verdicts, flagged features, correlated pairs, timing),
`audit/permutation_importance.csv`, `audit/lofo.csv` and `audit/correlated_pairs.csv` (tidy tables),
and metrics `audit_*` (flagged count, seconds, ratio to the training fit).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.io import registry

FOLDER = "audit"
SUMMARY_PATH = f"{FOLDER}/feature_audit.json"
TABLES = ("permutation_importance", "lofo", "correlated_pairs")


def log_feature_audit(run_id: str, summary: dict[str, Any], tables: dict[str, pd.DataFrame]) -> None:
    """Log the summary (JSON), the tables (CSV, named by TABLES) and the numeric `metrics` of the summary.

    `summary["metrics"]`: name -> float, logged as run metrics (NaN and infinite values left out).
    Raises RegistryUnavailableError (from `registry.reachable`) when MLflow cannot be reached.
    """
    c = registry.client()
    with registry.reachable(f"logging the feature audit of run {run_id}"), tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / FOLDER
        folder.mkdir()
        (folder / Path(SUMMARY_PATH).name).write_text(json.dumps(summary, indent=2, default=str))
        for name, table in tables.items():
            table.to_csv(folder / f"{name}.csv", index=False)
        c.log_artifacts(run_id, str(folder), FOLDER)
        values = summary.get("metrics", {}).items()
        registry.log_values(run_id, {k: v for k, v in values if isinstance(v, int | float) and math.isfinite(v)})


def read_feature_audit(run_id: str) -> dict[str, Any] | None:
    """The run's `audit/feature_audit.json`; None when the run has no feature audit."""
    import mlflow.artifacts

    paths = {f.path for f in registry.client().list_artifacts(run_id, FOLDER)}
    if SUMMARY_PATH not in paths:
        return None
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/{SUMMARY_PATH}")
