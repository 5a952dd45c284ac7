"""Stage 1, ingestion: one Parquet partition per day of the data interval, atomic and idempotent."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pandas as pd

from mlops.core.config import PipelineConfig, Source
from mlops.core.features import ROW_KEY, apply_joins, derive, row_keys
from mlops.core.interval import Interval
from mlops.io import lake
from mlops.io.datasets import missing_days
from mlops.io.paths import raw_dir
from mlops.io.sources import DataSource, SourceError, check_columns, open_source, typed_empty


@dataclass(frozen=True)
class IngestResult:
    """What one ingestion wrote: a partition per day."""

    pipeline: str
    interval: Interval
    partitions: dict[str, int]  # partition key -> row count
    digests: dict[str, str]  # partition key -> content digest


def add_date_column(df: pd.DataFrame, src: Source, day: dt.date) -> pd.DataFrame:
    """Give every row the partition's date column (ms precision: Parquet keeps ms, so digests survive)."""
    if src.date_columns or src.date_column not in df.columns:
        df[src.date_column] = pd.Timestamp(day).as_unit("ms")
    else:
        df[src.date_column] = (
            pd.to_datetime(df[src.date_column]).dt.tz_localize(None).dt.normalize().astype("datetime64[ms]")
        )
    return df


def build_day(cfg: PipelineConfig, day: dt.date, source: DataSource | None = None) -> pd.DataFrame:
    """The day's rows from the source, checked, joined and derived, in a stable order."""
    src = cfg.source
    source = source or open_source(src)
    df = typed_empty(source.read_day(day), src.columns)
    where = f"{source.description}, partition {day.isoformat()}"
    if src.columns:
        check_columns(df, src.columns, where)
    if df.empty:
        if src.on_empty == "fail":
            raise SourceError(f"{where}: no rows (source.on_empty is 'fail')")
        return df
    df = add_date_column(df, src, day)
    references = {j.table: source.read_table(j.table) for j in cfg.joins}
    df = apply_joins(df, cfg, references)
    df = derive(df, cfg.derived)
    df.insert(0, ROW_KEY, row_keys(df.assign(**{src.date_column: day.isoformat()}), cfg.row_key))
    duplicated = df[ROW_KEY].duplicated()
    if duplicated.any():
        raise SourceError(f"{where}: row key {cfg.row_key} is not unique, e.g. {df[ROW_KEY][duplicated].iloc[0]}")
    return df.sort_values(ROW_KEY, kind="stable").reset_index(drop=True)


def ingest(cfg: PipelineConfig, interval: Interval, run_id: str | None = None, url: str | None = None) -> IngestResult:
    """Ingest every day of `interval`, replacing earlier partitions of the same days.

    Each day is built whole in memory, then written with one atomic rename: a failure leaves the
    earlier partition of that day as it was. `url` overrides the source's configured URL.
    """
    partitions: dict[str, int] = {}
    digests: dict[str, str] = {}
    source = open_source(cfg.source, url)
    for day in interval.days():
        df = build_day(cfg, day, source)
        manifest = lake.write_partition(
            df,
            raw_dir(cfg.name),
            day.isoformat(),
            {
                "pipeline": cfg.name,
                "source": source.description,
                "empty": df.empty,
                "interval": [day.isoformat(), (day + dt.timedelta(days=1)).isoformat()],
                "airflow_run_id": run_id,
            },
        )
        partitions[day.isoformat()] = manifest["row_count"]
        digests[day.isoformat()] = manifest["content_digest"]
    return IngestResult(cfg.name, interval, partitions, digests)


def ingest_missing(
    cfg: PipelineConfig, window: Interval, run_id: str | None = None, url: str | None = None
) -> list[str]:
    """Ingest the days of `window` that have no partition yet; returns their keys (for assemble, infer-schema).

    `url` overrides the source's configured URL, as in `ingest` (the resolved `source.conn_id`).
    """
    days = missing_days(cfg, window)
    for day in days:
        ingest(cfg, Interval(day, day + dt.timedelta(days=1)), run_id, url=url)
    return [d.isoformat() for d in days]
