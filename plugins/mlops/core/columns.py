"""Column rules every partition obeys: no name comes from two places, numbers in one width, dates in one zone.

Each check raises :class:`ColumnError` whose message names the column and the rule; the caller adds
the pipeline and the partition.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from mlops.core.config import PipelineConfig

ROW_KEY = "row_key"  # the column that identifies a row across stages and stores
EXAMPLES = 3  # offending values quoted in a message


class ColumnError(ValueError):
    """A frame's columns cannot give what the config declares: missing, colliding, mistyped or null."""


def examples(values: pd.Series) -> list:
    """Up to EXAMPLES distinct values, as plain Python objects, for error messages."""
    return [v.item() if hasattr(v, "item") else v for v in pd.unique(values)[:EXAMPLES]]


def added_columns(cfg: PipelineConfig) -> list[tuple[str, str]]:
    """Every column ingestion adds to the source's rows, with the config key that adds it, in order."""
    added = []
    if cfg.source.date_columns:
        added.append((cfg.source.date_column, "source.date_column (built from source.date_columns)"))
    for join in cfg.joins:
        added += [(name, f"joins[{join.table}].columns.{column}") for column, name in join.columns.items()]
    added += [(name, f"derived.{name}") for name in cfg.derived]
    added.append((ROW_KEY, "the row key (row_key)"))
    return added


def check_collisions(source_columns: list[str], cfg: PipelineConfig) -> None:
    """Fail when a column name would come from two places (source, a join, a derived column, the row key).

    Raises ColumnError listing every collision: a joined or derived value would otherwise silently
    replace the source's column, or be renamed away.
    """
    origin = {c: "the source" for c in source_columns}
    clashes = []
    for name, added_by in added_columns(cfg):
        if name in origin:
            clashes.append(f"{name!r} comes from {origin[name]} and from {added_by}")
        else:
            origin[name] = added_by
    if clashes:
        raise ColumnError(
            f"column name collision (a name may come from one place only): {'; '.join(clashes)}; "
            "rename the source's column or the configured one"
        )


def canonical_numbers(df: pd.DataFrame) -> pd.DataFrame:
    """Integers of any width as int64 and floats of any width as float64 (nullable ones included).

    A nullable integer column with missing values becomes float64 (NaN), as pandas reads such a
    column from CSV, so every source gives the same types for the same data.
    """
    casts = {}
    for column, dtype in df.dtypes.items():
        if pd.api.types.is_bool_dtype(dtype) or not pd.api.types.is_numeric_dtype(dtype):
            continue
        if pd.api.types.is_integer_dtype(dtype):
            values = df[column]
            if values.isna().any():
                casts[column] = "float64"
            elif str(dtype) != "int64" and (len(values) == 0 or values.max() <= np.iinfo("int64").max):
                casts[column] = "int64"
        elif str(dtype) != "float64":
            casts[column] = "float64"
    return df.astype(casts) if casts else df


def numeric_columns(cfg: PipelineConfig) -> dict[str, str]:
    """The columns the config uses as numbers (before derived columns exist), with the key that says so."""
    needs = {cfg.target.column: "target.column"}
    for column in cfg.features.numeric:
        if column not in cfg.derived:
            needs.setdefault(column, "features.numeric")
    for column in cfg.validation.ranges:
        needs.setdefault(column, f"validation.ranges.{column}")
    for name, spec in cfg.derived.items():
        if spec.bins is not None:
            needs.setdefault(spec.bins.column, f"derived.{name}.bins.column")
    return needs


def check_numeric(df: pd.DataFrame, needs: dict[str, str]) -> pd.DataFrame:
    """Fail when a column used as numbers holds text; a column with no value at all becomes float64.

    Returns `df` (with all-missing columns cast). Raises ColumnError naming each column, the config
    key that uses it as a number, and example values that are not numbers.
    """
    problems = []
    for column, key in needs.items():
        if column not in df.columns or pd.api.types.is_numeric_dtype(df[column].dtype):
            continue
        values = df[column]
        if values.isna().all():
            df[column] = values.astype("float64")
            continue
        present = values.dropna()
        not_numbers = present[pd.to_numeric(present, errors="coerce").isna()]
        shown = examples(not_numbers if len(not_numbers) else present)
        problems.append(f"{column!r} ({key}) is {values.dtype}, not numbers, e.g. {shown}")
    if problems:
        raise ColumnError(f"numeric columns arrived as text: {'; '.join(problems)}")
    return df


def local_dates(values: pd.Series, zone: str, column: str) -> pd.Series:
    """The calendar date of each value in time zone `zone` (naive values are taken as in `zone`).

    Aware values (datetimes or strings with an offset, several offsets allowed) are converted to
    `zone` first. Returns midnight timestamps, datetime64[ms], naive. Raises ColumnError for
    values that are not dates.
    """
    try:
        if pd.api.types.is_datetime64_any_dtype(values.dtype):
            stamps = values
        else:
            try:
                stamps = pd.to_datetime(values)
            except (ValueError, TypeError):  # several UTC offsets in one column (a DST change)
                stamps = pd.to_datetime(values, utc=True)
    except (ValueError, TypeError, OverflowError) as exc:
        bad = [v for v in examples(values.dropna().astype("str")) if pd.isna(pd.to_datetime(v, errors="coerce"))]
        raise ColumnError(f"date column {column!r} holds values that are not dates, e.g. {bad or str(exc)}") from None
    if stamps.dt.tz is not None:
        stamps = stamps.dt.tz_convert(zone).dt.tz_localize(None)
    return stamps.dt.normalize().astype("datetime64[ms]")


def check_day(dates: pd.Series, day: dt.date, zone: str, column: str) -> None:
    """Fail when a row's date is missing or is not `day` (both in time zone `zone`)."""
    wrong = dates.isna() | (dates != pd.Timestamp(day))
    if wrong.any():
        shown = sorted({"missing" if pd.isna(v) else v.date().isoformat() for v in dates[wrong]})[:EXAMPLES]
        raise ColumnError(
            f"{int(wrong.sum())} of {len(dates)} rows have {column!r} outside the partition's day in time zone "
            f"{zone} (source.time_zone), e.g. {shown}: the source's rows and its dates disagree"
        )


def key_columns(df: pd.DataFrame, columns: list[str]) -> pd.DataFrame:
    """Check the row key's columns: present, never missing, whole numbers kept in integer form.

    A float column whose values are all whole (e.g. a CSV column that lost its integer type) is
    turned back into int64; returns `df`. Raises ColumnError naming the column and the rule.
    """
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ColumnError(f"row key columns {missing} are not in the partition (row_key)")
    for column in columns:
        values = df[column]
        nulls = values.isna()
        if nulls.any():
            raise ColumnError(
                f"row key column {column!r} has {int(nulls.sum())} missing value(s) (e.g. row {int(np.argmax(nulls))} "
                "of the source): every key column needs a value"
            )
        if pd.api.types.is_float_dtype(values.dtype):
            whole = np.isfinite(values) & (values == np.round(values))
            if not whole.all():
                raise ColumnError(
                    f"row key column {column!r} holds numbers that are not whole, e.g. {examples(values[~whole])}: "
                    "key columns hold text, whole numbers or dates"
                )
            df[column] = values.astype("int64")
        elif pd.api.types.is_integer_dtype(values.dtype) and str(values.dtype) != "int64":
            df[column] = values.astype("int64")
    return df
