"""Column logic shared by stages: joins, derived columns, row keys, labels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops.core.columns import ROW_KEY, ColumnError, examples
from mlops.core.config import Derived, PipelineConfig, Target

__all__ = ["MISSING_SLICE", "ROW_KEY", "apply_joins", "derive", "labels", "prepare_joins", "row_keys"]

MISSING_SLICE = "(missing)"  # the slice value of rows whose slice column has no value


def prepare_joins(cfg: PipelineConfig, tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Each declared reference table reduced to its joined columns, one row per key, indexed by the key.

    Done once per run and reused for every partition (`apply_joins(..., prepared=...)`): the
    deduplication and the index's hash table are built once instead of once per day. Returns
    join table name -> frame (m, len(columns)) whose index holds the right keys (first row of each
    key kept). Raises ColumnError when a reference table lacks a key or a column.
    """
    out = {}
    for join in cfg.joins:
        ref = tables[join.table]
        missing = [c for c in dict.fromkeys([*join.right_keys, *join.columns]) if c not in ref.columns]
        if missing:
            raise ColumnError(f"join with {join.table!r}: the reference table lacks columns {missing}")
        # the reference's keys under private names: they can never collide with a partition column
        private = [f"__{join.table}_key_{i}" for i in range(len(join.right_keys))]
        right = pd.DataFrame({p: ref[k] for p, k in zip(private, join.right_keys, strict=True)})
        for column, name in join.columns.items():
            right[name] = ref[column]
        out[join.table] = right.drop_duplicates(subset=private, keep="first").set_index(private)
    return out


def apply_joins(
    df: pd.DataFrame,
    cfg: PipelineConfig,
    tables: dict[str, pd.DataFrame] | None = None,
    prepared: dict[str, pd.DataFrame] | None = None,
) -> pd.DataFrame:
    """Left-join each declared reference table; never changes the row count; returns a new frame (RangeIndex).

    Give either the raw reference `tables` (name -> frame) or `prepared` (from `prepare_joins`,
    the same result without redoing the preparation per partition). Raises ColumnError when the
    partition lacks a join key, the reference table lacks a key or a column, or a key is numbers on
    one side and text on the other.
    """
    if prepared is None:
        prepared = prepare_joins(cfg, tables or {})
    for join in cfg.joins:
        right = prepared[join.table]
        absent = [k for k in join.left_keys if k not in df.columns]
        if absent:
            raise ColumnError(f"join with {join.table!r}: the partition has no join key column(s) {absent}")
        for i, (left, key) in enumerate(zip(join.left_keys, join.right_keys, strict=True)):
            level = right.index.get_level_values(i)
            numeric = pd.api.types.is_numeric_dtype(df[left].dtype), pd.api.types.is_numeric_dtype(level.dtype)
            if numeric[0] != numeric[1]:
                raise ColumnError(
                    f"join with {join.table!r}: key {left!r} is {df[left].dtype} in the partition "
                    f"but {key!r} is {level.dtype} in the reference table"
                )
        n = len(df)
        df = df.join(right, on=join.left_keys, how="left").reset_index(drop=True)
        assert len(df) == n, f"join with {join.table} changed the row count"
    return df


def derive(df: pd.DataFrame, derived: dict[str, Derived], time_zone: str = "UTC") -> pd.DataFrame:
    """Add the declared derived columns, in order (aware timestamps give weekdays in `time_zone`).

    Raises ColumnError naming the derived column when its input column is missing, or when a
    `bins` input is not numbers or a `weekday` input is not dates.
    """
    for name, spec in derived.items():
        column = next(s.column for s in (spec.bins, spec.map, spec.weekday) if s is not None)
        if column not in df.columns:
            raise ColumnError(f"derived column {name!r} needs column {column!r}, which the partition lacks")
        if spec.bins and not pd.api.types.is_numeric_dtype(df[column].dtype):
            raise ColumnError(
                f"derived column {name!r} bins column {column!r}, which is {df[column].dtype}, not numbers, "
                f"e.g. {examples(df[column].dropna())}"
            )
        if spec.bins:
            b = spec.bins
            df[name] = pd.cut(df[b.column], bins=b.edges, labels=b.labels, right=False).astype("str")
            df.loc[df[b.column].isna(), name] = None
        elif spec.map:
            m = spec.map
            df[name] = df[m.column].map(m.values).fillna(m.default).astype("str")
        elif spec.weekday:
            try:
                stamps = pd.to_datetime(df[column])
            except (ValueError, TypeError) as exc:
                raise ColumnError(f"derived column {name!r} needs dates in {column!r}: {exc}") from None
            if stamps.dt.tz is not None:
                stamps = stamps.dt.tz_convert(time_zone)
            df[name] = stamps.dt.dayofweek.astype("int64")
    return df


def row_keys(df: pd.DataFrame, columns: list[str]) -> pd.Series:
    """A readable unique key per row, e.g. `2013-02-01_UA_1545_EWR`."""
    parts = [df[c].astype("str") for c in columns]
    key = parts[0]
    for part in parts[1:]:
        key = key + "_" + part
    return key


def labels(df: pd.DataFrame, target: Target) -> pd.Series:
    """The binary label as float: 1.0, 0.0, or NaN where the target is unknown."""
    values = df[target.column].astype("float64")
    ops = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}
    out = ops[target.operator](values, target.value).astype("float64")
    return out.where(values.notna())
