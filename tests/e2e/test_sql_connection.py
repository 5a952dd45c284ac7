"""`source.conn_id` alone (no URL, no password in the YAML) works for every entry point that reads the
source: the daily ingest task, the retrain's assemble task, `mlops infer-schema` and `mlops check`, all
through one resolver, against a real PostgreSQL and an Airflow connection from the environment.
"""

from __future__ import annotations

import io

import pandas as pd
import psycopg2
import pytest
import sqlalchemy as sa
import yaml
from psycopg2 import sql as pgsql

from mlops.airflow.connections import ConnectionNotFoundError, source_url
from mlops.core.config import REPO_ROOT, load_pipeline
from mlops.io import lake
from mlops.io.paths import raw_dir, training_dir
from mlops.io.sources.nycflights13 import load_table
from mlops.local import runs
from mlops.local.cli import main
from tests.conftest import day

pytestmark = pytest.mark.e2e
DAYS = ["2013-02-01", "2013-02-02", "2013-02-03"]
PASSWORD = "conn-only-s3cret"
QUERY = (
    "SELECT * FROM flights WHERE make_date(year::int, month::int, day::int) >= :start"
    " AND make_date(year::int, month::int, day::int) < :end"
)


@pytest.fixture(scope="module")
def database(postgres_url):
    """A database of its own with three days of flights and the joined tables; a reader with a password."""
    server = sa.make_url(postgres_url)
    admin = psycopg2.connect(host=server.host, port=server.port, user=server.username, dbname=server.database)
    admin.autocommit = True
    with admin.cursor() as cur:
        cur.execute("DROP DATABASE IF EXISTS conn_only")
        cur.execute("CREATE DATABASE conn_only")
        cur.execute("DROP ROLE IF EXISTS conn_reader")
        cur.execute(pgsql.SQL("CREATE ROLE conn_reader LOGIN PASSWORD {}").format(pgsql.Literal(PASSWORD)))
    admin.close()
    url = server.set(database="conn_only")
    engine = sa.create_engine(url)
    conn = psycopg2.connect(host=url.host, port=url.port, user=url.username, dbname=url.database)
    flights = load_table("flights")
    days = pd.to_datetime(flights[["year", "month", "day"]]).dt.strftime("%Y-%m-%d")
    tables = {"flights": flights[days.isin(DAYS)], **{n: load_table(n) for n in ("weather", "planes", "airports")}}
    for name, df in tables.items():
        df.head(0).to_sql(name, engine, index=False, if_exists="replace")
        buffer = io.StringIO()
        df.to_csv(buffer, index=False, header=False)
        buffer.seek(0)
        with conn.cursor() as cur:
            cur.copy_expert(pgsql.SQL("COPY {} FROM STDIN WITH (FORMAT csv)").format(pgsql.Identifier(name)), buffer)
    with conn.cursor() as cur:
        cur.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO conn_reader")
    conn.commit()
    conn.close()
    engine.dispose()
    return f"postgresql://conn_reader:{PASSWORD}@{url.host}:{url.port}/conn_only"


@pytest.fixture
def conn_only(database, tmp_path, monkeypatch):
    """The flights pipeline as `sqlflights`, reading PostgreSQL through Airflow connection `flights_db` only."""
    data = yaml.safe_load((REPO_ROOT / "config" / "pipelines" / "flights.yaml").read_text())
    data["name"] = "sqlflights"
    data["source"] = {
        "kind": "sql",
        "conn_id": "flights_db",
        "query": QUERY,
        "date_columns": data["source"]["date_columns"],
        "date_column": "flight_date",
    }
    path = tmp_path / "sqlflights.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    assert PASSWORD not in path.read_text() and "url" not in data["source"]
    monkeypatch.setenv("MLOPS_CONFIG_DIR", str(tmp_path))
    monkeypatch.setenv("AIRFLOW_CONN_FLIGHTS_DB", database)
    return load_pipeline("sqlflights")


def test_the_connection_resolves_to_a_sqlalchemy_url(conn_only, database, monkeypatch):
    assert source_url(conn_only) == database.replace("postgresql://", "postgresql+psycopg2://", 1)
    monkeypatch.delenv("AIRFLOW_CONN_FLIGHTS_DB")
    with pytest.raises(ConnectionNotFoundError) as info:
        source_url(conn_only)
    assert str(info.value).startswith("pipeline 'sqlflights': source.conn_id 'flights_db' is not an Airflow connection")


def test_ingest_assemble_infer_schema_and_check_all_read_through_the_connection(
    conn_only, mlops_home, airflow_db, smtp_sink, tmp_path, capsys
):
    assert main(["check", "sqlflights", "--day", "2013-02-01"]) == 0
    assert "config and source agree" in capsys.readouterr().out

    daily = runs.run("sqlflights_daily", day("2013-02-01"), mark_success="^(validate|score|monitor)$")
    assert daily.tasks["ingest"] == "success", daily.tasks
    manifest = lake.read_manifest(raw_dir("sqlflights"), "2013-02-01")
    assert manifest["source"].startswith("sql:postgresql+psycopg2://conn_reader:***@")

    suite = tmp_path / "suite.json"
    args = ["infer-schema", "sqlflights", "--start", "2013-02-01", "--end", "2013-02-03", "--output", str(suite)]
    assert main(args) == 0 and suite.exists()  # ingested 2013-02-02 itself

    conf = {"window_start": "2013-02-01", "window_end": "2013-02-04"}
    retrain = runs.run("sqlflights_retrain", day("2013-02-03"), conf, mark_success="^(?!assemble$).*")
    assert retrain.tasks["assemble"] == "success", retrain.tasks
    assert retrain.xcoms["assemble"]["days"] == DAYS  # ingested 2013-02-03 itself
    assert (training_dir("sqlflights") / "2013-02-01..2013-02-04.parquet").exists()
    assert smtp_sink.messages == []
