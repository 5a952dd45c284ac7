"""Data intervals: the key every stage reads and writes by."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Interval:
    """A half-open interval of calendar days [start, end), in UTC."""

    start: dt.date
    end: dt.date

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError(f"empty data interval: end {self.end} is not after start {self.start}")

    @classmethod
    def from_datetimes(cls, start: dt.datetime, end: dt.datetime) -> Interval:
        """Interval from an Airflow data interval; both ends must fall on midnight UTC."""
        for name, value in (("start", start), ("end", end)):
            utc = value.astimezone(dt.UTC) if value.tzinfo else value
            if (utc.hour, utc.minute, utc.second, utc.microsecond) != (0, 0, 0, 0):
                raise ValueError(f"data interval {name} {value.isoformat()} is not at midnight UTC")
        return cls(_utc_date(start), _utc_date(end))

    @classmethod
    def parse(cls, text: str) -> Interval:
        """Parse `2013-02-01` (one day) or `2013-02-01..2013-02-08` (end exclusive)."""
        if ".." in text:
            start, end = text.split("..", 1)
            return cls(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
        day = dt.date.fromisoformat(text)
        return cls(day, day + dt.timedelta(days=1))

    @property
    def key(self) -> str:
        """Partition key: the date for one day, else `start..end`."""
        if self.end - self.start == dt.timedelta(days=1):
            return self.start.isoformat()
        return f"{self.start.isoformat()}..{self.end.isoformat()}"

    def days(self) -> list[dt.date]:
        """Every calendar day of the interval."""
        n = (self.end - self.start).days
        return [self.start + dt.timedelta(days=i) for i in range(n)]

    def __str__(self) -> str:
        return f"[{self.start}, {self.end})"


def _utc_date(value: dt.datetime) -> dt.date:
    return (value.astimezone(dt.UTC) if value.tzinfo else value).date()
