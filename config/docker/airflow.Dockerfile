# The Airflow image of docker-compose.yaml: apache/airflow plus this project's package and its exact pins.
FROM apache/airflow:3.3.2-python3.11
COPY --chown=airflow:root pyproject.toml README.md constraints.txt /opt/mlops/src/
COPY --chown=airflow:root plugins /opt/mlops/src/plugins
RUN pip install --no-cache-dir -c /opt/mlops/src/constraints.txt /opt/mlops/src
