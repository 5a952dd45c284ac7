"""A SQL database read with SQLAlchemy: the day's rows by a query with bind parameters :start and :end.

SQLAlchemy and the driver are imported on first use, so importing this module stays cheap (DAG parsing).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pandas as pd

from mlops.core.config import Source, mask_secrets
from mlops.io.sources import SourceError

_PASSWORD_IN_URL = re.compile(r"(://[^:/@]*:)[^@/]*@")


def mask_url(url: str) -> str:
    """The URL with its password (and secret-like query values, e.g. ?password=) replaced by ***."""
    try:
        from sqlalchemy.engine import make_url

        return mask_secrets(make_url(url).render_as_string(hide_password=True))
    except Exception:  # not a SQLAlchemy URL: mask by pattern
        return mask_secrets(_PASSWORD_IN_URL.sub(r"\1***@", url))


def _reason(exc: BaseException) -> str:
    """The driver's message (without SQLAlchemy's statement echo), on one line."""
    while getattr(exc, "orig", None) is None and exc.__cause__ is not None:
        exc = exc.__cause__  # pandas wraps SQLAlchemy's error, which wraps the driver's
    orig = getattr(exc, "orig", None)
    text = str(orig if orig is not None else exc).strip()
    return " ".join(text.split())


class SqlSource:
    """Runs `src.query` per day and `src.tables[name]` (or the whole table) per reference table."""

    def __init__(self, src: Source, url: str | None) -> None:
        if not url:
            raise SourceError("sql source: no database URL (give source.url, or resolve source.conn_id to a URL)")
        self.src = src
        self.url = url
        self.masked_url = mask_url(url)
        self.description = f"sql:{self.masked_url}"
        self.last_read: dict[str, object] = {}

    def _query(self, sql: Any, params: dict[str, Any] | None, where: str) -> pd.DataFrame:
        import sqlalchemy as sa
        from sqlalchemy.pool import NullPool

        try:
            connect_args = {"connect_timeout": max(1, int(self.src.timeout_seconds))} if "postgres" in self.url else {}
            engine = sa.create_engine(self.url, poolclass=NullPool, connect_args=connect_args)
        except Exception as exc:  # bad URL, unknown dialect, missing driver
            raise SourceError(f"{self.description}, {where}: cannot open the database: {_reason(exc)}") from exc
        try:
            with engine.connect() as conn:
                if conn.dialect.name == "postgresql":  # dates in one zone: the session's is the declared one
                    conn.execute(sa.text("SELECT set_config('TimeZone', :zone, false)"), {"zone": self.src.time_zone})
                statement = sa.text(sql) if isinstance(sql, str) else sql
                return pd.read_sql_query(statement, conn, params=params)
        except (sa.exc.SQLAlchemyError, pd.errors.DatabaseError) as exc:
            raise SourceError(f"{self.description}, {where}: {_reason(exc)}") from exc
        finally:
            engine.dispose()

    def read_day(self, day: dt.date) -> pd.DataFrame:
        """Rows of the query with :start and :end the day's midnights, naive, in `source.time_zone`.

        On PostgreSQL the session's time zone is `source.time_zone`, so `timestamptz` columns compare
        with (and read back in) the same zone as naive `timestamp` and `date` columns.
        """
        start = dt.datetime.combine(day, dt.time())
        params = {"start": start, "end": start + dt.timedelta(days=1)}
        df = self._query(self.src.query, params, f"partition {day.isoformat()}")
        self.last_read = {"rows": len(df), "time_zone": self.src.time_zone}
        return df

    def read_table(self, name: str) -> pd.DataFrame:
        query = self.src.tables.get(name)
        if query is None:
            import sqlalchemy as sa

            schema, _, table = name.rpartition(".")
            query = sa.select(sa.literal_column("*")).select_from(sa.table(table, schema=schema or None))
        return self._query(query, None, f"table {name!r}")
