"""Benchmark: validation (Great Expectations suite) plus drift/skew of a 1,000,000-row partition.

Resamples the real 2013 flights to one million rows, then measures, after imports and warm-up:
the GX part, the drift part (PSI, KS, Wasserstein, JS distance, unseen share against a reference
profile), the same checks in plain pandas, and the peak memory the validation adds (tracemalloc,
which numpy and pandas report to) against the partition's in-memory size.

Run: uv run python benchmarks/validation.py [--rows 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
import tracemalloc

import numpy as np
import pandas as pd


def resampled_partition(cfg, rows: int) -> pd.DataFrame:
    from mlops.stages.ingest import build_day

    days = [build_day(cfg, dt.date(2013, 3, d)) for d in range(1, 15)]
    pool = pd.concat(days, ignore_index=True)
    idx = np.random.default_rng(0).integers(0, len(pool), rows)
    df = pool.iloc[idx].reset_index(drop=True)
    df["row_key"] = df["row_key"] + "_" + pd.Series(np.arange(rows), dtype="int64").astype("str")
    return df


def pandas_checks(df: pd.DataFrame, suite) -> int:
    """The suite's checks done directly in pandas: the baseline GX is compared with."""
    failed = 0
    for e in suite.expectations:
        kind, kw = e.expectation_type if hasattr(e, "expectation_type") else type(e).__name__, e.configuration.kwargs
        col = kw.get("column")
        s = df[col] if col is not None and col in df.columns else None
        if s is None and col is not None:
            failed += 1
            continue
        name = e.configuration.type
        if name == "expect_column_values_to_not_be_null":
            mostly = kw.get("mostly")
            ok = s.notna().mean() >= (1.0 if mostly is None else mostly)
        elif name == "expect_column_values_to_be_between":
            present = s.dropna()
            ok = bool(((present >= kw["min_value"]) & (present <= kw["max_value"])).all())
        elif name == "expect_column_values_to_be_in_set":
            ok = bool(s.dropna().isin(kw["value_set"]).all())
        elif name == "expect_column_values_to_be_unique":
            ok = s.is_unique
        elif name == "expect_table_row_count_to_be_between":
            ok = kw["min_value"] <= len(df) <= kw["max_value"]
        elif name == "expect_table_columns_to_match_set":
            ok = set(kw["column_set"]) <= set(df.columns)
        else:  # type checks
            ok = str(s.dtype) in (kw.get("type_list") or [kw.get("type_")]) or kind is None
        failed += not ok
    return failed


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    os.environ.setdefault("MLOPS_HOME", tempfile.mkdtemp(prefix="mlops-bench-"))

    t = time.perf_counter()
    from mlops.core.config import load_pipeline
    from mlops.core.drift import compare, profile
    from mlops.io import gx_checks
    from mlops.stages.validate import shift_checks

    cfg = load_pipeline("flights")
    gx_checks.build_suite(cfg)  # imports GX and creates the context
    print(f"imports and GX context: {time.perf_counter() - t:.1f} s")

    df = resampled_partition(cfg, args.rows)
    size = df.memory_usage(deep=True).sum()
    reference = profile(resampled_partition(cfg, 200_000), cfg.features.categorical, cfg.features.numeric)
    suite = gx_checks.build_suite(cfg, n_days=args.rows // 900)
    gx_checks.run_suite(suite, df.head(10_000), data_docs=False)  # warm-up
    print(
        f"partition: {len(df):,} rows, {len(df.columns)} columns, {size / 2**20:.0f} MiB in memory; "
        f"suite: {len(suite.expectations)} expectations; {len(cfg.features.all)} features compared"
    )

    def validate_once():
        checks = gx_checks.run_suite(suite, df, data_docs=False)
        stats = compare(reference, df, exclude=cfg.validation.skew.exclude)
        return checks, shift_checks(cfg.validation.skew, "skew", stats, len(df), reference["rows"])

    t = time.perf_counter()
    checks = gx_checks.run_suite(suite, df, data_docs=False)
    gx_seconds = time.perf_counter() - t
    t = time.perf_counter()
    stats = compare(reference, df, exclude=cfg.validation.skew.exclude)
    shift = shift_checks(cfg.validation.skew, "skew", stats, len(df), reference["rows"])
    drift_seconds = time.perf_counter() - t

    tracemalloc.start()  # a separate pass: tracing slows allocation-heavy code down
    base, _ = tracemalloc.get_traced_memory()
    validate_once()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    t = time.perf_counter()
    pandas_failed = pandas_checks(df, suite)
    pandas_seconds = time.perf_counter() - t
    gx_failed = sum(not c["success"] for c in checks)
    total = gx_seconds + drift_seconds
    print(f"GX suite:        {gx_seconds:6.2f} s  ({gx_failed} of {len(checks)} failed)")
    print(f"drift and skew:  {drift_seconds:6.2f} s  ({len(shift)} shift checks)")
    print(f"total:           {total:6.2f} s  (target <= 5 s)")
    print(
        f"plain pandas:    {pandas_seconds:6.2f} s for the same suite ({pandas_failed} failed): "
        f"GX takes {gx_seconds / pandas_seconds:.1f}x"
    )
    print(
        f"peak memory added by validation: {(peak - base) / 2**20:.0f} MiB = "
        f"{(peak - base) / size:.2f}x the partition (target <= 2x)"
    )


if __name__ == "__main__":
    main()
