"""Scoring benchmarks: throughput against bare predict_proba, 10M rows in bounded memory, COPY into PostgreSQL.

    uv run python benchmarks/scoring.py [--rows 1000000] [--big-rows 10000000] [--copy-rows 2000000]

Everything runs in a throwaway MLOPS_HOME and a throwaway PostgreSQL cluster (started like the
tests' fixture). A model is trained with the pipeline's own stages on January 2013; the real
January flights are resampled (with replacement, new row keys) to the sizes asked for.

(a) throughput: `score_batches` over a Parquet partition (read, model_input, predict_proba, frame
    building, Parquet write) against one `model.predict_proba(model_input(df))` call on the same
    rows held in memory; target ratio >= 0.8;
(b) memory: `score()` of a 10M-row day, to Parquet and PostgreSQL, in a fresh process whose peak
    RSS (VmHWM) is reported; the partition is written in batches, never held whole; target < 2 GB;
(c) COPY: `PostgresSink.replace_interval` of prediction batches; target >= 200,000 rows/s.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIG_DAY = dt.date(2013, 3, 1)
THROUGHPUT_DAY = dt.date(2013, 2, 1)
JANUARY = (dt.date(2013, 1, 1), dt.date(2013, 2, 1))


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MB.

    VmHWM of /proc/self/status where there is one: ru_maxrss of a child also counts the parent's
    pages at fork time (Linux carries it across exec), which would charge this process for the
    parent's 1M-row frames.
    """
    try:
        with open("/proc/self/status") as fh:
            return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def config():
    """The flights pipeline, training on the 31 days of January (17 train, 7 calibration, 7 evaluation)."""
    from mlops.core.config import Evaluation, load_pipeline

    cfg = load_pipeline("flights")
    training = cfg.training.model_copy(update={"window_days": 31, "calibration_days": 7, "evaluation_days": 7})
    return cfg.model_copy(update={"training": training, "evaluation": Evaluation(bootstrap_samples=0)})


def january():
    """The ingested January rows."""
    from mlops.core.interval import Interval
    from mlops.io.datasets import read_interval

    return read_interval(config(), Interval(*JANUARY))


def resampled(source, rows: int, seed: int, tag: str):
    """`rows` rows drawn from `source` with replacement, each with a new unique row key."""
    import numpy as np

    from mlops.core.features import ROW_KEY

    picks = np.random.default_rng(seed).integers(0, len(source), rows)
    out = source.iloc[picks].reset_index(drop=True)
    out[ROW_KEY] = out[ROW_KEY] + f"#{tag}" + np.arange(rows).astype("str")
    return out


def resampled_batches(source, rows: int, batch_rows: int, tag: str) -> Iterator:
    """The same in batches, so that the whole never sits in memory."""
    for number, start in enumerate(range(0, rows, batch_rows)):
        yield resampled(source, min(batch_rows, rows - start), number, f"{tag}{number}_")


def train_model(cfg):
    """Ingest January, then assemble, train and recalibrate with the pipeline's stages."""
    from mlops.core.interval import Interval
    from mlops.io import registry
    from mlops.stages.assemble import assemble
    from mlops.stages.ingest import ingest
    from mlops.stages.recalibrate import recalibrate
    from mlops.stages.train import train

    window = Interval(*JANUARY)
    ingest(cfg, window)
    assembled = assemble(cfg, window)
    trained = train(cfg, assembled.key, window)
    recalibrate(cfg, assembled.key, window, trained.version)
    return registry.version(cfg.name, trained.version)


def bench_throughput(cfg, ref, source, rows: int, batch_rows: int, repeats: int) -> dict:
    """(a) rows/s of the scoring path and of bare predict_proba on the same rows."""
    from mlops.core.modeling import model_input
    from mlops.io import lake, registry
    from mlops.io.paths import predictions_dir, raw_dir
    from mlops.stages.score import score_batches

    model = registry.load_sklearn(ref)
    df = resampled(source, rows, 0, "t")
    lake.write_partition(df, raw_dir(cfg.name), THROUGHPUT_DAY.isoformat(), {"pipeline": cfg.name})
    bare, ours = [], []
    for _ in range(repeats):
        started = time.perf_counter()
        model.predict_proba(model_input(df, cfg.features))
        bare.append(time.perf_counter() - started)
        started = time.perf_counter()
        written = lake.write_partition_stream(
            score_batches(cfg, model, ref, THROUGHPUT_DAY, batch_rows),
            predictions_dir(cfg.name),
            THROUGHPUT_DAY.isoformat(),
            {"pipeline": cfg.name},
        )
        ours.append(time.perf_counter() - started)
        assert written["row_count"] == rows
    return {
        "rows": rows,
        "batch_rows": batch_rows,
        "bare_predict_proba_rows_per_s": rows / min(bare),
        "scoring_path_rows_per_s": rows / min(ours),
        "ratio": min(bare) / min(ours),
        "bare_seconds": [round(s, 2) for s in bare],
        "scoring_seconds": [round(s, 2) for s in ours],
    }


def bench_copy(cfg, url: str, rows: int, batch_rows: int) -> dict:
    """(c) rows/s of replacing an interval in PostgreSQL with `rows` predictions (first load, then a re-run)."""
    import pandas as pd

    from mlops.io import lake
    from mlops.io.paths import predictions_dir
    from mlops.io.sinks import PostgresSink, encode_binary
    from mlops.stages.score import day_bounds

    scored = lake.read_partition(predictions_dir(cfg.name), THROUGHPUT_DAY.isoformat())
    copies = -(-rows // len(scored))
    frame = pd.concat([scored.assign(row_key=scored.row_key + f"~{i}") for i in range(copies)], ignore_index=True).iloc[
        :rows
    ]
    batches = [frame.iloc[i : i + batch_rows] for i in range(0, rows, batch_rows)]
    started = time.perf_counter()
    for batch in batches:
        encode_binary(batch)
    encode = time.perf_counter() - started
    sink = PostgresSink(url, "predictions")
    sink.ensure_table()
    out = {"rows": rows, "batch_rows": batch_rows, "encode_only_rows_per_s": rows / encode}
    for run in ("first_load", "rerun_replacing"):
        started = time.perf_counter()
        assert sink.replace_interval(cfg.name, *day_bounds(THROUGHPUT_DAY), batches) == rows
        out[f"{run}_rows_per_s"] = rows / (time.perf_counter() - started)
    return out


def rss_mb() -> float:
    """Current resident set size of this process, in MB."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def bench_big(home: Path, url: str, version: str, batch_rows: int) -> dict:
    """(b), in a fresh process: score the 10M-row day to Parquet and PostgreSQL; report the peak RSS.

    A sampler also records the RSS twice a second, to show whether it levels off or keeps growing.
    """
    import threading

    from mlops.core.interval import Interval
    from mlops.stages.score import score

    cfg = config()
    before = peak_rss_mb()
    samples: list[float] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.5):
            samples.append(rss_mb())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    result = score(cfg, Interval.parse(BIG_DAY.isoformat()), version, batch_rows=batch_rows, sink_url=url)
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    quarters = [samples[i * len(samples) // 4 : (i + 1) * len(samples) // 4] or [0.0] for i in range(4)]
    return {
        "max_rss_mb_per_quarter": [round(max(q)) for q in quarters],
        "rows": result.rows,
        "sink_rows": result.sink_rows,
        "batch_rows": batch_rows,
        "seconds": round(seconds, 1),
        "rows_per_s": result.rows / seconds,
        "peak_rss_mb_before_scoring": round(before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }


def build_big(cfg, source, rows: int, batch_rows: int) -> dict:
    """Write the big day's raw partition batch by batch."""
    from mlops.io import lake
    from mlops.io.paths import raw_dir

    started = time.perf_counter()
    written = lake.write_partition_stream(
        resampled_batches(source, rows, batch_rows, "b"), raw_dir(cfg.name), BIG_DAY.isoformat(), {"pipeline": "big"}
    )
    size = (raw_dir(cfg.name) / f"{BIG_DAY.isoformat()}.parquet").stat().st_size
    return {"rows": written["row_count"], "seconds": round(time.perf_counter() - started, 1), "mb": size / 2**20}


def child(phase: str, home: Path, url: str, version: str, rows: int, batch_rows: int) -> dict:
    """Run one phase in a fresh interpreter (so its peak RSS is its own) and return its JSON result."""
    env = {**os.environ, "MLOPS_HOME": str(home)}
    cmd = [sys.executable, __file__, "--phase", phase, "--url", url, "--version", version]
    cmd += ["--big-rows", str(rows), "--batch-rows", str(batch_rows)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"phase {phase} failed:\n{done.stdout}\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def load() -> str:
    """The load averages: other processes on the machine slow every figure down."""
    return "load average {:.1f} {:.1f} {:.1f}".format(*os.getloadavg())


def machine() -> str:
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{os.cpu_count()} cores ({cpu}), {memory:.0f} GiB RAM, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="(a) rows scored")
    parser.add_argument("--big-rows", type=int, default=10_000_000, help="(b) rows scored in bounded memory")
    parser.add_argument("--copy-rows", type=int, default=2_000_000, help="(c) rows copied into PostgreSQL")
    parser.add_argument("--batch-rows", type=int, default=None, help="default: scoring.batch_rows")
    parser.add_argument("--repeats", type=int, default=3, help="(a) repeats; the best of each is kept")
    parser.add_argument("--phase", choices=["big", "build"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--version", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))  # for tests.fixtures.postgres

    if args.phase == "big":
        print(json.dumps(bench_big(Path(os.environ["MLOPS_HOME"]), args.url, args.version, args.batch_rows)))
        return
    if args.phase == "build":
        print(json.dumps(build_big(config(), january(), args.big_rows, args.batch_rows)))
        return

    home = Path(tempfile.mkdtemp(prefix="mlops-bench-"))
    os.environ["MLOPS_HOME"] = str(home)
    for var in ("MLFLOW_TRACKING_URI", "MLOPS_ARTIFACT_ROOT", "MLOPS_SCORES_URL", "MLOPS_CONFIG_DIR"):
        os.environ.pop(var, None)
    from tests.fixtures.postgres import start_cluster

    cfg = config()
    batch_rows = args.batch_rows or cfg.scoring.batch_rows
    print(f"machine: {machine()}; {load()}")
    cluster = start_cluster()
    try:
        url = cluster.create_database("scores")
        started = time.perf_counter()
        ref = train_model(cfg)
        source = january()
        took = time.perf_counter() - started
        print(f"model: version {ref.version} trained on {len(source):,} January rows in {took:.0f} s; {load()}")

        a = bench_throughput(cfg, ref, source, args.rows, batch_rows, args.repeats)
        print(
            f"(a) {a['rows']:,} rows, batches of {a['batch_rows']:,}: bare predict_proba "
            f"{a['bare_predict_proba_rows_per_s']:,.0f} rows/s, scoring path {a['scoring_path_rows_per_s']:,.0f} "
            f"rows/s, ratio {a['ratio']:.2f} (target >= 0.8); {load()}\n    {json.dumps(a)}"
        )
        c = bench_copy(cfg, url, args.copy_rows, batch_rows)
        print(
            f"(c) {c['rows']:,} rows into PostgreSQL: first load {c['first_load_rows_per_s']:,.0f} rows/s, "
            f"re-run replacing them {c['rerun_replacing_rows_per_s']:,.0f} rows/s (target >= 200,000); "
            f"binary encoding alone {c['encode_only_rows_per_s']:,.0f} rows/s; {load()}"
        )
        if args.big_rows:
            built = child("build", home, url, ref.version, args.big_rows, batch_rows)
            print(f"(b) built a {built['rows']:,}-row partition ({built['mb']:.0f} MB) in {built['seconds']} s")
            b = child("big", home, url, ref.version, args.big_rows, batch_rows)
            print(
                f"(b) scored {b['rows']:,} rows to Parquet and {b['sink_rows']:,} to PostgreSQL in {b['seconds']} s "
                f"({b['rows_per_s']:,.0f} rows/s); peak RSS {b['peak_rss_mb']:,.0f} MB (target < 2048 MB; "
                f"{b['peak_rss_mb_before_scoring']:,.0f} MB after imports); {load()}"
            )
            print(f"    highest RSS in each quarter of the run (MB): {b['max_rss_mb_per_quarter']}")
    finally:
        cluster.stop()
        import shutil

        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
