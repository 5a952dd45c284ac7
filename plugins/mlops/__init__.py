"""MLOps pipelines on Airflow."""
