"""How a comparison gate reads a bootstrap interval: shared by the evaluation (which resamples until
the reading is clear) and the promotion (which judges it).

A comparison gate judges the challenger's gain over the champion (the difference, sign-turned for
metrics where lower is better) on one end of its paired bootstrap interval: the lower end for
`non_inferiority`, the upper end for `no_significant_regression`. The end is a sample quantile of
the resamples, so it carries a Monte Carlo error; when the limit lies within `mc_z` of those errors
of the bound, another seed could decide the other way: the reading is inconclusive.
"""

from __future__ import annotations

import math

from mlops.core.config import LOWER_IS_BETTER, Gate
from mlops.core.metrics import OVERALL


def judges_slice(gate: Gate, slice_feature: str, n: int, min_slice_size: int) -> bool:
    """Whether `gate` judges a slice: overall always, another slice only per_slice and with enough rows."""
    return slice_feature == OVERALL or (gate.per_slice and n >= min_slice_size)


def gain_bound(gate: Gate, ci_low: float, ci_high: float, low_se: float, high_se: float) -> tuple[float, float, str]:
    """(bound, its Monte Carlo s.e., "lower" or "upper"): the end of the gain's interval the gate judges.

    `ci_low`, `ci_high` bound challenger - champion; their s.e. are `low_se`, `high_se` (NaN: unknown).
    """
    if not (math.isfinite(ci_low) and math.isfinite(ci_high)):
        return math.nan, math.nan, "lower" if gate.test == "non_inferiority" else "upper"
    sign = -1.0 if gate.metric in LOWER_IS_BETTER else 1.0
    ends = sorted([(sign * ci_low, low_se), (sign * ci_high, high_se)])
    if gate.test == "non_inferiority":
        return ends[0][0], ends[0][1], "lower"
    return ends[1][0], ends[1][1], "upper"


def inconclusive(bound: float, limit: float, se: float, z: float) -> bool:
    """Whether `limit` lies within `z` Monte Carlo standard errors of `bound` (False when either is unknown)."""
    return math.isfinite(bound) and math.isfinite(se) and abs(bound - limit) <= z * se
