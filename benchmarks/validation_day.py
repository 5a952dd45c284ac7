"""Benchmark: the daily validate task on real days, as the DAG calls it, with drift and skew.

`--setup DIR` builds a store under DIR once (about 25 s): ingests 2013-01-01..2013-02-11,
trains, recalibrates, evaluates and promotes a champion on 1-22 January (7 train, 7 calibration,
7 evaluation days), so skew has a reference. Without `--setup`, the script copies DIR to a
temporary folder and, in this process, validates 2013-02-01 (the first call: it pays for the
Great Expectations context and first imports, printed apart) then `--days` days from 2013-02-02
with `validate(cfg, day, data_docs=True, publish=True)`, each with drift against the day before
and skew against the champion's training data. Prints seconds per day (wall, CPU) and the median.

With `--parts`, measures changes of this checkout in one process instead, alternating them day by
day so that both variants see the same load: the suite through GX with SUMMARY results against
RESULT_FORMAT (`batch.validate`, what the checkpoint runs), `run_suite` with and without the memo of
expectation configurations (io.gx_memo), and the whole validate call with the Data Docs template
cache (io.gx_views) on and off; prints medians of CPU seconds.

With `--before PLUGINS` (the `plugins` folder of a checkout of the code to compare with), runs
`--pairs` interleaved pairs (before, after, before, after), each side a fresh process of this script
(`PYTHONPATH=PLUGINS` for the before side), and prints the load average at the start of each run and
the figures of each side: first call, median day (wall, CPU).

Run: uv run python benchmarks/validation_day.py --setup /tmp/vday   (once)
     uv run python benchmarks/validation_day.py --store /tmp/vday [--days 5] [--profile out.prof]
     uv run python benchmarks/validation_day.py --store /tmp/vday --before /tmp/before/plugins [--pairs 2]
     uv run python benchmarks/validation_day.py --store /tmp/vday --parts [--days 5]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIRST = dt.date(2013, 2, 1)
RESULT = "RESULT "  # prefix of the line a side's process prints its figures on, as JSON


def config():
    """The flights pipeline with the short training window of tests/unit/test_chain_outputs.py."""
    from mlops.core.config import load_pipeline

    cfg = load_pipeline("flights")
    training = cfg.training.model_copy(update={"window_days": 21, "calibration_days": 7, "evaluation_days": 7})
    return cfg.model_copy(update={"training": training})


def setup(store: Path) -> None:
    """Ingest January to 11 February 2013 and promote a champion trained on 1-22 January."""
    os.environ["MLOPS_HOME"] = str(store)
    from mlops.core.interval import Interval
    from mlops.stages.assemble import assemble
    from mlops.stages.evaluate import evaluate
    from mlops.stages.ingest import ingest
    from mlops.stages.promote import promote
    from mlops.stages.recalibrate import recalibrate
    from mlops.stages.train import train

    cfg = config()
    ingest(cfg, Interval.parse("2013-01-01..2013-02-12"))
    window = Interval.parse("2013-01-01..2013-01-22")
    assembled = assemble(cfg, window)
    trained = train(cfg, assembled.key, window, force=True)
    recalibrate(cfg, assembled.key, window, trained.version)
    evaluate(cfg, assembled.key, window, trained.version)
    decision = promote(cfg, trained.version, triggered_by="benchmark")
    print(f"store ready in {store}: version {trained.version} promoted={decision.promoted}")


def run(store: Path, days: int, profile_path: str | None) -> None:
    """Copy the store, validate the first day (cold) and `days` more (warm); print the timings."""
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(store, home)
        os.environ["MLOPS_HOME"] = str(home)
        t0 = time.perf_counter(), time.process_time()
        from mlops.core.interval import Interval
        from mlops.stages.validate import validate

        cfg = config()
        imports = time.perf_counter() - t0[0], time.process_time() - t0[1]
        print(f"imports: {imports[0]:.2f} s wall, {imports[1]:.2f} s CPU")
        profiler = None
        if profile_path:
            import cProfile

            profiler = cProfile.Profile()
        walls, cpus, first = [], [], (0.0, 0.0)
        for i in range(days + 1):
            day = FIRST + dt.timedelta(days=i)
            t = time.perf_counter(), time.process_time()
            if profiler and i:
                profiler.enable()
            report = validate(cfg, Interval(day, day + dt.timedelta(days=1)), data_docs=True, publish=True)
            if profiler and i:
                profiler.disable()
            wall, cpu = time.perf_counter() - t[0], time.process_time() - t[1]
            label = "first call" if i == 0 else "day"
            print(
                f"{label} {day}: {wall:.2f} s wall, {cpu:.2f} s CPU, {report.rows} rows, "
                f"{len(report.checks)} checks, success={report.success}, references={report.references}"
            )
            if i:
                walls.append(wall)
                cpus.append(cpu)
            else:
                first = wall, cpu
        if profiler:
            profiler.dump_stats(profile_path)
        print(f"median of {days} days: {statistics.median(walls):.2f} s wall, {statistics.median(cpus):.2f} s CPU")
        figures = {"first_wall": first[0], "first_cpu": first[1]}
        print(RESULT + json.dumps(figures | {"wall": statistics.median(walls), "cpu": statistics.median(cpus)}))


def parts(store: Path, days: int, repeats: int = 3) -> None:
    """Per day from FIRST (after a first call): CPU of the suite with SUMMARY vs RESULT_FORMAT results
    and of `run_suite` (checkpoint, and two passes without Data Docs) with and without the memo of
    `io.gx_memo` (`repeats` alternations each), and of `validate` with and without the template cache,
    which goes first changing day by day; prints the medians."""
    import contextlib

    from mlops.core.interval import Interval
    from mlops.io import gx_checks, gx_memo, gx_views, lake
    from mlops.io.paths import raw_dir
    from mlops.stages.validate import validate

    with tempfile.TemporaryDirectory() as tmp:
        shutil.copytree(store, Path(tmp) / "home")
        os.environ["MLOPS_HOME"] = str(Path(tmp) / "home")
        cfg = config()
        validate(cfg, Interval(FIRST, FIRST + dt.timedelta(days=1)), data_docs=True, publish=True)
        suite = gx_checks.build_suite(cfg)
        _, _, batch_definition = gx_checks._context()
        cached, memo, cpu = gx_views._cached, gx_memo.memoized_configurations, {}
        for i in range(1, days + 1):
            day = FIRST + dt.timedelta(days=i)
            df = lake.read_partition(raw_dir(cfg.name), str(day))
            batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
            for r in range(repeats):
                for fmt in ("SUMMARY", gx_checks.RESULT_FORMAT):
                    t = time.process_time()
                    batch.validate(suite, result_format=fmt)
                    cpu.setdefault(f"suite, {fmt} results", []).append(time.process_time() - t)
                memo_variants = [("no memo", contextlib.nullcontext), ("memo", memo)]
                for label, context in memo_variants if (i + r) % 2 else memo_variants[::-1]:
                    gx_memo.memoized_configurations = context
                    for data_docs in (True, False):
                        t = time.process_time()
                        gx_checks.run_suite(suite, df, run_name=f"{day}-{label}-{r}", data_docs=data_docs)
                        path = "checkpoint" if data_docs else "two passes"
                        cpu.setdefault(f"run_suite, {path}, {label}", []).append(time.process_time() - t)
                gx_memo.memoized_configurations = memo
            variants = [("validate, templates compiled", lambda view: None), ("validate, templates cached", cached)]
            for label, view_setup in variants if i % 2 else variants[::-1]:
                gx_views._cached = view_setup
                t = time.process_time()
                validate(cfg, Interval(day, day + dt.timedelta(days=1)), data_docs=True, publish=True)
                cpu.setdefault(label, []).append(time.process_time() - t)
        gx_views._cached = cached
    for label, values in cpu.items():
        print(f"{label}: median {statistics.median(values):.3f} s CPU of {len(values)}")


def side_env(plugins: str | None) -> dict[str, str]:
    """The environment of a side's process: `plugins` first on the path (the before side), no MLflow URI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_") and k != "PYTHONPATH"}
    if plugins:
        env["PYTHONPATH"] = str(Path(plugins).resolve())
    return env


def interleaved(command: list[str], before: str, pairs: int) -> dict[str, list[dict]]:
    """Run `command` (a side, printing a RESULT line) as before, after, before, after...; the figures per side.

    Each run's figures get the load average (1 min) at its start as `load`. Raises RuntimeError when a run fails.
    """
    sides: dict[str, list[dict]] = {"before": [], "after": []}
    for pair in range(pairs):
        for side in sides:
            load = os.getloadavg()[0]
            proc = subprocess.run(
                command, capture_output=True, text=True, env=side_env(before if side == "before" else None)
            )
            if proc.returncode:
                raise RuntimeError(f"{side} run {pair + 1} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
            result = [line for line in proc.stdout.splitlines() if line.startswith(RESULT)][-1]
            sides[side].append(json.loads(result[len(RESULT) :]) | {"load": load})
            print(f"pair {pair + 1} {side} (load {load:.2f}): {result[len(RESULT) :]}", flush=True)
    return sides


def compare(store: Path, days: int, before: str, pairs: int) -> None:
    """Interleaved runs of this checkout and `before`; prints each side's first call and median day."""
    sides = interleaved([sys.executable, __file__, "--store", str(store), "--days", str(days)], before, pairs)
    for side, runs in sides.items():
        cells = [
            f"{r['first_wall']:.2f}/{r['first_cpu']:.2f} s first call, {r['wall']:.2f}/{r['cpu']:.2f} s a day "
            f"(load {r['load']:.2f})"
            for r in runs
        ]
        print(f"{side} (wall/CPU): " + "; ".join(cells))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", type=Path, help="build the store in this folder and stop")
    parser.add_argument("--store", type=Path, help="a store built with --setup")
    parser.add_argument("--days", type=int, default=5)
    parser.add_argument("--profile", help="write a cProfile of the timed days to this file")
    parser.add_argument("--before", help="the plugins folder of the code to compare with (interleaved runs)")
    parser.add_argument("--pairs", type=int, default=2, help="with --before: pairs of runs")
    parser.add_argument("--parts", action="store_true", help="the result format and template cache, alternated")
    args = parser.parse_args()
    if args.setup:
        setup(args.setup)
    elif args.parts:
        parts(args.store, args.days)
    elif args.before:
        compare(args.store, args.days, args.before, args.pairs)
    else:
        run(args.store, args.days, args.profile)


if __name__ == "__main__":
    main()
