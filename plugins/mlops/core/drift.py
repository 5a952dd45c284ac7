"""Reference profiles and distribution-shift statistics, on effect sizes, never p-values.

A profile summarises a frame's features compactly (quantiles, bins, category frequencies), so a
reference can travel with a model version as a small JSON artifact. `compare` measures how far a
new frame has moved from a profile, per feature:

- numeric: PSI on the reference's decile bins, a KS statistic and a Wasserstein distance (in units
  of the reference's standard deviation), both from the quantile functions;
- categorical: PSI, Jensen-Shannon distance (base 2, in [0, 1]) and the share of rows whose
  category the reference never saw.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MISSING = "__missing__"
OTHER = "__other__"
EPS = 1e-4
QUANTILES = np.linspace(0, 1, 101)


def profile(df: pd.DataFrame, categorical: list[str], numeric: list[str], bins: int = 10) -> dict[str, Any]:
    """Binned distribution, quantiles and moments of each numeric feature; frequencies of each categorical one."""
    out: dict[str, Any] = {"rows": len(df), "numeric": {}, "categorical": {}}
    for col in numeric:
        values = df[col].to_numpy(dtype="float64", na_value=np.nan)
        present = values[~np.isnan(values)]
        edges = np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1])) if len(present) else np.array([])
        out["numeric"][col] = {
            "edges": edges.tolist(),
            "fractions": _numeric_fractions(values, edges),
            "quantiles": np.quantile(present, QUANTILES).tolist() if len(present) else [],
            "mean": float(present.mean()) if len(present) else None,
            "std": float(present.std()) if len(present) else None,
            "null_fraction": float(np.isnan(values).mean()) if len(values) else 0.0,
        }
    for col in categorical:
        out["categorical"][col] = {"fractions": _category_fractions(df[col], None)}
    return out


def _numeric_fractions(values: np.ndarray, edges) -> list[float]:
    """Fractions per bin (-inf, e0), [e0, e1), ..., [ek, inf), then missing."""
    missing = np.isnan(values)
    idx = np.searchsorted(np.asarray(edges, dtype="float64"), values[~missing], side="right")
    counts = [*np.bincount(idx, minlength=len(edges) + 1).tolist(), int(missing.sum())]
    total = max(len(values), 1)
    return [c / total for c in counts]


def _category_fractions(values: pd.Series, known: list[str] | None) -> dict[str, float]:
    """Share of each category (missing values as `__missing__`); with `known`, the rest as `__other__`."""
    counts = values.value_counts(dropna=False, normalize=True)
    fractions: dict[str, float] = {}
    for key, share in counts.items():
        label = MISSING if pd.isna(key) else str(key)
        fractions[label] = fractions.get(label, 0.0) + float(share)
    if known is None:
        return fractions
    out = {k: v for k, v in fractions.items() if k in known}
    other = 1.0 - sum(out.values())
    if other > 1e-12:
        out[OTHER] = other
    return out


def psi(expected, actual) -> float:
    """Population stability index of two binned distributions (fractions over the same bins)."""
    e = np.clip(np.asarray(expected, dtype="float64"), EPS, None)
    a = np.clip(np.asarray(actual, dtype="float64"), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def js_distance(expected, actual) -> float:
    """Jensen-Shannon distance (base 2) of two distributions over the same bins, in [0, 1]."""
    p = np.asarray(expected, dtype="float64")
    q = np.asarray(actual, dtype="float64")
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_pm = np.nansum(np.where(p > 0, p * np.log2(p / m), 0.0))
        kl_qm = np.nansum(np.where(q > 0, q * np.log2(q / m), 0.0))
    return float(np.sqrt(max((kl_pm + kl_qm) / 2, 0.0)))


def compare(
    reference: dict[str, Any], df: pd.DataFrame, exclude: list[str] | tuple = ()
) -> dict[str, dict[str, float]]:
    """Shift statistics of every profiled feature present in `df` against the reference profile."""
    out: dict[str, dict[str, float]] = {}
    for col, ref in reference["numeric"].items():
        if col in df.columns and col not in exclude:
            out[col] = _numeric_shift(ref, df[col].to_numpy(dtype="float64", na_value=np.nan))
    for col, ref in reference["categorical"].items():
        if col in df.columns and col not in exclude:
            out[col] = _categorical_shift(ref, df[col])
    return out


def _numeric_shift(ref: dict[str, Any], values: np.ndarray) -> dict[str, float]:
    stats = {"psi": psi(ref["fractions"], _numeric_fractions(values, ref["edges"]))}
    present = values[~np.isnan(values)]
    if len(present) and ref["quantiles"]:
        ref_q = np.asarray(ref["quantiles"])
        sorted_present = np.sort(present)
        cur_q = np.quantile(sorted_present, QUANTILES, method="linear")
        # KS on the union of both quantile grids: right for discrete features too (no quantile ties)
        points = np.union1d(ref_q, cur_q)
        cdf_ref = np.searchsorted(ref_q, points, side="right") / len(ref_q)
        cdf_cur = np.searchsorted(sorted_present, points, side="right") / len(present)
        stats["ks"] = float(np.max(np.abs(cdf_cur - cdf_ref)))
        scale = ref["std"] or 1.0
        stats["wasserstein"] = float(np.mean(np.abs(cur_q - ref_q)) / scale)
    return stats


def _categorical_shift(ref: dict[str, Any], values: pd.Series) -> dict[str, float]:
    known = list(ref["fractions"])
    actual = _category_fractions(values, known)
    bins = [*known, OTHER]
    expected_f = [ref["fractions"].get(b, 0.0) for b in bins]
    actual_f = [actual.get(b, 0.0) for b in bins]
    return {
        "psi": psi(expected_f, actual_f),
        "js_distance": js_distance(expected_f, actual_f),
        "unseen_share": float(actual.get(OTHER, 0.0)),
    }


def feature_psi(reference: dict[str, Any], df: pd.DataFrame) -> dict[str, float]:
    """PSI of every profiled feature present in `df` against the reference profile."""
    return {feature: stats["psi"] for feature, stats in compare(reference, df).items()}
