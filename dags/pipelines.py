"""Airflow DAGs of every pipeline under config/pipelines/, built by mlops.airflow.dag_factory."""

from mlops.airflow.dag_factory import build_all

globals().update(build_all())
