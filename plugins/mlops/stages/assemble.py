"""Retrain stage 0: assemble the training window from daily partitions, in time order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from mlops.core.config import PipelineConfig
from mlops.core.interval import Interval
from mlops.io import lake
from mlops.io.datasets import missing_days, read_interval, read_report
from mlops.io.paths import training_dir


@dataclass(frozen=True)
class TrainingSet:
    """A training window written to the lake: which days it holds and which it left out, and why."""

    pipeline: str
    window: Interval
    days: list[str]
    excluded: dict[str, str]
    rows: int
    content_digest: str

    @property
    def key(self) -> str:
        return self.window.key


def training_window(cfg: PipelineConfig, interval: Interval) -> Interval:
    """The `window_days` days that end where the retrain run's data interval ends.

    The window never starts before `schedules.start_date`: until the pipeline has `window_days` days
    of history, it grows with each retrain (an expanding window), then slides.
    """
    start = max(interval.end - dt.timedelta(days=cfg.training.window_days), cfg.schedules.start_date)
    return Interval(start, interval.end)


def assemble(cfg: PipelineConfig, window: Interval, run_id: str | None = None) -> TrainingSet:
    """Drop days whose daily validation failed and write the window (ingest missing days first).

    Raises FileNotFoundError naming the pipeline and days when a day of the window has no
    partition: `stages.ingest.ingest_missing` ingests them (the assemble task does so first).
    """
    if missing := missing_days(cfg, window):
        shown = ", ".join(d.isoformat() for d in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise FileNotFoundError(
            f"pipeline {cfg.name!r}, training window {window}: {len(missing)} day(s) not ingested ({shown}); "
            "ingest them first (stages.ingest.ingest_missing)"
        )
    excluded = {}
    for day in window.days():
        report = read_report(cfg.name, day.isoformat())
        if report is not None and not report["success"]:
            failed = [c for c in report["checks"] if not c["success"] and c["severity"] == "error"]
            excluded[day.isoformat()] = f"failed daily validation ({len(failed)} checks)"
    days = [d for d in window.days() if d.isoformat() not in excluded]
    if not days:
        raise ValueError(f"training window {window} has no day that passed validation")
    df = read_interval(cfg, window, days)
    manifest = lake.write_partition(
        df,
        training_dir(cfg.name),
        window.key,
        {"pipeline": cfg.name, "window": [window.start, window.end], "excluded": excluded, "airflow_run_id": run_id},
    )
    return TrainingSet(cfg.name, window, [d.isoformat() for d in days], excluded, len(df), manifest["content_digest"])
