"""Data sources a pipeline can ingest from."""
