"""The data lake: atomic partition writes, manifests in the footer, content digests."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlops.io import lake


@pytest.fixture
def frame():
    return pd.DataFrame(
        {
            "row_key": ["a", "b", "c"],
            "carrier": ["UA", "AA", None],
            "distance": [100, 200, 300],
            "temp": [30.5, None, 41.0],
            "when": pd.to_datetime(["2013-02-01"] * 3).as_unit("ms"),
        }
    )


def files(folder):
    return sorted(p.name for p in folder.iterdir())


def test_write_then_read_round_trip(tmp_path, frame):
    manifest = lake.write_partition(frame, tmp_path / "ds", "2013-02-01", {"pipeline": "flights"})
    assert files(tmp_path / "ds") == ["2013-02-01.parquet"]
    back = lake.read_partition(tmp_path / "ds", "2013-02-01")
    pd.testing.assert_frame_equal(back, frame)
    assert manifest["row_count"] == 3 and manifest["partition"] == "2013-02-01"
    assert manifest["content_digest"] == lake.content_digest(back)
    assert lake.read_partition(tmp_path / "ds", "2013-02-01", columns=["temp"]).columns.tolist() == ["temp"]


def test_rewrite_replaces_the_partition(tmp_path, frame):
    folder = tmp_path / "ds"
    lake.write_partition(frame, folder, "k", {"attempt": 1})
    second = frame.iloc[:2].copy()
    lake.write_partition(second, folder, "k", {"attempt": 2})
    assert files(folder) == ["k.parquet"]
    pd.testing.assert_frame_equal(lake.read_partition(folder, "k"), second)
    manifest = lake.read_manifest(folder, "k")
    assert manifest["attempt"] == 2 and manifest["row_count"] == 2
    assert manifest["content_digest"] == lake.content_digest(second)


@pytest.mark.parametrize(
    "bad",
    [
        # mixed Python objects: pyarrow cannot convert the column
        pd.DataFrame({"row_key": ["a", "b", "c"], "x": [1, "two", object()]}),
        # converts, but Parquet has no type for month/day/nano intervals: fails inside the file write
        pd.DataFrame({"row_key": ["a", "b"], "x": [pd.DateOffset(months=1), pd.DateOffset(days=2)]}),
    ],
    ids=["unconvertible", "unwritable"],
)
def test_failed_write_keeps_previous_partition_and_leaves_no_temp_file(tmp_path, frame, bad):
    folder = tmp_path / "ds"
    before = lake.write_partition(frame, folder, "2013-02-01", {"attempt": 1})
    with pytest.raises((pa.ArrowInvalid, pa.ArrowNotImplementedError)):
        lake.write_partition(bad, folder, "2013-02-01", {"attempt": 2})
    assert files(folder) == ["2013-02-01.parquet"]
    pd.testing.assert_frame_equal(lake.read_partition(folder, "2013-02-01"), frame)
    assert lake.read_manifest(folder, "2013-02-01") == before


def test_manifest_is_read_from_the_file_footer(tmp_path, frame):
    written = lake.write_partition(frame, tmp_path / "a", "2013-02-01", {"pipeline": "flights", "source": "test"})
    # the manifest travels with the file: copy the file alone somewhere else
    (tmp_path / "b").mkdir()
    shutil.copy(lake.partition_path(tmp_path / "a", "2013-02-01"), tmp_path / "b" / "2013-02-01.parquet")
    manifest = lake.read_manifest(tmp_path / "b", "2013-02-01")
    assert manifest == written
    assert manifest["pipeline"] == "flights" and manifest["source"] == "test"
    assert manifest["columns"] == {
        "row_key": "str",
        "carrier": "str",
        "distance": "int64",
        "temp": "float64",
        "when": "datetime64[ms]",
    }
    assert manifest["written_at"].endswith("+00:00")


def test_missing_partition_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="partition '2013-02-01' not found"):
        lake.read_partition(tmp_path, "2013-02-01")
    with pytest.raises(FileNotFoundError, match="partition '2013-02-01' not found"):
        lake.read_manifest(tmp_path, "2013-02-01")


def test_list_partitions_sorted_and_skips_hidden_files(tmp_path, frame):
    folder = tmp_path / "ds"
    assert lake.list_partitions(folder) == []
    for key in ["2013-02-03", "2013-02-01", "2013-01-01..2013-01-22"]:
        lake.write_partition(frame, folder, key, {})
    (folder / ".2013-02-04.parquet").write_bytes(b"partial")
    (folder / ".2013-02-05.abc.tmp").write_bytes(b"partial")
    assert lake.list_partitions(folder) == ["2013-01-01..2013-01-22", "2013-02-01", "2013-02-03"]


def test_content_digest_is_stable(frame):
    digest = lake.content_digest(frame)
    assert len(digest) == 64
    assert lake.content_digest(frame.copy()) == digest
    assert lake.content_digest(frame.set_axis([10, 11, 12])) == digest  # index does not count


def test_content_digest_is_sensitive_to_values_names_and_types(frame):
    digest = lake.content_digest(frame)
    changed = frame.copy()
    changed.loc[1, "distance"] = 201
    assert lake.content_digest(changed) != digest
    missing = frame.copy()
    missing.loc[0, "temp"] = None
    assert lake.content_digest(missing) != digest
    assert lake.content_digest(frame.rename(columns={"temp": "temperature"})) != digest
    assert lake.content_digest(frame.astype({"distance": "float64"})) != digest
    assert lake.content_digest(frame.iloc[::-1]) != digest


def test_content_digest_survives_the_parquet_round_trip(tmp_path, frame):
    lake.write_partition(frame, tmp_path, "k", {})
    assert lake.content_digest(lake.read_partition(tmp_path, "k")) == lake.content_digest(frame)


def test_write_json_replaces_atomically(tmp_path):
    path = tmp_path / "reports" / "2013-02-01.json"
    lake.write_json(path, {"success": False, "n": 1})
    lake.write_json(path, {"success": True, "n": 2})
    assert lake.read_json(path) == {"success": True, "n": 2}
    assert files(path.parent) == ["2013-02-01.json"]


def batches_of(frame, size):
    for start in range(0, len(frame), size):
        yield frame.iloc[start : start + size].reset_index(drop=True)


def test_stream_write_equals_the_whole_frame(tmp_path):
    frame = pd.DataFrame({"row_key": [f"k{i:03d}" for i in range(250)], "score": [i / 250 for i in range(250)]})
    manifest = lake.write_partition_stream(batches_of(frame, 100), tmp_path, "2013-02-01", {"model_version": "3"})
    pd.testing.assert_frame_equal(lake.read_partition(tmp_path, "2013-02-01"), frame)
    assert manifest["row_count"] == 250 and manifest["model_version"] == "3"
    expected = hashlib.sha256(b"".join(lake.content_digest(b).encode() for b in batches_of(frame, 100))).hexdigest()
    assert manifest["content_digest"] == expected
    assert lake.read_manifest(tmp_path, "2013-02-01") == manifest
    assert [len(b) for b in lake.iter_partition(tmp_path, "2013-02-01", 100)] == [100, 100, 50]
    assert files(tmp_path) == ["2013-02-01.parquet"]


def test_stream_write_failing_midway_keeps_previous_partition(tmp_path, frame):
    before = lake.write_partition(frame, tmp_path, "k", {"attempt": 1})

    def failing():
        yield frame.iloc[:2]
        raise RuntimeError("source went away")

    with pytest.raises(RuntimeError, match="source went away"):
        lake.write_partition_stream(failing(), tmp_path, "k", {"attempt": 2})
    with pytest.raises(ValueError, match="nothing to write"):
        lake.write_partition_stream(iter([]), tmp_path, "k", {"attempt": 3})
    assert files(tmp_path) == ["k.parquet"]
    assert lake.read_manifest(tmp_path, "k") == before
    pd.testing.assert_frame_equal(lake.read_partition(tmp_path, "k"), frame)


# verified reads: page checksums, the content digest, and errors that name the file


@pytest.fixture
def floats(tmp_path):
    """A partition of 2,000 random temperatures (a dictionary page of plain doubles) and its file."""
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"row_key": [f"k{i:04d}" for i in range(2000)], "temp": rng.normal(size=2000)})
    lake.write_partition(df, tmp_path, "2013-02-01", {"pipeline": "flights"})
    return df, lake.partition_path(tmp_path, "2013-02-01")


def flipped(path, offset: int) -> bytes:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x10
    return bytes(data)


@pytest.mark.parametrize("where", [0.1, 0.5, 0.9])
def test_a_flipped_byte_in_a_data_page_is_caught_naming_the_file(tmp_path, floats, where):
    df, path = floats
    column = pq.ParquetFile(path).metadata.row_group(0).column(1)
    offset = column.dictionary_page_offset + int(where * column.total_compressed_size)
    path.write_bytes(flipped(path, offset))
    unverified = pq.read_table(path).to_pandas()
    assert (unverified["temp"] != df["temp"]).sum() == 1  # what a plain read would silently return

    for read in (
        lambda: lake.read_partition(tmp_path, "2013-02-01"),
        lambda: list(lake.iter_partition(tmp_path, "2013-02-01", 500)),
    ):
        with pytest.raises(lake.PartitionReadError) as caught:
            read()
        assert str(path) in str(caught.value) and "CRC checksum verification failed" in str(caught.value)


def test_a_file_whose_content_differs_from_its_manifest_is_refused(tmp_path, floats):
    df, path = floats
    manifest = pq.ParquetFile(path).metadata.metadata[lake.MANIFEST_KEY]
    changed = pa.Table.from_pandas(df.assign(temp=df["temp"].round(1)), preserve_index=False)
    pq.write_table(changed.replace_schema_metadata({lake.MANIFEST_KEY: manifest}), path, write_page_checksum=True)

    differs = r"content digest \w+\.\.\. differs from its manifest's"
    with pytest.raises(lake.PartitionReadError, match=differs) as caught:
        lake.read_partition(tmp_path, "2013-02-01")
    assert str(path) in str(caught.value)
    assert lake.read_partition(tmp_path, "2013-02-01", columns=["row_key"]).equals(df[["row_key"]])


def hashes(monkeypatch) -> list[int]:
    """Counts the content digests the lake computes (a spy on the real function)."""
    calls, real = [], lake.content_digest
    monkeypatch.setattr(lake, "content_digest", lambda df: calls.append(len(df)) or real(df))
    return calls


def test_a_file_version_is_hashed_once_and_read_the_same_after(tmp_path, floats, monkeypatch):
    df, _ = floats
    calls = hashes(monkeypatch)
    first = lake.read_partition_and_digest(tmp_path, "2013-02-01")
    second = lake.read_partition_and_digest(tmp_path, "2013-02-01")
    assert calls == [2000]  # the second read relies on the record of the first
    pd.testing.assert_frame_equal(second[0], df)
    assert first[1] == second[1] == lake.read_manifest(tmp_path, "2013-02-01")["content_digest"]
    pd.testing.assert_frame_equal(lake.read_partition(tmp_path, "2013-02-01"), df)
    assert calls == [2000]


def test_a_batched_partition_read_again_gives_the_same_digest(tmp_path, monkeypatch):
    """Batches: verified batch by batch (three digests), then the frame read is hashed as a whole."""
    stamps = pd.Series(pd.Timestamp(dt.date(2013, 2, 1)).tz_localize("UTC"), index=range(250))
    frame = pd.DataFrame({"row_key": [f"k{i:03d}" for i in range(250)], "at": stamps})
    lake.write_partition_stream(batches_of(frame, 100), tmp_path, "k", {})
    calls = hashes(monkeypatch)
    first = lake.read_partition_and_digest(tmp_path, "k")
    assert calls == [100, 100, 50, 250]
    again = lake.read_partition_and_digest(tmp_path, "k")
    assert calls == [100, 100, 50, 250, 250]  # the verification is not repeated
    assert again[1] == first[1] == lake.content_digest(first[0])
    pd.testing.assert_frame_equal(again[0], first[0])


def test_a_file_changed_after_a_verified_read_is_refused_even_with_its_times_set_back(tmp_path, floats):
    df, path = floats
    lake.read_partition(tmp_path, "2013-02-01")  # verified and recorded
    stat = path.stat()
    manifest = pq.ParquetFile(path).metadata.metadata[lake.MANIFEST_KEY]
    changed = pa.Table.from_pandas(df.assign(temp=df["temp"].round(1)), preserve_index=False)
    pq.write_table(changed.replace_schema_metadata({lake.MANIFEST_KEY: manifest}), path, write_page_checksum=True)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # only the change time tells
    with pytest.raises(lake.PartitionReadError, match=r"content digest \w+\.\.\. differs from its manifest's"):
        lake.read_partition(tmp_path, "2013-02-01")


def test_a_partition_written_again_is_verified_again(tmp_path, floats, monkeypatch):
    df, _ = floats
    lake.read_partition(tmp_path, "2013-02-01")
    calls = hashes(monkeypatch)
    lake.write_partition(df.head(10), tmp_path, "2013-02-01", {"pipeline": "flights"})
    calls.clear()  # the writer's own digest
    pd.testing.assert_frame_equal(lake.read_partition(tmp_path, "2013-02-01"), df.head(10))
    assert calls == [10]


@pytest.mark.parametrize("damage", ["garbage", "other file", "gone"])
def test_a_damaged_or_foreign_record_means_hashing_again(tmp_path, floats, monkeypatch, damage):
    df, path = floats
    lake.read_partition(tmp_path, "2013-02-01")
    record = lake._verified_record(path)[0]
    if damage == "garbage":
        record.write_text("{not json")
    elif damage == "other file":
        lake.write_partition(df, tmp_path / "other", "2013-02-01", {"pipeline": "flights"})
        other = lake.partition_path(tmp_path / "other", "2013-02-01")
        lake.read_partition(tmp_path / "other", "2013-02-01")
        shutil.copy(lake._verified_record(other)[0], record)  # names the other path
    else:
        record.unlink()
    calls = hashes(monkeypatch)
    pd.testing.assert_frame_equal(lake.read_partition(tmp_path, "2013-02-01"), df)
    assert calls == [2000]


@pytest.mark.parametrize("keep", [0.5, 0.99], ids=["half", "footer-cut"])
def test_a_truncated_file_names_itself_on_every_read(tmp_path, floats, keep):
    _, path = floats
    path.write_bytes(path.read_bytes()[: int(keep * path.stat().st_size)])
    for read in (
        lambda: lake.read_partition(tmp_path, "2013-02-01"),
        lambda: list(lake.iter_partition(tmp_path, "2013-02-01", 500)),
        lambda: lake.read_manifest(tmp_path, "2013-02-01"),
    ):
        with pytest.raises(lake.PartitionReadError, match=re.escape(f"partition '2013-02-01', file {path}")):
            read()


def test_stream_partitions_verify_their_digest_batch_by_batch(tmp_path):
    stamps = pd.Series(pd.Timestamp(dt.date(2013, 2, 1)).tz_localize("UTC"), index=range(250))
    frame = pd.DataFrame({"row_key": [f"k{i:03d}" for i in range(250)], "at": stamps, "score": np.arange(250) / 250})
    manifest = lake.write_partition_stream(batches_of(frame, 100), tmp_path, "k", {})
    assert manifest["batch_rows"] == [100, 100, 50]
    back = lake.read_partition(tmp_path, "k")  # the digest is checked in the writer's dtypes and batches
    assert (str(frame["at"].dtype), str(back["at"].dtype)) == ("datetime64[s, UTC]", "datetime64[ms, UTC]")
    pd.testing.assert_frame_equal(back, frame, check_dtype=False)


def test_a_partition_read_with_its_digest_gives_the_digest_of_the_frame_read(tmp_path, frame):
    """One batch as written: the verification's digest; batches or changed dtypes: hashed again, same answer."""
    lake.write_partition(frame, tmp_path, "whole", {})
    stamps = pd.Series(pd.Timestamp(dt.date(2013, 2, 1)).tz_localize("UTC"), index=range(250))
    batched = pd.DataFrame({"row_key": [f"k{i:03d}" for i in range(250)], "at": stamps})
    lake.write_partition_stream(batches_of(batched, 100), tmp_path, "batched", {})  # seconds kept as ms
    for key in ("whole", "batched"):
        df, digest = lake.read_partition_and_digest(tmp_path, key)
        assert digest == lake.content_digest(df)  # the oracle: the frame's digest computed apart
        pd.testing.assert_frame_equal(df, lake.read_partition(tmp_path, key))
    recorded = {key: lake.read_manifest(tmp_path, key)["content_digest"] for key in ("whole", "batched")}
    assert lake.read_partition_and_digest(tmp_path, "whole")[1] == recorded["whole"]
    assert lake.read_partition_and_digest(tmp_path, "batched")[1] != recorded["batched"]  # a digest of digests


# temporary files of killed writers

SLOW_WRITER = """
import sys
from pathlib import Path

import pandas as pd

from mlops.io import lake


def batches():
    yield pd.DataFrame({"row_key": ["a", "b"], "x": [1, 2]})
    print("writing", flush=True)
    sys.stdin.readline()  # hold the temporary file until told to go on
    yield pd.DataFrame({"row_key": ["c"], "x": [3]})


lake.write_partition_stream(batches(), Path(sys.argv[1]), sys.argv[2], {"writer": "slow"})
"""


def slow_writer(folder, key):
    """A writer process stopped in the middle of a partition, its temporary file on disk."""
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(folder), key], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout.readline().strip() == "writing"
    return process


def temp_files(folder):
    return sorted(p.name for p in folder.glob(".*.tmp"))


def age(folder, seconds: float = 3600) -> None:
    for path in folder.glob(".*.tmp"):
        os.utime(path, (path.stat().st_atime - seconds, path.stat().st_mtime - seconds))


def test_a_killed_writer_leaves_the_old_partition_and_its_temp_file_is_cleaned_up(tmp_path, frame):
    before = lake.write_partition(frame, tmp_path, "2013-02-01", {"attempt": 1})
    writer = slow_writer(tmp_path, "2013-02-01")
    writer.send_signal(signal.SIGKILL)
    writer.wait(timeout=30)
    left = temp_files(tmp_path)
    assert len(left) == 1 and left[0].startswith(".2013-02-01.")
    assert lake.read_manifest(tmp_path, "2013-02-01") == before and lake.list_partitions(tmp_path) == ["2013-02-01"]

    lake.write_partition(frame, tmp_path, "2013-02-02", {})  # a young file may still be starting: kept
    assert temp_files(tmp_path) == left
    age(tmp_path)
    lake.write_partition(frame, tmp_path, "2013-02-02", {})  # any later write to the folder removes it
    assert temp_files(tmp_path) == []
    pd.testing.assert_frame_equal(lake.read_partition(tmp_path, "2013-02-01"), frame)


def test_a_live_writer_keeps_its_temp_file(tmp_path, frame):
    writer = slow_writer(tmp_path, "2013-02-01")
    try:
        age(tmp_path)
        assert lake.remove_stale_temp_files(tmp_path) == []
        lake.write_json(tmp_path / "report.json", {"ok": True})  # a write beside it does not touch it
        assert len(temp_files(tmp_path)) == 1
        writer.communicate("go\n", timeout=30)
    finally:
        writer.kill()
    assert writer.returncode == 0
    assert len(lake.read_partition(tmp_path, "2013-02-01")) == 3 and temp_files(tmp_path) == []
