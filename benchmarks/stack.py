"""Benchmark: the local stack's start and stop (`mlops up`, `mlops replay`), and what its processes hold.

Starts a `LocalStack` on a fresh home (PostgreSQL, MLflow, the Airflow API server, scheduler,
dag-processor and triggerer; the database migrated), waits until it is ready, records each Airflow
process's resident memory (RSS, MB, its descendants included) and whether it imported scikit-learn
(its compiled modules are mapped), then stops it. Prints the seconds to start and to stop.

With `--before PLUGINS` (the `plugins` folder of a checkout to compare with), runs `--pairs` interleaved
pairs (before, after, ...), each side a fresh process (`PYTHONPATH=PLUGINS` for the before side: its
DAGs and plugins then come from that checkout too), and prints the load average at each run's start.

Run: uv run python benchmarks/stack.py [--before /tmp/before/plugins --pairs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from validation_day import RESULT, interleaved  # beside this script (the script's folder is on the path)


def _processes(stack) -> dict[str, dict]:
    """RSS (MB, with descendants) and scikit-learn imported, per Airflow server of the stack."""
    import psutil

    out = {}
    for service in stack.services:
        if not service.name.startswith("airflow-"):
            continue
        leader = psutil.Process(service.pid)
        tree = [leader, *leader.children(recursive=True)]
        rss = sum(p.memory_info().rss for p in tree if p.is_running()) / 1e6
        sklearn = any(f"{os.sep}sklearn{os.sep}" in m.path for m in leader.memory_maps())
        out[service.name.removeprefix("airflow-")] = {"rss_mb": round(rss), "sklearn": sklearn}
    return out


def run_once() -> dict:
    """Start and stop one stack in a temporary home; its figures."""
    from mlops.local.ports import free_port
    from mlops.local.stack import LocalStack

    with tempfile.TemporaryDirectory(prefix="mlops-stack-bench-") as home:
        stack = LocalStack(Path(home), free_port(), free_port(), free_port())
        started = time.monotonic()
        stack.start()
        start = time.monotonic() - started
        processes = _processes(stack)
        stopping = time.monotonic()
        stack.stop()
        return {"start": round(start, 2), "stop": round(time.monotonic() - stopping, 2), "processes": processes}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", help="plugins folder of a checkout to compare with")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--side", action="store_true", help=argparse.SUPPRESS)  # one run, as a side
    args = parser.parse_args()
    if args.side or not args.before:
        figures = run_once()
        if args.side:
            print(RESULT + json.dumps(figures), flush=True)
            return
        print(json.dumps(figures, indent=2))
        return
    sides = interleaved([sys.executable, __file__, "--side"], args.before, args.pairs)
    for side, runs in sides.items():
        for r in runs:
            held = ", ".join(
                f"{role} {p['rss_mb']} MB{' (scikit-learn)' if p['sklearn'] else ''}"
                for role, p in sorted(r["processes"].items())
            )
            print(f"{side} (load {r['load']:.2f}): start {r['start']:.1f} s, stop {r['stop']:.1f} s; {held}")


if __name__ == "__main__":
    main()
