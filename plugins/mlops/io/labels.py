"""Ground truth of scored rows, read when it is due (config `labels`), keyed by the row key.

The labels of a scored day are read from `labels.source` (default: the pipeline's own source,
re-read for that day) and keyed exactly as ingestion keys the day's rows: the `row_key` columns,
with the partition's date column set to the day, joined by `_` (`core.features.row_keys`). A
source whose rows already carry a `row_key` column is taken as it is.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from mlops.core.columns import ColumnError, canonical_numbers, key_columns
from mlops.core.config import PipelineConfig
from mlops.core.features import ROW_KEY, labels, row_keys
from mlops.io.sources import SourceSchemaError, open_source

LABEL = "label"


def read_labels(cfg: PipelineConfig, day: dt.date, url: str | None = None) -> pd.DataFrame:
    """The labels of scored `day`: a frame (`row_key` str, `label` float 1.0/0.0/NaN), one row per source row.

    NaN: the source has the row but its label column has no value (e.g. a cancelled flight). Keys are
    not deduplicated here: the caller counts duplicates. `url` overrides the source's configured URL
    (as the ingest task resolves it). Raises SourceError (unreachable, no rows with on_empty 'fail'),
    SourceSchemaError naming the pipeline, the day and the missing column.
    """
    src = cfg.labels.source or cfg.source
    source = open_source(src, url)
    raw = source.read_day(day)
    where = f"pipeline {cfg.name!r}, labels of {day.isoformat()} from {source.description}"
    column = cfg.label_column
    if raw.empty:
        return pd.DataFrame({ROW_KEY: pd.Series([], dtype="str"), LABEL: pd.Series([], dtype="float64")})
    if column not in raw.columns:
        raise SourceSchemaError(f"{where}: no label column {column!r} (labels.column, default target.column)")
    df = canonical_numbers(raw)
    if ROW_KEY in df.columns:
        keys = df[ROW_KEY].astype("str")
    else:
        keyed = df.assign(**{src.date_column: day.isoformat()})
        try:
            keyed = key_columns(keyed, cfg.row_key)
        except ColumnError as exc:
            raise SourceSchemaError(f"{where}: {exc} (the label source must carry the row_key columns)") from None
        keys = row_keys(keyed, cfg.row_key)
    target = cfg.target.model_copy(update={"column": column})
    values = labels(df, target).to_numpy(dtype="float64")
    return pd.DataFrame({ROW_KEY: keys.to_numpy(dtype="str"), LABEL: np.asarray(values, dtype="float64")})
