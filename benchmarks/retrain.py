"""Benchmark: a weekly retrain's stage functions at the year replay's size, as the retrain DAG's tasks call them.

`--setup DIR` builds a store under DIR once (about 45 s): ingests 2013-01-01..2013-07-31 of the flights
pipeline (its committed config: 182-day window, 7 calibration and 7 evaluation days, the feature
audit on) and runs a first retrain for the week ending 2013-06-24, promoted. Without `--setup`, the
script copies DIR to a temporary folder and, in one process, runs the retrains of the weeks ending
2013-07-01 and 2013-07-08 (training windows of 181 and 188 days, about 150,000 rows): `assemble`,
`validate_training_set(publish=True)`, `train`, `recalibrate`, `evaluate`, `audit_challenger`,
`promote`. The first pays for the imports and the first reads of each file; the second is what a
retrain task forked from a preloaded Airflow process pays. Prints each stage's wall and CPU seconds per
retrain, and the critical path of the second (assemble, validate, train, the longer of
recalibrate + evaluate and the audit, promote: the DAG runs the audit beside recalibrate -> evaluate).

With `--before PLUGINS` (the `plugins` folder of a checkout of the code to compare with), runs `--pairs`
interleaved pairs (before, after, before, after), each side a fresh process (`PYTHONPATH=PLUGINS` for
the before side), and prints the load average at the start of each run and each side's figures.

Run: uv run python benchmarks/retrain.py --setup /tmp/retrain   (once)
     uv run python benchmarks/retrain.py --store /tmp/retrain
     uv run python benchmarks/retrain.py --store /tmp/retrain --before /tmp/before/plugins [--pairs 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from validation_day import RESULT, interleaved  # beside this script (the script's folder is on the path)

SETUP_WEEK_END = dt.date(2013, 6, 24)
WEEK_ENDS = (dt.date(2013, 7, 1), dt.date(2013, 7, 8))
STAGES = ("assemble", "validate", "train", "recalibrate", "evaluate", "audit", "promote")


def retrain(cfg, week_end: dt.date) -> dict[str, list[float]]:
    """The retrain of the week ending `week_end`: stage -> [wall, CPU] seconds."""
    from mlops.core.interval import Interval
    from mlops.stages.assemble import assemble, training_window
    from mlops.stages.evaluate import evaluate
    from mlops.stages.feature_audit import audit_challenger
    from mlops.stages.promote import promote
    from mlops.stages.recalibrate import recalibrate
    from mlops.stages.train import train
    from mlops.stages.validate import validate_training_set

    window = training_window(cfg, Interval(week_end - dt.timedelta(days=7), week_end))
    seconds: dict[str, list[float]] = {}

    def timed(name, fn, *args, **kwargs):
        t = time.perf_counter(), time.process_time()
        result = fn(*args, **kwargs)
        seconds[name] = [round(time.perf_counter() - t[0], 3), round(time.process_time() - t[1], 3)]
        return result

    assembled = timed("assemble", assemble, cfg, window)
    timed("validate", validate_training_set, cfg, assembled.key, len(assembled.days), publish=True)
    trained = timed("train", train, cfg, assembled.key, window, force=True)
    timed("recalibrate", recalibrate, cfg, assembled.key, window, trained.version)
    timed("evaluate", evaluate, cfg, assembled.key, window, trained.version)
    timed("audit", audit_challenger, cfg, assembled.key, window, trained.version)
    timed("promote", promote, cfg, trained.version, triggered_by="benchmark")
    return seconds


def critical_path(s: dict[str, list[float]]) -> float:
    """Wall seconds of the DAG's longest chain (the audit runs beside recalibrate -> evaluate)."""
    beside = max(s["recalibrate"][0] + s["evaluate"][0], s["audit"][0])
    return s["assemble"][0] + s["validate"][0] + s["train"][0] + beside + s["promote"][0]


def setup(store: Path) -> None:
    os.environ["MLOPS_HOME"] = str(store)
    from mlops.core.config import load_pipeline
    from mlops.core.interval import Interval
    from mlops.stages.ingest import ingest

    cfg = load_pipeline("flights")
    ingest(cfg, Interval.parse("2013-01-01..2013-08-01"))
    print(f"first retrain {SETUP_WEEK_END}: {retrain(cfg, SETUP_WEEK_END)}")
    print(f"store ready in {store}")


def run(store: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(store, home)
        os.environ["MLOPS_HOME"] = str(home)
        for key in [k for k in os.environ if k.startswith("MLFLOW_")]:
            del os.environ[key]
        from mlops.core.config import load_pipeline

        cfg = load_pipeline("flights")
        runs = []
        for week_end in WEEK_ENDS:
            seconds = retrain(cfg, week_end)
            runs.append(seconds)
            cells = ", ".join(f"{k} {w:.2f}/{c:.2f}" for k, (w, c) in seconds.items())
            print(f"retrain of the week ending {week_end} (wall/CPU s): {cells}", flush=True)
        print(f"critical path of the second retrain: {critical_path(runs[-1]):.2f} s")
        print(RESULT + json.dumps({"first": runs[0], "second": runs[1], "critical": critical_path(runs[-1])}))


def compare(store: Path, before: str, pairs: int) -> None:
    sides = interleaved([sys.executable, __file__, "--store", str(store)], before, pairs)
    for side, results in sides.items():
        for r in results:
            cells = ", ".join(f"{k} {r['second'][k][0]:.2f}" for k in STAGES)
            print(f"{side} (load {r['load']:.2f}), second retrain wall: {cells}; critical path {r['critical']:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", type=Path, help="build the store in this folder and stop")
    parser.add_argument("--store", type=Path, help="a store built with --setup")
    parser.add_argument("--before", help="the plugins folder of the code to compare with (interleaved runs)")
    parser.add_argument("--pairs", type=int, default=2, help="with --before: pairs of runs")
    args = parser.parse_args()
    if args.setup:
        setup(args.setup)
    elif args.before:
        compare(args.store, args.before, args.pairs)
    else:
        run(args.store)


if __name__ == "__main__":
    main()
