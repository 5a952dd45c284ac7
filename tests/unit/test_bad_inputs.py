"""A corpus of crafted bad inputs, served over real HTTP, each with the exact error ingestion must give.

Every input is the real 2013-02-01 (or its reference tables) changed in one way. Each error names the
pipeline, the source, the partition, the column or key and the rule, and ingestion loses nothing:
the good partition written before stays byte for byte, and no temporary file is left behind.
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest

from mlops.core.config import Derived, Weekday
from mlops.core.interval import Interval
from mlops.io import lake
from mlops.io.paths import raw_dir
from mlops.io.sources import SourceError, SourceSchemaError
from mlops.io.sources.nycflights13 import load_table
from mlops.stages.ingest import build_day, ingest
from tests.fixtures.flight_files import day_rows, http_config, serve_day, serve_tables

DAY = "2013-02-01"
ROWS = 926  # flights on 2013-02-01


def with_row(df: pd.DataFrame, column: str, value, row: int = 10) -> pd.DataFrame:
    df = df.astype({column: "object"}) if not isinstance(value, float) else df.astype({column: "float64"})
    df.loc[row, column] = value
    return df


def ny_stamps(df: pd.DataFrame) -> pd.Series:
    """Each flight's scheduled departure as an ISO text with its New York UTC offset."""
    local = pd.to_datetime(df[["year", "month", "day", "hour", "minute"]]).dt.tz_localize("America/New_York")
    return local.map(lambda t: t.isoformat())


def derived_temp(cfg):
    return cfg.model_copy(update={"derived": {**cfg.derived, "temp": Derived(weekday=Weekday(column="flight_date"))}})


OWN_DATES = {"date_columns": None}  # the source gives the date column itself

# id: (the day's rows, reference tables changed, config change, source keys, error class, exact rule text)
CASES = {
    # 1. name collisions
    "source_column_named_like_a_joined_one": (
        lambda df: df.assign(temp=50.0),
        {},
        None,
        {},
        SourceSchemaError,
        "column name collision (a name may come from one place only): 'temp' comes from the source and from "
        "joins[weather].columns.temp; rename the source's column or the configured one",
    ),
    "source_column_named_row_key": (
        lambda df: df.assign(row_key="x"),
        {},
        None,
        {},
        SourceSchemaError,
        "'row_key' comes from the source and from the row key (row_key)",
    ),
    "source_column_named_like_a_derived_one": (
        lambda df: df.assign(hour_band="night"),
        {},
        None,
        {},
        SourceSchemaError,
        "'hour_band' comes from the source and from derived.hour_band",
    ),
    "source_date_column_beside_date_columns": (
        lambda df: df.assign(flight_date=DAY),
        {},
        None,
        {},
        SourceSchemaError,
        "'flight_date' comes from the source and from source.date_column (built from source.date_columns)",
    ),
    "derived_column_named_like_a_joined_one": (
        lambda df: df,
        {},
        derived_temp,
        {},
        SourceSchemaError,
        "'temp' comes from joins[weather].columns.temp and from derived.temp",
    ),
    # 2. row keys
    "blank_key_cell": (
        lambda df: with_row(df, "flight", np.nan),
        {},
        None,
        {},
        SourceSchemaError,
        "row key column 'flight' has 1 missing value(s) (e.g. row 10 of the source): every key column needs a value",
    ),
    "key_with_a_fraction": (
        lambda df: with_row(df, "flight", 3314.5),
        {},
        None,
        {},
        SourceSchemaError,
        "row key column 'flight' holds numbers that are not whole, e.g. [3314.5]: "
        "key columns hold text, whole numbers or dates",
    ),
    "duplicated_key": (
        lambda df: pd.concat([df, df.iloc[[3]]], ignore_index=True),
        {},
        None,
        {},
        SourceSchemaError,
        "row key ['flight_date', 'carrier', 'flight', 'origin'] is not unique, e.g. 2013-02-01_",
    ),
    # 3. dates in one zone
    "aware_dates_off_the_day_in_the_declared_zone": (
        lambda df: df.assign(flight_date=ny_stamps(df)),
        {},
        None,
        OWN_DATES,
        SourceSchemaError,
        "rows have 'flight_date' outside the partition's day in time zone UTC (source.time_zone), "
        "e.g. ['2013-02-02']: the source's rows and its dates disagree",
    ),
    "date_columns_off_the_day": (
        lambda df: with_row(df, "day", 2, row=5),
        {},
        None,
        {},
        SourceSchemaError,
        "1 of 926 rows have 'day' (source.date_columns.day) other than 1, e.g. [2]: "
        "the source's rows and its dates disagree",
    ),
    "dates_that_are_not_dates": (
        lambda df: df.assign(flight_date=DAY).pipe(with_row, "flight_date", "yesterday"),
        {},
        None,
        OWN_DATES,
        SourceSchemaError,
        "date column 'flight_date' holds values that are not dates, e.g. ['yesterday']",
    ),
    # 4. the source's own row count
    "fewer_rows_than_the_row_count_header_says": (
        lambda df: df.iloc[: int(0.7 * ROWS)],
        {},
        None,
        {"row_count_header": "X-Row-Count"},
        SourceError,
        f"the file has {int(0.7 * ROWS)} rows but its X-Row-Count header says '{ROWS}' (source.row_count_header): "
        "the file arrived incomplete or altered",
    ),
    # 6. inputs that crashed without naming the cause
    "derived_column_input_missing": (
        lambda df: df.drop(columns=["hour"]),
        {},
        None,
        {},
        SourceSchemaError,
        "derived column 'hour_band' needs column 'hour', which the partition lacks",
    ),
    "join_key_missing": (
        lambda df: df.drop(columns=["origin"]),
        {},
        None,
        {},
        SourceSchemaError,
        "join with 'weather': the partition has no join key column(s) ['origin']",
    ),
    "number_column_as_text": (
        lambda df: with_row(df, "distance", "1,200"),
        {},
        None,
        {},
        SourceSchemaError,
        "numeric columns arrived as text: 'distance' (features.numeric) is str, not numbers, e.g. ['1,200']",
    ),
    "binned_column_as_text": (
        lambda df: with_row(df, "hour", "5pm"),
        {},
        None,
        {},
        SourceSchemaError,
        "numeric columns arrived as text: 'hour' (features.numeric) is str, not numbers, e.g. ['5pm']",
    ),
    "join_key_numbers_on_one_side_text_on_the_other": (
        lambda df: df,
        {"planes": lambda t: t.assign(tailnum=range(len(t)))},
        None,
        {},
        SourceSchemaError,
        "join with 'planes': key 'tailnum' is str in the partition but 'tailnum' is int64 in the reference table",
    ),
    "reference_table_lacks_a_joined_column": (
        lambda df: df,
        {"planes": lambda t: t.drop(columns=["seats"])},
        None,
        {},
        SourceSchemaError,
        "join with 'planes': the reference table lacks columns ['seats']",
    ),
}


@pytest.fixture(scope="module")
def good_partition(flights_cfg):
    """The real day, ingested once from the bundled files: what every bad input must leave in place."""
    return build_day(flights_cfg, dt.date.fromisoformat(DAY))


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_input_fails_ingest_naming_the_rule_and_keeps_the_good_partition(
    case, http_server, flights_cfg, mlops_home, good_partition
):
    rows, tables, change, source, error, rule = CASES[case]
    folder = raw_dir(flights_cfg.name)
    lake.write_partition(good_partition, folder, DAY, {"pipeline": "flights", "note": "the good day"})
    before = lake.partition_path(folder, DAY).read_bytes()
    serve_tables(http_server, **{name: edit(load_table(name)) for name, edit in tables.items()})
    headers = {"X-Row-Count": str(ROWS)} if source.get("row_count_header") else None
    serve_day(http_server, DAY, rows(day_rows(DAY)), headers=headers)
    cfg = http_config(change(flights_cfg) if change else flights_cfg, http_server, **source)

    with pytest.raises(error) as caught:
        ingest(cfg, Interval.parse(DAY))

    message = str(caught.value)
    assert rule in message, message
    assert f"partition {DAY}" in message and http_server.url(f"/flights/{DAY}.csv") in message
    if error is SourceSchemaError:
        assert message.startswith(f"pipeline 'flights', {http_server.url(f'/flights/{DAY}.csv')}, partition {DAY}: ")
    assert lake.partition_path(folder, DAY).read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == [f"{DAY}.parquet"]


def test_the_corpus_errors_are_exact(flights_cfg, http_server, mlops_home):
    """The 1 in 'N of M rows' and the off-day count are exact, not approximate."""
    df = day_rows(DAY)
    serve_tables(http_server)
    serve_day(http_server, DAY, df.assign(flight_date=ny_stamps(df)))
    cfg = http_config(flights_cfg, http_server, **OWN_DATES)
    late = int((df["hour"] >= 19).sum())  # 19:00 in New York is midnight UTC in February
    with pytest.raises(SourceSchemaError, match=rf": {late} of {ROWS} rows have 'flight_date' outside"):
        ingest(cfg, Interval.parse(DAY))


# inputs that look odd but are right: accepted, with the right values


def test_a_key_column_read_as_float_keeps_its_integer_form(http_server, flights_cfg, mlops_home, good_partition):
    serve_tables(http_server)
    serve_day(http_server, DAY, day_rows(DAY).astype({"flight": "float64"}))  # "3314.0" in the CSV
    cfg = http_config(flights_cfg, http_server)

    ingest(cfg, Interval.parse(DAY))

    df = lake.read_partition(raw_dir(cfg.name), DAY)
    assert df["flight"].dtype == "int64" and not df["row_key"].str.contains(r"\.0").any()
    assert lake.content_digest(df) == lake.content_digest(good_partition)


def test_aware_dates_in_the_declared_zone_are_taken_in_it(http_server, flights_cfg, mlops_home):
    df = day_rows(DAY)
    serve_tables(http_server)
    serve_day(http_server, DAY, df.assign(flight_date=ny_stamps(df)))
    cfg = http_config(flights_cfg, http_server, date_columns=None, time_zone="America/New_York")

    result = ingest(cfg, Interval.parse(DAY))

    got = lake.read_partition(raw_dir(cfg.name), DAY)
    assert result.partitions == {DAY: ROWS}
    assert (got["flight_date"] == pd.Timestamp(DAY)).all() and str(got["flight_date"].dtype) == "datetime64[ms]"
    assert lake.read_manifest(raw_dir(cfg.name), DAY)["time_zone"] == "America/New_York"


def test_a_source_column_named_like_a_join_key_of_the_other_side_is_kept(http_server, flights_cfg, mlops_home):
    """`faa`, the airports table's key, used to be renamed away by the join; now both keep their values."""
    serve_tables(http_server)
    serve_day(http_server, DAY, day_rows(DAY).assign(faa="source value"))
    cfg = http_config(flights_cfg, http_server)

    ingest(cfg, Interval.parse(DAY))

    got = lake.read_partition(raw_dir(cfg.name), DAY)
    assert set(got["faa"]) == {"source value"}
    assert (got.loc[got["dest"] == "LAX", "dest_tzone"] == "America/Los_Angeles").all()


def test_numbers_of_any_width_arrive_as_int64_and_float64(http_server, flights_cfg, mlops_home, good_partition):
    narrow = day_rows(DAY).astype(
        {"hour": "int8", "minute": "uint8", "distance": "int16", "sched_dep_time": "Int32", "dep_delay": "float32"}
    )
    serve_tables(http_server, "parquet")
    serve_day(http_server, DAY, narrow, fmt="parquet")
    cfg = http_config(flights_cfg, http_server, "parquet")

    ingest(cfg, Interval.parse(DAY))

    got = lake.read_partition(raw_dir(cfg.name), DAY)
    assert {c: str(got[c].dtype) for c in ("hour", "minute", "distance", "sched_dep_time", "dep_delay")} == {
        "hour": "int64",
        "minute": "int64",
        "distance": "int64",
        "sched_dep_time": "int64",
        "dep_delay": "float64",
    }
    assert got.drop(columns="dep_delay").equals(good_partition.drop(columns="dep_delay"))


def test_the_source_size_and_own_row_count_are_recorded(http_server, flights_cfg, mlops_home):
    serve_tables(http_server)
    body = serve_day(http_server, DAY, headers={"X-Row-Count": str(ROWS)})
    cfg = http_config(flights_cfg, http_server, row_count_header="X-Row-Count")

    ingest(cfg, Interval.parse(DAY))

    stats = lake.read_manifest(raw_dir(cfg.name), DAY)["source_stats"]
    assert stats["bytes"] == len(body) and stats["content_length"] == str(len(body))
    assert stats["claimed_rows"] == str(ROWS) and stats["rows"] == ROWS
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/flights/2013-02-01\.csv", stats["url"])
