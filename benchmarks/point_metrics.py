"""Benchmark: a slice's point metrics by scikit-learn (`point_metrics`) against counts (`counted_point_metrics`).

The stages compute point metrics for every slice: a day's outcomes about 40 slices, a retrain's
evaluation 40-100 per model. Times both on the same rows (labels and scores drawn with a fixed seed,
a threshold of 0.3), alternating them `--rounds` times, and prints the median milliseconds per call of
each, their ratio, and the largest relative difference of their values (both are checked against
scikit-learn in tests/unit/test_metrics.py).

Run: uv run python benchmarks/point_metrics.py [--rows 1000,10000] [--rounds 7] [--calls 50]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from mlops.core.metrics import counted_point_metrics, point_metrics


def per_call(function, y: np.ndarray, score: np.ndarray, calls: int) -> float:
    """Seconds per call of `function(y, score, 0.3)`, the mean of `calls` calls."""
    start = time.perf_counter()
    for _ in range(calls):
        function(y, score, 0.3)
    return (time.perf_counter() - start) / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", default="1000,10000")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--calls", type=int, default=50)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    for n in (int(r) for r in args.rows.split(",")):
        y = rng.integers(0, 2, n)
        score = np.round(rng.beta(2, 5, n), 3)  # ties, as calibrated scores have
        reference, counted = point_metrics(y, score, 0.3), counted_point_metrics(y, score, 0.3)
        worst = max(abs(counted[m] - v) / max(abs(v), 1e-300) for m, v in reference.items())
        times: dict[str, list[float]] = {"scikit-learn": [], "counts": []}
        for _ in range(args.rounds):
            times["scikit-learn"].append(per_call(point_metrics, y, score, args.calls))
            times["counts"].append(per_call(counted_point_metrics, y, score, args.calls))
        sk, ours = (statistics.median(v) * 1000 for v in times.values())
        print(
            f"{n:,} rows: scikit-learn {sk:.2f} ms, counts {ours:.3f} ms a call ({sk / ours:.0f}x); "
            f"largest relative difference {worst:.1e}"
        )


if __name__ == "__main__":
    main()
