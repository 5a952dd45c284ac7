"""Airflow connections of a pipeline, resolved to SQLAlchemy URLs in this one place.

Every entry point that opens the source or the predictions sink (the ingest and assemble tasks,
`mlops infer-schema`, `mlops check`, the score task) calls these, so `source.conn_id` and
`scoring.sink_conn_id` work everywhere alike and no password needs to be written in the YAML.
"""

from __future__ import annotations

from mlops.core.config import PipelineConfig


class ConnectionNotFoundError(LookupError):
    """A config names an Airflow connection that is not defined."""


def connection_url(conn_id: str, pipeline: str, key: str) -> str:
    """The SQLAlchemy URL of Airflow connection `conn_id` (postgres:// becomes postgresql+psycopg2://).

    Raises ConnectionNotFoundError naming the pipeline, the config key and the connection id.
    """
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        uri = BaseHook.get_connection(conn_id).get_uri()
    except AirflowNotFoundException:
        raise ConnectionNotFoundError(
            f"pipeline {pipeline!r}: {key} {conn_id!r} is not an Airflow connection "
            f"(define it, e.g. env AIRFLOW_CONN_{conn_id.upper()}, or in the Airflow UI)"
        ) from None
    for prefix in ("postgres://", "postgresql://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg2://" + uri[len(prefix) :]
    return uri


def source_url(cfg: PipelineConfig) -> str | None:
    """The URL of a SQL source's connection `source.conn_id`; None when the source needs none."""
    if cfg.source.kind != "sql" or not cfg.source.conn_id:
        return None
    return connection_url(cfg.source.conn_id, cfg.name, "source.conn_id")


def sink_url(cfg: PipelineConfig) -> str | None:
    """The URL of the predictions sink's connection `scoring.sink_conn_id`, if any.

    Without a connection, scoring falls back to `scoring.sink_url`, then env MLOPS_SCORES_URL.
    """
    if not cfg.scoring.sink_conn_id:
        return None
    return connection_url(cfg.scoring.sink_conn_id, cfg.name, "scoring.sink_conn_id")
