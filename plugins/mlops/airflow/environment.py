"""Settings for an embedded Airflow (demo, tests, `mlops up`): SQLite under `$MLOPS_HOME/airflow`.

Call :func:`configure` before anything imports airflow; values already in the environment win.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator, Mapping
from pathlib import Path

from mlops import IDLE_THREADS_SLEEP
from mlops.core.config import REPO_ROOT
from mlops.io.paths import mlops_home


def smtp_connection(host: str, port: int, from_email: str = "mlops@localhost") -> str:
    """The `AIRFLOW_CONN_SMTP_DEFAULT` value for a plain SMTP server (no TLS), e.g. a local sink."""
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": host,
            "port": port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": from_email},
        }
    )


def configure(parallelism: int = 4) -> dict[str, str]:
    """Set Airflow's environment for an embedded SQLite deployment; returns what it set."""
    home = mlops_home() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    wanted = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",  # no usage events, no fetch of their config from the internet
        "MLOPS_HOME": str(mlops_home()),
    }
    set_now = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(set_now)
    return set_now


@contextlib.contextmanager
def overridden(values: Mapping[str, str]) -> Iterator[None]:
    """Set these environment variables for the block, then put back what was there (or remove them).

    For in-process callers (the demo, a replay's report, tests): a setting for one stack or one sink
    must not outlive it in the process, where the next caller would reach a server that is gone.
    """
    before = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


LOOPBACK = ("127.0.0.1", "localhost", "::1")

# The environment added to the Airflow processes that run tasks, and to no other: the scheduler (its
# LocalExecutor forks every task process from it) or a Celery worker. It loads the plugins at start, and
# with them plugins/preload.py, which imports the task libraries once. Any other process would pay those
# imports for nothing: `airflow version` takes 2.5-3.2 s without them, 11.5-12.3 s with them.
PRELOAD = {"MLOPS_PRELOAD": "1", "AIRFLOW__CORE__LAZY_LOAD_PLUGINS": "False"}


def stack_environment(
    *,
    home: Path,
    database_url: str,
    scores_url: str,
    api_host: str,
    api_port: int,
    mlflow_url: str,
    smtp: str,
    parallelism: int = 4,
    all_admins: bool = True,
) -> dict[str, str]:
    """The environment of every Airflow process of the local stack (`mlops up`, `mlops replay`).

    A clean copy of this process's environment (no Airflow/MLflow/mlops settings of another deployment)
    plus: metadata in PostgreSQL (`database_url`), LocalExecutor, this repository's DAGs and plugins,
    loopback-only API, INFO task logs, DAGs unpaused at creation, the predictions sink (`scores_url`),
    MLflow through its server at `mlflow_url` (also the base of extra links and mail links), the SMTP
    connection `smtp`. The processes that run tasks add :data:`PRELOAD`.
    Bytecode is always written, under `PYTHONPYCACHEPREFIX` when the caller set one, else under
    `<home>/cache/pycache` (never into the repository or the virtual environment), whatever
    `PYTHONDONTWRITEBYTECODE` says: without it every Airflow process and every task compiles the
    modules it imports from source again (a fresh process importing the evaluate stage: 11.9 s with
    `PYTHONDONTWRITEBYTECODE=1`, 5.7 s from the cache; see docs/benchmarks.md).
    The Fernet key is kept in `$AIRFLOW_HOME/fernet.key` so stored connections survive restarts.
    """
    airflow_home = home / "airflow"
    airflow_home.mkdir(parents=True, exist_ok=True)
    key_file = airflow_home / "fernet.key"
    if not key_file.exists():
        from cryptography.fernet import Fernet

        key_file.write_text(Fernet.generate_key().decode())
        key_file.chmod(0o600)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "MLOPS_"))}
    base.pop("PYTHONDONTWRITEBYTECODE", None)
    env = {
        **base,
        "PYTHONPYCACHEPREFIX": os.environ.get("PYTHONPYCACHEPREFIX") or str(home / "cache" / "pycache"),
        "AIRFLOW_HOME": str(airflow_home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": database_url,
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
        "AIRFLOW__CORE__FERNET_KEY": key_file.read_text().strip(),
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": os.environ.get(
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", str(all_admins)
        ),
        "AIRFLOW__API__HOST": api_host,
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__WORKERS": "1",
        "AIRFLOW__API__BASE_URL": f"http://{'127.0.0.1' if api_host in LOOPBACK else api_host}:{api_port}",
        "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
        # 64 random bytes: Airflow signs its JWTs with HMAC-SHA512, and PyJWT warns on every signature
        # made with a key shorter than the hash (RFC 7518, section 3.2)
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
        "AIRFLOW__SCHEDULER__SCHEDULER_IDLE_SLEEP_TIME": "0.2",
        # The task supervisor waits for its task's process to exit in a select() of at most this many
        # seconds (and heartbeats no more often): a process still exiting when its sockets have closed
        # cost up to 5 s (the default) before its end was recorded; in a year's replay 31 of the 117
        # failing tasks (each sends the alert mail) took 5.2-5.5 s against a median 0.2 s.
        "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
        "AIRFLOW_CONN_SMTP_DEFAULT": smtp,
        # OpenMP threads (scikit-learn's HistGradientBoosting) sleep at once at a barrier instead of
        # spinning, and so do OpenBLAS's idle threads (numpy): a task beside another on the two cores
        # otherwise burns CPU waiting, which the feature audit's CPU-seconds budget counts as work (the
        # `mlops` package sets them too, for processes that import it before numpy and scikit-learn)
        **IDLE_THREADS_SLEEP,
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLFLOW_DISABLE_TELEMETRY": "true",  # no usage events, no fetch of their config from the internet
        "MLFLOW_TRACKING_URI": mlflow_url.replace("localhost", "127.0.0.1"),
        "MLOPS_MLFLOW_UI_URL": mlflow_url,
        "MLOPS_HOME": str(home),
        "MLOPS_SCORES_URL": scores_url,
    }
    return env
