"""A cron data-interval timetable that ends: scheduled runs stop at the pipeline's `schedules.end_date`.

Airflow's own way to stop a DAG, its `end_date`, is inherited by the tasks, and Airflow creates no task
instance for a logical date after a task's end date: a run triggered after it (the UI's default
logical date is now) would succeed having done nothing. This timetable stops the scheduled runs
instead and leaves the tasks without an end, so such a run creates its tasks and its first task fails,
naming the interval and the end date. Registered by the `mlops` Airflow plugin (plugins/mlops_plugin.py).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.timetables.base import DagRunInfo, DataInterval, TimeRestriction
from airflow.timetables.interval import CronDataIntervalTimetable


class EndingCronDataIntervalTimetable(CronDataIntervalTimetable):
    """`CronDataIntervalTimetable(cron, timezone)` whose scheduled runs start no later than `end` (UTC)."""

    def __init__(self, cron: str, timezone: Any, end: dt.datetime | None = None) -> None:
        super().__init__(cron, timezone)
        self.end = end

    @classmethod
    def deserialize(cls, data: dict[str, Any]) -> EndingCronDataIntervalTimetable:
        base = CronDataIntervalTimetable.deserialize(data)
        end = dt.datetime.fromisoformat(data["end"]) if data.get("end") else None
        return cls(base._expression, base._timezone, end)

    def serialize(self) -> dict[str, Any]:
        return {**super().serialize(), "end": self.end.isoformat() if self.end else None}

    @property
    def summary(self) -> str:
        return f"{self._expression} until {self.end:%Y-%m-%d}" if self.end else self._expression

    def next_dagrun_info(
        self, *, last_automated_data_interval: DataInterval | None, restriction: TimeRestriction
    ) -> DagRunInfo | None:
        if self.end is not None:
            latest = self.end if restriction.latest is None else min(restriction.latest, self.end)
            restriction = TimeRestriction(restriction.earliest, latest, restriction.catchup)
        return super().next_dagrun_info(
            last_automated_data_interval=last_automated_data_interval, restriction=restriction
        )
