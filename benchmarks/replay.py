"""Benchmark: `mlops replay` under the real scheduler, against the same days' stage functions alone.

Runs the replay of a range (default: the whole bundled year) in a fresh MLOPS_HOME, then, for a sample
of the scored days, times the daily stage functions (ingest, validate, score, monitor) called in this
process with no Airflow, on the replay's own lake and registry (they replace their outputs with the
same content). Then starts the replay's stack again and triggers `--single` of those days one at a
time, as a user triggers one day (REST API, the day as params), each alone on the stack: its trigger
to success (the run's `queued_at` to `end_date`, server times) minus the same day's stage functions
is Airflow's fixed overhead per daily run (issue 10's definition). Prints the replay's wall time, the
per-run time inside the replay's backfills (four runs at once on two cores), the single runs' time,
the stage functions' own time, and the differences.

Run: uv run python benchmarks/replay.py [--start 2013-01-01 --end 2014-01-01] [--sample 20] [--single 10]
     uv run python benchmarks/replay.py --home DIR --single 10   (a kept replay: single runs only)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time
from pathlib import Path


def stage_seconds(pipeline: str, days: list[str]) -> list[float]:
    """Seconds of ingest + validate + score + monitor for each day, called directly (after warm-up)."""
    from mlops.core.config import load_pipeline
    from mlops.core.interval import Interval
    from mlops.stages.ingest import ingest
    from mlops.stages.monitor import monitor_predictions
    from mlops.stages.score import score
    from mlops.stages.validate import validate

    cfg = load_pipeline(pipeline)
    out = []
    for i, day in enumerate(days):
        d = dt.date.fromisoformat(day)
        interval = Interval(d, d + dt.timedelta(days=1))
        t0 = time.perf_counter()
        ingest(cfg, interval)
        validate(cfg, interval, data_docs=True, publish=True)
        score(cfg, interval)
        monitor_predictions(cfg, interval)
        if i:  # the first day pays for imports and caches
            out.append(time.perf_counter() - t0)
    return out


def single_runs(home: Path, pipeline: str, days: list[str]) -> list[float]:
    """Trigger-to-success seconds of a daily run of each day in `days`, one run at a time on the stack of
    the replay kept in `home` (the run's `queued_at` to its `end_date`). Each run re-runs its day and
    replaces its outputs with the same content. Raises RuntimeError when a run does not succeed."""
    from mlops.local.ports import free_port
    from mlops.local.stack import LocalStack, stopped_by_signals

    stack = LocalStack(home, free_port(), free_port(), free_port())
    out = []
    with stopped_by_signals(), stack:
        dag_id = f"{pipeline}_daily"
        for day in days:
            end = (dt.date.fromisoformat(day) + dt.timedelta(days=1)).isoformat()
            run_id = f"bench_single_{day}_{time.time_ns()}"
            stack.api.trigger(dag_id, run_id, None, {"start": day, "end": end})
            run = stack.api.wait_run(dag_id, run_id, 600, stack.services)
            if run["state"] != "success":
                raise RuntimeError(
                    f"{dag_id} {run_id} for {day} ended {run['state']}: {stack.api.tasks(dag_id, run_id)}"
                )
            seconds = (
                dt.datetime.fromisoformat(run["end_date"]) - dt.datetime.fromisoformat(run["queued_at"])
            ).total_seconds()
            out.append(seconds)
            print(f"single run of {day}: {seconds:.2f} s trigger to success", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="flights")
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2014-01-01")
    parser.add_argument("--sample", type=int, default=20, help="scored days timed without Airflow")
    parser.add_argument("--single", type=int, default=10, help="of those, days run alone under the scheduler")
    parser.add_argument("--home", help="MLOPS_HOME of a kept replay: skip the replay, time single runs only")
    args = parser.parse_args()
    if args.home:
        os.environ["MLOPS_HOME"] = args.home
    os.environ.setdefault("MLOPS_HOME", tempfile.mkdtemp(prefix="mlops-bench-replay-"))
    from mlops.local.replay import replay

    load_before = os.getloadavg()
    start, end = dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end)
    data = replay(args.pipeline, start, end, report_only=bool(args.home))
    scored = [d for d in data["days"] if d["status"] == "scored"]
    sample = [d["day"] for d in scored[:: max(1, len(scored) // max(1, args.sample))]][: args.sample + 1]
    runs = [d["run_seconds"] for d in scored if d.get("run_seconds") is not None]
    home = Path(os.environ["MLOPS_HOME"]) / "replay" / args.pipeline  # the replay's lake and MLflow store
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home}/mlflow/mlflow.db"
    stages = stage_seconds(args.pipeline, sample)
    alone = single_runs(home, args.pipeline, sample[1 : args.single + 1])
    run_median, stage_median = statistics.median(runs), statistics.median(stages)
    single_median = statistics.median(alone)
    realized = data["realized"]
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(f"replay {args.start}..{args.end}: {data['daily_runs']} daily runs, {data['retrain_runs']} retrains")
    print(f"days: {data['counts']}")
    print(f"realized ROC AUC November-December: {realized.get('november_december')}")
    print(f"daily run inside the replay's backfills (start to end), median: {run_median:.2f} s")
    print(f"daily run alone (trigger to success), median of {len(alone)}: {single_median:.2f} s")
    print(f"the same days' stage functions alone, median of {len(stages)}: {stage_median:.2f} s")
    print(f"inside the backfills minus stage functions: {run_median - stage_median:.2f} s")
    print(
        f"fixed overhead per daily run (alone, trigger to success, minus stage functions): "
        f"{single_median - stage_median:.2f} s"
    )
    print(f"whole replay: {data['wall_seconds'] / 60:.1f} min wall")


if __name__ == "__main__":
    main()
