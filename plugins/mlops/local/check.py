"""`mlops check <pipeline>`: the config against the columns its source really gives on one sampled day.

Load-time rules (types, bounds in order, crons at midnight, duplicate keys...) are checked by
loading the file; this adds what needs data: every key that names a column (features, slices,
row key, target, not-null, ranges, categories, joins, derived columns) must name one that exists.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

from mlops.core.config import PipelineConfig
from mlops.core.config_names import name_problems
from mlops.io.sources import SourceError, open_source


@dataclass(frozen=True)
class CheckReport:
    """What `check_pipeline` found: one line per problem, each `<key>: <rule>`."""

    pipeline: str
    path: Path | None
    day: dt.date
    source: str
    rows: int
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self) -> str:
        """The report as a person reads it: a verdict, then one line per problem naming file and key."""
        where = f"{self.path}: " if self.path else ""
        head = f"{where}pipeline {self.pipeline!r}, sampled {self.day} of {self.source} ({self.rows} rows)"
        if self.ok:
            return f"{head}: config and source agree"
        lines = [f"{head}: {len(self.problems)} problem(s)"]
        lines += [f"{where}{problem}" for problem in self.problems]
        return "\n".join(lines)


def check_pipeline(cfg: PipelineConfig, day: dt.date, url: str | None = None, path: Path | None = None) -> CheckReport:
    """Read `day` and each joined table from the source; report every config name the data lacks.

    `url` overrides the source's URL (the resolved `source.conn_id`). A source that cannot be read
    is a problem in the report (naming the key `source` or the join), not an exception.
    """
    problems: list[str] = []
    try:
        source = open_source(cfg.source, url)
    except SourceError as exc:
        return CheckReport(cfg.name, path, day, cfg.source.kind, 0, [f"source: {exc}"])
    try:
        raw = source.read_day(day)
    except SourceError as exc:
        return CheckReport(cfg.name, path, day, source.description, 0, [f"source: {exc}"])
    tables: dict[str, list[str]] = {}
    for i, join in enumerate(cfg.joins):
        try:
            tables[join.table] = [str(c) for c in source.read_table(join.table).columns]
        except (SourceError, OSError, ValueError) as exc:
            problems.append(f"joins.{i}.table: cannot read reference table {join.table!r}: {exc}")
    where = f"partition {day.isoformat()} of {source.description}"
    if len(raw.columns) == 0:
        problems.append(f"source: {where} has no columns: sample a day with data (--day)")
    else:
        problems += name_problems(cfg, [str(c) for c in raw.columns], tables, where)
    return CheckReport(cfg.name, path, day, source.description, len(raw), problems)
