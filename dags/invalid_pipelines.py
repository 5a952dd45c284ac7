"""Every invalid pipeline config under config/pipelines/, surfaced as an import error of this DAG file.

`dags/pipelines.py` builds the DAGs of the valid pipelines only (each on its own), so a broken YAML
removes nothing but its own DAGs. Its error (the file, the key and the rule) shows here, in the
Airflow UI's import errors, kept apart from pipelines.py, whose DAGs Airflow would otherwise mark stale.
"""

from mlops.airflow.dag_factory import raise_pipeline_errors

raise_pipeline_errors()
