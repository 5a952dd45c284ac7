-- One PostgreSQL for the stack: Airflow metadata, the MLflow backend store, the predictions table.
CREATE DATABASE airflow;
CREATE DATABASE mlflow;
CREATE DATABASE scores;
