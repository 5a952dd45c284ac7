"""Airflow plugin of the mlops package: registers its operator extra links with the API server."""

from airflow.plugins_manager import AirflowPlugin

from mlops.airflow.links import MlflowRunLink


class MlopsPlugin(AirflowPlugin):
    name = "mlops"
    operator_extra_links = [MlflowRunLink()]  # noqa: RUF012 (AirflowPlugin's own attribute)
