"""`mlops up`: Airflow standalone, the MLflow UI and the SMTP sink answer, and Ctrl-C stops every
process; `mlops replay` stops its whole stack on a signal too. SIGTERM takes the same path
(`stopped_by_signals` turns both into KeyboardInterrupt): tests/unit/test_stack_stop.py tries it."""

from __future__ import annotations

import os
import signal
import smtplib
import subprocess
import time

import psutil
import pytest
import requests

from mlops.local.ports import free_port
from mlops.local.stack import bin_path, http_ok, wait_until

pytestmark = pytest.mark.system


def test_mlops_up_serves_and_stops_cleanly_on_ctrl_c(tmp_path):
    ports = {"airflow": free_port(), "mlflow": free_port(), "smtp": free_port()}
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "MLOPS_", "PYTEST_"))}
    env["MLOPS_HOME"] = str(tmp_path / "home")
    cmd = [bin_path("mlops"), "up", "--airflow-port", str(ports["airflow"]), "--mlflow-port", str(ports["mlflow"])]
    cmd += ["--smtp-port", str(ports["smtp"])]
    log = tmp_path / "up.log"
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    children: list[psutil.Process] = []
    try:
        # a bound, not a target (the line says how long it took): 173 s on a machine busy with a year replay
        wait_until(lambda: "ready in" in log.read_text(), 300, "mlops up", [])
        ready = time.monotonic() - started
        assert http_ok(f"http://127.0.0.1:{ports['airflow']}/api/v2/monitor/health")()
        health = requests.get(f"http://127.0.0.1:{ports['airflow']}/api/v2/monitor/health", timeout=10).json()
        assert health["metadatabase"]["status"] == "healthy", health
        assert http_ok(f"http://127.0.0.1:{ports['mlflow']}/health")()
        assert requests.get(f"http://127.0.0.1:{ports['mlflow']}/", timeout=10).status_code == 200
        with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=10) as smtp:
            assert smtp.noop()[0] == 250
        text = log.read_text()
        assert f"http://127.0.0.1:{ports['airflow']}" in text and str(tmp_path / "home" / "mail") in text
        listening = {
            (c.laddr.ip, c.laddr.port)
            for c in psutil.net_connections(kind="inet")
            if c.status == psutil.CONN_LISTEN and c.laddr.port in (ports["airflow"], ports["mlflow"])
        }
        assert {port for _, port in listening} == {ports["airflow"], ports["mlflow"]}, listening
        assert {ip for ip, _ in listening} == {"127.0.0.1"}, f"listening beyond loopback: {listening}"
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 2
        # the task libraries are imported by the scheduler, whose LocalExecutor forks the tasks, and by
        # no other Airflow process (each would pay about 9 s of imports for nothing)
        airflow = {_role(p): p for p in psutil.Process(proc.pid).children()}
        airflow.pop(None, None)
        assert sorted(airflow) == sorted(AIRFLOW_ROLES), [p.cmdline() for p in children]
        assert {role: _maps_sklearn(p) for role, p in airflow.items()} == {r: r == "scheduler" for r in AIRFLOW_ROLES}

        stopping = time.monotonic()
        proc.send_signal(signal.SIGINT)  # Ctrl-C in the terminal
        assert proc.wait(120) == 0, log.read_text()[-3000:]
        alive = _left_after(children, 15)
        assert not alive, f"left behind: {alive}"
        print(f"mlops up: ready in {ready:.0f} s, stopped in {time.monotonic() - stopping:.0f} s", flush=True)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        for p in children:
            if _live(p):
                p.kill()


def test_mlops_replay_started_in_the_background_stops_its_stack_on_ctrl_c(tmp_path):
    """A shell starts background jobs with SIGINT ignored, and Python keeps it so: `mlops replay` must
    still stop on it (and on SIGTERM), its stack whole, instead of leaving the servers running."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "MLFLOW_", "MLOPS_", "PYTEST_"))}
    env["MLOPS_HOME"] = str(tmp_path / "home")
    cmd = [bin_path("mlops"), "replay", "flights", "--start", "2013-02-04", "--end", "2013-02-06"]
    log = tmp_path / "replay.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),  # as `mlops replay ... &` does
        )
    children: list[psutil.Process] = []
    try:
        wait_until(lambda: "stack up in" in log.read_text() or proc.poll() is not None, 300, "the replay's stack", [])
        assert proc.poll() is None, log.read_text()[-3000:]
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) >= 5  # PostgreSQL, MLflow, Airflow's four servers
        proc.send_signal(signal.SIGINT)
        assert proc.wait(180) == 130, log.read_text()[-3000:]
        assert "mlops replay: stopped (SIGINT)" in log.read_text()
        alive = _left_after(children, 15)
        assert not alive, f"left behind: {alive}"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        for p in children:
            if _live(p):
                p.kill()


AIRFLOW_ROLES = ("api-server", "scheduler", "dag-processor", "triggerer")


def _role(p: psutil.Process) -> str | None:
    """Which Airflow server a child of `mlops up` is (the API server renames its process), or None."""
    line = " ".join(p.cmdline())
    return next((r for r in AIRFLOW_ROLES if f"airflow {r}" in line or f"airflow {r.replace('-', '_')}" in line), None)


def _maps_sklearn(p: psutil.Process) -> bool:
    """Whether the process has scikit-learn's compiled modules mapped: it imported scikit-learn."""
    return any(f"{os.sep}sklearn{os.sep}" in m.path for m in p.memory_maps())


def _left_after(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """The processes still alive after up to `timeout` seconds. A zombie counts as gone: orphans whose
    parent has exited wait for PID 1 to reap them, which a container's first process may never do
    (psutil.wait_procs would wait the whole timeout for them)."""
    deadline = time.monotonic() + timeout
    while (alive := [p for p in processes if _live(p)]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return alive


def _live(p: psutil.Process) -> bool:
    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
