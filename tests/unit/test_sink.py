"""The PostgreSQL predictions sink, on a real throwaway cluster and real flight row keys."""

from __future__ import annotations

import datetime as dt
import re

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from mlops.io.sinks import COLUMNS, PostgresSink, SinkConfigError, SinkError
from mlops.stages.ingest import build_day
from mlops.stages.score import PREDICTION_COLUMNS, day_bounds

DAY1, DAY2 = dt.date(2013, 1, 22), dt.date(2013, 1, 23)


@pytest.fixture(scope="module")
def keys(small_cfg) -> dict[dt.date, pd.Series]:
    """The real row keys of two flight days."""
    return {day: build_day(small_cfg, day)["row_key"] for day in (DAY1, DAY2)}


def predictions(keys: pd.Series, day: dt.date, pipeline: str = "flights", seed: int = 0, version: str = "1"):
    """A day's prediction frame for `keys`, as score_batches builds it."""
    scores = np.random.default_rng(seed).random(len(keys))
    start, end = day_bounds(day)
    return pd.DataFrame(
        {
            "pipeline": pipeline,
            "row_key": keys.to_numpy(),
            "model_name": "flights",
            "model_version": version,
            "mlflow_run_id": f"run-{seed}-ü",
            "threshold": 0.3125,
            "score": scores,
            "predicted_label": (scores >= 0.3125).astype("int8"),
            "data_interval_start": start,
            "data_interval_end": end,
            "scored_at": pd.Timestamp("2024-05-06 07:08:09.123456", tz="UTC"),
        }
    )[PREDICTION_COLUMNS]


def batches(frame: pd.DataFrame, size: int = 300) -> list[pd.DataFrame]:
    return [frame.iloc[i : i + size] for i in range(0, len(frame), size)]


@pytest.fixture
def table(request) -> str:
    """A table of the test's own (the name's end keeps the parameter's id)."""
    return "p_" + re.sub(r"\W+", "_", request.node.name.removeprefix("test_"))[-55:]


@pytest.fixture
def engine(postgres_url):
    engine = sa.create_engine(postgres_url)
    yield engine
    engine.dispose()


def read(engine, table: str, where: str = "TRUE") -> pd.DataFrame:
    query = f"SELECT {', '.join(COLUMNS)} FROM {table} WHERE {where} ORDER BY pipeline, data_interval_start, row_key"
    with engine.connect() as conn:
        return pd.read_sql(query, conn)


def same_rows(stored: pd.DataFrame, frame: pd.DataFrame) -> None:
    assert len(stored) == len(frame)
    expected = frame.sort_values(["pipeline", "data_interval_start", "row_key"]).reset_index(drop=True)
    stored = stored.astype({"predicted_label": "int8"})
    for column in ("data_interval_start", "data_interval_end", "scored_at"):
        stored[column] = stored[column].dt.tz_convert("UTC").astype(expected[column].dtype)
    pd.testing.assert_frame_equal(stored, expected, check_dtype=False)
    assert (stored.score.to_numpy() == expected.score.to_numpy()).all()  # bit for bit, not approximately


def test_the_sink_creates_its_table_with_types_and_index(postgres_url, engine, table):
    PostgresSink(postgres_url, table).ensure_table()
    PostgresSink(postgres_url, table).ensure_table()  # idempotent
    with engine.connect() as conn:
        columns = conn.execute(
            sa.text(
                "SELECT column_name, data_type, is_nullable FROM information_schema.columns "
                "WHERE table_name = :t ORDER BY ordinal_position"
            ),
            {"t": table},
        ).all()
        indexes = conn.execute(sa.text("SELECT indexdef FROM pg_indexes WHERE tablename = :t"), {"t": table}).all()
    types = {"timestamptz": "timestamp with time zone"}
    assert [(c, t) for c, t, _ in columns] == [(c, types.get(t, t)) for c, t in COLUMNS.items()]
    assert {n for _, _, n in columns} == {"NO"}
    assert len(indexes) == 1 and indexes[0][0].endswith("(pipeline, data_interval_start)")


def test_a_rerun_replaces_its_interval_only(postgres_url, engine, table, keys):
    sink = PostgresSink(postgres_url, table)
    first = predictions(keys[DAY1], DAY1, seed=1)
    other_day = predictions(keys[DAY2], DAY2, seed=2)
    other_pipeline = predictions(keys[DAY1], DAY1, pipeline="trains", seed=3)
    assert sink.replace_interval("flights", *day_bounds(DAY1), batches(first)) == len(first)
    sink.replace_interval("flights", *day_bounds(DAY2), batches(other_day))
    sink.replace_interval("trains", *day_bounds(DAY1), [other_pipeline])
    same_rows(read(engine, table), pd.concat([first, other_day, other_pipeline]))

    again = predictions(keys[DAY1], DAY1, seed=4, version="2")
    assert sink.replace_interval("flights", *day_bounds(DAY1), batches(again, 250)) == len(again)
    stored = read(engine, table)
    assert len(stored) == len(again) + len(other_day) + len(other_pipeline)
    assert not stored.duplicated(["pipeline", "row_key", "data_interval_start"]).any()
    same_rows(read(engine, table, "pipeline = 'flights' AND data_interval_start < '2013-01-23'"), again)
    same_rows(read(engine, table, "data_interval_start >= '2013-01-23'"), other_day)
    same_rows(read(engine, table, "pipeline = 'trains'"), other_pipeline)


@pytest.mark.parametrize(
    ("spoil", "reason"),
    [
        pytest.param(lambda b: b.assign(score="high"), "column 'score' must hold numbers", id="wrong-type"),
        pytest.param(lambda b: b.assign(row_key=None), 'null value in column "row_key"', id="null-key"),  # server
    ],
)
def test_a_failure_mid_copy_rolls_back_to_the_previous_rows(postgres_url, engine, table, keys, spoil, reason):
    sink = PostgresSink(postgres_url, table)
    before = predictions(keys[DAY1], DAY1, seed=1)
    sink.replace_interval("flights", *day_bounds(DAY1), batches(before))
    parts = batches(predictions(keys[DAY1], DAY1, seed=5))
    parts[1] = spoil(parts[1])
    with pytest.raises(SinkError, match=re.escape(reason)):
        sink.replace_interval("flights", *day_bounds(DAY1), parts)
    same_rows(read(engine, table), before)
    again = predictions(keys[DAY1], DAY1, seed=6)  # the sink still works afterwards
    sink.replace_interval("flights", *day_bounds(DAY1), batches(again))
    same_rows(read(engine, table), again)


def test_an_empty_rerun_empties_the_interval(postgres_url, engine, table, keys):
    sink = PostgresSink(postgres_url, table)
    sink.replace_interval("flights", *day_bounds(DAY1), batches(predictions(keys[DAY1], DAY1)))
    assert sink.replace_interval("flights", *day_bounds(DAY1), []) == 0
    assert read(engine, table).empty


def test_only_postgresql_is_supported(tmp_path):
    with pytest.raises(SinkConfigError, match=r"only PostgreSQL is supported, got 'sqlite'"):
        PostgresSink(f"sqlite:///{tmp_path}/scores.db")
    with pytest.raises(SinkConfigError, match=r"only PostgreSQL.*mysql://scorer:\*\*\*@db/scores"):
        PostgresSink("mysql://scorer:s3cret-Pw@db/scores")
    with pytest.raises(SinkConfigError, match="bad table name"):
        PostgresSink("postgresql://db/scores", "a.b.c")


def test_errors_never_show_the_password(postgres_url, engine, keys):
    with engine.connect() as conn:
        conn.execute(sa.text("CREATE ROLE scorer LOGIN PASSWORD 'right-pw'"))
        conn.commit()
    wrong = sa.engine.make_url(postgres_url).set(username="scorer", password="Wr0ng-s3cret")
    sink = PostgresSink(wrong.render_as_string(hide_password=False))
    with pytest.raises(SinkError) as failure:
        sink.replace_interval("flights", *day_bounds(DAY1), [predictions(keys[DAY1], DAY1)])
    message = str(failure.value)
    assert "Wr0ng-s3cret" not in message and "scorer:***@" in message
    assert "password authentication failed" in message


def test_errors_say_whether_a_retry_can_help(postgres_url, table, keys):
    """An unreachable server may come back (retry); a NULL key fails the same way every time (no retry)."""
    from mlops.local.ports import free_port

    closed = sa.engine.make_url(postgres_url).set(port=free_port()).render_as_string(hide_password=False)
    with pytest.raises(SinkError, match="cannot connect") as unreachable:
        PostgresSink(closed, table).replace_interval("flights", *day_bounds(DAY1), [])
    assert unreachable.value.transient is True

    rows = predictions(keys[DAY1], DAY1).assign(row_key=None)
    with pytest.raises(SinkError, match='null value in column "row_key"') as refused:
        PostgresSink(postgres_url, table).replace_interval("flights", *day_bounds(DAY1), [rows])
    assert refused.value.transient is False


def test_rows_are_committed_when_the_writer_says_so(postgres_url, engine, table, keys):
    """`commit()` inside the block (before a second store is renamed into place) commits once; it reports the
    rows it replaced."""
    sink = PostgresSink(postgres_url, table)
    first = predictions(keys[DAY1], DAY1, seed=1)
    sink.replace_interval("flights", *day_bounds(DAY1), [first])
    again = predictions(keys[DAY1], DAY1, seed=2)
    with sink.replacing("flights", *day_bounds(DAY1)) as writer:
        writer.write(again)
        writer.commit()
        same_rows(read(engine, table), again)  # visible to other connections already
        writer.commit()  # idempotent
    assert writer.replaced == len(first) and writer.rows == len(again)
    same_rows(read(engine, table), again)
