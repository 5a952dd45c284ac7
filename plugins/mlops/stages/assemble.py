"""Retrain stage 0: assemble the training window from daily partitions, in time order."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from mlops import lake
from mlops.config import PipelineConfig
from mlops.interval import Interval
from mlops.paths import lake_dir
from mlops.stages.ingest import ingest, raw_dir, read_interval
from mlops.stages.validate import read_report


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


def training_dir(pipeline: str):
    """Folder of assembled training windows."""
    return lake_dir(pipeline) / "training"


def training_window(cfg: PipelineConfig, interval: Interval) -> Interval:
    """The `window_days` days that end where the retrain run's data interval ends."""
    return Interval(interval.end - dt.timedelta(days=cfg.training.window_days), interval.end)


def assemble(cfg: PipelineConfig, window: Interval, run_id: str | None = None) -> TrainingSet:
    """Ingest days missing from the lake, drop days whose daily validation failed, write the window."""
    present = set(lake.list_partitions(raw_dir(cfg.name)))
    for day in window.days():
        if day.isoformat() not in present:
            ingest(cfg, Interval(day, day + dt.timedelta(days=1)), run_id)
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


def read_training_set(pipeline: str, key: str) -> pd.DataFrame:
    """The assembled training window of key `key`."""
    return lake.read_partition(training_dir(pipeline), key)
