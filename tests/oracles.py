"""Independent reference computations that several test modules check against."""

from __future__ import annotations

import numpy as np


def ece_by_hand(y, score, bins=10) -> float:
    """Expected calibration error by its definition, bin by bin: ((b-1)/B, b/B], the first also holding 0."""
    y, score = np.asarray(y, dtype="float64"), np.asarray(score, dtype="float64")
    total = 0.0
    for b in range(bins):
        low, high = b / bins, (b + 1) / bins
        rows = [i for i, s in enumerate(score) if (low < s <= high) or (b == 0 and s == 0)]
        if rows:
            total += len(rows) / len(y) * abs(np.mean(y[rows]) - np.mean(score[rows]))
    return total
