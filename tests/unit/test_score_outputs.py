"""A day's predictions follow its latest run, in Parquet and PostgreSQL alike, through failures and kills.

Real MLflow (a model trained once for the module on 2013-01-01..2013-01-08), real PostgreSQL, the real
daily DAG (`dag.test()`) reading its days over real HTTP, and a scoring process killed with SIGKILL.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys

import pandas as pd
import pytest
import sqlalchemy as sa
import yaml

from mlops.core.config import Scoring
from mlops.core.interval import Interval
from mlops.io import lake, predictions
from mlops.io.datasets import latest_scored_day
from mlops.io.paths import predictions_dir, raw_dir
from mlops.io.sinks import SinkError
from mlops.local import runs
from mlops.stages.assemble import assemble
from mlops.stages.ingest import build_day, ingest, ingest_missing
from mlops.stages.monitor import monitor_predictions
from mlops.stages.recalibrate import recalibrate
from mlops.stages.score import score
from mlops.stages.train import train
from tests.fixtures.flight_files import day_rows, http_config, serve_day, serve_tables

WINDOW = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 8))
TABLE = "outputs"


@pytest.fixture(scope="module")
def cfg(small_cfg, postgres_url):
    """A quick training setup; predictions also go to PostgreSQL; failed tasks would be retried at once."""
    training = small_cfg.training.model_copy(update={"window_days": 7, "calibration_days": 2, "evaluation_days": 2})
    return small_cfg.model_copy(
        update={
            "training": training,
            "scoring": Scoring(sink_url=postgres_url, table=TABLE),
            "alerts": small_cfg.alerts.model_copy(update={"retries": 2, "retry_delay_seconds": 0}),
        }
    )


@pytest.fixture(scope="module")
def version(module_home, cfg) -> str:
    """Version 1, trained and given its threshold."""
    ingest_missing(cfg, WINDOW)
    assembled = assemble(cfg, WINDOW)
    trained = train(cfg, assembled.key, WINDOW)
    recalibrate(cfg, assembled.key, WINDOW, trained.version)
    return trained.version


@pytest.fixture
def use(tmp_path, monkeypatch):
    """Make a config the one the DAGs (and child processes) load."""

    def configure(cfg):
        (tmp_path / "flights.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
        monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path))
        return cfg

    return configure


def sql_rows(url: str, day: str) -> pd.DataFrame:
    """The predictions table's rows of one day, ordered by row key."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return pd.read_sql(
                sa.text(
                    f"SELECT row_key, model_version, score, scored_at FROM {TABLE} WHERE pipeline = 'flights' "
                    "AND data_interval_start = :start ORDER BY row_key"
                ),
                conn,
                params={"start": dt.datetime.fromisoformat(f"{day}T00:00:00+00:00")},
            )
    finally:
        engine.dispose()


def parquet_rows(day: str) -> pd.DataFrame | None:
    if not lake.partition_path(predictions_dir("flights"), day).exists():
        return None
    df = lake.read_partition(predictions_dir("flights"), day)
    return df[["row_key", "model_version", "score", "scored_at"]].sort_values("row_key").reset_index(drop=True)


def assert_both_stores_agree(url: str, day: str) -> None:
    sql, parquet = sql_rows(url, day), parquet_rows(day)
    assert parquet is not None and len(sql) == len(parquet) > 500
    assert sql["row_key"].tolist() == parquet["row_key"].tolist() and (sql["score"] == parquet["score"]).all()
    assert set(sql["scored_at"].dt.tz_convert("UTC")) == set(parquet["scored_at"])
    assert predictions.is_done("flights", day)


def retracted(day: str) -> dict:
    record = predictions.record("flights", day)
    assert record is not None and record["status"] == "retracted", record
    return record


# 7. re-runs retract what no longer holds


def test_a_scored_day_reingested_empty_loses_its_predictions_everywhere(
    version, cfg, http_server, postgres_url, use, airflow_db
):
    served = use(http_config(cfg, http_server, on_empty="empty"))
    serve_tables(http_server)
    for day in ("2013-01-09", "2013-01-10"):
        serve_day(http_server, day)
    ingest(served, Interval.parse("2013-01-09..2013-01-11"))
    score(served, Interval.parse("2013-01-09..2013-01-11"), version)
    assert_both_stores_agree(postgres_url, "2013-01-10")
    kept = sql_rows(postgres_url, "2013-01-09")

    serve_day(http_server, "2013-01-10", day_rows("2013-01-10").head(0))  # the day now has no rows
    outcome = runs.run("flights_daily", Interval.parse("2013-01-10"), {"model_version": version})

    assert outcome.tasks == {"ingest": "success", "validate": "skipped", "score": "skipped", "monitor": "skipped"}
    assert parquet_rows("2013-01-10") is None and sql_rows(postgres_url, "2013-01-10").empty
    record = retracted("2013-01-10")
    assert "partition is empty" in record["reason"]
    rows = len(day_rows("2013-01-10"))
    assert record["removed"] == {"model_version": version, "parquet_rows": rows, "sql_rows": rows}
    pd.testing.assert_frame_equal(sql_rows(postgres_url, "2013-01-09"), kept)  # other days untouched
    assert latest_scored_day("flights") == dt.date(2013, 1, 9)


def test_a_scored_day_that_now_fails_validation_loses_its_predictions_everywhere(
    version, cfg, http_server, postgres_url, use, airflow_db, smtp_sink
):
    day = "2013-01-11"
    served = use(http_config(cfg, http_server))
    serve_tables(http_server)
    serve_day(http_server, day)
    ingest(served, Interval.parse(day))
    score(served, Interval.parse(day), version)
    assert_both_stores_agree(postgres_url, day)

    broken = day_rows(day)
    broken.loc[broken.index[:40], "origin"] = "XXX"  # keys stay unique: the origin is in the key
    serve_day(http_server, day, broken)
    outcome = runs.run("flights_daily", Interval.parse(day), {"model_version": version})

    assert outcome.tasks == {"ingest": "success", "validate": "failed", "score": "upstream_failed",
                             "monitor": "upstream_failed"}  # fmt: skip
    assert outcome.tries["validate"] == 1  # a failed data check is not retried
    assert parquet_rows(day) is None and sql_rows(postgres_url, day).empty
    record = retracted(day)
    assert record["reason"].startswith("failed validation: ")
    assert "checks failed (flights 2013-01-11)" in record["reason"]
    assert record["removed"]["sql_rows"] == record["removed"]["parquet_rows"] > 500
    assert any(day in m["Subject"] for m in smtp_sink.messages)


# 8. two stores, one truth; deterministic errors are not retried


def test_a_failing_copy_leaves_both_stores_as_they_were_and_is_not_retried(
    version, cfg, postgres_url, use, airflow_db, smtp_sink
):
    use(cfg)
    day, fresh = "2013-01-12", "2013-01-18"
    ingest(cfg, Interval.parse(day))
    score(cfg, Interval.parse(day), version)
    before_parquet = lake.partition_path(predictions_dir("flights"), day).read_bytes()
    before_sql = sql_rows(postgres_url, day)
    for key in (day, fresh):  # a NULL key, in partitions written before ingestion refused them
        bad = build_day(cfg, dt.date.fromisoformat(key))
        bad.loc[bad.index[300], "row_key"] = None
        lake.write_partition(bad, raw_dir("flights"), key, {"pipeline": "flights", "note": "null key"})

    conf = {"model_version": version}
    outcome = runs.run("flights_daily", Interval.parse(day), conf, mark_success="^(ingest|validate)$")

    assert outcome.tasks["score"] == "failed" and outcome.tries["score"] == 1  # retries: 2, none used
    assert lake.partition_path(predictions_dir("flights"), day).read_bytes() == before_parquet
    pd.testing.assert_frame_equal(sql_rows(postgres_url, day), before_sql)
    assert predictions.record("flights", day) is None and not predictions.is_done("flights", day)
    assert day not in predictions.scored_days("flights")

    with pytest.raises(SinkError, match='null value in column "row_key"') as caught:  # the case: a new day
        score(cfg, Interval.parse(fresh), version)
    assert caught.value.transient is False
    assert parquet_rows(fresh) is None and sql_rows(postgres_url, fresh).empty
    assert predictions.record("flights", fresh) is None
    assert lake.list_partitions(predictions_dir("flights")).count(fresh) == 0
    assert not list(predictions_dir("flights").glob(".*.tmp"))


# 9. a multi-day run with an empty day


def test_a_multi_day_run_with_an_empty_day_scores_the_others(version, cfg, http_server, postgres_url, use, airflow_db):
    days = ["2013-01-13", "2013-01-14", "2013-01-15"]
    use(http_config(cfg, http_server, on_empty="empty"))
    serve_tables(http_server)
    for day in days:
        serve_day(http_server, day, day_rows(day).head(0) if day == "2013-01-14" else None)
    conf = {"start": days[0], "end": "2013-01-16", "model_version": version}

    outcome = runs.run("flights_daily", Interval.parse("2013-01-13..2013-01-16"), conf)

    assert outcome.succeeded, outcome.tasks
    counts = {day: len(day_rows(day)) for day in days}
    assert outcome.xcoms["ingest"]["partitions"] == {**counts, "2013-01-14": 0}
    assert outcome.xcoms["score"]["rows"] == counts["2013-01-13"] + counts["2013-01-15"]
    for day in ("2013-01-13", "2013-01-15"):
        assert_both_stores_agree(postgres_url, day)
    assert parquet_rows("2013-01-14") is None and sql_rows(postgres_url, "2013-01-14").empty
    assert "partition is empty" in retracted("2013-01-14")["reason"]
    assert outcome.tasks["monitor"] == "success"


# 8 and 12: a scoring process killed between the SQL commit and the Parquet rename

KILLED_AFTER_COMMIT = """
import os, signal, sys

from mlops.core.config import load_pipeline
from mlops.core.interval import Interval
from mlops.io import sinks
from mlops.stages.score import score

commit = sinks.IntervalWriter.commit


def commit_then_die(writer, manifest=None):
    commit(writer, manifest)
    os.kill(os.getpid(), signal.SIGKILL)  # the rows are committed; the Parquet file is not in place yet


sinks.IntervalWriter.commit = commit_then_die
score(load_pipeline("flights"), Interval.parse(sys.argv[1]), sys.argv[2])
"""


def test_a_scorer_killed_after_the_sql_commit_leaves_the_day_not_done_until_rescored(version, cfg, postgres_url, use):
    day = "2013-01-17"
    use(cfg)
    ingest(cfg, Interval.parse(day))

    killed = subprocess.run([sys.executable, "-c", KILLED_AFTER_COMMIT, day, version], timeout=300, check=False)

    assert killed.returncode == -signal.SIGKILL
    assert len(sql_rows(postgres_url, day)) == len(day_rows(day))  # one store ahead of the other ...
    assert parquet_rows(day) is None
    assert not predictions.is_done("flights", day) and day not in predictions.scored_days("flights")  # ... not done
    left = list(predictions_dir("flights").glob(f".{day}.*.tmp"))
    assert len(left) == 1
    for path in left:  # as if the retry came a while later
        os.utime(path, (path.stat().st_atime - 600, path.stat().st_mtime - 600))

    score(cfg, Interval.parse(day), version)  # the retry

    assert_both_stores_agree(postgres_url, day)
    assert not list(predictions_dir("flights").glob(".*.tmp"))


# 5. a damaged lake file is named by every task that reads it


def test_truncated_partitions_are_named_by_score_and_monitor(version, cfg, postgres_url, use):
    day = "2013-01-19"
    ingest(cfg, Interval.parse(day))
    score(cfg, Interval.parse(day), version)
    scored = lake.partition_path(predictions_dir("flights"), day)
    scored.write_bytes(scored.read_bytes()[:4000])
    with pytest.raises(lake.PartitionReadError, match=re.escape(f"partition '{day}', file {scored}: cannot be read")):
        monitor_predictions(cfg, Interval.parse(day))

    raw = lake.partition_path(raw_dir("flights"), day)
    raw.write_bytes(raw.read_bytes()[:4000])
    with pytest.raises(lake.PartitionReadError, match=re.escape(f"partition '{day}', file {raw}: cannot be read")):
        score(cfg, Interval.parse(day), version)
