"""The partitioned data lake: one Parquet file per partition, its manifest in the file's footer.

A partition is replaced with one atomic rename, so a reader sees the old file or the new one, never
half of either, and a re-run of the same key replaces its own file and nothing else. Temporary
files are locked by their writer while it writes; one left by a killed writer is removed by the
next write to the same folder.

Every page is written with a CRC checksum, verified on every read; the first whole-partition read
of each version of a file also checks the content digest of its manifest (see `VERIFIED_DIR`). Any
read error names the file.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import itertools
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops.io.paths import cache_dir

MANIFEST_KEY = b"mlops_manifest"
STALE_AFTER_SECONDS = 60.0  # an unlocked temporary file older than this belongs to a dead writer


class PartitionReadError(RuntimeError):
    """A partition file exists but cannot be read, or differs from its manifest; the message names the file."""


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
    with staged(partition_path(dataset_dir, key)) as tmp:
        pq.write_table(table, tmp, write_page_checksum=True)
    return full


def write_partition_stream(
    batches: Iterable[pd.DataFrame],
    dataset_dir: Path,
    key: str,
    manifest: dict[str, Any],
    before_replace: Callable[[dict[str, Any]], None] | None = None,
) -> dict:
    """Write frames one after another as partition `key`, atomically, without holding them all in memory.

    The manifest's `content_digest` is the SHA-256 of the batches' digests, in order (`batch_rows`
    records their sizes). `before_replace(manifest)` runs once the file is complete, just before
    it replaces the partition: should it raise, the earlier partition stays. Raises ValueError
    when there is no batch at all (write an empty frame with `write_partition` instead).
    """
    digest, sizes, writer, columns = hashlib.sha256(), [], None, {}
    with staged(partition_path(dataset_dir, key)) as tmp:
        try:
            for batch in batches:
                table = pa.Table.from_pandas(batch, preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(tmp, table.schema.remove_metadata(), write_page_checksum=True)
                    columns = {c: str(t) for c, t in batch.dtypes.items()}
                writer.write_table(table.replace_schema_metadata(None))
                digest.update(content_digest(batch).encode())
                sizes.append(len(batch))
            if writer is None:
                raise ValueError(f"partition {key!r}: nothing to write")
            full = {
                **manifest,
                "partition": key,
                "row_count": sum(sizes),
                "columns": columns,
                "content_digest": digest.hexdigest(),
                "batch_rows": sizes,
                "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            }
            writer.add_key_value_metadata({MANIFEST_KEY: json.dumps(full, default=str).encode()})
        finally:
            if writer is not None:
                writer.close()
        if before_replace is not None:
            before_replace(full)
    return full


@contextlib.contextmanager
def staged(target: Path) -> Iterator[str]:
    """A temporary file beside `target`, locked while the block runs, then renamed onto `target`.

    On error the temporary file is removed and `target` stays as it was. Temporary files of
    writers that died (killed mid-write: unlocked and older than STALE_AFTER_SECONDS) are removed first.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(target.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}.", suffix=".tmp", dir=target.parent)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    finally:
        os.close(fd)


def remove_stale_temp_files(folder: Path, older_than: float = STALE_AFTER_SECONDS) -> list[str]:
    """Remove the temporary files (`.<name>.*.tmp`) no live writer holds; returns their names.

    A writer holds a lock on its temporary file until it renames or removes it; the lock goes with
    the process, so an unlocked file older than `older_than` seconds was left by a killed writer.
    """
    removed = []
    now = time.time()
    for path in folder.glob(".*.tmp"):
        try:
            if now - path.stat().st_mtime < older_than:
                continue
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:  # renamed or removed meanwhile
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live writer
            os.close(fd)
            continue
        try:
            path.unlink(missing_ok=True)
            removed.append(path.name)
        finally:
            os.close(fd)
    return removed


@contextlib.contextmanager
def _reading(path: Path, key: str) -> Iterator[None]:
    """Turn any Arrow or OS error while reading `path` into a PartitionReadError naming the file."""
    try:
        yield
    except (OSError, pa.ArrowException, ValueError, KeyError) as exc:
        if isinstance(exc, PartitionReadError | FileNotFoundError):
            raise
        raise PartitionReadError(f"partition {key!r}, file {path}: cannot be read ({exc}); write it again") from None


def _existing(dataset_dir: Path, key: str) -> Path:
    path = partition_path(dataset_dir, key)
    if not path.exists():
        raise FileNotFoundError(f"partition {key!r} not found: {path}")
    return path


def iter_partition(
    dataset_dir: Path, key: str, batch_rows: int, columns: list[str] | None = None
) -> Iterator[pd.DataFrame]:
    """Read a partition in batches of at most `batch_rows` rows, verifying every page's checksum.

    Raises FileNotFoundError for a missing partition, PartitionReadError (naming the file) for one
    that cannot be read.
    """
    path = _existing(dataset_dir, key)
    with _reading(path, key):
        # pre_buffer=False: the default keeps every read row group cached until the loop ends
        reader = pq.ParquetFile(path, pre_buffer=False, page_checksum_verification=True)
        for batch in reader.iter_batches(batch_size=batch_rows, columns=columns):
            yield batch.to_pandas()


def read_partition(dataset_dir: Path, key: str, columns: list[str] | None = None) -> pd.DataFrame:
    """Read one partition, verifying page checksums and, when every column is read, the content digest.

    Raises FileNotFoundError naming a missing partition, PartitionReadError naming the file when it
    cannot be read or its content is not what its manifest recorded.
    """
    return _read(dataset_dir, key, columns)[0]


def read_partition_and_digest(dataset_dir: Path, key: str) -> tuple[pd.DataFrame, str]:
    """Every column of one partition, verified as `read_partition` does, and `content_digest` of the frame.

    The digest is the verification's own when the frame is as written (one batch, the same dtypes), so
    a caller that needs both hashes the rows once. Raises as `read_partition`.
    """
    df, digest = _read(dataset_dir, key, None)
    return df, digest if digest is not None else content_digest(df)


def _read(dataset_dir: Path, key: str, columns: list[str] | None) -> tuple[pd.DataFrame, str | None]:
    path = _existing(dataset_dir, key)
    with _reading(path, key):
        before = _file_version(path)
        df = pd.read_parquet(path, columns=columns, page_checksum_verification=True)
        manifest = _manifest(path)
        unchanged = _file_version(path) == before
    if columns is None and manifest.get("content_digest"):
        verified = _verified_before(path, before, manifest) if unchanged else None
        if verified is not None:
            return df, verified or None
        digest = _verify(df, manifest, path, key)
        if unchanged:
            _record_verified(path, before, manifest, digest)
        return df, digest
    return df, None


# A whole-partition read hashes every value to compare the frame with its manifest's content digest
# (about 10 ms of a 900-row day; an assembled 182-day window read 181 of them again every week). A
# file version that passed once is recorded under `$MLOPS_HOME/cache/verified/`, keyed by the file's
# path and identified by its device, inode, size, modification and change times: a partition written
# again (a new file renamed into place), or changed in place (even with its modification time set
# back: the change time cannot be), is hashed again. Page checksums are verified on every read.
VERIFIED_DIR = "verified"


def _file_version(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns]


def _verified_record(path: Path) -> tuple[Path, str]:
    """The record's file for `path`, and the resolved path the record names."""
    resolved = str(path.resolve())
    return cache_dir() / VERIFIED_DIR / f"{hashlib.sha256(resolved.encode()).hexdigest()[:32]}.json", resolved


def _verified_before(path: Path, version: list[int], manifest: dict[str, Any]) -> str | None:
    """The digest `_verify` returned for this file version ("" for None), or None when not recorded."""
    file, resolved = _verified_record(path)
    try:
        record = json.loads(file.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("path") != resolved:
        return None
    if record.get("version") != version or record.get("content_digest") != manifest["content_digest"]:
        return None
    returned = record.get("returned")
    return returned if isinstance(returned, str) else None


def _record_verified(path: Path, version: list[int], manifest: dict[str, Any], returned: str | None) -> None:
    """Record that this file version matched its manifest (best effort: an unwritable cache only costs time)."""
    record, resolved = _verified_record(path)
    entry = {
        "path": resolved,
        "version": version,
        "content_digest": manifest["content_digest"],
        "returned": returned or "",
    }
    try:
        record.parent.mkdir(parents=True, exist_ok=True)
        tmp = record.with_name(f"{record.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entry))
        os.replace(tmp, record)
    except OSError:
        pass


def _verify(df: pd.DataFrame, manifest: dict[str, Any], path: Path, key: str) -> str | None:
    """Compare the frame's digest with the manifest's (in the writer's dtypes and batches).

    Returns the digest when it is `content_digest(df)` itself (one batch, no dtype changed), else None.
    """
    recorded = manifest.get("columns") or {}
    try:
        dtypes = {c: str(t) for c, t in df.dtypes.items()}
        differing = {c: t for c, t in recorded.items() if c in dtypes and dtypes[c] != t}
        as_written = df.astype(differing) if differing else df  # e.g. a seconds timestamp Parquet keeps as ms
        sizes = manifest.get("batch_rows")
        if sizes:
            bounds = [0, *pd.Series(sizes).cumsum().tolist()]
            parts = [content_digest(as_written.iloc[a:b]) for a, b in itertools.pairwise(bounds)]
            digest = hashlib.sha256("".join(parts).encode()).hexdigest()
        else:
            digest = content_digest(as_written)
    except (TypeError, ValueError) as exc:
        raise PartitionReadError(f"partition {key!r}, file {path}: cannot verify its content digest ({exc})") from None
    if digest != manifest["content_digest"]:
        raise PartitionReadError(
            f"partition {key!r}, file {path}: content digest {digest[:12]}... differs from its manifest's "
            f"{manifest['content_digest'][:12]}...: the file changed after it was written; write it again"
        )
    return digest if not sizes and not differing else None


def _manifest(path: Path) -> dict[str, Any]:
    metadata = pq.ParquetFile(path).metadata.metadata or {}
    return json.loads(metadata[MANIFEST_KEY]) if MANIFEST_KEY in metadata else {}


def read_manifest(dataset_dir: Path, key: str) -> dict[str, Any]:
    """The manifest of one partition, read from the file footer only (errors name the file)."""
    path = _existing(dataset_dir, key)
    with _reading(path, key):
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
    with staged(path) as tmp, open(tmp, "w") as fh:
        fh.write(text)


def read_json(path: Path) -> dict[str, Any]:
    """Read a JSON document; one that is not valid JSON raises ValueError naming the file."""
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not a valid JSON document ({exc}); write it again") from None
