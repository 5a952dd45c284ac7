"""Benchmark: where a replay's time and CPU go, run by run and task by task, from Airflow's own records.

`--home HOME` (a kept replay's home, e.g. `$MLOPS_HOME/replay/flights`): starts the home's PostgreSQL,
reads Airflow's `dag_run` and `task_instance` tables and prints, per DAG, the median and total of the
run's duration, its wait from queued to start, the task time summed over its tasks, and the idle time
within it (seconds of the run during which none of its tasks ran: the scheduler's and the executor's
hand-offs); per task, its duration and its waits from scheduled to queued and from queued to start.

`--run START END` (with `--root DIR`, default a temporary folder): runs `mlops replay flights --start START
--end END` in `DIR/home` first and, while it runs, samples every 0.25 s the CPU seconds of each process
of its stack, by role: the Airflow scheduler, its LocalExecutor workers and their tasks, the
dag-processor, the triggerer, the API server (its workers included), the MLflow server, PostgreSQL and
the replay's driver. A process belongs to the nearest ancestor that the replay started as a service
(its `started <name> (pid N)` line); PostgreSQL's server detaches, and is found by name. A process
that ends between two samples loses at most its last 0.25 s. Prints the share of each role, the
machine's two cores' CPU over the replay's wall time, then the tables above.

Run: uv run python benchmarks/replay_tasks.py --home $MLOPS_HOME/replay/flights
     uv run python benchmarks/replay_tasks.py --run 2013-06-03 2013-07-01 [--root /tmp/r4]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STARTED = re.compile(r"started (\S+) \(pid (\d+)\)")


def idle_seconds(start: dt.datetime, end: dt.datetime, tasks: list[tuple[dt.datetime, dt.datetime]]) -> float:
    """Seconds of [start, end] covered by none of the (start, end) intervals of `tasks`."""
    covered, reached = 0.0, start
    for a, b in sorted(tasks):
        a, b = max(a, reached), min(b, end)
        if b > a:
            covered += (b - a).total_seconds()
            reached = b
    return max(0.0, (end - start).total_seconds() - covered)


def summarize(runs: list[dict], tasks: list[dict]) -> dict[str, dict]:
    """Per DAG and per (DAG, task): lists of seconds, from rows of `dag_run` and `task_instance`.

    `runs`: dag_id, run_id, queued_at, start_date, end_date; `tasks`: dag_id, run_id, task_id,
    scheduled_dttm, queued_dttm, start_date, end_date. Runs or tasks that did not end are left out.
    """
    by_run = collections.defaultdict(list)
    for t in tasks:
        if t["start_date"] and t["end_date"]:
            by_run[(t["dag_id"], t["run_id"])].append(t)
    dags: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    per_task: dict[str, dict[str, list[float]]] = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in runs:
        ts = by_run.get((r["dag_id"], r["run_id"]))
        if not ts or not r["start_date"] or not r["end_date"]:
            continue
        d = dags[r["dag_id"]]
        d["run"].append((r["end_date"] - r["start_date"]).total_seconds())
        if r["queued_at"]:
            d["queued to start"].append((r["start_date"] - r["queued_at"]).total_seconds())
        d["task time"].append(sum((t["end_date"] - t["start_date"]).total_seconds() for t in ts))
        d["idle within"].append(
            idle_seconds(r["start_date"], r["end_date"], [(t["start_date"], t["end_date"]) for t in ts])
        )
        for t in ts:
            p = per_task[f"{t['dag_id']} {t['task_id']}"]
            p["duration"].append((t["end_date"] - t["start_date"]).total_seconds())
            if t["scheduled_dttm"] and t["queued_dttm"]:
                p["scheduled to queued"].append((t["queued_dttm"] - t["scheduled_dttm"]).total_seconds())
            if t["queued_dttm"]:
                p["queued to start"].append((t["start_date"] - t["queued_dttm"]).total_seconds())
    return {"dags": dags, "tasks": per_task}


def _cell(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} ({sum(values):.0f})" if values else "-"


def print_tables(summary: dict[str, dict]) -> None:
    """Two tables: per DAG, per task; cells are median (total) seconds."""
    columns = ("run", "queued to start", "task time", "idle within")
    print("| DAG | runs | " + " | ".join(columns) + " |\n" + "| --- " * (len(columns) + 2) + "|")
    for dag, d in sorted(summary["dags"].items()):
        print(f"| {dag} | {len(d['run'])} | " + " | ".join(_cell(d[c]) for c in columns) + " |")
    columns = ("duration", "scheduled to queued", "queued to start")
    print("\n| task | runs | " + " | ".join(columns) + " |\n" + "| --- " * (len(columns) + 2) + "|")
    for task, d in sorted(summary["tasks"].items()):
        print(f"| {task} | {len(d['duration'])} | " + " | ".join(_cell(d[c]) for c in columns) + " |")


def read_records(home: Path) -> tuple[list[dict], list[dict]]:
    """The `dag_run` and `task_instance` rows of a kept replay home (its PostgreSQL started and stopped)."""
    import sqlalchemy as sa

    from mlops.local.postgres import start_postgres

    pg = start_postgres(home / "postgres")
    try:
        engine = sa.create_engine(pg.url("airflow"))
        with engine.connect() as c:
            runs = c.execute(sa.text("select dag_id, run_id, queued_at, start_date, end_date from dag_run"))
            runs = [dict(r._mapping) for r in runs]
            tasks = c.execute(
                sa.text(
                    "select dag_id, run_id, task_id, scheduled_dttm, queued_dttm, start_date, end_date"
                    " from task_instance"
                )
            )
            tasks = [dict(r._mapping) for r in tasks]
        engine.dispose()
    finally:
        pg.stop()
    return runs, tasks


class CpuSampler(threading.Thread):
    """CPU seconds per role of a replay's processes (see the module docstring), sampled every 0.25 s."""

    def __init__(self, driver_pid: int) -> None:
        super().__init__(daemon=True)
        self.driver_pid, self.services = driver_pid, {}  # service pid -> name
        self.last: dict[tuple[int, float], tuple[str, float]] = {}
        self.done = threading.Event()

    def role(self, proc, parents: dict[int, int], names: dict[int, str]) -> str | None:
        if names.get(proc.pid, "").startswith("postgres"):
            return "postgres"
        pid = proc.pid
        while pid:
            if pid in self.services:
                name = self.services[pid]
                if name == "airflow-scheduler" and pid != proc.pid:
                    return "LocalExecutor workers and their tasks"
                return name
            if pid == self.driver_pid:
                return "replay driver"
            pid = parents.get(pid, 0)
        return None

    def run(self) -> None:
        import psutil

        while not self.done.is_set():
            procs = list(psutil.process_iter(["pid", "ppid", "name"]))
            parents = {p.pid: p.info["ppid"] for p in procs}
            names = {p.pid: p.info["name"] or "" for p in procs}
            for p in procs:
                role = self.role(p, parents, names)
                if role is None:
                    continue
                try:
                    t = p.cpu_times()
                    self.last[(p.pid, p.create_time())] = (role, t.user + t.system)
                except psutil.Error:
                    pass
            time.sleep(0.25)

    def by_role(self) -> dict[str, float]:
        out: dict[str, float] = collections.Counter()
        for role, seconds in self.last.values():
            out[role] += seconds
        return dict(out)


def run_replay(root: Path, start: str, end: str) -> Path:
    """`mlops replay flights --start START --end END` in `root/home`, its CPU sampled; returns the replay home."""
    home = root / "home"
    env = {**os.environ, "MLOPS_HOME": str(home), "PYTHONUNBUFFERED": "1"}  # its lines as they come
    cmd = [str(Path(sys.executable).with_name("mlops")), "replay", "flights", "--start", start, "--end", end]
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = CpuSampler(proc.pid)
    sampler.start()
    for line in proc.stdout:
        found = STARTED.search(line)
        if found:
            sampler.services[int(found.group(2))] = found.group(1)
        if line.startswith(("===", "per daily run", "replay flights:")):
            print(line.rstrip(), flush=True)
    if proc.wait() != 0:
        raise SystemExit(f"the replay failed (exit {proc.returncode}): see {home}/replay/flights/logs")
    wall = time.monotonic() - t0
    sampler.done.set()
    sampler.join()
    cpu = sampler.by_role()
    total = sum(cpu.values())
    print(f"\nCPU by role over {wall:.0f} s wall ({total:.0f} s CPU: {total / (2 * wall):.0%} of two cores)")
    print("| role | CPU s | share |\n| --- | --- | --- |")
    for role, seconds in sorted(cpu.items(), key=lambda kv: -kv[1]):
        print(f"| {role} | {seconds:.1f} | {seconds / total:.1%} |")
    print()
    return home / "replay" / "flights"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, help="a kept replay's home")
    parser.add_argument("--run", nargs=2, metavar=("START", "END"), help="run a replay of these days first")
    parser.add_argument("--root", type=Path, help="with --run: the folder of its home (default: temporary)")
    args = parser.parse_args()
    if not args.home and not args.run:
        parser.error("give --home or --run")
    home = args.home
    if args.run:
        root = args.root or Path(tempfile.mkdtemp(prefix="mlops-replay-tasks-"))
        home = run_replay(root, *args.run)
    print_tables(summarize(*read_records(home)))


if __name__ == "__main__":
    main()
