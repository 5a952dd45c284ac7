"""How the local stack stops (`mlops.local.stack`): a signal turned into a clean stop of every child
(`stopped_by_signals`, as `mlops up` and `mlops replay` use it), and services stopped together.

The system tests stop real stacks (tests/system/test_up.py: `mlops up` on Ctrl-C, `mlops replay` on a
SIGINT its shell ignored); here real processes stand in for the servers, so each signal and each way a
service ends is tried in seconds."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import psutil
import pytest

from mlops.local.stack import Service, stop_together

# A process that records when SIGINT reached it, then exits `delay` seconds later (or ignores it).
SERVER = textwrap.dedent(
    """
    import signal, sys, time
    mark, delay = sys.argv[1], float(sys.argv[2])
    def on_sigint(signum, frame):
        open(mark, "w").write(repr(time.time()))
        if delay >= 0:
            time.sleep(delay)
            sys.exit(0)
    signal.signal(signal.SIGINT, on_sigint)
    open(mark + ".up", "w").close()
    while True:
        time.sleep(0.1)
    """
)

# What `mlops up` and `mlops replay` do around their stack: the block under stopped_by_signals, the
# stack's services stopped in a `finally`.
OWNER = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from mlops.local.stack import Service, stop_together, stopped_by_signals
    folder = Path(sys.argv[1])
    services = [
        Service(name, [sys.executable, str(folder / "server.py"), str(folder / name), "0.2"], dict(os.environ),
                folder / f"{name}.log").start()
        for name in ("scheduler", "api-server")
    ]
    try:
        with stopped_by_signals():
            try:
                print("serving", flush=True)
                time.sleep(120)
                print("not interrupted", flush=True)
            finally:
                print("stopped", stop_together(services, timeout=30), flush=True)
    except KeyboardInterrupt as stop:
        print(f"interrupted by {stop}", flush=True)
        sys.exit(130)
    """
)


def _server(folder: Path, name: str, delay: float) -> Service:
    script = folder / "server.py"
    script.write_text(SERVER)
    service = Service(
        name, [sys.executable, str(script), str(folder / name), str(delay)], dict(os.environ), folder / f"{name}.log"
    )
    service.start()
    deadline = time.monotonic() + 30
    while not (folder / f"{name}.up").exists():  # its handler is set
        assert service.running() and time.monotonic() < deadline, service.tail()
        time.sleep(0.05)
    return service


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGINT from the background"])
def test_a_signal_stops_every_service_of_a_block_under_stopped_by_signals(tmp_path, stop):
    """SIGTERM (`kill`, systemd, a container stop), and SIGINT although the shell that started the
    process in the background set it to be ignored: the block is interrupted, each service gets its
    SIGINT and exits, and nothing is left running."""
    (tmp_path / "server.py").write_text(SERVER)
    (tmp_path / "owner.py").write_text(OWNER)
    ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if stop != "SIGTERM" else None
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "owner.py"), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
        preexec_fn=ignore,
    )
    try:
        assert proc.stdout.readline().strip() == "serving"
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"{n}.up").exists() for n in ("scheduler", "api-server")):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.05)
        children = psutil.Process(proc.pid).children(recursive=True)
        assert len(children) == 2
        proc.send_signal(signal.SIGTERM if stop == "SIGTERM" else signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out
    assert "stopped [0, 0]" in out and "interrupted by SIG" + ("TERM" if stop == "SIGTERM" else "INT") in out, out
    assert "not interrupted" not in out
    assert all((tmp_path / n).exists() for n in ("scheduler", "api-server")), "a service got no SIGINT"
    deadline = time.monotonic() + 10
    while (alive := [p for p in children if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.1)
    assert not alive, alive


def test_services_stopped_together_all_get_their_signal_before_any_is_waited_for(tmp_path):
    """The first service takes 2 s to exit; the second got its SIGINT before the first had exited,
    not after (one after another, the stops of a stack's servers added up to 12 s)."""
    slow, quick = _server(tmp_path, "slow", 2.0), _server(tmp_path, "quick", 0.0)
    codes = stop_together([slow, quick], timeout=30)
    ended = time.time()
    assert codes == [0, 0]
    slow_signalled, quick_signalled = (float((tmp_path / n).read_text()) for n in ("slow", "quick"))
    assert quick_signalled < slow_signalled + 1.0 < ended  # the slow one was still in its 2 s exit
    assert not slow.running() and not quick.running()


def test_a_service_that_ignores_sigint_is_killed_at_the_shared_deadline(tmp_path):
    stubborn, polite = _server(tmp_path, "stubborn", -1), _server(tmp_path, "polite", 0.0)
    codes = stop_together([stubborn, polite], timeout=1)
    assert codes == [-signal.SIGKILL, 0]
    assert (tmp_path / "stubborn").exists()  # it got SIGINT, and kept running
    assert not stubborn.running() and not polite.running()
