"""Slices of a set of rows: the whole set (`overall`), each value of a slice column, each cell of a cross."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops.core.config import CROSS
from mlops.core.features import MISSING_SLICE
from mlops.core.metrics import OVERALL


def slice_groups(predictions: pd.DataFrame, slices: list[str]) -> list[tuple[str, str, np.ndarray]]:
    """(slice_feature, slice_value, row positions): overall first, then each slice value, sorted.

    `slices` are config `slices` entries (a column, or `a x b` for a cross). Rows whose slice column
    has no value form their own slice, `(missing)`.
    """
    groups = [(OVERALL, OVERALL, np.arange(len(predictions)))]
    for spec in slices:
        columns = [c.strip() for c in spec.split(CROSS)]
        keys = predictions[columns].astype("str").fillna(MISSING_SLICE)
        for value, positions in sorted(keys.groupby(columns, sort=False, dropna=False).indices.items()):
            parts = value if isinstance(value, tuple) else (value,)
            groups.append((spec, CROSS.join(str(p) for p in parts), positions))
    return groups


def slice_seed(seed: int, number: int) -> int:
    """The bootstrap seed of the `number`-th slice group (overall is 0)."""
    return seed * 100_003 + number
