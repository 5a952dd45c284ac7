"""Schema inference (`mlops infer-schema`): profile a reference window, write a reviewable GX suite.

Like TFX's SchemaGen, the result is committed (`include/gx/expectations/<pipeline>.json`) and the
daily validation uses it: changing an expectation is a reviewed code change. Bounds are robust to a
few bad days in the window: null tolerances come from the 90th percentile of daily null fractions.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.config import PipelineConfig
from mlops.core.features import ROW_KEY
from mlops.core.interval import Interval
from mlops.io import lake
from mlops.io.datasets import missing_days
from mlops.io.gx_checks import suite_path
from mlops.io.paths import raw_dir

MAX_DOMAIN = 50  # text columns with at most this many values get a value-set expectation
RANGE_MARGIN = 0.1  # numeric bounds widened by this share of the observed range
ROW_MARGIN = 0.2  # daily row-count band widened by this share


def _expectation(kind: str, meta: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": meta or {}}


def infer_expectations(days: list[pd.DataFrame], cfg: PipelineConfig) -> list[dict[str, Any]]:
    """Expectations inferred from daily partitions of a reference window."""
    df = pd.concat(days, ignore_index=True)
    counts = [len(d) for d in days]
    leakage = set(cfg.features.leakage) - {cfg.target.column}
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
        out.append(_expectation("expect_column_values_to_be_of_type", column=col, type_=str(series.dtype)))
        if col in leakage:
            continue
        daily_null = np.array([d[col].isna().mean() for d in days])
        if daily_null.max() == 0:
            out.append(_expectation("expect_column_values_to_not_be_null", column=col))
        elif (tolerance := 3 * float(np.quantile(daily_null, 0.9)) + 0.02) < 1:  # else no bound
            out.append(
                _expectation(
                    "expect_column_values_to_not_be_null",
                    {"daily_null_fraction": [round(float(daily_null.min()), 4), round(float(daily_null.max()), 4)]},
                    column=col,
                    mostly=round(1 - tolerance, 3),
                )
            )
        if pd.api.types.is_numeric_dtype(series) and col != ROW_KEY:
            present = series.dropna()
            if len(present):
                low, high = float(present.min()), float(present.max())
                pad = (high - low) * RANGE_MARGIN
                out.append(
                    _expectation(
                        "expect_column_values_to_be_between",
                        {"observed": [low, high]},
                        column=col,
                        min_value=round(low - pad, 4),
                        max_value=round(high + pad, 4),
                    )
                )
        elif pd.api.types.is_string_dtype(series) and col != ROW_KEY:
            values = sorted(str(v) for v in series.dropna().unique())
            if len(values) <= MAX_DOMAIN:
                out.append(_expectation("expect_column_values_to_be_in_set", column=col, value_set=values))
    return out


def infer_schema(cfg: PipelineConfig, window: Interval, path: Path | None = None) -> Path:
    """Profile the window's ingested partitions and write the suite; returns its path.

    Raises FileNotFoundError naming the days without a partition (`mlops infer-schema` ingests them first).
    """
    if missing := missing_days(cfg, window):
        raise FileNotFoundError(f"pipeline {cfg.name!r}: days {[d.isoformat() for d in missing]} are not ingested")
    days = [lake.read_partition(raw_dir(cfg.name), day.isoformat()) for day in window.days()]
    suite = {
        "name": f"{cfg.name}_partition",
        "meta": {
            "inferred_by": "mlops infer-schema",
            "pipeline": cfg.name,
            "reference_window": window.key,
            "reference_days": len(days),
            "note": "Reviewed and committed: edit by hand or re-infer, then review the diff.",
        },
        "expectations": infer_expectations(days, cfg),
    }
    path = path or suite_path(cfg.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(suite, indent=2, sort_keys=False) + "\n")
    return path
