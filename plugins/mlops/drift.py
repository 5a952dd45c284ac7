"""Reference profiles and the population stability index (PSI), on effect sizes, not p-values."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MISSING = "__missing__"
OTHER = "__other__"
EPS = 1e-4


def profile(df: pd.DataFrame, categorical: list[str], numeric: list[str], bins: int = 10) -> dict[str, Any]:
    """Binned distribution of each feature: quantile edges for numbers, frequencies for categories."""
    out: dict[str, Any] = {"rows": len(df), "numeric": {}, "categorical": {}}
    for col in numeric:
        values = df[col].astype("float64")
        present = values.dropna().to_numpy()
        edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else []
        out["numeric"][col] = {"edges": [float(e) for e in edges], "fractions": _numeric_fractions(values, edges)}
    for col in categorical:
        out["categorical"][col] = {"fractions": _category_fractions(df[col], None)}
    return out


def _numeric_fractions(values: pd.Series, edges) -> list[float]:
    """Fractions per bin (-inf, e0), [e0, e1), ..., [ek, inf), then missing."""
    arr = values.to_numpy(dtype="float64", na_value=np.nan)
    missing = np.isnan(arr)
    idx = np.searchsorted(np.asarray(edges, dtype="float64"), arr[~missing], side="right")
    counts = [*np.bincount(idx, minlength=len(edges) + 1).tolist(), int(missing.sum())]
    total = max(len(arr), 1)
    return [c / total for c in counts]


def _category_fractions(values: pd.Series, known: list[str] | None) -> dict[str, float]:
    labels = values.astype("object").where(values.notna(), MISSING).astype("str")
    if known is not None:
        labels = labels.where(labels.isin(known), OTHER)
    freq = labels.value_counts(normalize=True)
    return {str(k): float(v) for k, v in freq.items()}


def psi(expected: list[float] | np.ndarray, actual: list[float] | np.ndarray) -> float:
    """Population stability index of two binned distributions (fractions over the same bins)."""
    e = np.clip(np.asarray(expected, dtype="float64"), EPS, None)
    a = np.clip(np.asarray(actual, dtype="float64"), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def feature_psi(reference: dict[str, Any], df: pd.DataFrame) -> dict[str, float]:
    """PSI of every profiled feature present in `df` against the reference profile."""
    out: dict[str, float] = {}
    for col, ref in reference["numeric"].items():
        if col in df.columns:
            out[col] = psi(ref["fractions"], _numeric_fractions(df[col].astype("float64"), ref["edges"]))
    for col, ref in reference["categorical"].items():
        if col in df.columns:
            known = list(ref["fractions"])
            actual = _category_fractions(df[col], known)
            bins = [*known, OTHER] if OTHER not in known else known
            out[col] = psi([ref["fractions"].get(b, 0.0) for b in bins], [actual.get(b, 0.0) for b in bins])
    return out
