"""Benchmark: `mlops replay` under the real scheduler, against the same days' stage functions alone.

Runs the replay of a range (default: the whole bundled year) in a fresh MLOPS_HOME, then, for a sample
of the scored days, times the daily stage functions (ingest, validate, score, monitor) called in this
process with no Airflow, on the replay's own lake and registry (they replace their outputs with the
same content). Prints the replay's wall time, the per-run time under the scheduler, the stage
functions' own time, and the difference: Airflow's fixed overhead per daily run.

Run: uv run python benchmarks/replay.py [--start 2013-01-01 --end 2014-01-01] [--sample 20]
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="flights")
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2014-01-01")
    parser.add_argument("--sample", type=int, default=20, help="scored days timed without Airflow")
    args = parser.parse_args()
    os.environ.setdefault("MLOPS_HOME", tempfile.mkdtemp(prefix="mlops-bench-replay-"))
    from mlops.local.replay import replay

    load_before = os.getloadavg()
    data = replay(args.pipeline, dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end))
    scored = [d for d in data["days"] if d["status"] == "scored"]
    sample = [d["day"] for d in scored[:: max(1, len(scored) // max(1, args.sample))]][: args.sample + 1]
    runs = [d["run_seconds"] for d in scored if d.get("run_seconds") is not None]
    home = Path(os.environ["MLOPS_HOME"]) / "replay" / args.pipeline  # the replay's lake and MLflow store
    os.environ["MLOPS_HOME"] = str(home)
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home}/mlflow/mlflow.db"
    stages = stage_seconds(args.pipeline, sample)
    run_median, stage_median = statistics.median(runs), statistics.median(stages)
    realized = data["realized"]
    print(f"load average before: {load_before[0]:.2f}, after: {os.getloadavg()[0]:.2f}")
    print(f"replay {args.start}..{args.end}: {data['daily_runs']} daily runs, {data['retrain_runs']} retrains")
    print(f"days: {data['counts']}")
    print(f"realized ROC AUC November-December: {realized.get('november_december')}")
    print(f"daily run under the scheduler (start to end), median: {run_median:.2f} s")
    print(f"the same day's stage functions alone, median of {len(stages)}: {stage_median:.2f} s")
    print(f"fixed overhead per daily run: {run_median - stage_median:.2f} s")
    print(f"whole replay: {data['wall_seconds'] / 60:.1f} min wall")


if __name__ == "__main__":
    main()
