"""`mlops.local.ports.free_port`: ports a server binds later, which no outgoing connection can take meanwhile.

The defect this guards against (CI, 2026-12-02): `mlops replay` drew MLflow's port by binding port 0,
an ephemeral port; 16 s later, while Airflow's servers started and connected, MLflow failed with
`[Errno 98] ... address already in use`, and the replay with it."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from mlops.local import ports
from mlops.local.ports import LINUX_DEFAULT_RANGE, ephemeral_range, free_port


def test_ports_are_outside_the_ephemeral_range_and_bindable():
    low, high = ephemeral_range()
    drawn = [free_port() for _ in range(50)]
    assert not [p for p in drawn if low <= p <= high], (low, high, drawn)
    assert all(ports.LOWEST <= p <= 65535 for p in drawn)
    assert len(set(drawn)) > 40  # random draws: two callers at once rarely collide
    for port in drawn[:10]:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port))


def test_ports_the_kernel_hands_out_later_are_never_a_drawn_one():
    """Ports drawn first, then what a starting stack's other processes do: 1,500 sockets bound to port 0
    (the kernel's choice, as the old free_port and many servers do) and 300 outgoing connections. None
    of them may get a drawn port; ports the kernel chose for the old free_port met about 25 of 200 here."""
    drawn = {free_port() for _ in range(200)}
    held: list[socket.socket] = []
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(512)
        try:
            for _ in range(1500):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", 0))
            for _ in range(300):
                held.append(socket.create_connection(server.getsockname()))
            taken = {s.getsockname()[1] for s in held}
            assert not taken & drawn, sorted(taken & drawn)
        finally:
            for s in held:
                s.close()


def test_a_taken_port_is_skipped(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        free = free_port()
        draws = iter([busy, busy, free])
        monkeypatch.setattr(ports.random.SystemRandom, "randint", lambda self, a, b: next(draws))
        assert free_port() == free


def test_no_free_port_is_a_clear_error(monkeypatch):
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        monkeypatch.setattr(ports.random.SystemRandom, "randint", lambda self, a, b: busy)
        with pytest.raises(RuntimeError, match=r"no free TCP port on 127\.0\.0\.1 outside the ephemeral range"):
            free_port(attempts=3)


def test_the_range_is_read_from_the_kernel_or_defaults(tmp_path: Path):
    f = tmp_path / "ip_local_port_range"
    f.write_text("40000\t50000\n")
    assert ephemeral_range(f) == (40000, 50000)
    assert ephemeral_range(tmp_path / "absent") == LINUX_DEFAULT_RANGE
    f.write_text("garbage")
    assert ephemeral_range(f) == LINUX_DEFAULT_RANGE


def test_a_range_that_leaves_nothing_outside_gets_the_kernels_choice(monkeypatch):
    monkeypatch.setattr(ports, "ephemeral_range", lambda: (1024, 65535))
    port = free_port()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))
