"""Benchmark: the cost of Great Expectations Data Docs as days accumulate in the store.

Validates each day of the range twice, as the daily DAG's validate task does (the committed suite and
the config's rules; no drift, no MLflow): once through the checkpoint that stores the result and
updates the Data Docs, once without (the baseline, in the same run, so a busy machine affects both).
Prints the Data Docs overhead (with minus without), median per block of ten days: with an incremental
update it stops growing once the index holds its limit of results; a whole rebuild grows with every
result stored.

Run: uv run python benchmarks/data_docs.py [--start 2013-01-01 --end 2013-04-01]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2013-04-01")
    args = parser.parse_args()
    os.environ.setdefault("MLOPS_HOME", tempfile.mkdtemp(prefix="mlops-data-docs-"))

    from mlops.core.config import load_pipeline
    from mlops.core.interval import Interval
    from mlops.io import gx_checks
    from mlops.stages.ingest import ingest_missing
    from mlops.stages.validate import validate

    cfg = load_pipeline("flights")
    span = Interval(dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end))
    ingest_missing(cfg, span)
    gx_checks.build_suite(cfg)  # imports GX and creates the context before timing
    overhead = []
    for day in span.days():
        interval = Interval(day, day + dt.timedelta(days=1))
        t0 = time.perf_counter()
        validate(cfg, interval, references={}, data_docs=False)
        t1 = time.perf_counter()
        validate(cfg, interval, references={}, data_docs=True)
        t2 = time.perf_counter()
        overhead.append((t2 - t1) - (t1 - t0))
    print(
        f"load average {os.getloadavg()[0]:.2f}; {len(overhead)} days ({args.start}..{args.end}); "
        f"the index lists the latest {gx_checks.DATA_DOCS_INDEX_LIMIT} results"
    )
    for first in range(0, len(overhead), 10):
        block = overhead[first : first + 10]
        days = f"days {first + 1:3d}-{first + len(block):3d}"
        print(f"{days}: Data Docs overhead per run, median {statistics.median(block):.2f} s")


if __name__ == "__main__":
    main()
