"""Benchmark: every day of 2013 through the daily validation, with the committed suite.

Ingests the days that have no partition yet, then validates each day the way the daily DAG's
validate task does (the committed suite plus the config's rules, drift against the day before), with
the plain stage functions: no Airflow, no Data Docs, no MLflow publish, and no skew check (that
needs a champion). Prints each failed day with its failed checks and the share of its flights with
no arrival delay (cancelled or diverted), then the wall time. tests/unit/test_schema_year.py runs a
sample of these days in the test suite.

Run: uv run python benchmarks/validation_year.py [--start 2013-01-01 --end 2014-01-01]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--start", default="2013-01-01")
    parser.add_argument("--end", default="2014-01-01")
    parser.add_argument("--pipeline", default="flights")
    args = parser.parse_args()
    os.environ.setdefault("MLOPS_HOME", tempfile.mkdtemp(prefix="mlops-validation-year-"))

    from mlops.core.checks import shorten
    from mlops.core.config import load_pipeline
    from mlops.core.interval import Interval
    from mlops.stages.ingest import ingest_missing
    from mlops.stages.validate import DRIFT, previous_partition, validate

    cfg = load_pipeline(args.pipeline)
    year = Interval(dt.date.fromisoformat(args.start), dt.date.fromisoformat(args.end))
    started = time.perf_counter()
    ingest_missing(cfg, year)
    ingested = time.perf_counter()
    failed = {}
    for day in year.days():
        interval = Interval(day, day + dt.timedelta(days=1))
        report = validate(cfg, interval, references={DRIFT: previous_partition(cfg, interval)})
        if not report.success:
            failed[day] = report
    done = time.perf_counter()

    from mlops.io.datasets import read_interval

    for day, report in failed.items():
        df = read_interval(cfg, Interval(day, day + dt.timedelta(days=1)))
        no_label = df[cfg.target.column].isna().mean()
        print(f"{day}  {report.rows} rows, {no_label:.1%} without {cfg.target.column}:")
        for c in report.failed:
            print(f"    {c['check']} [{c['column']}]: observed {shorten(c['observed'], 80)}")
    days = len(year.days())
    print(f"\n{len(failed)} of {days} days failed validation")
    print(f"ingest (missing days only): {ingested - started:.1f} s")
    print(f"validate {days} days: {done - ingested:.1f} s ({(done - ingested) / days:.2f} s a day)")


if __name__ == "__main__":
    main()
