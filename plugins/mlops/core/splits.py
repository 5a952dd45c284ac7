"""Time-ordered splits of a training window: train, then calibration, then evaluation (the latest days)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from mlops.core.config import PipelineConfig
from mlops.core.features import labels
from mlops.core.interval import Interval


@dataclass(frozen=True)
class Split:
    """Time-ordered windows: train, then calibration, then evaluation (the most recent days)."""

    train: Interval
    calibration: Interval
    evaluation: Interval


def split_window(cfg: PipelineConfig, window: Interval) -> Split:
    """Cut the window into train | calibration | evaluation by date."""
    t = cfg.training
    evaluation_start = window.end - dt.timedelta(days=t.evaluation_days)
    calibration_start = evaluation_start - dt.timedelta(days=t.calibration_days)
    if calibration_start <= window.start:
        raise ValueError(
            f"window {window} is too short for {t.calibration_days} calibration and {t.evaluation_days} evaluation days"
        )
    return Split(
        Interval(window.start, calibration_start),
        Interval(calibration_start, evaluation_start),
        Interval(evaluation_start, window.end),
    )


def window_rows(df: pd.DataFrame, cfg: PipelineConfig, part: Interval) -> pd.DataFrame:
    """Rows of `df` whose date falls in `part`, labelled or not."""
    dates = df[cfg.source.date_column]
    return df.loc[(dates >= pd.Timestamp(part.start)) & (dates < pd.Timestamp(part.end))]


def split_frame(df: pd.DataFrame, cfg: PipelineConfig, part: Interval) -> pd.DataFrame:
    """Rows of `df` whose date falls in `part`, with a known label."""
    out = window_rows(df, cfg, part)
    return out.loc[labels(out, cfg.target).notna()]
