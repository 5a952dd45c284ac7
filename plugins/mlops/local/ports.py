"""Free TCP ports for the local stack's servers, chosen outside the kernel's ephemeral port range.

A port found free by binding port 0 is an ephemeral port: until the server that was given it binds it
(MLflow's takes about 15 s to start on a busy machine), the kernel may hand the same number to any
outgoing connection as its local port, and the server then fails with "address already in use". The
ports here are drawn at random from outside that range (below it first), so no outgoing connection
takes them meanwhile, and two callers at once rarely draw the same one.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path

EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
LINUX_DEFAULT_RANGE = (32768, 60999)  # where the file cannot be read (not Linux)
LOWEST = 10000  # below: well-known services' ports


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> tuple[int, int]:
    """The kernel's range of local ports for outgoing connections, (low, high) inclusive.

    Read from `path` (Linux's `ip_local_port_range`); Linux's default when it cannot be read."""
    try:
        low, high = (int(part) for part in path.read_text().split())
    except (OSError, ValueError):
        return LINUX_DEFAULT_RANGE
    return low, high


def free_port(host: str = "127.0.0.1", attempts: int = 200) -> int:
    """A TCP port on `host` that nothing is bound to now and that is outside `ephemeral_range()`.

    Drawn at random from LOWEST..65535 minus the ephemeral range, each draw checked by binding it
    (without SO_REUSEADDR, so a port still in TIME_WAIT counts as taken). When the ephemeral range leaves
    nothing outside it, the kernel's choice (port 0) is returned instead. Raises RuntimeError naming the
    host and range when `attempts` draws all find the port taken.
    """
    low, high = ephemeral_range()
    outside = [(LOWEST, low - 1), (high + 1, 65535)]
    spans = [(a, b) for a, b in outside if a <= b]
    if not spans:
        with socket.socket() as s:
            s.bind((host, 0))
            return s.getsockname()[1]
    draw = random.SystemRandom()
    weights = [b - a + 1 for a, b in spans]
    for _ in range(attempts):
        a, b = draw.choices(spans, weights)[0]
        port = draw.randint(a, b)
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free TCP port on {host} outside the ephemeral range {low}-{high} in {attempts} draws")
