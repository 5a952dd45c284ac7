"""The partitioned data lake: one Parquet file per partition, its manifest in the file's footer.

A partition is replaced with one atomic rename, so a reader sees the old file or the new one, never
half of either, and a re-run of the same key replaces its own file and nothing else.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST_KEY = b"mlops_manifest"


def content_digest(df: pd.DataFrame) -> str:
    """SHA-256 of a frame's column names, dtypes and values (independent of file metadata)."""
    h = hashlib.sha256()
    h.update(json.dumps([[c, str(t)] for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=False).to_numpy().tobytes())
    return h.hexdigest()


def partition_path(dataset_dir: Path, key: str) -> Path:
    """File of one partition."""
    return dataset_dir / f"{key}.parquet"


def write_partition(df: pd.DataFrame, dataset_dir: Path, key: str, manifest: dict[str, Any]) -> dict:
    """Write `df` atomically as partition `key`; returns the full manifest stored with it."""
    dataset_dir.mkdir(parents=True, exist_ok=True)
    full = {
        **manifest,
        "partition": key,
        "row_count": len(df),
        "columns": {c: str(t) for c, t in df.dtypes.items()},
        "content_digest": content_digest(df),
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    table = pa.Table.from_pandas(df, preserve_index=False)
    metadata = {**(table.schema.metadata or {}), MANIFEST_KEY: json.dumps(full, default=str).encode()}
    table = table.replace_schema_metadata(metadata)
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=dataset_dir)
    os.close(fd)
    try:
        pq.write_table(table, tmp)
        os.replace(tmp, partition_path(dataset_dir, key))
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return full


def write_partition_stream(
    batches: Iterable[pd.DataFrame], dataset_dir: Path, key: str, manifest: dict[str, Any]
) -> dict:
    """Write frames one after another as partition `key`, atomically, without holding them all in memory.

    The manifest's `content_digest` is the SHA-256 of the batches' digests, in order.
    """
    dataset_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{key}.", suffix=".tmp", dir=dataset_dir)
    os.close(fd)
    digest, rows, writer, columns = hashlib.sha256(), 0, None, {}
    try:
        for batch in batches:
            table = pa.Table.from_pandas(batch, preserve_index=False)
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema.remove_metadata())
                columns = {c: str(t) for c, t in batch.dtypes.items()}
            writer.write_table(table.replace_schema_metadata(None))
            digest.update(content_digest(batch).encode())
            rows += len(batch)
        if writer is None:
            raise ValueError(f"partition {key!r}: nothing to write")
        full = {
            **manifest,
            "partition": key,
            "row_count": rows,
            "columns": columns,
            "content_digest": digest.hexdigest(),
            "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        writer.add_key_value_metadata({MANIFEST_KEY: json.dumps(full, default=str).encode()})
        writer.close()
        writer = None
        os.replace(tmp, partition_path(dataset_dir, key))
    except BaseException:
        if writer is not None:
            writer.close()
        Path(tmp).unlink(missing_ok=True)
        raise
    return full


def iter_partition(
    dataset_dir: Path, key: str, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Read a partition in batches of at most `batch_rows` rows."""
    path = partition_path(dataset_dir, key)
    if not path.exists():
        raise FileNotFoundError(f"partition {key!r} not found: {path}")
    # pre_buffer=False: the default keeps every read row group cached until the loop ends
    for batch in pq.ParquetFile(path, pre_buffer=False).iter_batches(batch_size=batch_rows, columns=columns):
        yield batch.to_pandas()


def read_partition(dataset_dir: Path, key: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one partition; a missing one raises FileNotFoundError naming it."""
    path = partition_path(dataset_dir, key)
    if not path.exists():
        raise FileNotFoundError(f"partition {key!r} not found: {path}")
    return pd.read_parquet(path, columns=columns)


def read_manifest(dataset_dir: Path, key: str) -> dict[str, Any]:
    """The manifest of one partition, read from the file footer only."""
    path = partition_path(dataset_dir, key)
    if not path.exists():
        raise FileNotFoundError(f"partition {key!r} not found: {path}")
    metadata = pq.ParquetFile(path).metadata.metadata or {}
    return json.loads(metadata[MANIFEST_KEY])


def list_partitions(dataset_dir: Path) -> list[str]:
    """Keys of all complete partitions, sorted."""
    if not dataset_dir.exists():
        return []
    return sorted(p.stem for p in dataset_dir.glob("*.parquet") if not p.name.startswith("."))


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write a JSON document atomically."""
    write_text(path, json.dumps(payload, indent=2, default=str))


def write_text(path: Path, text: str) -> None:
    """Write a text file atomically (temporary name, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON document."""
    return json.loads(path.read_text())
