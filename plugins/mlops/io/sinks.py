"""The SQL sink of predictions: a PostgreSQL table loaded with binary COPY, one transaction per interval.

Replacing an interval deletes the pipeline's rows of that interval and copies the new ones in the
same transaction: readers see the old rows or the new ones, never both, and a failure anywhere
(a bad batch, a lost connection) rolls back and leaves the old rows in place. Concurrent
replacements for the same pipeline and table are serialised by a transaction-level advisory lock.

Batches are encoded to PostgreSQL's binary COPY format with Arrow (no per-row Python) and sent
from a background thread, so encoding the next batch overlaps with the server ingesting the last.
"""

from __future__ import annotations

import datetime as dt
import queue
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlops.io.sources.sql import mask_url

COLUMNS: dict[str, str] = {  # column -> PostgreSQL type, in table order
    "pipeline": "text",
    "row_key": "text",
    "model_name": "text",
    "model_version": "text",
    "mlflow_run_id": "text",
    "threshold": "double precision",
    "score": "double precision",
    "predicted_label": "smallint",
    "data_interval_start": "timestamptz",
    "data_interval_end": "timestamptz",
    "scored_at": "timestamptz",
}
ENCODE_ROWS = 65_536  # rows encoded into one COPY chunk (~10 MB)
QUEUED_CHUNKS = 4  # encoded chunks waiting for the COPY thread: bounds the sink's memory
READ_SIZE = 1 << 22

_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"  # signature, flags, extension
_TRAILER = b"\xff\xff"
_NULL_LENGTH = b"\xff\xff\xff\xff"
_PG_EPOCH_US = 946_684_800_000_000  # 2000-01-01 UTC in microseconds since 1970
_INT2 = np.iinfo(np.int16)


class SinkError(RuntimeError):
    """Writing predictions to the SQL sink failed (the message never holds a password).

    `transient` is True when retrying may help (the server could not be reached or went away), False
    when the same rows would fail again (a NULL key, a wrong type, a missing privilege).
    """

    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class SinkConfigError(SinkError, ValueError):
    """The sink's URL or table name cannot work (retrying will not help)."""


class _AbortedError(Exception):
    """Raised inside the COPY to make the server abandon it."""


def _fixed_width(payload: np.ndarray, width: int, valid: np.ndarray) -> pa.Array:
    """Binary COPY fields (length + big-endian bytes) of a fixed-width column; -1 length for nulls."""
    n = len(valid)
    block = np.empty((n, 4 + width), np.uint8)
    block[:, :4] = np.frombuffer(np.array([width], ">i4").tobytes(), np.uint8)
    block[:, 4:] = payload.view(np.uint8).reshape(n, width)
    fields = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4 + width), n, [None, pa.py_buffer(block)])
    fields = fields.cast(pa.binary())
    if not valid.all():
        fields = pc.if_else(pa.array(valid), fields, pa.scalar(_NULL_LENGTH, pa.binary()))
    return fields


def _text(values: pd.Series) -> pa.Array:
    """Binary COPY fields of a text column: UTF-8 bytes after their length; -1 length for nulls."""
    try:
        arr = pa.array(values, type=pa.string(), from_pandas=True).cast(pa.binary())
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SinkError(f"column {values.name!r} must hold text: {exc}") from None
    lengths = pc.binary_length(arr).fill_null(-1).to_numpy(zero_copy_only=False).astype(">i4")
    prefix = pa.FixedSizeBinaryArray.from_buffers(pa.binary(4), len(arr), [None, pa.py_buffer(lengths)])
    return pc.binary_join_element_wise(prefix.cast(pa.binary()), arr.fill_null(b""), b"")


def _field(values: pd.Series, pg_type: str) -> pa.Array:
    """Binary COPY fields of one column, checked against its PostgreSQL type."""
    name = values.name
    if pg_type == "text":
        return _text(values)
    if pg_type == "double precision":
        try:
            numbers = values.to_numpy(dtype="float64", na_value=np.nan)
        except (TypeError, ValueError) as exc:
            raise SinkError(f"column {name!r} must hold numbers: {exc}") from None
        return _fixed_width(numbers.astype(">f8"), 8, np.ones(len(values), bool))
    if pg_type == "smallint":
        valid = values.notna().to_numpy()
        try:
            numbers = values.to_numpy(dtype="float64", na_value=0.0)
        except (TypeError, ValueError) as exc:
            raise SinkError(f"column {name!r} must hold integers: {exc}") from None
        if ((numbers != np.round(numbers)) | (numbers < _INT2.min) | (numbers > _INT2.max)).any():
            raise SinkError(f"column {name!r} must hold integers in the smallint range")
        return _fixed_width(numbers.astype(">i2"), 2, valid)
    try:
        stamps = pd.to_datetime(values, utc=True).astype("datetime64[us, UTC]")
    except (TypeError, ValueError) as exc:
        raise SinkError(f"column {name!r} must hold timestamps: {exc}") from None
    valid = stamps.notna().to_numpy()
    micros = np.where(valid, stamps.array.asi8 - _PG_EPOCH_US, 0)
    return _fixed_width(micros.astype(">i8"), 8, valid)


def encode_binary(batch: pd.DataFrame) -> pa.Buffer:
    """The rows of `batch` as PostgreSQL binary COPY tuples (no header or trailer), in COLUMNS order."""
    missing = [c for c in COLUMNS if c not in batch.columns]
    if missing:
        raise SinkError(f"batch lacks columns {missing}")
    n = len(batch)
    if n == 0:
        return pa.py_buffer(b"")
    count = np.full(n, len(COLUMNS), ">i2")
    parts = [pa.FixedSizeBinaryArray.from_buffers(pa.binary(2), n, [None, pa.py_buffer(count)]).cast(pa.binary())]
    parts += [_field(batch[column], pg_type) for column, pg_type in COLUMNS.items()]
    rows = pc.binary_join_element_wise(*parts, b"")
    offsets = np.frombuffer(rows.buffers()[1], np.int32, count=n + 1, offset=rows.offset * 4)
    return rows.buffers()[2].slice(int(offsets[0]), int(offsets[-1] - offsets[0]))


class _Feed:
    """A file-like object `copy_expert` reads the COPY stream from, filled by `put`."""

    def __init__(self) -> None:
        self._queue: queue.Queue[bytes | pa.Buffer | None] = queue.Queue(maxsize=QUEUED_CHUNKS)
        self._pending = memoryview(b"")
        self._ended = False
        self.aborted = False

    def read(self, size: int = READ_SIZE) -> bytes:
        while not self._pending:
            if self.aborted:
                raise _AbortedError("the predictions write was abandoned")
            if self._ended:
                return b""
            chunk = self._queue.get()
            if chunk is None:
                self._ended = True
                continue
            self._pending = memoryview(chunk)
        out, self._pending = self._pending[:size], self._pending[size:]
        return bytes(out)

    def put(self, chunk: bytes | pa.Buffer | None, alive: threading.Thread) -> bool:
        """Queue a chunk (None: end of stream); False when the reader is gone."""
        while alive.is_alive():
            try:
                self._queue.put(chunk, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def abort(self) -> None:
        self.aborted = True
        with suppress(queue.Empty):  # wake a reader waiting for a chunk
            while True:
                self._queue.get_nowait()
        with suppress(queue.Full):
            self._queue.put_nowait(None)


class IntervalWriter:
    """One running COPY of an interval's rows: `write` batches, then the transaction commits or rolls back."""

    def __init__(self, sink: PostgresSink, conn: Any, cursor: Any, copy_sql: str, replaced: int = 0) -> None:
        self._sink = sink
        self._conn = conn
        self._feed = _Feed()
        self._error: BaseException | None = None
        self.rows = 0
        self.replaced = replaced  # rows of the interval the transaction deleted
        self.committed = False
        self._thread = threading.Thread(
            target=self._copy, args=(cursor, copy_sql), name="predictions-copy", daemon=True
        )
        self._thread.start()
        self._put(_HEADER)

    def _copy(self, cursor: Any, copy_sql: str) -> None:
        try:
            cursor.copy_expert(copy_sql, self._feed, size=READ_SIZE)
        except BaseException as exc:
            self._error = exc

    def _put(self, chunk: bytes | pa.Buffer | None) -> None:
        if self._error is not None or not self._feed.put(chunk, self._thread):
            self._thread.join()
            raise self._sink.error("COPY failed", self._error) from None

    def write(self, batch: pd.DataFrame) -> int:
        """Encode and queue one batch (sent by the COPY thread); returns its row count."""
        for start in range(0, len(batch), ENCODE_ROWS):
            self._put(encode_binary(batch.iloc[start : start + ENCODE_ROWS]))
        self.rows += len(batch)
        return len(batch)

    def tee(self, batches: Iterable[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        """Write every batch passing through, and pass it on (to feed a second consumer)."""
        for batch in batches:
            self.write(batch)
            yield batch

    def finish(self) -> None:
        """End the COPY and wait for the server to take every row."""
        self._put(_TRAILER)
        self._put(None)
        self._thread.join()
        if self._error is not None:
            raise self._sink.error("COPY failed", self._error) from None

    def commit(self, _manifest: dict | None = None) -> None:
        """End the COPY and commit the transaction (once); usable as `lake.write_partition_stream`'s
        `before_replace`, so that the Parquet file replaces the old one only after the rows are committed."""
        if self.committed:
            return
        self.finish()
        self._conn.commit()
        self.committed = True

    def abort(self) -> None:
        """Abandon the COPY (the transaction then rolls back)."""
        self._feed.abort()
        self._thread.join()


class PostgresSink:
    """Predictions in PostgreSQL table `table` (optionally `schema.table`) of the database at `url`."""

    def __init__(self, url: str, table: str = "predictions") -> None:
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        self.masked_url = mask_url(url)
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise SinkConfigError(f"predictions sink: not a SQLAlchemy URL: {self.masked_url}") from None
        backend = parsed.drivername.split("+")[0]
        if backend not in ("postgresql", "postgres"):
            raise SinkConfigError(
                f"predictions sink: only PostgreSQL is supported, got {backend!r} ({self.masked_url}); "
                "use a postgresql:// URL (scoring.sink_url, scoring.sink_conn_id or MLOPS_SCORES_URL)"
            )
        parts = table.split(".")
        if not 1 <= len(parts) <= 2 or not all(parts):
            raise SinkConfigError(f"predictions sink: bad table name {table!r} (give `table` or `schema.table`)")
        self.table = table
        self._table_parts = parts
        self._ensured = False
        self._password = parsed.password
        query = {k: v if isinstance(v, str) else v[-1] for k, v in parsed.query.items()}
        self._params = {
            "host": parsed.host,
            "port": parsed.port,
            "user": parsed.username,
            "password": parsed.password,
            "dbname": parsed.database,
            "connect_timeout": 30,
            **query,
        }
        self._params = {k: v for k, v in self._params.items() if v is not None}

    def __repr__(self) -> str:
        return f"PostgresSink({self.masked_url!r}, {self.table!r})"

    def error(self, what: str, exc: BaseException | None) -> SinkError:
        """A SinkError naming the sink and the cause, with any password masked."""
        import psycopg2

        reason = " ".join(str(exc).split()) if exc is not None else "the COPY thread stopped"
        if isinstance(exc, SinkError):
            return exc
        if self._password:
            reason = reason.replace(str(self._password), "***")
        transient = exc is None or isinstance(exc, psycopg2.OperationalError | psycopg2.InterfaceError)
        return SinkError(f"predictions sink {self.masked_url} table {self.table}: {what}: {reason}", transient)

    def _connect(self):
        import psycopg2

        try:
            return psycopg2.connect(**self._params)
        except psycopg2.Error as exc:
            raise self.error("cannot connect", exc) from None

    def _identifier(self):
        from psycopg2 import sql

        return sql.Identifier(*self._table_parts)

    def _create(self, cur: Any) -> None:
        from psycopg2 import sql

        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"mlops-sink-ddl:{self.table}",))
        columns = sql.SQL(", ").join(
            sql.SQL("{} {} NOT NULL").format(sql.Identifier(c), sql.SQL(t)) for c, t in COLUMNS.items()
        )
        cur.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} ({})").format(self._identifier(), columns))
        cur.execute(
            sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} (pipeline, data_interval_start)").format(
                sql.Identifier(f"{self._table_parts[-1]}_pipeline_interval_idx"), self._identifier()
            )
        )

    def ensure_table(self) -> None:
        """Create the table and its (pipeline, data_interval_start) index unless they exist."""
        import psycopg2

        conn = self._connect()
        try:
            with conn, conn.cursor() as cur:
                self._create(cur)
            self._ensured = True
        except psycopg2.Error as exc:
            raise self.error("cannot create the table", exc) from None
        finally:
            conn.close()

    @contextmanager
    def replacing(self, pipeline: str, start: dt.datetime, end: dt.datetime) -> Iterator[IntervalWriter]:
        """A writer whose rows replace the pipeline's rows with data_interval_start in [start, end).

        Everything happens in one transaction, committed when the block ends without error (or
        earlier by `writer.commit()`) and rolled back otherwise (the old rows then remain).
        """
        import psycopg2
        from psycopg2 import sql

        start, end = _utc(start), _utc(end)
        if not self._ensured:
            self.ensure_table()
        conn = self._connect()
        writer: IntervalWriter | None = None
        try:
            cur = conn.cursor()
            cur.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"mlops-sink:{self.table}:{pipeline}",)
            )
            cur.execute(
                sql.SQL(
                    "DELETE FROM {} WHERE pipeline = %s AND data_interval_start >= %s AND data_interval_start < %s"
                ).format(self._identifier()),
                (pipeline, start, end),
            )
            columns = sql.SQL(", ").join(sql.Identifier(c) for c in COLUMNS)
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN WITH (FORMAT binary)").format(self._identifier(), columns)
            writer = IntervalWriter(self, conn, cur, copy_sql.as_string(conn), max(cur.rowcount, 0))
            yield writer
            writer.commit()
        except BaseException as exc:
            if writer is None or not writer.committed:
                if writer is not None:
                    writer.abort()
                with suppress(psycopg2.Error):  # a lost connection has nothing to roll back
                    conn.rollback()
            if isinstance(exc, psycopg2.Error):
                raise self.error(f"replacing {pipeline} [{start}, {end})", exc) from None
            raise
        finally:
            conn.close()

    def replace_interval(
        self, pipeline: str, start: dt.datetime, end: dt.datetime, batches: Iterable[pd.DataFrame]
    ) -> int:
        """Replace the pipeline's rows of [start, end) by `batches`, in one transaction; returns the rows written."""
        with self.replacing(pipeline, start, end) as writer:
            for batch in batches:
                writer.write(batch)
        return writer.rows


def _utc(value: dt.datetime | dt.date | pd.Timestamp) -> dt.datetime:
    """A timezone-aware UTC datetime (naive values are taken as UTC)."""
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()
