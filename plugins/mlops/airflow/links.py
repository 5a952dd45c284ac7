"""Operator extra links: from an Airflow task to its MLflow run (validation report, training run) and report."""

from __future__ import annotations

from airflow.sdk import BaseOperatorLink

XCOM_KEY = "mlflow_run_id"
REPORT_XCOM_KEY = "promotion_report"  # {experiment_id, run_id, path}


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


class PromotionReportLink(BaseOperatorLink):
    """Opens the promotion report (an HTML artifact of the challenger's run) that a promote task recorded."""

    name = "Promotion report"

    def get_link(self, operator, *, ti_key) -> str:
        from airflow.sdk.bases.xcom import BaseXCom

        where = BaseXCom.get_value(ti_key=ti_key, key=REPORT_XCOM_KEY)
        if not where:
            return ""
        from mlops.io.paths import mlflow_artifact_url

        return mlflow_artifact_url(where["experiment_id"], where["run_id"], where["path"])
