"""Evaluation benchmark: the sliced evaluation with 200 bootstrap resamples per slice, time and memory.

    uv run python benchmarks/evaluation.py [--scales 1 3 10] [--resamples 200] [--before-max-rows 200000]

Rows: the real labelled flights of November-December 2013 (the evaluation window of a plain
script trained on January-September), with the flights pipeline's slices (carrier, origin,
hour_band, dest_region, origin x hour_band) and two deterministic scores of real columns (a
challenger and a champion, thresholds chosen by max F1); `--scales` resamples those rows with
replacement to 3x and 10x.

- before: the evaluation as it was (commit 64facf5), kept here as the baseline: every resample a
  (resamples x rows) array of drawn rows, ranked (scipy `rankdata`) and sorted per resample;
- after: `stages.evaluate.evaluate_slices` (one sort per model and slice, resamples streamed in
  chunks), without gates (exactly `--resamples` per slice) and with the flights gates (comparisons
  near a gate's limit resampled further, up to `evaluation.max_gate_resamples`).

Each is timed once, then run again under tracemalloc for its peak of traced allocations (numpy's
arrays included). The script checks that both give the same intervals where definitions did not
change (ROC AUC, PR AUC, Brier, log loss, precision, recall).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
WINDOW = (dt.date(2013, 11, 1), dt.date(2013, 12, 31))
SLICES = ["carrier", "origin", "hour_band", "dest_region", "origin x hour_band"]
UNCHANGED = ("roc_auc", "pr_auc", "brier", "log_loss", "precision", "recall")


def evaluation_rows() -> pd.DataFrame:
    """Labelled flights of the window: row key, slice columns, label, challenger and champion scores."""
    from mlops.core.config import load_pipeline
    from mlops.core.features import labels
    from mlops.stages.ingest import build_day

    cfg = load_pipeline("flights")
    days = pd.date_range(*WINDOW, inclusive="left")
    df = pd.concat([build_day(cfg, d.date()) for d in days], ignore_index=True)
    df = df[labels(df, cfg.target).notna()].reset_index(drop=True)
    out = df[["row_key", *cfg.slice_columns]].copy()
    out["label"] = labels(df, cfg.target).to_numpy(dtype="int64")
    late = (df["hour"] + df["minute"] / 60 - 14) / 4
    weather = (df["precip"].fillna(0) * 20 + (10 - df["visib"].fillna(10))) / 5
    out["challenger_score"] = np.round(1 / (1 + np.exp(-(late + weather - 1.0))), 4)  # ties, like a tree model's
    out["champion_score"] = 1 / (1 + np.exp(-(late - 1.2)))
    return out


def resampled(rows: pd.DataFrame, scale: int) -> pd.DataFrame:
    if scale == 1:
        return rows
    picks = np.random.default_rng(scale).integers(0, len(rows), len(rows) * scale)
    return rows.iloc[picks].reset_index(drop=True)


# the evaluation of commit 64facf5, as the baseline


def before_evaluate(predictions, slices, thresholds, samples, seed=0):
    """Slice metrics and paired comparison intervals by index resampling (resamples x rows arrays)."""
    from mlops.core.metrics import point_metrics
    from mlops.stages.evaluate import slice_groups, slice_seed

    y_all = predictions["label"].to_numpy(dtype="int64")
    out = {}
    for number, (feature, value, positions) in enumerate(slice_groups(predictions, slices)):
        n = len(positions)
        idx = np.random.default_rng(slice_seed(seed, number)).integers(0, n, size=(samples, n), dtype=np.int64)
        y = y_all[positions]
        boots = {}
        for model, threshold in thresholds.items():
            score = predictions[f"{model}_score"].to_numpy()[positions]
            point_metrics(y, score, threshold)
            boots[model] = _before_bootstrap(y, score, threshold, idx)
            for metric in UNCHANGED:
                out[(feature, value, model, metric)] = _before_interval(boots[model][metric])
        for metric in UNCHANGED:
            out[(feature, value, "difference", metric)] = _before_interval(
                boots["challenger"][metric] - boots["champion"][metric]
            )
    return out


def _before_bootstrap(y, score, threshold, idx):
    from scipy.stats import rankdata

    yb = np.asarray(y, dtype="float64")[idx]
    sb = np.asarray(score, dtype="float64")[idx]
    n = idx.shape[1]
    positives = yb.sum(axis=1)
    eps = np.finfo(np.float64).eps
    with np.errstate(divide="ignore", invalid="ignore"):
        ranks = rankdata(sb, axis=1)
        auc = ((ranks * yb).sum(axis=1) - positives * (positives + 1) / 2) / (positives * (n - positives))
        order = np.argsort(-sb, axis=1, kind="stable")
        scores = np.take_along_axis(sb, order, axis=1)
        hits = np.take_along_axis(yb, order, axis=1)
        tp = np.cumsum(hits, axis=1)
        precision = tp / np.arange(1, n + 1)
        recall = tp / positives[:, None]
        group_end = np.ones_like(scores, dtype=bool)
        group_end[:, :-1] = scores[:, :-1] != scores[:, 1:]
        recall_at_ends = np.maximum.accumulate(np.where(group_end, recall, 0.0), axis=1)
        previous = np.concatenate([np.zeros((yb.shape[0], 1)), recall_at_ends[:, :-1]], axis=1)
        ap = np.where(group_end, (recall - previous) * precision, 0.0).sum(axis=1)
        clipped = np.clip(sb, eps, 1 - eps)
        pred = sb >= threshold
        tp_t = (pred & (yb == 1)).sum(axis=1)
        predicted = pred.sum(axis=1)
        return {
            "roc_auc": np.where((positives > 0) & (positives < n), auc, np.nan),
            "pr_auc": np.where((positives > 0) & (positives < n), ap, np.nan),
            "log_loss": -np.mean(yb * np.log(clipped) + (1 - yb) * np.log(1 - clipped), axis=1),
            "brier": np.mean((sb - yb) ** 2, axis=1),
            "precision": np.where(predicted > 0, tp_t / predicted, np.nan),
            "recall": np.where(positives > 0, tp_t / positives, np.nan),
        }


def _before_interval(values):
    finite = values[np.isfinite(values)]
    if len(finite) < 2:
        return (np.nan, np.nan)
    return tuple(np.quantile(finite, [0.025, 0.975]))


def after_evaluate(predictions, thresholds, samples, gated):
    from mlops.core.config import load_pipeline
    from mlops.stages.evaluate import evaluate_slices

    cfg = load_pipeline("flights")
    evaluation = cfg.evaluation.model_copy(update={"bootstrap_samples": samples})
    gates = cfg.promotion.gates if gated else ()
    return evaluate_slices(predictions, SLICES, thresholds, evaluation, gates)


def measure(fn):
    """(seconds, peak traced MiB) of fn(): timed once without tracing, then traced once."""
    started = time.perf_counter()
    result = fn()
    seconds = time.perf_counter() - started
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return seconds, peak, result


def same_intervals(before, metrics, comparison) -> float:
    """The largest difference between the two evaluations' intervals, over unchanged metrics."""
    worst = 0.0
    table = metrics.set_index(["slice_feature", "slice_value", "model", "metric"])
    diffs = comparison.set_index(["slice_feature", "slice_value", "metric"])
    for (feature, value, model, metric), (low, high) in before.items():
        row = (
            diffs.loc[(feature, value, metric)] if model == "difference" else table.loc[(feature, value, model, metric)]
        )
        if row.status != "ok":
            continue  # small slices get no bootstrap now, undefined ones none
        worst = max(worst, abs(row.ci_low - low), abs(row.ci_high - high))
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scales", type=int, nargs="+", default=[1, 3, 10])
    parser.add_argument("--resamples", type=int, default=200)
    parser.add_argument("--before-max-rows", type=int, default=200_000, help="skip the baseline above this")
    args = parser.parse_args()
    os.environ.setdefault("MLOPS_HOME", tempfile.mkdtemp(prefix="mlops-bench-eval-"))
    sys.path.insert(0, str(REPO / "plugins"))
    from scipy.stats import rankdata  # noqa: F401  (every import before any timing)

    from mlops.core.config import Threshold
    from mlops.stages.evaluate import evaluate_slices  # noqa: F401
    from mlops.stages.recalibrate import choose_threshold

    rows = evaluation_rows()
    thresholds = {
        m: choose_threshold(rows.label, rows[f"{m}_score"], Threshold(policy="max_f1")).threshold
        for m in ("challenger", "champion")
    }
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; load {os.getloadavg()[0]:.1f}")
    print(f"{len(rows):,} labelled flights {WINDOW[0]}..{WINDOW[1]}, {args.resamples} resamples per slice")
    print("| rows | before s | before MiB | after s | after MiB | after, gates s | after, gates MiB | max |d| |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for scale in args.scales:
        data = resampled(rows, scale)
        after_s, after_mb, (metrics, comparison) = measure(
            lambda data=data: after_evaluate(data, thresholds, args.resamples, gated=False)
        )
        gated_s, gated_mb, _ = measure(lambda data=data: after_evaluate(data, thresholds, args.resamples, gated=True))
        if len(data) <= args.before_max_rows:
            before_s, before_mb, before = measure(
                lambda data=data: before_evaluate(data, SLICES, thresholds, args.resamples)
            )
            diff = same_intervals(before, metrics, comparison)
            old = f"{before_s:.1f} | {before_mb:,.0f}"
        else:
            old, diff = "not run | not run", float("nan")
        after = f"{after_s:.1f} | {after_mb:,.0f} | {gated_s:.1f} | {gated_mb:,.0f}"
        print(f"| {len(data):,} | {old} | {after} | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
