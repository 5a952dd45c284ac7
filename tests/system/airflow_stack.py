"""A real deployment for the system tests: PostgreSQL, an MLflow server, an SMTP sink, and Airflow's
scheduler, dag-processor and api-server as separate processes (plus Redis and a Celery worker for the
CeleryExecutor), driven through the REST API v2 with `requests` only.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from mlops.airflow import environment as airflow_env
from mlops.core.config import REPO_ROOT
from mlops.local.airflow_api import ENDED_RUN_STATES, AirflowApi
from mlops.local.mailsink import MailSink
from mlops.local.ports import free_port
from mlops.local.stack import Service, bin_path, http_ok, stop_servers_last, wait_until
from tests.fixtures.postgres import Cluster, start_cluster

TERMINAL = set(ENDED_RUN_STATES)

# The settings every Airflow process of a Celery deployment shares (docker-compose.yaml uses the same).
CELERY_SETTINGS = {
    "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
    "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
}


@dataclass
class Stack:
    root: Path
    executor: str
    api: AirflowApi | None = None
    pg: Cluster | None = None
    sink: MailSink | None = None
    env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    mlflow_uri: str = ""
    scores_url: str = ""

    @property
    def home(self) -> Path:
        return self.root / "mlops-home"

    @property
    def airflow_home(self) -> Path:
        return self.root / "airflow"

    def service(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Service:
        s = Service(name, cmd, env or self.env, self.root / "logs" / f"{name}.log", cwd=self.root).start()
        self.services.append(s)
        return s

    def wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        """Wait until the run ends; returns its state (and prints its tasks and logs if it failed)."""
        state = None
        try:
            state = self.api.wait_run(dag_id, run_id, timeout, self.services)["state"]
        finally:
            if state != "success":
                self.dump(dag_id, run_id)
        return state

    def dump(self, dag_id: str, run_id: str) -> None:
        with contextlib.suppress(Exception):
            print(f"--- {dag_id} {run_id}: {self.api.tasks(dag_id, run_id)}")
        for log in sorted(self.airflow_home.glob(f"logs/dag_id={dag_id}/run_id={run_id}/task_id=*/attempt=*.log")):
            print(f"--- {log}")
            print("\n".join(log.read_text(errors="replace").splitlines()[-15:]))

    def task_log(self, dag_id: str, run_id: str, task_id: str) -> str:
        """The text of every attempt's log of one task, as the worker wrote it."""
        logs = sorted(self.airflow_home.glob(f"logs/dag_id={dag_id}/run_id={run_id}/task_id={task_id}/attempt=*.log"))
        return "\n".join(log.read_text(errors="replace") for log in logs)

    def mails(self, *words: str) -> list:
        return [m for m in self.sink.messages if all(w in str(m["Subject"]) for w in words)]


def base_env() -> dict[str, str]:
    """This process's environment without the test session's Airflow/MLflow/mlops settings."""
    drop = ("AIRFLOW", "MLFLOW_", "MLOPS_", "PYTEST_")
    return {k: v for k, v in os.environ.items() if not k.startswith(drop)}


def unavailable(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"system test cannot run in CI: {reason}", pytrace=False)
    pytest.skip(f"system test skipped: {reason}")


@contextlib.contextmanager
def airflow_stack(executor: str = "LocalExecutor", preload: bool = False) -> Iterator[Stack]:
    """Start everything, yield the stack with an authenticated API client, stop everything.

    `preload`: the Airflow processes that run tasks import the task libraries once (plugins/preload.py).
    """
    redis_server = shutil.which("redis-server")
    if executor == "CeleryExecutor" and redis_server is None:
        unavailable("redis-server not found (apt-get install redis-server)")
    stack = Stack(Path(tempfile.mkdtemp(prefix=f"mlops-system-{executor.lower()}-")), executor)
    started = time.monotonic()
    try:
        stack.pg = start_cluster()
        airflow_db = stack.pg.create_database("airflow")
        mlflow_db = stack.pg.create_database("mlflow")
        stack.scores_url = stack.pg.create_database("scores")
        stack.sink = MailSink().start()

        mlflow_port, api_port = free_port(), free_port()
        stack.mlflow_uri = f"http://127.0.0.1:{mlflow_port}"
        base = base_env()
        mlflow = stack.service(
            "mlflow",
            [
                bin_path("mlflow"),
                "server",
                "--backend-store-uri",
                mlflow_db.replace("postgresql+psycopg2://", "postgresql://"),
                "--artifacts-destination",
                str(stack.root / "mlflow-artifacts"),
                "--host",
                "127.0.0.1",
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            {**base, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
        )

        stack.env = {
            **base,
            "AIRFLOW_HOME": str(stack.airflow_home),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": airflow_db,
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__API__PORT": str(api_port),
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
            "AIRFLOW__API__WORKERS": "1",
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(64),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
            "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
            "AIRFLOW_CONN_SMTP_DEFAULT": airflow_env.smtp_connection(stack.sink.host, stack.sink.port),
            "GX_ANALYTICS_ENABLED": "false",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "MLOPS_HOME": str(stack.home),
            "MLFLOW_TRACKING_URI": stack.mlflow_uri,
            "MLOPS_ARTIFACT_ROOT": "mlflow-artifacts:",
            "MLOPS_SCORES_URL": stack.scores_url,
        }
        if executor == "CeleryExecutor":
            redis_port = free_port()
            stack.service(
                "redis",
                [redis_server, "--bind", "127.0.0.1", "--port", str(redis_port), "--save", "", "--appendonly", "no"],
                base,
            )
            stack.env.update(CELERY_SETTINGS)
            stack.env["AIRFLOW__CELERY__BROKER_URL"] = f"redis://127.0.0.1:{redis_port}/0"
            stack.env["AIRFLOW__CELERY__RESULT_BACKEND"] = "db+" + airflow_db.replace("+psycopg2", "")

        airflow = bin_path("airflow")
        migrate = subprocess.run(
            [airflow, "db", "migrate"], env=stack.env, capture_output=True, text=True, timeout=300, check=False
        )
        assert migrate.returncode == 0, f"airflow db migrate failed:\n{migrate.stdout[-3000:]}{migrate.stderr[-3000:]}"
        api_server = stack.service("api-server", [airflow, "api-server", "--port", str(api_port), "--workers", "1"])
        # with `preload`, the processes that run tasks import the task libraries once, as `mlops up` does
        runs_tasks = {**stack.env, **airflow_env.PRELOAD} if preload else stack.env
        stack.service("scheduler", [airflow, "scheduler"], runs_tasks)
        stack.service("dag-processor", [airflow, "dag-processor"])
        if executor == "CeleryExecutor":
            stack.service("celery-worker", [airflow, "celery", "worker", "--concurrency", "2"], runs_tasks)

        base_url = f"http://127.0.0.1:{api_port}"
        wait_until(http_ok(f"{base_url}/api/v2/monitor/health"), 180, "Airflow API", stack.services)
        stack.api = AirflowApi.connect(base_url, stack.airflow_home, [api_server])
        wait_until(http_ok(f"{stack.mlflow_uri}/health"), 120, "MLflow server", [mlflow])
        print(f"system ({executor}): stack up in {time.monotonic() - started:.0f} s", flush=True)
        yield stack
    finally:
        stopped = time.monotonic()
        children = [pid for s in stack.services for pid in s.descendants()]
        for s, code in stop_servers_last(stack.services, ("api-server", "mlflow", "redis")):
            print(f"system: {s.name} stopped ({code})", flush=True)
        left = [pid for pid in children if _alive(pid)]
        if stack.sink is not None:
            stack.sink.stop()
        if stack.pg is not None:
            stack.pg.stop()
        print(f"system ({executor}): stack stopped in {time.monotonic() - stopped:.0f} s", flush=True)
        if os.environ.get("MLOPS_KEEP_SYSTEM_TMP") != "1":
            shutil.rmtree(stack.root, ignore_errors=True)
        if left and sys.exc_info()[0] is None:
            pytest.fail(f"processes left behind after stopping the stack: {left}")


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
