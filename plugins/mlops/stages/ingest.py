"""Stage 1, ingestion: one Parquet partition per day of the data interval, atomic and idempotent."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import pandas as pd

from mlops.core.columns import (
    ColumnError,
    canonical_numbers,
    check_collisions,
    check_day,
    check_numeric,
    examples,
    key_columns,
    local_dates,
    numeric_columns,
)
from mlops.core.config import PipelineConfig, Source
from mlops.core.features import ROW_KEY, apply_joins, derive, prepare_joins, row_keys
from mlops.core.interval import Interval
from mlops.core.volume import reference_days
from mlops.io import lake
from mlops.io.datasets import missing_days
from mlops.io.paths import raw_dir
from mlops.io.sources import DataSource, SourceError, SourceSchemaError, check_columns, open_source, typed_empty


@dataclass(frozen=True)
class IngestResult:
    """What one ingestion wrote: a partition per day."""

    pipeline: str
    interval: Interval
    partitions: dict[str, int]  # partition key -> row count
    digests: dict[str, str]  # partition key -> content digest


def add_date_column(df: pd.DataFrame, src: Source, day: dt.date) -> pd.DataFrame:
    """Give every row the partition's date column, checked against the day (ms precision: Parquet keeps ms).

    With `source.date_columns`, the rows' year, month and day must be the partition's day; else the
    source's own date column, when it has one, taken in `source.time_zone` (naive values as they are,
    aware ones converted), must fall on it. Raises ColumnError otherwise. A source without either
    (a file per day) gives every row the partition's day.
    """
    if src.date_columns:
        parts = {"year": day.year, "month": day.month, "day": day.day}
        for part, column in src.date_columns.items():
            if column not in df.columns:
                raise ColumnError(f"date column {column!r} (source.date_columns.{part}) is not in the source's rows")
            wrong = pd.to_numeric(df[column], errors="coerce") != parts[part]
            if wrong.any():
                raise ColumnError(
                    f"{int(wrong.sum())} of {len(df)} rows have {column!r} (source.date_columns.{part}) other than "
                    f"{parts[part]}, e.g. {examples(df.loc[wrong, column])}: the source's rows and its dates disagree"
                )
    if src.date_columns or src.date_column not in df.columns:
        df[src.date_column] = pd.Timestamp(day).as_unit("ms")
    else:
        dates = local_dates(df[src.date_column], src.time_zone, src.date_column)
        check_day(dates, day, src.time_zone, src.date_column)
        df[src.date_column] = dates
    return df


_REFERENCES: dict[str, tuple[tuple[pd.DataFrame, ...], dict[str, pd.DataFrame]]] = {}
_KEPT_REFERENCES = 4


def prepared_references(cfg: PipelineConfig, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """`core.features.prepare_joins(cfg, tables)`, kept per process for the same joins and table objects.

    A process that ingests one day per call (`dag.test()` of daily runs, a test session) prepared the
    same reference tables again for every day: a quarter of a day's ingest (cProfile, 30 days one call
    each). A task of the stack ingests once per process and gains nothing. The entry is keyed by the
    joins' config and the identity of each table object, and holds those objects, so an identity is
    never reused while kept; a source that returns new frames on every read (SQL, HTTP) simply
    prepares them again. The tables are read-only here, as `load_table` asks of its callers. At most
    `_KEPT_REFERENCES` entries.
    Raises what `prepare_joins` raises.
    """
    names = sorted(tables)
    key = json.dumps([[j.model_dump(mode="json") for j in cfg.joins], [[n, id(tables[n])] for n in names]])
    hit = _REFERENCES.get(key)
    if hit is not None:
        return hit[1]
    prepared = prepare_joins(cfg, tables)
    while len(_REFERENCES) >= _KEPT_REFERENCES:
        _REFERENCES.pop(next(iter(_REFERENCES)))
    _REFERENCES[key] = (tuple(tables[n] for n in names), prepared)
    return prepared


def build_day(
    cfg: PipelineConfig,
    day: dt.date,
    source: DataSource | None = None,
    prepared: dict[str, dict[str, pd.DataFrame]] | None = None,
) -> pd.DataFrame:
    """The day's rows from the source, checked, joined and derived, in a stable order.

    `prepared`: a dict shared by the days of one run (`ingest` passes one): the reference tables,
    prepared by `core.features.prepare_joins` when the first day with rows needs them, are kept in
    it under "references" and reused by the next days, instead of being read and deduplicated per day.

    Raises SourceSchemaError (naming the pipeline, the source, the partition, the column and the rule)
    when the rows cannot make a trustworthy partition: colliding names, missing or mistyped columns,
    dates off the day, missing or non-whole key values, duplicate keys.
    """
    src = cfg.source
    source = source or open_source(src)
    df = typed_empty(source.read_day(day), src.columns)
    origin = getattr(source, "last_read", {}).get("url") or source.description  # the day's file, when it has one
    where = f"pipeline {cfg.name!r}, {origin}, partition {day.isoformat()}"
    if src.columns:
        check_columns(df, src.columns, where)
    if df.empty:
        if src.on_empty == "fail":
            raise SourceError(f"{where}: no rows (source.on_empty is 'fail')")
        return df
    try:
        check_collisions(list(df.columns), cfg)
        df = add_date_column(canonical_numbers(df), src, day)
        prepared = {} if prepared is None else prepared
        if "references" not in prepared:
            prepared["references"] = prepared_references(cfg, {j.table: source.read_table(j.table) for j in cfg.joins})
        df = check_numeric(apply_joins(df, cfg, prepared=prepared["references"]), numeric_columns(cfg))
        df = key_columns(derive(df, cfg.derived, src.time_zone), cfg.row_key)
    except ColumnError as exc:
        raise SourceSchemaError(f"{where}: {exc}") from None
    df.insert(0, ROW_KEY, row_keys(df.assign(**{src.date_column: day.isoformat()}), cfg.row_key))
    duplicated = df[ROW_KEY].duplicated()
    if duplicated.any():
        raise SourceSchemaError(f"{where}: row key {cfg.row_key} is not unique, e.g. {df[ROW_KEY][duplicated].iloc[0]}")
    return canonical_numbers(df).sort_values(ROW_KEY, kind="stable").reset_index(drop=True)


def ingest(cfg: PipelineConfig, interval: Interval, run_id: str | None = None, url: str | None = None) -> IngestResult:
    """Ingest every day of `interval`, replacing earlier partitions of the same days.

    Each day is built whole in memory, then written with one atomic rename: a failure leaves the
    earlier partition of that day as it was. `url` overrides the source's configured URL.
    """
    partitions: dict[str, int] = {}
    digests: dict[str, str] = {}
    source = open_source(cfg.source, url)
    prepared: dict[str, dict[str, pd.DataFrame]] = {}  # the reference tables, prepared once for the run
    for day in interval.days():
        df = build_day(cfg, day, source, prepared)
        manifest = lake.write_partition(
            df,
            raw_dir(cfg.name),
            day.isoformat(),
            {
                "pipeline": cfg.name,
                "source": source.description,
                "source_stats": getattr(source, "last_read", {}),
                "time_zone": cfg.source.time_zone,
                "empty": df.empty,
                "interval": [day.isoformat(), (day + dt.timedelta(days=1)).isoformat()],
                "airflow_run_id": run_id,
            },
        )
        partitions[day.isoformat()] = manifest["row_count"]
        digests[day.isoformat()] = manifest["content_digest"]
    return IngestResult(cfg.name, interval, partitions, digests)


def ingest_references(
    cfg: PipelineConfig, interval: Interval, run_id: str | None = None, url: str | None = None
) -> dict[str, str]:
    """Ingest the reference days of `interval` that have no partition yet (`core.volume.reference_days`:
    the day before, for drift, and the volume history), so validating the interval compares with the
    same days whether or not their own runs have run yet (a backfill runs several days at once).

    Days before `schedules.start_date` are left out (the pipeline's runs never ingest them). A reference
    day the source cannot give is left missing, as it would be without this call: returns {day: why}
    for those, and {day: "ingested"} for the others written.
    """
    start = cfg.schedules.start_date
    days = [d for d in reference_days(interval.days(), cfg.validation.volume) if start is None or d >= start]
    present = set(lake.list_partitions(raw_dir(cfg.name)))
    out: dict[str, str] = {}
    for day in days:
        if day.isoformat() in present:
            continue
        try:
            ingest(cfg, Interval(day, day + dt.timedelta(days=1)), run_id, url=url)
            out[day.isoformat()] = "ingested"
        except SourceError as exc:  # SourceSchemaError too: that day's own run refuses it loudly
            out[day.isoformat()] = f"not ingested: {exc}"
    return out


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
