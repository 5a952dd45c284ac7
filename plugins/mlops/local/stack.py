"""Run the stack's processes locally: `mlops up`, `mlops replay` and the system tests.

Every process starts in its own session (`start_new_session=True`), so a Ctrl-C in the terminal reaches
only `mlops up`, which then stops each child itself: SIGINT to the child's process group (what a
terminal's Ctrl-C does; Airflow shuts down cleanly on it, while SIGTERM can leave orphans), a wait,
and SIGKILL only as the last resort. While a stack runs, `mlops up` and `mlops replay` turn SIGINT
and SIGTERM (`kill`, systemd, a container stop) into that same clean stop (`stopped_by_signals`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import requests


class Service:
    """One long-running command whose output goes to `log`."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path, cwd: Path | None = None) -> None:
        self.name, self.cmd, self.env, self.log, self.cwd = name, cmd, env, log, cwd
        self.proc: subprocess.Popen | None = None

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def start(self) -> Service:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                self.cmd,
                env=self.env,
                cwd=self.cwd,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return self

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def descendants(self) -> list[int]:
        """PIDs of every process below this one (for checks that nothing is left behind)."""
        import psutil

        if not self.running():
            return []
        try:
            return [p.pid for p in psutil.Process(self.proc.pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGINT to the process group, wait up to `timeout`, then SIGKILL. Returns the exit code."""
        return stop_together([self], timeout)[0]

    def interrupt(self) -> None:
        """SIGINT to the process group (a terminal's Ctrl-C), if the process still runs."""
        if self.running():
            _signal_group(self.proc.pid, signal.SIGINT)

    def finish(self, deadline: float) -> int | None:
        """Wait for the interrupted process until `deadline` (time.monotonic()), then SIGKILL its group;
        then give the rest of the group 10 s and kill what is left. Returns the exit code."""
        if self.proc is None:
            return None
        try:
            self.proc.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            print(f"{self.name}: still running after SIGINT, killing it", file=sys.stderr)
            _signal_group(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        # the leader is gone; give the rest of its group a moment, then kill what is left
        grace = time.monotonic() + 10
        while _group_alive(self.proc.pid) and time.monotonic() < grace:
            time.sleep(0.2)
        if _group_alive(self.proc.pid):
            print(f"{self.name}: processes left in its group after exit, killing them", file=sys.stderr)
            _signal_group(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


SIGINT_AGAIN_AFTER = 10.0  # seconds: a process still running then gets SIGINT once more


def stop_together(services: list[Service], timeout: float = 60.0) -> list[int | None]:
    """Stop these services at once: SIGINT to every one, SIGINT again to those still running after
    `SIGINT_AGAIN_AFTER` seconds, SIGKILL to those still running `timeout` seconds after the first.
    Returns their exit codes, in order.

    Their shutdowns overlap: a stack's Airflow processes took 0.7-2.4 s each, the API server 4.0 s and
    MLflow 2.8 s, 12.4 s one after another. The second SIGINT is for a signal that was lost: Airflow's
    handler raises SystemExit, which Python ignores when it is raised inside logging's lock release (a
    scheduler interrupted while it still logged its start ran on).
    """
    started = time.monotonic()
    for service in services:
        service.interrupt()
    again = started + min(SIGINT_AGAIN_AFTER, timeout)
    while any(s.running() for s in services) and time.monotonic() < again:
        time.sleep(0.1)
    for service in services:
        service.interrupt()
    return [service.finish(started + timeout) for service in services]


def stop_servers_last(
    services: list[Service], servers: tuple[str, ...], timeout: float = 60.0
) -> list[tuple[Service, int | None]]:
    """Stop the services not named in `servers` together (what runs or schedules tasks), then those named
    (the servers those tasks call: the API server's execution API, MLflow); (service, exit code) pairs
    in the order they were stopped."""
    last = [s for s in services if s.name in servers]
    first = [s for s in services if s.name not in servers]
    return [pair for group in (first, last) for pair in zip(group, stop_together(group, timeout), strict=True)]


SERVERS = ("airflow-api-server", "mlflow")  # the servers a stack's tasks call: stopped last
AIRFLOW_SCHEMA_MARKER = "airflow-schema"  # under the home's postgres/: "<Airflow version> <alembic revision>"


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # zombies still count for killpg: look for a live member
    import psutil

    for p in psutil.process_iter(["pid"]):
        with contextlib.suppress(psutil.Error):
            if os.getpgid(p.pid) == pgid and p.status() != psutil.STATUS_ZOMBIE:
                return True
    return False


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def stopped_by_signals() -> Iterator[None]:
    """Raise KeyboardInterrupt on SIGINT or SIGTERM in the block, so a `finally` stops the stack.

    Without it, Python dies on SIGTERM with no cleanup, and keeps SIGINT ignored in a process that a
    non-interactive shell started in the background: either way the servers would run on, orphaned.
    Only the main thread can set handlers; elsewhere the block runs as it is.
    """
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {sig: signal.signal(sig, interrupt) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until(check: Callable[[], bool], timeout: float, what: str, services: list[Service] = ()) -> None:
    """Poll `check` until true; fail early when one of `services` exits, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        for s in services:
            if s.proc is not None and s.proc.poll() is not None:
                raise RuntimeError(f"{s.name} exited ({s.proc.returncode}) while waiting for {what}:\n{s.tail()}")
        time.sleep(0.5)
    raise TimeoutError(f"{what}: not ready after {timeout:.0f} s")


def http_ok(url: str) -> Callable[[], bool]:
    return lambda: requests.get(url, timeout=5).status_code == 200


SCHEDULING = ("scheduler", "dag_processor", "triggerer")  # as Airflow's health endpoint names them


def _scheduling_healthy(url: str) -> Callable[[], bool]:
    """Whether Airflow's health endpoint at `url` reports a live scheduler, dag-processor and triggerer."""

    def healthy() -> bool:
        report = requests.get(url, timeout=5).json()
        return all((report.get(part) or {}).get("status") == "healthy" for part in SCHEDULING)

    return healthy


def bin_path(name: str) -> str:
    """A console script of this environment (airflow, mlflow), else whatever is on PATH."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else name


class LocalStack:
    """PostgreSQL, an MLflow server, an SMTP sink and Airflow's api-server, scheduler, dag-processor and
    triggerer (LocalExecutor), each its own process, all bound to loopback; `mlops up` and `mlops replay`.

    - Airflow's metadata and the predictions table live in PostgreSQL (`local.postgres`, data in
      `$MLOPS_HOME/postgres`): Airflow refuses concurrent backfills on SQLite.
    - MLflow serves the same store as the demo (`$MLOPS_HOME/mlflow/mlflow.db`, artifacts beside it);
      tasks log through the server (one process owns the SQLite file).
    - `preload` (the default): the scheduler imports the task libraries once (plugins/preload.py), so
      a task its LocalExecutor forks starts in a fraction of a second instead of about 9 s. The other
      processes (API server, dag-processor, triggerer, `airflow db migrate`, `mlops airflow ...`) do not
      run tasks and start without them.
    - DAGs are unpaused at creation: a cron DAG then runs its latest interval unless its
      `schedules.end_date` has passed (flights: 2013-12-31, so nothing starts by itself).
    - Task logs are at INFO level; the `smtp_default` connection points at the sink; extra links and
      alert mails link to this stack's MLflow.

    Settings of the running stack are written to `$MLOPS_HOME/stack.json` (`mlops airflow ...` reads them).
    """

    def __init__(
        self,
        home: Path,
        airflow_port: int = 8080,
        mlflow_port: int = 5000,
        smtp_port: int = 8025,
        host: str = "127.0.0.1",
        preload: bool = True,
        parallelism: int = 4,
        all_admins: bool = True,
        scheduling: bool = True,
    ) -> None:
        """`scheduling=False`: no scheduler, dag-processor or triggerer (nothing runs; the API, the UI and
        MLflow serve what the database holds, e.g. to report a kept replay)."""
        self.home = Path(home).resolve()
        self.scheduling = scheduling
        self.airflow_port, self.mlflow_port, self.smtp_port = airflow_port, mlflow_port, smtp_port
        self.host, self.preload, self.parallelism, self.all_admins = host, preload, parallelism, all_admins
        self.services: list[Service] = []
        self._scoped = contextlib.ExitStack()
        self.postgres = None
        self.sink = None
        self.env: dict[str, str] = {}
        self.api = None

    @property
    def airflow_url(self) -> str:
        return f"http://{_browsable(self.host)}:{self.airflow_port}"

    @property
    def mlflow_url(self) -> str:
        return f"http://{_browsable(self.host)}:{self.mlflow_port}"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    def start(self, timeout: float = 240) -> LocalStack:
        """Start everything and wait until Airflow's API and MLflow answer (about 40 s on a quiet machine).

        `timeout` (seconds) counts from the launch of the servers, after the metadata database's
        migration (which has its own 600 s limit): a busy machine slows both.
        """
        from mlops.airflow import environment as airflow_env
        from mlops.local.airflow_api import AirflowApi
        from mlops.local.mailsink import MailSink
        from mlops.local.postgres import start_postgres

        # this process's stages and reports read the stack's home until stop() puts the previous one back
        self._scoped.enter_context(airflow_env.overridden({"MLOPS_HOME": str(self.home)}))
        self.postgres = start_postgres(self.home / "postgres")
        airflow_db = self.postgres.create_database("airflow")
        scores_db = self.postgres.create_database("scores")
        self.sink = MailSink(self.home / "mail", host="127.0.0.1", port=self.smtp_port).start()
        (self.home / "mlflow").mkdir(parents=True, exist_ok=True)
        self.env = airflow_env.stack_environment(
            home=self.home,
            database_url=airflow_db,
            scores_url=scores_db,
            api_host=self.host,
            api_port=self.airflow_port,
            mlflow_url=self.mlflow_url,
            smtp=airflow_env.smtp_connection(self.sink.host, self.sink.port),
            parallelism=self.parallelism,
            all_admins=self.all_admins,
        )
        self._write_settings()
        mlflow_env = {**_clean_env(), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLOPS_HOME": str(self.home)}
        mlflow_cmd = [bin_path("mlflow"), "server", "--backend-store-uri"]
        mlflow_cmd += [f"sqlite:///{self.home / 'mlflow' / 'mlflow.db'}", "--default-artifact-root"]
        mlflow_cmd += [(self.home / "mlflow" / "artifacts").as_uri(), "--host", self.host]
        mlflow_cmd += ["--port", str(self.mlflow_port), "--workers", "1"]
        self._service("mlflow", mlflow_cmd, mlflow_env)
        airflow = bin_path("airflow")
        self._migrate(airflow)
        api = self._service(
            "airflow-api-server", [airflow, "api-server", "--host", self.host, "--port", str(self.airflow_port)]
        )
        preload = {**self.env, **airflow_env.PRELOAD} if self.preload else self.env
        for name in ("scheduler", "dag-processor", "triggerer") if self.scheduling else ():
            self._service(f"airflow-{name}", [airflow, name], preload if name == "scheduler" else None)
        started = time.monotonic()
        health = f"http://127.0.0.1:{self.airflow_port}/api/v2/monitor/health"
        wait_until(http_ok(health), timeout, "Airflow API", self.services)
        if self.scheduling:  # ready means a run can start: the scheduling processes have started their loops
            remaining = max(30.0, timeout - (time.monotonic() - started))
            wait_until(_scheduling_healthy(health), remaining, "Airflow's " + ", ".join(SCHEDULING), self.services)
        remaining = max(30.0, timeout - (time.monotonic() - started))
        wait_until(http_ok(f"http://127.0.0.1:{self.mlflow_port}/health"), remaining, "MLflow server", self.services)
        base = f"http://127.0.0.1:{self.airflow_port}"
        if self.env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"].lower() == "true":
            self.api = AirflowApi(base)  # every visitor is an admin: no login
        else:
            self.api = AirflowApi.connect(base, self.home / "airflow", [api])
        return self

    def stop(self) -> None:
        """Stop every process (SIGINT, then SIGKILL as a last resort), the sink and PostgreSQL.

        A second Ctrl-C (or SIGTERM) during the shutdown is ignored: it must not leave processes behind.
        """
        import threading

        main = threading.current_thread() is threading.main_thread()
        previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS} if main else {}
        try:
            for s, code in stop_servers_last(self.services, SERVERS):
                print(f"mlops: {s.name} stopped ({code})", flush=True)
            self.services = []
            if self.sink is not None:
                self.sink.stop()
                self.sink = None
        finally:
            if self.postgres is not None:
                self.postgres.stop()
                self.postgres = None
            (self.home / "stack.json").unlink(missing_ok=True)
            self._scoped.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def __enter__(self) -> LocalStack:
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc) -> None:
        self.stop()

    def _migrate(self, airflow: str) -> None:
        """`airflow db migrate`, unless the installed Airflow migrated this home's database already.

        After a migration, `postgres/airflow-schema` records the Airflow version and the alembic
        revision it left the database at; a later start whose Airflow and database revision both match
        skips the command (it would do nothing: about 15 s quiet, 45 s under load, on every start of a
        kept home). Another Airflow version, or a database at another revision, migrates as before.
        Raises RuntimeError with the command's output when the migration fails.
        """
        from importlib.metadata import version

        marker = self.home / "postgres" / AIRFLOW_SCHEMA_MARKER
        installed = version("apache-airflow")
        revision = self.postgres.schema_revision("airflow")
        if revision and marker.exists() and marker.read_text().split() == [installed, revision]:
            print(f"mlops: Airflow's database is current (Airflow {installed}, revision {revision})", flush=True)
            return
        migrate = subprocess.run(
            [airflow, "db", "migrate"], env=self.env, capture_output=True, text=True, timeout=600, check=False
        )
        if migrate.returncode != 0:
            raise RuntimeError(f"airflow db migrate failed:\n{migrate.stdout[-3000:]}{migrate.stderr[-3000:]}")
        marker.write_text(f"{installed} {self.postgres.schema_revision('airflow')}\n")

    def _service(self, name: str, cmd: list[str], env: dict[str, str] | None = None) -> Service:
        s = Service(name, cmd, env or self.env, self.logs / f"{name}.log", cwd=self.home).start()
        self.services.append(s)
        print(f"mlops: started {name} (pid {s.pid}), log {s.log}", flush=True)
        return s

    def _write_settings(self) -> None:
        import json

        keep = {k: v for k, v in self.env.items() if k.startswith(("AIRFLOW", "MLOPS_", "MLFLOW_TRACKING"))}
        keep.pop("AIRFLOW__API__SECRET_KEY", None)
        keep.pop("AIRFLOW__API_AUTH__JWT_SECRET", None)
        path = self.home / "stack.json"
        path.write_text(json.dumps({"pid": os.getpid(), "env": keep}, indent=2))
        path.chmod(0o600)


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def _browsable(host: str) -> str:
    """The address to print and link for a service bound to `host` (loopback and any-address: 127.0.0.1)."""
    return "127.0.0.1" if host in (*LOOPBACK, "0.0.0.0", "::") else host


def _clean_env() -> dict[str, str]:
    """This process's environment without Airflow, MLflow or mlops settings of another deployment."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "MLOPS_"))}


def up(mlflow_port: int = 5000, airflow_port: int = 8080, smtp_port: int = 8025, host: str = "127.0.0.1") -> int:
    """`mlops up`: the local stack on the demo's folder, until Ctrl-C. Returns the exit code.

    Airflow and MLflow listen on `host`, loopback by default. Another address is refused while every
    visitor is an Airflow admin (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS, default True here);
    the MLflow server has no login, so an exposed one lets anyone move `champion`.
    """
    from mlops.io.paths import mlops_home

    all_admins = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    if host not in LOOPBACK and all_admins.lower() == "true":
        print(
            f"mlops up: refusing to listen on {host}: every visitor would be an Airflow admin; set "
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False to log in instead (the MLflow UI has no login)",
            file=sys.stderr,
        )
        return 2
    started = time.monotonic()
    stack = LocalStack(mlops_home(), airflow_port, mlflow_port, smtp_port, host=host)
    with stopped_by_signals(), contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.stop)  # ignores a second signal while it stops everything
        interrupted = _serve(stack, started)
    return 0 if interrupted else 1


def _serve(stack: LocalStack, started: float) -> bool:
    """Start the stack and wait until a signal (True) or a process that exits or fails (False)."""
    try:
        stack.start()
        print(
            f"mlops up: ready in {time.monotonic() - started:.0f} s\n"
            f"  Airflow   {stack.airflow_url}  (all users are admins, no login: local use only;\n"
            f"            set AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False to log in as admin with the\n"
            f"            password in {stack.env['AIRFLOW_HOME']}/simple_auth_manager_passwords.json.generated)\n"
            f"  MLflow    {stack.mlflow_url}\n"
            f"  Mail      {stack.home / 'mail'} (.eml files; SMTP on 127.0.0.1:{stack.sink.port})\n"
            f"  Airflow CLI: uv run mlops airflow ...   (e.g. uv run mlops airflow dags list)\n"
            "Press Ctrl-C to stop everything.",
            flush=True,
        )
        while all(s.running() for s in stack.services):
            time.sleep(1)
        gone = [s for s in stack.services if not s.running()]
        print(f"mlops up: {', '.join(s.name for s in gone)} exited; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        print("\nmlops up: stopping", flush=True)
        return True
    except Exception as exc:
        print(f"mlops up: {exc}", file=sys.stderr)
    return False


def run_airflow_cli(args: list[str]) -> int:
    """`mlops airflow ...`: the airflow command with the settings of the running local stack.

    Without a running stack (no `$MLOPS_HOME/stack.json`), the demo's embedded SQLite settings.
    """
    import json

    from mlops.airflow import environment as airflow_env
    from mlops.io.paths import mlops_home

    settings = mlops_home() / "stack.json"
    env = dict(os.environ)
    if settings.exists():
        env.update(json.loads(settings.read_text())["env"])
    else:
        airflow_env.configure()
        env = dict(os.environ)
    return subprocess.call([bin_path("airflow"), *args], env=env)
