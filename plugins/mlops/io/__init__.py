"""Where data lives: the Parquet lake and its readers, sources (files, SQL, HTTP), prediction sinks,
the MLflow registry, the audit trail, paths and links, the Great Expectations adapter, schema inference.

May import `mlops.core` only.
"""
