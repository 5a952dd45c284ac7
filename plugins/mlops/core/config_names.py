"""Config keys that name columns, checked against the columns a source really gives (`mlops check`).

Pure: the caller samples the source (one day's raw columns, each joined table's columns).
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

from mlops.core.config import PipelineConfig


def name_problems(
    cfg: PipelineConfig,
    source_columns: Sequence[str],
    tables: Mapping[str, Sequence[str]],
    where: str,
) -> list[str]:
    """Every config key that names a column the pipeline's partitions will not have, one line each.

    `source_columns`: the raw columns of one sampled day; `tables`: the columns of each joined
    reference table that could be read (a missing one is skipped: the caller reports why);
    `where`: the sample, for the messages (e.g. "partition 2013-01-01 of sql:postgresql://..."). Each
    line is `<key>: <rule>`, e.g. `features.numeric: 'tmep' is not a column of ... (did you mean 'temp'?)`.
    Columns are followed as ingestion builds them: source, date column, joins in order, derived columns.
    """
    problems: list[str] = []
    src = cfg.source
    columns = list(dict.fromkeys([*source_columns, src.date_column]))

    def check(key: str, names: Sequence[str], available: Sequence[str], what: str) -> None:
        for name in names:
            if name not in available:
                close = difflib.get_close_matches(name, available, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(f"{key}: {name!r} is not a column of {what}{hint}")

    check("source.columns", list(src.columns), list(source_columns), where)
    if src.date_columns:
        check("source.date_columns", list(src.date_columns.values()), list(source_columns), where)
    for i, join in enumerate(cfg.joins):
        left_key = f"joins.{i}.{'keys' if join.keys else 'left_on'}"
        check(left_key, join.left_keys, columns, f"{where} (nor joined before)")
        if join.table in tables:
            table = list(tables[join.table])
            check(f"joins.{i}.{'keys' if join.keys else 'right_on'}", join.right_keys, table, f"table {join.table!r}")
            check(f"joins.{i}.columns", list(join.columns), table, f"table {join.table!r}")
        renamed_keys = {join.columns.get(k, k) for k in join.right_keys} - set(join.left_keys)
        columns += [c for c in join.columns.values() if c not in renamed_keys and c not in columns]
    for name, spec in cfg.derived.items():
        part = next(p for p in (spec.bins, spec.map, spec.weekday) if p is not None)
        kind = "bins" if spec.bins else "map" if spec.map else "weekday"
        check(f"derived.{name}.{kind}.column", [part.column], columns, f"{where} (nor joined or derived before it)")
        columns.append(name)
    final = f"{where}, nor joined or derived"
    check("row_key", cfg.row_key, columns, final)
    check("target.column", [cfg.target.column], columns, final)
    check("features.categorical", cfg.features.categorical, columns, final)
    check("features.numeric", cfg.features.numeric, columns, final)
    check("features.leakage", cfg.features.leakage, columns, final)
    check("slices", cfg.slice_columns, columns, final)
    check("validation.not_null", cfg.validation.not_null, columns, final)
    check("validation.ranges", list(cfg.validation.ranges), columns, final)
    check("validation.categories", list(cfg.validation.categories), columns, final)
    if cfg.labels.source is None:  # labels re-read from the source: its raw rows, no joins or derived columns
        raw = list(dict.fromkeys([*source_columns, src.date_column]))
        what = f"{where} (labels are re-read from the source's own rows)"
        check(
            "labels.column" if cfg.labels.column else "target.column (the labels' column)",
            [cfg.label_column],
            raw,
            what,
        )
        check("row_key (the labels' key)", [c for c in cfg.row_key if c in columns], raw, what)
    return problems
