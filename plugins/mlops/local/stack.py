"""Run the stack's processes (Airflow, MLflow, an SMTP sink) locally: `mlops up` and the system tests.

Every process starts in its own session (`start_new_session=True`), so a Ctrl-C in the terminal reaches
only `mlops up`, which then stops each child itself: SIGINT to the child's process group (what a
terminal's Ctrl-C does; Airflow shuts down cleanly on it, while SIGTERM can leave orphans), a wait,
and SIGKILL only as the last resort.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
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
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            _signal_group(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                print(f"{self.name}: still running {timeout:.0f} s after SIGINT, killing it", file=sys.stderr)
                _signal_group(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        # the leader is gone; give the rest of its group a moment, then kill what is left
        deadline = time.monotonic() + 10
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _group_alive(self.proc.pid):
            print(f"{self.name}: processes left in its group after exit, killing them", file=sys.stderr)
            _signal_group(self.proc.pid, signal.SIGKILL)
        return self.proc.returncode

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


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


def bin_path(name: str) -> str:
    """A console script of this environment (airflow, mlflow), else whatever is on PATH."""
    here = Path(sys.executable).with_name(name)
    return str(here) if here.exists() else name


LOOPBACK = ("127.0.0.1", "localhost", "::1")


def up(mlflow_port: int = 5000, airflow_port: int = 8080, smtp_port: int = 8025, host: str = "127.0.0.1") -> int:
    """`mlops up`: Airflow standalone, the MLflow UI on the demo's store and the SMTP sink, until Ctrl-C.

    Airflow and the MLflow UI listen on `host`, loopback by default. Another address is refused
    while every visitor is an Airflow admin (AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS, default
    True here); the MLflow UI has no login, so an exposed one lets anyone move `champion`.
    """
    from mlops.airflow import environment as airflow_env
    from mlops.io.paths import mail_dir, mlops_home
    from mlops.local.mailsink import MailSink

    all_admins = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    if host not in LOOPBACK and all_admins.lower() == "true":
        print(
            f"mlops up: refusing to listen on {host}: every visitor would be an Airflow admin; set "
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False to log in instead (the MLflow UI has no login)",
            file=sys.stderr,
        )
        return 2
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host  # where this process reaches them
    started = time.monotonic()
    home = mlops_home()
    (home / "mlflow").mkdir(parents=True, exist_ok=True)
    airflow_env.configure()
    sink = MailSink(mail_dir(), port=smtp_port).start()
    env = {
        **os.environ,
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": all_admins,
        "AIRFLOW__CORE__EXECUTOR": os.environ.get("AIRFLOW__CORE__EXECUTOR", "LocalExecutor"),
        "AIRFLOW__API__HOST": host,
        "AIRFLOW__API__PORT": str(airflow_port),
        "AIRFLOW__API__BASE_URL": f"http://{local}:{airflow_port}",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://{local}:{airflow_port}/execution/",
        "AIRFLOW_CONN_SMTP_DEFAULT": airflow_env.smtp_connection(sink.host, sink.port),
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    logs = home / "logs"
    services = [
        Service("airflow", [bin_path("airflow"), "standalone"], env, logs / "airflow-standalone.log"),
        Service(
            "mlflow",
            [
                bin_path("mlflow"),
                "ui",
                "--backend-store-uri",
                f"sqlite:///{home / 'mlflow' / 'mlflow.db'}",
                "--host",
                host,
                "--port",
                str(mlflow_port),
                "--workers",
                "1",
            ],
            env,
            logs / "mlflow-ui.log",
        ),
    ]
    interrupted = False
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        for s in services:
            s.start()
            print(f"mlops up: started {s.name} (pid {s.pid}), log {s.log}", flush=True)
        print(f"mlops up: SMTP sink on {sink.host}:{sink.port}, mails kept as .eml under {mail_dir()}", flush=True)
        wait_until(http_ok(f"http://{local}:{airflow_port}/api/v2/monitor/health"), 180, "Airflow API", services)
        wait_until(http_ok(f"http://{local}:{mlflow_port}/health"), 120, "MLflow UI", services)
        print(
            f"mlops up: ready in {time.monotonic() - started:.0f} s\n"
            f"  Airflow   http://{local}:{airflow_port}  (listening on {host}; with all users admins, no login:\n"
            f"            set AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False to log in as admin with the\n"
            f"            password in {env['AIRFLOW_HOME']}/simple_auth_manager_passwords.json.generated)\n"
            f"  MLflow    http://{local}:{mlflow_port}\n"
            f"  Mail      {mail_dir()} (.eml files)\n"
            "Press Ctrl-C to stop everything.",
            flush=True,
        )
        while all(s.running() for s in services):
            time.sleep(1)
        gone = [s for s in services if not s.running()]
        print(f"mlops up: {', '.join(s.name for s in gone)} exited; stopping the rest", file=sys.stderr)
    except KeyboardInterrupt:
        interrupted = True
        print("\nmlops up: stopping", flush=True)
    except (RuntimeError, TimeoutError) as exc:
        print(f"mlops up: {exc}", file=sys.stderr)
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the shutdown short
        for s in reversed(services):
            code = s.stop(timeout=60)
            print(f"mlops up: {s.name} stopped ({code})", flush=True)
        sink.stop()
        signal.signal(signal.SIGINT, previous)
    return 0 if interrupted else 1
