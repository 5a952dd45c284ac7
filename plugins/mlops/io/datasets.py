"""Readers of what the stages wrote to the lake, shared by stages, reports and local tools.

Each reader takes the pipeline name and a partition key (a day `YYYY-MM-DD` or a window
`YYYY-MM-DD..YYYY-MM-DD`) and returns a DataFrame or a dict; none writes anything.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from mlops.core.config import PipelineConfig
from mlops.core.interval import Interval
from mlops.io import lake
from mlops.io.paths import predictions_dir, raw_dir, shift_scores_dir, training_dir, validation_dir


def read_interval(cfg: PipelineConfig, interval: Interval, days: list[dt.date] | None = None) -> pd.DataFrame:
    """Concatenate the ingested partitions of the interval's days (or of `days`)."""
    frames = [lake.read_partition(raw_dir(cfg.name), d.isoformat()) for d in (days or interval.days())]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def is_empty(cfg: PipelineConfig, day: dt.date) -> bool:
    """Whether the day's partition was recorded empty (the source had no rows, on_empty: empty)."""
    return bool(lake.read_manifest(raw_dir(cfg.name), day.isoformat()).get("empty"))


def missing_days(cfg: PipelineConfig, window: Interval) -> list[dt.date]:
    """The days of `window` that have no ingested partition yet."""
    present = set(lake.list_partitions(raw_dir(cfg.name)))
    return [day for day in window.days() if day.isoformat() not in present]


def read_training_set(pipeline: str, key: str) -> pd.DataFrame:
    """The assembled training window of key `key`."""
    return lake.read_partition(training_dir(pipeline), key)


def read_report(pipeline: str, key: str) -> dict[str, Any] | None:
    """The stored validation report of an interval key, if any."""
    path = validation_dir(pipeline) / f"{key}.json"
    return lake.read_json(path) if path.exists() else None


def shift_history(pipeline: str) -> pd.DataFrame:
    """Every stored shift score, for plotting drift over time."""
    keys = lake.list_partitions(shift_scores_dir(pipeline))
    frames = [lake.read_partition(shift_scores_dir(pipeline), k) for k in keys]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def latest_scored_day(pipeline: str) -> dt.date | None:
    """The last day that has predictions, or None when nothing was scored yet."""
    days = lake.list_partitions(predictions_dir(pipeline))
    return dt.date.fromisoformat(days[-1]) if days else None
