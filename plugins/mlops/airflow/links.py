"""Operator extra links: from an Airflow task to its MLflow run (validation report, training run)."""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink

XCOM_KEY = "mlflow_run_id"


class MlflowRunLink(BaseOperatorLink):
    """Opens the MLflow run a task recorded under XCom key `mlflow_run_id`."""

    name = "MLflow run"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.bases.xcom import BaseXCom

        run_id = BaseXCom.get_value(ti_key=ti_key, key=XCOM_KEY)
        if not run_id:
            return ""
        from mlops.io.paths import mlflow_run_url

        return mlflow_run_url(run_id)
