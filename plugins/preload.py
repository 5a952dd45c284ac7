"""Opt-in (`MLOPS_PRELOAD=1`): import the task libraries once, when an Airflow process loads its plugins.

Each task imports pandas, scikit-learn, MLflow and Great Expectations: about 9 s of a task's run under
the real scheduler. With the LocalExecutor on Linux, tasks are forks of executor workers that the
scheduler starts after it has loaded its plugins, so importing them here cuts that to a fraction of a
second per task, at the price of the process holding them (about 0.4 GB, 9 s to import). Off by default;
set `MLOPS_PRELOAD=1` and `AIRFLOW__CORE__LAZY_LOAD_PLUGINS=False` in the processes that run tasks (the
scheduler with the LocalExecutor, a Celery worker) to use it: `mlops.airflow.environment.PRELOAD`.
"""

from __future__ import annotations

import importlib
import os

from airflow.plugins_manager import AirflowPlugin

PRELOADED = (
    "pandas",
    "pyarrow.parquet",
    "sklearn.ensemble",
    "mlflow.sklearn",
    "great_expectations",
    "mlops.stages.ingest",
    "mlops.stages.validate",
    "mlops.stages.assemble",
    "mlops.stages.train",
    "mlops.stages.recalibrate",
    "mlops.stages.evaluate",
    "mlops.stages.feature_audit",
    "mlops.stages.promote",
    "mlops.stages.score",
    "mlops.stages.monitor",
    "mlops.stages.outcomes",
    "mlops.stages.alerts",
    # imported on first use inside the tasks (found by listing the modules a forked validate task loads):
    # GX's Data Docs builder and our views, the report, the artifact cache, MLflow's HTTP request
    # headers and tracing processors (its client loads them when it creates a run), pyarrow datasets
    "great_expectations.render.renderer.site_builder",
    "mlops.io.gx_views",
    "mlops.io.artifact_cache",
    "mlops.reporting.report",
    "mlflow.tracking.request_header.registry",
    "mlflow.tracing.processor.otel",
    "mlflow.tracing.export.utils",
    "pyarrow.dataset",
    # the evaluation plots (evaluate task) and the promotion report (promote task)
    "mlops.reporting.plots",
    "mlops.reporting.promotion",
)

if os.environ.get("MLOPS_PRELOAD") == "1":
    for _module in PRELOADED:
        importlib.import_module(_module)
    # matplotlib.pyplot on the Agg backend, as every plot of ours draws it: 0.5 s of each task that plots
    importlib.import_module("mlops.reporting.plots").pyplot()
    # MLflow maps every installed module to its package (`packages_distributions`, 0.2 s) the first time
    # a process logs a model, to check the model's pinned requirements: once here, not in each train task
    _requirements = importlib.import_module("mlflow.utils.requirements_utils")
    getattr(_requirements, "_init_modules_to_packages_map", lambda: None)()


class MlopsPreload(AirflowPlugin):
    name = "mlops_preload"
