# The MLflow tracking server of docker-compose.yaml, pinned by constraints.txt (PostgreSQL backend store),
# with its basic-auth app (Flask-WTF pinned here: it is no dependency of the project itself).
FROM python:3.11-slim-bookworm
COPY constraints.txt /tmp/constraints.txt
RUN pip install --no-cache-dir -c /tmp/constraints.txt "mlflow[auth]==3.17.2" flask-wtf==1.3.0 psycopg2-binary \
    && useradd --create-home --uid 50000 mlflow \
    && mkdir -p /mlflow/auth /mlflow/artifacts && chown -R mlflow /mlflow
USER mlflow
EXPOSE 5000
