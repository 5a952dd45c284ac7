# The MLflow tracking server of docker-compose.yaml, pinned by constraints.txt (PostgreSQL backend store).
FROM python:3.11-slim-bookworm
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt mlflow==3.17.2 psycopg2-binary \
    && useradd --create-home --uid 50000 mlflow
USER mlflow
EXPOSE 5000
