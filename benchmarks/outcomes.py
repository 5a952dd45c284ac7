"""Benchmark: the outcomes stage on scored days of a kept replay, as the outcomes DAG's task calls it.

Copies the lake of a replay's home (`--home`, e.g. `$MLOPS_HOME/replay/flights` after `mlops replay`)
to a temporary folder once, then, in this process with a fresh MLflow store, runs
`outcomes(cfg, interval)` for `--interval` (days whose labels are due in it: realized and estimated
metrics per slice and version, the lake's outcome partitions, one MLflow metric batch a day) and prints
the wall and CPU seconds, the first use of MLflow's store included. Each run starts from the copied
lake without its outcomes.

With `--before PLUGINS` (the `plugins` folder of a checkout of the code to compare with), runs `--pairs`
interleaved pairs (before, after, before, after), each a fresh process, and prints both sides' figures.

Run: uv run python benchmarks/outcomes.py --home $MLOPS_HOME/replay/flights [--interval 2013-07-21..2013-08-04]
     uv run python benchmarks/outcomes.py --home ... --before /tmp/before/plugins [--pairs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from validation_day import RESULT, interleaved  # beside this script (the script's folder is on the path)


def run(lake: Path, interval: str) -> None:
    """Outcomes of `interval` on a copy of `lake`, in this process; prints the figures (RESULT line)."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(lake, home / "lake", ignore=shutil.ignore_patterns("outcomes"))
        os.environ["MLOPS_HOME"] = str(home)
        from mlops.core.config import load_pipeline
        from mlops.core.interval import Interval
        from mlops.stages.outcomes import NOT_SCORED, outcomes

        cfg = load_pipeline("flights")
        t = time.perf_counter(), time.process_time()
        results = outcomes(cfg, Interval.parse(interval))
        wall, cpu = time.perf_counter() - t[0], time.process_time() - t[1]
        days = sum(r.status != NOT_SCORED for r in results)
        print(f"{days} scored days of {len(results)}: {wall:.2f} s wall, {cpu:.2f} s CPU")
        print(RESULT + json.dumps({"days": days, "wall": wall, "cpu": cpu}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", type=Path, required=True, help="a replay's home (its lake holds the predictions)")
    parser.add_argument("--interval", default="2013-07-21..2013-08-04")
    parser.add_argument("--before", help="the plugins folder of the code to compare with (interleaved runs)")
    parser.add_argument("--pairs", type=int, default=2, help="with --before: pairs of runs")
    args = parser.parse_args()
    lake = args.home / "lake"
    if not (lake / "flights" / "predictions").is_dir():
        raise SystemExit(f"{lake}: no flights predictions; pass the home of a kept replay (--home)")
    if not args.before:
        run(lake, args.interval)
        return
    command = [sys.executable, __file__, "--home", str(args.home), "--interval", args.interval]
    for side, runs in interleaved(command, args.before, args.pairs).items():
        cells = [f"{r['wall']:.2f}/{r['cpu']:.2f} s for {r['days']} days (load {r['load']:.2f})" for r in runs]
        print(f"{side} (wall/CPU): " + "; ".join(cells))


if __name__ == "__main__":
    main()
