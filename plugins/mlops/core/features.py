"""Column logic shared by stages: joins, derived columns, row keys, labels."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops.core.config import Derived, PipelineConfig, Target

ROW_KEY = "row_key"  # the column that identifies a row across stages and stores


def apply_joins(df: pd.DataFrame, cfg: PipelineConfig, tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Left-join each declared reference table; never changes the row count."""
    for join in cfg.joins:
        ref = tables[join.table]
        missing = [c for c in [*join.right_keys, *join.columns] if c not in ref.columns]
        if missing:
            raise KeyError(f"reference table {join.table!r} lacks columns {missing}")
        right = ref[[*join.right_keys, *join.columns]].rename(columns=join.columns)
        right = right.drop_duplicates(subset=join.right_keys, keep="first")
        right_keys = [join.columns.get(k, k) for k in join.right_keys]
        n = len(df)
        df = df.merge(right, how="left", left_on=join.left_keys, right_on=right_keys, suffixes=("", "_ref"))
        extra = [k for k in right_keys if k not in join.left_keys and k in df.columns]
        df = df.drop(columns=extra)
        assert len(df) == n, f"join with {join.table} changed the row count"
    return df


def derive(df: pd.DataFrame, derived: dict[str, Derived]) -> pd.DataFrame:
    """Add the declared derived columns, in order."""
    for name, spec in derived.items():
        if spec.bins:
            b = spec.bins
            df[name] = pd.cut(df[b.column], bins=b.edges, labels=b.labels, right=False).astype("str")
            df.loc[df[b.column].isna(), name] = None
        elif spec.map:
            m = spec.map
            df[name] = df[m.column].map(m.values).fillna(m.default).astype("str")
        elif spec.weekday:
            df[name] = pd.to_datetime(df[spec.weekday.column]).dt.dayofweek.astype("int64")
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
