"""Stage 7, batch scoring: the champion at its threshold, every row stamped with model and interval.

Each day goes to one Parquet partition and, when a sink URL is configured, to the PostgreSQL
predictions table as well: every batch is written to both as it is scored, so memory stays bounded
by `batch_rows`. A re-run of a day replaces that day in both places, and the day counts as scored
only once both are written (io.predictions). Predictions that no longer hold (the day is now empty,
or failed validation) are retracted from both, with the reason.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pandas as pd
from threadpoolctl import ThreadpoolController

from mlops.core.config import PipelineConfig
from mlops.core.features import ROW_KEY
from mlops.core.interval import Interval
from mlops.core.modeling import model_input, predict_scores
from mlops.io import lake, locks, predictions, registry
from mlops.io.datasets import is_empty, served_days
from mlops.io.paths import predictions_dir, raw_dir
from mlops.io.sinks import PostgresSink

PREDICTION_COLUMNS = [
    "pipeline",
    ROW_KEY,
    "model_name",
    "model_version",
    "mlflow_run_id",
    "threshold",
    "score",
    "predicted_label",
    "data_interval_start",
    "data_interval_end",
    "scored_at",
]


DEFAULT_BATCH_ROWS = 100_000  # the default of `scoring.batch_rows`
MAX_WORKERS = 4
SCORES_URL_ENV = "MLOPS_SCORES_URL"
EMPTY_DAY = "the day's partition is empty (the source had no rows): nothing to score"


@dataclass(frozen=True)
class ScoreResult:
    pipeline: str
    interval: str
    model_version: str | None  # of the last day scored (None: every day was empty)
    threshold: float | None
    rows: int
    predicted_positive_rate: float  # share of rows predicted positive
    versions: dict[str, str] = field(default_factory=dict)  # day -> model version
    sink: str | None = None  # the SQL table written too, password masked
    sink_rows: int = 0
    retracted: dict[str, str] = field(default_factory=dict)  # day -> why its predictions were removed


def resolve_sink_url(cfg: PipelineConfig, url: str | None = None) -> str | None:
    """The sink's SQLAlchemy URL: `url`, else `scoring.sink_url`, else env MLOPS_SCORES_URL; None: Parquet only."""
    return url or cfg.scoring.sink_url or os.environ.get(SCORES_URL_ENV) or None


def day_bounds(day: dt.date, time_zone: str = "UTC") -> tuple[pd.Timestamp, pd.Timestamp]:
    """The data interval [start, end) of one day: its midnights in `time_zone` (`source.time_zone`), aware."""
    start = pd.Timestamp(day).tz_localize(time_zone)
    return start, pd.Timestamp(day + dt.timedelta(days=1)).tz_localize(time_zone)


def resolve_model(
    cfg: PipelineConfig, day: dt.date, model_version: str | None = None, champions=None
) -> registry.VersionRef:
    """The pinned version, or the champion of `day` (registry.champion_for); either must carry a threshold.

    `champions`: a `registry.champions` lookup of this run, so that many days read the registry once.
    Raises LookupError (no champion) or ValueError (no threshold tag).
    """
    if model_version:
        ref = registry.version(cfg.name, model_version)
    else:
        ref = (champions or registry.champions(cfg.name))(day)
    if ref is None:
        raise LookupError(f"model {cfg.name!r} has no champion yet: run the {cfg.name}_retrain DAG first")
    if ref.threshold is None:
        raise ValueError(f"version {ref.version} of {cfg.name!r} has no threshold tag")
    return ref


def default_workers() -> int:
    """Batches predicted at once: the CPUs this process may use, at most MAX_WORKERS."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(MAX_WORKERS, cpus))


def score_batches(
    cfg: PipelineConfig,
    model,
    ref: registry.VersionRef,
    day: dt.date,
    batch_rows: int,
    tally: dict[str, int] | None = None,
    workers: int | None = None,
) -> Iterator[pd.DataFrame]:
    """Predictions for one day's partition, batch by batch and in order (counting positives into `tally`).

    `workers` threads (default: one per CPU, at most MAX_WORKERS) each predict a whole batch with a
    single OpenMP thread: batches in parallel beat one batch split across threads (no OpenMP barrier
    stalls on a busy machine), and reading and writing overlap with prediction. At most
    `workers + 1` batches are in memory.
    """
    start, end = day_bounds(day, cfg.source.time_zone)
    scored_at = pd.Timestamp.now(tz="UTC").floor("s")
    columns = [ROW_KEY, *cfg.features.all]

    def predict(df: pd.DataFrame) -> pd.DataFrame:
        scores = predict_scores(model, model_input(df, cfg.features))
        return pd.DataFrame(
            {
                "pipeline": cfg.name,
                ROW_KEY: df[ROW_KEY].to_numpy(),
                "model_name": ref.name,
                "model_version": ref.version,
                "mlflow_run_id": ref.run_id,
                "threshold": ref.threshold,
                "score": scores,
                "predicted_label": (scores >= ref.threshold).astype("int8"),
                "data_interval_start": start,
                "data_interval_end": end,
                "scored_at": scored_at,
            }
        )

    workers = workers or default_workers()
    pending: deque[Future[pd.DataFrame]] = deque()
    with ThreadPoolExecutor(workers, "score", initializer=_one_openmp_thread) as pool:
        try:
            for df in lake.iter_partition(raw_dir(cfg.name), day.isoformat(), batch_rows, columns=columns):
                pending.append(pool.submit(predict, df))
                while len(pending) > workers or (pending and pending[0].done()):
                    yield _counted(pending.popleft().result(), tally)
            while pending:
                yield _counted(pending.popleft().result(), tally)
        finally:
            for future in pending:
                future.cancel()


@functools.cache
def _threadpools() -> ThreadpoolController:
    """The process's thread pools, found once: `threadpool_limits` looks for them again on every call."""
    return ThreadpoolController()


def _one_openmp_thread() -> None:
    """Limit the calling worker thread to one OpenMP thread (the limit belongs to the thread)."""
    _threadpools().limit(limits=1, user_api="openmp")


def _counted(frame: pd.DataFrame, tally: dict[str, int] | None) -> pd.DataFrame:
    if tally is not None:
        tally["positives"] += int(frame["predicted_label"].sum())
    return frame


def score(
    cfg: PipelineConfig,
    interval: Interval,
    model_version: str | None = None,
    batch_rows: int | None = None,
    sink_url: str | None = None,
) -> ScoreResult:
    """Score each day of the interval with the champion of that day (or a pinned version), in batches.

    A re-run replaces that day's predictions, in the Parquet partition and (with a sink URL, see
    `resolve_sink_url`) in the SQL table, whose day is replaced in one transaction. Memory stays
    bounded by `batch_rows` (default `scoring.batch_rows`), not the partition. The SQL transaction
    commits before the Parquet file replaces the old one, and the day's record (io.predictions) is
    written last: should anything fail in between, the day is not scored and the retry redoes it.
    A day whose partition is empty has its earlier predictions retracted.

    Unpinned, the run holds the serving lock shared (`locks.serving`) from reading the registry until
    its last day is written: a promotion commits before or after, so each day's version is the one the
    registry gives for it once the run is done.

    Raises LookupError (no champion), ValueError (a version without threshold), SinkError (its
    `transient` says whether a retry may help), lake.PartitionReadError (a damaged partition).
    """
    batch_rows = batch_rows or cfg.scoring.batch_rows
    url = resolve_sink_url(cfg, sink_url)
    sink = PostgresSink(url, cfg.scoring.table) if url else None
    if model_version:
        return _score(cfg, interval, model_version, batch_rows, sink, None)
    with locks.serving(cfg.name):
        return _score(cfg, interval, None, batch_rows, sink, registry.champions(cfg.name))


def _score(
    cfg: PipelineConfig,
    interval: Interval,
    model_version: str | None,
    batch_rows: int,
    sink: PostgresSink | None,
    champions,
) -> ScoreResult:
    """`score` once the sink and (unpinned) the run's champions are known."""
    total, positives, sink_rows, models, versions, retracted = 0, 0, 0, {}, {}, {}
    ref = None
    for day in interval.days():
        key = day.isoformat()
        day_ref = resolve_model(cfg, day, model_version, champions)
        if is_empty(cfg, day):
            retracted[key] = EMPTY_DAY
            predictions.retract(cfg.name, key, EMPTY_DAY, sink, day_bounds(day, cfg.source.time_zone))
            continue
        ref = day_ref
        if ref.version not in models:
            models[ref.version] = registry.load_sklearn(ref)
        tally = {"positives": 0}
        batches = score_batches(cfg, models[ref.version], ref, day, batch_rows, tally)
        manifest = {"pipeline": cfg.name, "model_version": ref.version, "threshold": ref.threshold}
        predictions.clear(cfg.name, key)
        rows_to_sink = 0
        if sink is None:
            written = lake.write_partition_stream(batches, predictions_dir(cfg.name), key, manifest)
        else:
            with sink.replacing(cfg.name, *day_bounds(day, cfg.source.time_zone)) as writer:
                written = lake.write_partition_stream(
                    writer.tee(batches), predictions_dir(cfg.name), key, manifest, before_replace=writer.commit
                )
            rows_to_sink = writer.rows
        predictions.mark_done(cfg.name, key, written, sink, rows_to_sink)
        sink_rows += rows_to_sink
        total += written["row_count"]
        positives += tally["positives"]
        versions[key] = ref.version
    return ScoreResult(
        cfg.name,
        interval.key,
        ref.version if ref else None,
        ref.threshold if ref else None,
        total,
        positives / total if total else 0.0,
        versions,
        f"{sink.masked_url} table {sink.table}" if sink else None,
        sink_rows,
        retracted,
    )


def retract(cfg: PipelineConfig, interval: Interval, reason: str, sink_url: str | None = None) -> dict[str, dict]:
    """Remove the predictions of every day of `interval` from Parquet and the SQL table, recording `reason`.

    For days whose latest data no longer supports their predictions (failed validation, emptied).
    Returns day -> its record (see io.predictions.retract). Raises SinkError when the sink fails.
    """
    url = resolve_sink_url(cfg, sink_url)
    sink = PostgresSink(url, cfg.scoring.table) if url else None
    return {
        day.isoformat(): predictions.retract(
            cfg.name, day.isoformat(), reason, sink, day_bounds(day, cfg.source.time_zone)
        )
        for day in interval.days()
    }


class InTrainingWindowError(ValueError):
    """A re-score asked of a day inside the champion's training window (its own training data)."""


@dataclass(frozen=True)
class Rescore:
    """What `rescore` did: the scoring, and whether the champion now serves the day (`registry.serves_from`)."""

    result: ScoreResult
    serves_day: bool


def rescore(cfg: PipelineConfig, day: dt.date, sink_url: str | None = None) -> Rescore:
    """Score `day` again with the current champion, which from then on serves it when the day is run again.

    The champion's start (`registry.serves_from`) moves back to `day` when no day between them was
    decided by another version (scored, or validated against its training data:
    `datasets.served_days`; the usual case: `day` is the last day scored before a promotion);
    otherwise the day stays the exception (`serves_day` False) and a re-run scores it with the version
    `registry.champion_for` gives. Raises LookupError (no champion), InTrainingWindowError when `day`
    lies inside the champion's training window (scored in sample, its realized metrics would flatter
    the model; its predictions are left as they are), and what `score` raises.
    """
    with locks.serving(cfg.name, exclusive=True):  # no day is decided, nor the champion moved, meanwhile
        champion = registry.version_by_alias(cfg.name, registry.CHAMPION)
        if champion is None:
            raise LookupError(f"{cfg.name} has no champion to re-score with")
        tags = registry.client().get_model_version(cfg.name, champion.version).tags
        end = registry.window_end(tags)
        if end is not None and day < end:
            raise InTrainingWindowError(
                f"{cfg.name} {day}: inside the training window of version {champion.version} (up to {end}), "
                "which would score its own training data: its predictions stay as they are"
            )
        result = score(cfg, Interval(day, day + dt.timedelta(days=1)), champion.version, sink_url=sink_url)
        start = registry.serves_from(tags)
        if start is not None and start <= day:
            return Rescore(result, True)
        if start is not None and any(d < start for d in served_days(cfg.name, after=day)):
            return Rescore(result, False)
        registry.serve_from(cfg.name, champion.version, day)
        return Rescore(result, True)
