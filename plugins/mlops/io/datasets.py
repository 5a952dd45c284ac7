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
from mlops.io.paths import outcomes_dir, raw_dir, shift_scores_dir, training_dir, validation_dir
from mlops.io.predictions import scored_days


def read_interval(cfg: PipelineConfig, interval: Interval, days: list[dt.date] | None = None) -> pd.DataFrame:
    """Concatenate the ingested partitions of the interval's days (or of `days`).

    Empty partitions add no rows, and their columns carry no types: they are left out unless all are empty.
    """
    frames = [lake.read_partition(raw_dir(cfg.name), d.isoformat()) for d in (days or interval.days())]
    frames = [f for f in frames if len(f)] or frames[:1]
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def is_empty(cfg: PipelineConfig, day: dt.date) -> bool:
    """Whether the day's partition has no rows (the source had none, on_empty: empty)."""
    manifest = lake.read_manifest(raw_dir(cfg.name), day.isoformat())
    return bool(manifest.get("empty")) or manifest.get("row_count") == 0


def volume_history(cfg: PipelineConfig, days: list[dt.date]) -> dict[str, int]:
    """Row counts (from the manifests) of those `days` that count as history for the volume check.

    Left out: days without a partition, empty ones, days whose stored validation failed, and
    the exempt days of `validation.volume`.
    """
    present = set(lake.list_partitions(raw_dir(cfg.name)))
    history = {}
    for day in days:
        key = day.isoformat()
        if key not in present or day in cfg.validation.volume.exempt:
            continue
        manifest = lake.read_manifest(raw_dir(cfg.name), key)
        report = read_report(cfg.name, key)
        if manifest.get("empty") or not manifest["row_count"] or (report is not None and not report["success"]):
            continue
        history[key] = int(manifest["row_count"])
    return history


def missing_days(cfg: PipelineConfig, window: Interval) -> list[dt.date]:
    """The days of `window` that have no ingested partition yet."""
    present = set(lake.list_partitions(raw_dir(cfg.name)))
    return [day for day in window.days() if day.isoformat() not in present]


def read_training_set(pipeline: str, key: str, columns: list[str] | None = None) -> pd.DataFrame:
    """The assembled training window of key `key`: every column, or only `columns` (in that order,
    each once: see `model_columns`).

    Reading every column verifies the content digest as well as the page checksums (lake.read_partition);
    a stage that needs a few columns reads only those (about 1 s less per million rows) and relies on
    the page checksums.
    """
    return lake.read_partition(training_dir(pipeline), key, columns)


def read_training_set_and_digest(pipeline: str, key: str) -> tuple[pd.DataFrame, str]:
    """The assembled training window of key `key`, verified, and its `lake.content_digest` (rows hashed once)."""
    return lake.read_partition_and_digest(training_dir(pipeline), key)


def model_columns(cfg: PipelineConfig, *extra: str) -> list[str]:
    """The columns a stage needs to predict and label by window: features, target, date, then `extra`."""
    return list(dict.fromkeys([*cfg.features.all, cfg.target.column, cfg.source.date_column, *extra]))


def read_report(pipeline: str, key: str) -> dict[str, Any] | None:
    """The stored validation report of an interval key, if any."""
    path = validation_dir(pipeline) / f"{key}.json"
    return lake.read_json(path) if path.exists() else None


def shift_history(pipeline: str, keys: list[str] | None = None) -> pd.DataFrame:
    """Every stored shift score (or those of the interval `keys`), for plotting drift over time."""
    keys = lake.list_partitions(shift_scores_dir(pipeline)) if keys is None else keys
    frames = [lake.read_partition(shift_scores_dir(pipeline), k) for k in keys]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def outcome_history(pipeline: str, keys: list[str] | None = None) -> pd.DataFrame:
    """Every stored outcome row (realized and estimated, every scored day, or the days `keys`), in day
    order; empty frame: none yet."""
    keys = lake.list_partitions(outcomes_dir(pipeline)) if keys is None else sorted(keys)
    frames = [lake.read_partition(outcomes_dir(pipeline), k) for k in keys]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def latest_scored_day(pipeline: str) -> dt.date | None:
    """The last day whose predictions are done in every store (see io.predictions), or None."""
    days = scored_days(pipeline)
    return dt.date.fromisoformat(days[-1]) if days else None


def served_days(pipeline: str, after: dt.date | None = None) -> list[dt.date]:
    """The days a champion has decided so far (after `after`, when given), sorted.

    A day is decided when it is scored (io.predictions), or when its validation report compared it
    with a champion's training data (its `references.skew` is set; a report of several days counts
    each). A re-run of such a day must find the same champion, so a promotion serves from the day after
    the last of them (core.serving). Training-window reports (keys `training-...`) decide no day.
    """
    days = {dt.date.fromisoformat(key) for key in scored_days(pipeline)}
    days |= set(_validated_days(pipeline, after))
    return sorted(d for d in days if after is None or d > after)


def latest_served_day(pipeline: str) -> dt.date | None:
    """The last of `served_days`, or None; reads the validation reports from the newest back only."""
    last = latest_scored_day(pipeline)
    for interval in sorted(_report_intervals(pipeline), key=lambda i: i.end, reverse=True):
        if last is not None and interval.days()[-1] <= last:
            break
        if _compared_with_champion(pipeline, interval):
            return interval.days()[-1]
    return last


def _report_intervals(pipeline: str) -> list[Interval]:
    folder = validation_dir(pipeline)
    if not folder.exists():
        return []
    stems = (p.stem for p in folder.glob("*.json") if not p.name.startswith("."))
    return [Interval.parse(stem) for stem in stems if not stem.startswith("training-")]


def _compared_with_champion(pipeline: str, interval: Interval) -> bool:
    report = read_report(pipeline, interval.key) or {}
    return bool((report.get("references") or {}).get("skew"))


def _validated_days(pipeline: str, after: dt.date | None) -> list[dt.date]:
    """The days of the validation reports that compared with a champion's training data."""
    later = [i for i in _report_intervals(pipeline) if after is None or i.days()[-1] > after]
    return [day for interval in later if _compared_with_champion(pipeline, interval) for day in interval.days()]
