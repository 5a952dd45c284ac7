"""Schema inference (`mlops infer-schema`): profile a reference window, write a reviewable GX suite.

Like TFX's SchemaGen, the result is committed (`include/gx/expectations/<pipeline>.json`) and the
daily validation uses it: changing an expectation is a reviewed code change. What is inferred must
not reject ordinary data of another period, so it follows TensorFlow Data Validation's
`infer_schema` (statistics -> schema, then `update_schema` with every later span), each day of the
window being one span:

- type: the column's kind, not its width: any integer or float dtype is "numeric" (TFDV's INT and
  FLOAT), any datetime unit is "datetime", text is `str`;
- presence: TFDV sets `min_fraction: 1` only for a feature with no missing value, and `min_count: 1`
  for a feature present at all. Here: not null when no day of the window had a missing value, at
  least one value a day when every day had one, else no presence bound;
- domain: a text column gets its set of values when it has at most `max_string_domain_size` (100,
  TFDV's default) distinct values over the window; TFDV gives integers an empty `int_domain` (no
  bounds) and floats none;
- numeric ranges, which TFDV never infers: only from a full seasonal cycle (a window of at least
  365 days), and never on calendar or clock parts, identifiers, row keys, dates or columns known only
  after the fact. Ranges a person declares go in the config's `validation.ranges`, which the
  validation applies on top of this suite (see mlops.io.gx_checks.build_suite).

The suite's `meta.no_inferred_range` says, per column, why it has no inferred range.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.config import PipelineConfig
from mlops.core.features import ROW_KEY
from mlops.core.interval import Interval
from mlops.io import lake
from mlops.io.datasets import missing_days
from mlops.io.gx_checks import DATETIME_TYPES, NUMERIC_TYPES, suite_path
from mlops.io.paths import raw_dir

MAX_DOMAIN = 100  # TFDV's max_string_domain_size: text columns with more distinct values get no domain
FULL_CYCLE_DAYS = 365  # numeric ranges are inferred only from a window this long (a whole year's seasons)
RANGE_MARGIN = 0.1  # inferred numeric bounds widened by this share of the observed range
ROW_MARGIN = 0.2  # daily row-count band widened by this share
CALENDAR_WORDS = frozenset(
    {"year", "quarter", "month", "week", "weekday", "dow", "day", "date", "hour", "minute", "second", "time"}
)
IDENTIFIER_WORDS = frozenset({"id", "uuid", "key"})


def _expectation(kind: str, meta: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": meta or {}}


def _words(column: str) -> set[str]:
    """The words of a column name: `sched_dep_time` -> {sched, dep, time}, `dayOfWeek` -> {day, of, week}."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", column)
    return {w for w in re.split(r"[^a-zA-Z0-9]+", spaced.lower()) if w}


def no_range_reasons(cfg: PipelineConfig, df: pd.DataFrame) -> dict[str, str]:
    """Why a column of `df` gets no inferred numeric range, for every column that gets none.

    Returns column -> reason, e.g. `{"month": "calendar part (source.date_columns)", "flight": "row key"}`.
    Columns not listed (numeric measurements) may get a range from a full seasonal cycle.
    """
    leakage = set(cfg.features.leakage) | {cfg.target.column}
    calendar_parts = set((cfg.source.date_columns or {}).values())
    weekdays = {name for name, spec in cfg.derived.items() if spec.weekday is not None}
    reasons: dict[str, str] = {}
    for col in df.columns:
        series = df[col]
        if col in cfg.validation.ranges:
            reasons[col] = "range declared in validation.ranges"
        elif col == ROW_KEY or col in cfg.row_key:
            reasons[col] = "row key"
        elif col == cfg.source.date_column or pd.api.types.is_datetime64_any_dtype(series):
            reasons[col] = "date"
        elif not pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            reasons[col] = "not numeric"
        elif col in calendar_parts:
            reasons[col] = "calendar part (source.date_columns)"
        elif col in weekdays:
            reasons[col] = "calendar part (derived weekday)"
        elif col in leakage:
            reasons[col] = "known only after the fact (features.leakage / target)"
        elif _words(col) & CALENDAR_WORDS:
            reasons[col] = f"calendar or clock part (name: {', '.join(sorted(_words(col) & CALENDAR_WORDS))})"
        elif _words(col) & IDENTIFIER_WORDS:
            reasons[col] = "identifier (name)"
    return reasons


def type_expectation(column: str, series: pd.Series) -> dict[str, Any]:
    """The column's kind: numeric (any width), datetime (any unit) or its exact dtype (e.g. `str`)."""
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return _expectation(
            "expect_column_values_to_be_in_type_list", {"kind": "numeric"}, column=column, type_list=NUMERIC_TYPES
        )
    if str(series.dtype) in DATETIME_TYPES:
        return _expectation(
            "expect_column_values_to_be_in_type_list", {"kind": "datetime"}, column=column, type_list=DATETIME_TYPES
        )
    return _expectation("expect_column_values_to_be_of_type", column=column, type_=str(series.dtype))


def presence_expectation(column: str, days: list[pd.DataFrame]) -> dict[str, Any] | None:
    """TFDV's presence, per daily span: not null (min_fraction 1), at least one value (min_count 1), or None."""
    non_empty = [d for d in days if len(d)]
    missing = np.array([d[column].isna().mean() for d in non_empty])
    if not len(missing):
        return None
    if missing.max() == 0:
        return _expectation("expect_column_values_to_not_be_null", {"tfdv": "presence.min_fraction 1"}, column=column)
    if missing.max() < 1:
        return _expectation(
            "expect_column_proportion_of_non_null_values_to_be_between",
            {
                "tfdv": "presence.min_count 1",
                "daily_missing_fraction": [round(float(missing.min()), 4), round(float(missing.max()), 4)],
            },
            column=column,
            min_value=0,
            strict_min=True,
        )
    return None


def range_expectation(column: str, series: pd.Series, window: str) -> dict[str, Any] | None:
    """Observed bounds widened by RANGE_MARGIN of the observed range; None for an empty column."""
    present = series.dropna()
    if not len(present):
        return None
    low, high = float(present.min()), float(present.max())
    pad = (high - low) * RANGE_MARGIN
    return _expectation(
        "expect_column_values_to_be_between",
        {"observed": [low, high], "from": f"full seasonal cycle {window}"},
        column=column,
        min_value=round(low - pad, 4),
        max_value=round(high + pad, 4),
    )


def infer_expectations(days: list[pd.DataFrame], cfg: PipelineConfig, window: Interval) -> list[dict[str, Any]]:
    """Expectations inferred from the daily partitions of `window` (one frame per day, in order).

    Numeric ranges only when the window spans at least FULL_CYCLE_DAYS days (see the module's docstring).
    """
    return _expectations(pd.concat(days, ignore_index=True), days, cfg, window)


def _expectations(
    df: pd.DataFrame, days: list[pd.DataFrame], cfg: PipelineConfig, window: Interval
) -> list[dict[str, Any]]:
    counts = [len(d) for d in days]
    leakage = set(cfg.features.leakage) | {cfg.target.column}
    full_cycle = (window.end - window.start).days >= FULL_CYCLE_DAYS
    no_range = no_range_reasons(cfg, df)
    out = [
        _expectation("expect_table_columns_to_match_set", column_set=sorted(df.columns), exact_match=False),
        _expectation(
            "expect_table_row_count_to_be_between",
            {"observed_daily": [min(counts), max(counts)]},
            min_value=math.floor(min(counts) * (1 - ROW_MARGIN)),
            max_value=math.ceil(max(counts) * (1 + ROW_MARGIN)),
        ),
    ]
    for col in df.columns:
        series = df[col]
        out.append(type_expectation(col, series))
        if col in leakage:  # known only after the fact: its type only (the label's completeness is a config rule)
            continue
        if (presence := presence_expectation(col, days)) is not None:
            out.append(presence)
        if full_cycle and col not in no_range and (bounds := range_expectation(col, series, window.key)):
            out.append(bounds)
        if pd.api.types.is_string_dtype(series) and col != ROW_KEY:
            values = sorted(str(v) for v in series.dropna().unique())
            if 0 < len(values) <= MAX_DOMAIN:
                out.append(_expectation("expect_column_values_to_be_in_set", column=col, value_set=values))
    return out


def infer_schema(cfg: PipelineConfig, window: Interval, path: Path | None = None) -> Path:
    """Profile the window's ingested partitions and write the suite; returns its path.

    Raises FileNotFoundError naming the days without a partition (`mlops infer-schema` ingests them first).
    """
    if missing := missing_days(cfg, window):
        raise FileNotFoundError(f"pipeline {cfg.name!r}: days {[d.isoformat() for d in missing]} are not ingested")
    days = [lake.read_partition(raw_dir(cfg.name), day.isoformat()) for day in window.days()]
    df = pd.concat(days, ignore_index=True)
    full_cycle = len(days) >= FULL_CYCLE_DAYS
    suite = {
        "name": f"{cfg.name}_partition",
        "meta": {
            "inferred_by": "mlops infer-schema",
            "pipeline": cfg.name,
            "reference_window": window.key,
            "reference_days": len(days),
            "method": "TFDV infer_schema per daily span: types, presence, string domains (<= "
            f"{MAX_DOMAIN} values); numeric ranges only from >= {FULL_CYCLE_DAYS} days",
            "numeric_ranges": "inferred (full seasonal cycle)"
            if full_cycle
            else f"none inferred: {len(days)} days < {FULL_CYCLE_DAYS} (declare them in validation.ranges)",
            "no_inferred_range": no_range_reasons(cfg, df),
            "note": "Reviewed and committed: edit by hand or re-infer, then review the diff.",
        },
        "expectations": _expectations(df, days, cfg, window),
    }
    path = path or suite_path(cfg.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(suite_text(suite))
    return path


def suite_text(suite: dict[str, Any]) -> str:
    """The suite as JSON with one expectation a line, so that a review diff shows one line per change."""
    head = json.dumps({k: v for k, v in suite.items() if k != "expectations"}, indent=2)
    lines = ",\n".join(f"    {json.dumps(e)}" for e in suite["expectations"])
    return f'{head[:-2]},\n  "expectations": [\n{lines}\n  ]\n}}\n'
