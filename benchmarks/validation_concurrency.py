"""Benchmark: four daily validations at once, as four runs of a daily backfill make them, against the
same work one after another.

Each validation runs in a process of its own, forked from this one after the task libraries are
imported (as the LocalExecutor forks its preloaded workers). The process first does what a task's
first call pays whatever it validates (`warm_up`: the GX context and MLflow's store opened), waits at
a barrier, then calls `validate(cfg, day, data_docs=True, publish=True)`, the daily validate task's
call (drift against the day before, skew against the champion's training data). Per round, four days
validated at once (wall from the barrier to the last end) and four other days validated one process
after another (the sum of their validate calls), in alternating order. The ratio at once / one after
another is what running four days at once saves: 1.0 means they were serialised (the GX store's lock
held through the whole validation made them so), 0.5 is two cores kept busy.

The store is `validation_day.py --setup DIR`'s (ingested January to 11 February 2013, a champion
trained on 1-22 January); the later days a round needs are ingested into the copy first. Run it on
another checkout's code with `PYTHONPATH=<checkout>/plugins`.

Run: uv run python benchmarks/validation_day.py --setup /tmp/vday   (once)
     uv run python benchmarks/validation_concurrency.py --store /tmp/vday [--rounds 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from validation_day import FIRST, config

AT_ONCE = 4  # the replay's daily backfills run four days at once (max_active_runs)
LAST_STORED = dt.date(2013, 2, 11)  # the last day `validation_day.py --setup` ingests


def warm_up() -> None:
    """What a task process has done before its validate call, or does once whatever it validates: the GX
    context opened, MLflow's store opened (its SQLite schema checked), the report and Data Docs modules."""
    import mlops.io.gx_views
    import mlops.reporting.report  # noqa: F401
    from mlops.io import gx_checks, registry

    gx_checks._context()
    registry.client().search_experiments(max_results=1)


def _child(day: dt.date, barrier, results) -> None:
    from mlops.core.interval import Interval
    from mlops.stages.validate import validate

    cfg = config()
    warm_up()
    barrier.wait()
    began = time.perf_counter()
    report = validate(cfg, Interval(day, day + dt.timedelta(days=1)), data_docs=True, publish=True)
    results.put((day.isoformat(), time.perf_counter() - began, time.perf_counter(), len(report.checks)))


def validate_days(days: list[dt.date]) -> tuple[float, list[float]]:
    """Validate `days` in as many forked processes at once; (wall from the barrier to the last end, each call)."""
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(len(days) + 1), ctx.Queue()
    procs = [ctx.Process(target=_child, args=(day, barrier, results)) for day in days]
    for p in procs:
        p.start()
    barrier.wait()
    began = time.perf_counter()
    out = [results.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(60)
        if p.exitcode:
            raise RuntimeError(f"a validation process failed ({p.exitcode})")
    return max(end for _, _, end, _ in out) - began, sorted(seconds for _, seconds, _, _ in out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True, help="a store made by validation_day.py --setup")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of 2 x 4 days")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        shutil.copytree(args.store, home)
        os.environ["MLOPS_HOME"] = str(home)
        from mlops.core.interval import Interval
        from mlops.stages.ingest import ingest
        from mlops.stages.validate import validate  # noqa: F401  (imported before the forks, as preloaded)

        last = FIRST + dt.timedelta(days=2 * AT_ONCE * args.rounds)
        if last > LAST_STORED:  # the days the store lacks
            ingest(config(), Interval(LAST_STORED + dt.timedelta(days=1), last + dt.timedelta(days=1)))
        # the store's suite, checkpoint and Data Docs exist before the timed days, as on a running stack;
        # this process opens no GX context: each forked process opens its own, as each task does
        validate_days([FIRST])
        at_once, serial = [], []
        for r in range(args.rounds):
            first = FIRST + dt.timedelta(days=1 + 2 * AT_ONCE * r)
            blocks = [[first + dt.timedelta(days=i + AT_ONCE * k) for i in range(AT_ONCE)] for k in (0, 1)]
            order = ("at once", "one after another") if r % 2 == 0 else ("one after another", "at once")
            for kind, days in zip(order, blocks, strict=True):
                load = os.getloadavg()[0]
                if kind == "at once":
                    wall, each = validate_days(days)
                    at_once.append(wall)
                else:
                    each = [validate_days([day])[0] for day in days]
                    wall = sum(each)
                    serial.append(wall)
                print(
                    f"round {r + 1}, {kind}: {days[0]}..{days[-1]}: {wall:.2f} s "
                    f"(each {', '.join(f'{s:.2f}' for s in each)}), load {load:.1f}"
                )
        a, s = statistics.median(at_once), statistics.median(serial)
        print(f"four days at once: {a:.2f} s; one after another: {s:.2f} s; at once / one after another: {a / s:.2f}")


if __name__ == "__main__":
    main()
