"""Benchmark: the daily monitor task as Airflow runs it, one process per task.

`--store DIR` is a store built by `validation_day.py --setup DIR` (a champion, January to 11 February
2013 ingested). The script copies it once and scores 2013-02-01 and the `--days` - 1 days after it
there (not timed). Then, for each run, it copies that scored store afresh (nothing cached yet) and
runs `--days` monitor tasks in order, each a fresh Python process that imports the stage and calls
`monitor_predictions(cfg, day)` as the DAG's monitor task does. Per task: the imports and the call
(wall and CPU seconds), whether the process imported MLflow, and a digest of the report (its
`monitored_at` left out), so both sides can be seen to write the same reports.

With `--before PLUGINS`, runs `--pairs` interleaved pairs (before, after, ...) as
`validation_day.py --before` does (`PYTHONPATH=PLUGINS` for the before side).

Run: uv run python benchmarks/monitor_day.py --store /tmp/vday [--days 5]
     uv run python benchmarks/monitor_day.py --store /tmp/vday --before /tmp/before/plugins [--pairs 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from validation_day import FIRST, RESULT, config, interleaved, side_env


def days_of(count: int) -> list[str]:
    """`count` days from FIRST, as ISO dates."""
    return [(FIRST + dt.timedelta(days=i)).isoformat() for i in range(count)]


def scored_store(store: Path, days: int, into: Path) -> Path:
    """A copy of `store` under `into` with the first `days` days scored by the champion (a subprocess)."""
    home = into / "scored"
    shutil.copytree(store, home)
    interval = f"{FIRST}..{FIRST + dt.timedelta(days=days)}"
    code = (
        "from mlops.core.interval import Interval; from mlops.stages.score import score; import validation_day; "
        f"score(validation_day.config(), Interval.parse('{interval}'))"
    )
    env = side_env(None) | {"MLOPS_HOME": str(home)}
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=Path(__file__).parent)
    return home


def task(day: str) -> None:
    """One monitor task in this process (MLOPS_HOME set by the caller); prints its figures as JSON."""
    t0 = time.perf_counter(), time.process_time()
    from mlops.core.interval import Interval
    from mlops.stages.monitor import monitor_predictions

    imports = time.perf_counter() - t0[0], time.process_time() - t0[1]
    cfg = config()
    t = time.perf_counter(), time.process_time()
    report = monitor_predictions(cfg, Interval.parse(day))
    wall, cpu = time.perf_counter() - t[0], time.process_time() - t[1]
    stable = {k: v for k, v in report.to_dict().items() if k != "monitored_at"}
    digest = hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:12]
    figures = {"imports_wall": imports[0], "imports_cpu": imports[1], "wall": wall, "cpu": cpu}
    print(RESULT + json.dumps(figures | {"mlflow": "mlflow" in sys.modules, "report": digest}))


def run(scored: Path, days: int) -> None:
    """`days` monitor tasks, each a fresh process, on a fresh copy of `scored`; prints their figures."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(scored, home)
        tasks = []
        for day in days_of(days):
            env = os.environ | {"MLOPS_HOME": str(home)}
            proc = subprocess.run(
                [sys.executable, __file__, "--task", day], capture_output=True, text=True, env=env, check=False
            )
            if proc.returncode:
                raise RuntimeError(f"monitor task {day} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
            line = [x for x in proc.stdout.splitlines() if x.startswith(RESULT)][-1]
            tasks.append(json.loads(line[len(RESULT) :]))
            print(f"task {day}: {line[len(RESULT) :]}", flush=True)
    later = tasks[1:] or tasks
    summary = {
        "first_wall": tasks[0]["wall"],
        "first_cpu": tasks[0]["cpu"],
        "wall": statistics.median(t["wall"] for t in later),
        "cpu": statistics.median(t["cpu"] for t in later),
        "imports_cpu": statistics.median(t["imports_cpu"] for t in tasks),
        "mlflow_imported": sum(t["mlflow"] for t in tasks),
        "reports": [t["report"] for t in tasks],
    }
    print(RESULT + json.dumps(summary))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, help="a store built with validation_day.py --setup")
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--before", help="the plugins folder of the code to compare with (interleaved runs)")
    parser.add_argument("--pairs", type=int, default=2, help="with --before: pairs of runs")
    parser.add_argument("--task", help=argparse.SUPPRESS)  # internal: one monitor task in this process
    parser.add_argument("--scored", type=Path, help=argparse.SUPPRESS)  # internal: a scored store to run on
    args = parser.parse_args()
    if args.task:
        task(args.task)
        return
    if args.scored:
        run(args.scored, args.days)
        return
    with tempfile.TemporaryDirectory() as tmp:
        scored = scored_store(args.store, args.days, Path(tmp))
        command = [sys.executable, __file__, "--scored", str(scored), "--days", str(args.days)]
        if not args.before:
            subprocess.run(command, check=True, env=side_env(None))
            return
        sides = interleaved(command, args.before, args.pairs)
    for side, runs in sides.items():
        cells = [
            f"first task {r['first_wall']:.3f}/{r['first_cpu']:.3f} s, later tasks {r['wall']:.3f}/{r['cpu']:.3f} s, "
            f"imports {r['imports_cpu']:.2f} s CPU, MLflow imported by {r['mlflow_imported']} of {len(r['reports'])} "
            f"tasks (load {r['load']:.2f})"
            for r in runs
        ]
        print(f"{side} (call wall/CPU): " + "; ".join(cells))
    digests = {tuple(r["reports"]) for runs in sides.values() for r in runs}
    print(f"reports identical across runs and sides: {len(digests) == 1}")


if __name__ == "__main__":
    main()
