"""Airflow DAGs of every pipeline under config/pipelines/, built by mlops.dag_factory."""

from mlops.dag_factory import build_all

globals().update(build_all())
