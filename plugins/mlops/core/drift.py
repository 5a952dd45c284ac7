"""Reference profiles and distribution-shift statistics, on effect sizes, never p-values.

A profile summarises a frame's features compactly, so a reference can travel with a model version
as a small JSON artifact:

- numeric: decile bins whose edges are data values, with the share of rows in each bin and missing;
  the distinct present values with their counts (so KS and Wasserstein are exact), or beyond
  `MAX_SUPPORT` distinct values that many evenly spaced order statistics (`exact: false`);
- categorical: the share of each category (missing values as `__missing__`).

`compare` measures how far a frame has moved from a profile, per feature:

- numeric: PSI on the reference's bins, the two-sample KS statistic, and the Wasserstein-1 distance
  divided by the standard deviation of the equal-weight mixture of both distributions (in [0, 2]);
- categorical: PSI and Jensen-Shannon distance (base 2) over the categories the reference knows,
  and, apart from them, the share of rows whose category the reference never saw (`unseen_share`).

`null_distribution` gives each statistic's mean and upper quantile between two samples drawn from
the reference with the sizes of the comparison: what sampling alone produces at that n.
Definitions, sample-size behaviour and sources: docs/statistics.md.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pandas as pd

MISSING = "__missing__"
OTHER = "__other__"
EPS = 1e-4  # floor of an empty bin's share in PSI, before renormalising
MAX_SUPPORT = 5000  # distinct values kept exactly per numeric feature
REL_SCALE_FLOOR = 1e-9  # the Wasserstein scale is at least this times the values' magnitude


def profile(df: pd.DataFrame, categorical: list[str], numeric: list[str], bins: int = 10) -> dict[str, Any]:
    """Bins, distinct values and moments of each numeric feature; shares of each categorical one."""
    out: dict[str, Any] = {"rows": len(df), "numeric": {}, "categorical": {}}
    for col in numeric:
        values = df[col].to_numpy(dtype="float64", na_value=np.nan)
        present = np.sort(values[~np.isnan(values)])
        edges = (
            np.unique(np.quantile(present, np.linspace(0, 1, bins + 1)[1:-1], method="inverted_cdf"))
            if len(present)
            else np.array([])
        )
        support, counts = np.unique(present, return_counts=True)
        exact = len(support) <= MAX_SUPPORT
        if not exact:  # evenly spaced order statistics, each standing for an equal share of the rows
            positions = ((np.arange(MAX_SUPPORT) + 0.5) * len(present) / MAX_SUPPORT).astype("int64")
            support, counts = np.unique(present[positions], return_counts=True)
        out["numeric"][col] = {
            "edges": edges.tolist(),
            "fractions": _numeric_fractions(values, edges),
            "values": support.tolist(),
            "counts": counts.tolist(),
            "exact": bool(exact),
            "present": len(present),
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


def _category_counts(values: pd.Series) -> dict[str, int]:
    counts = values.value_counts(dropna=False)
    out: dict[str, int] = {}
    for key, count in counts.items():
        label = MISSING if pd.isna(key) else str(key)
        out[label] = out.get(label, 0) + int(count)
    return out


def _category_fractions(values: pd.Series, known: list[str] | None) -> dict[str, float]:
    """Share of each category (missing values as `__missing__`); with `known`, the rest as `__other__`."""
    counts = _category_counts(values)
    total = max(len(values), 1)
    if known is None:
        return {k: c / total for k, c in counts.items()}
    out = {k: c / total for k, c in counts.items() if k in known}
    other = sum(c for k, c in counts.items() if k not in known)
    if other:
        out[OTHER] = other / total
    return out


def psi(expected, actual) -> float:
    """Population stability index of two distributions over the same bins (NaN if either is empty).

    Sum over bins of (a - e) ln(a / e), after flooring every share at EPS and renormalising each side
    to 1 (so an empty bin costs a finite amount).
    """
    return float(_psi_rows(np.asarray(expected, dtype="float64")[None], np.asarray(actual, dtype="float64")[None])[0])


def _floored(shares: np.ndarray) -> np.ndarray:
    total = shares.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.clip(shares / total, EPS, None)
    return p / p.sum(axis=1, keepdims=True)


def _psi_rows(expected: np.ndarray, actual: np.ndarray) -> np.ndarray:
    e, a = _floored(expected), _floored(actual)
    return np.sum((a - e) * np.log(a / e), axis=1)


def js_distance(expected, actual) -> float:
    """Jensen-Shannon distance (base 2) of two distributions over the same bins, in [0, 1]."""
    return float(_js_rows(np.asarray(expected, dtype="float64")[None], np.asarray(actual, dtype="float64")[None])[0])


def _js_rows(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        p = p / p.sum(axis=1, keepdims=True)
        q = q / q.sum(axis=1, keepdims=True)
        m = (p + q) / 2
        kl_pm = np.where(p > 0, p * np.log2(p / m), 0.0).sum(axis=1)
        kl_qm = np.where(q > 0, q * np.log2(q / m), 0.0).sum(axis=1)
    return np.sqrt(np.maximum((kl_pm + kl_qm) / 2, 0.0))


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
    present = np.sort(values[~np.isnan(values)])
    if len(present) and ref.get("values"):
        support, counts = np.unique(present, return_counts=True)
        ks, wasserstein = _ks_wasserstein(
            np.asarray(ref["values"], dtype="float64"), np.asarray(ref["counts"], dtype="float64"), support, counts
        )
        stats["ks"], stats["wasserstein"] = float(ks), float(wasserstein)
    return stats


def _ks_wasserstein(ref_values, ref_counts, cur_values, cur_counts) -> tuple[float, float]:
    """Exact two-sample KS statistic and scaled Wasserstein-1 distance of two weighted samples."""
    grid = np.union1d(ref_values, cur_values)
    f_ref = _ecdf(ref_values, ref_counts, grid)
    f_cur = _ecdf(cur_values, cur_counts, grid)
    gap = np.abs(f_ref - f_cur)
    distance = float(np.sum(gap[:-1] * np.diff(grid)))
    scale = _mixture_sd(ref_values, ref_counts[None], cur_values, cur_counts[None])[0]
    return float(gap.max()), (distance / scale if distance > 0 else 0.0)


def _ecdf(values: np.ndarray, counts: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """The weighted sample's distribution function at each grid point (right-continuous)."""
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    return cumulative[np.searchsorted(values, grid, side="right")] / cumulative[-1]


def _mixture_sd(a_values, a_counts: np.ndarray, b_values, b_counts: np.ndarray) -> np.ndarray:
    """Standard deviation of the equal-weight mixture of two weighted samples (rows of counts), floored."""

    def moments(values, counts):
        total = counts.sum(axis=1)
        mean = counts @ values / total
        var = np.maximum(counts @ values**2 / total - mean**2, 0.0)
        return mean, var

    ma, va = moments(a_values, a_counts)
    mb, vb = moments(b_values, b_counts)
    sd = np.sqrt((va + vb) / 2 + (ma - mb) ** 2 / 4)
    magnitude = max(1.0, float(np.max(np.abs(a_values))), float(np.max(np.abs(b_values))))
    return np.maximum(sd, REL_SCALE_FLOOR * magnitude)


def _categorical_shift(ref: dict[str, Any], values: pd.Series) -> dict[str, float]:
    known = list(ref["fractions"])
    counts = _category_counts(values)
    seen = np.array([counts.get(k, 0) for k in known], dtype="float64")
    expected = np.array([ref["fractions"][k] for k in known], dtype="float64")
    unseen = sum(c for k, c in counts.items() if k not in ref["fractions"])
    nan = float("nan")
    return {
        "psi": psi(expected, seen) if seen.sum() else nan,
        "js_distance": js_distance(expected, seen) if seen.sum() else nan,
        "unseen_share": unseen / len(values) if len(values) else 0.0,
    }


def null_distribution(
    reference: dict[str, Any],
    df: pd.DataFrame,
    quantile: float,
    resamples: int = 200,
    exclude: list[str] | tuple = (),
) -> dict[str, dict[str, dict[str, float]]]:
    """feature -> metric -> {mean, quantile}: each statistic between two samples drawn from the reference.

    The samples have the sizes of the comparison of `df` with the reference (reference rows, and the
    rows of `df` that the statistic uses: all for PSI of numbers, the present ones for KS and
    Wasserstein, those of known categories for PSI and JS of categories), drawn as multinomials from
    the reference's shares (a parametric bootstrap), `resamples` pairs seeded by the feature's name.
    """
    out: dict[str, dict[str, dict[str, float]]] = {}
    for col, ref in reference["numeric"].items():
        if col in df.columns and col not in exclude:
            values = df[col].to_numpy(dtype="float64", na_value=np.nan)
            out[col] = _numeric_null(ref, reference["rows"], values, quantile, resamples, _rng(col))
    for col, ref in reference["categorical"].items():
        if col in df.columns and col not in exclude:
            known = int(df[col].fillna(MISSING).astype("str").isin(list(ref["fractions"])).sum())
            fractions = np.array(list(ref["fractions"].values()), dtype="float64")
            out[col] = _categorical_null(fractions, reference["rows"], known, quantile, resamples, _rng(col))
    return out


def _rng(feature: str) -> np.random.Generator:
    return np.random.default_rng(zlib.crc32(feature.encode()))


def _summary(values: np.ndarray, quantile: float) -> dict[str, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"mean": float("nan"), "quantile": float("nan")}
    return {"mean": float(finite.mean()), "quantile": float(np.quantile(finite, quantile))}


def _draw(rng: np.random.Generator, n: int, shares: np.ndarray, resamples: int) -> np.ndarray:
    return rng.multinomial(n, shares / shares.sum(), size=resamples).astype("float64")


def _numeric_null(ref, reference_rows: int, values: np.ndarray, quantile: float, resamples: int, rng):
    fractions = np.asarray(ref["fractions"], dtype="float64")
    out = {}
    if len(values) and reference_rows:
        a, b = _draw(rng, reference_rows, fractions, resamples), _draw(rng, len(values), fractions, resamples)
        out["psi"] = _summary(_psi_rows(a, b), quantile)
    present = int((~np.isnan(values)).sum())
    if present and ref.get("values") and ref["present"]:
        support = np.asarray(ref["values"], dtype="float64")
        shares = np.asarray(ref["counts"], dtype="float64")
        a, b = _draw(rng, ref["present"], shares, resamples), _draw(rng, present, shares, resamples)
        gap = np.abs(np.cumsum(a, axis=1) / ref["present"] - np.cumsum(b, axis=1) / present)
        distance = gap[:, :-1] @ np.diff(support)
        scale = _mixture_sd(support, a, support, b)
        out["ks"] = _summary(gap.max(axis=1), quantile)
        out["wasserstein"] = _summary(np.where(distance > 0, distance / scale, 0.0), quantile)
    return out


def _categorical_null(fractions: np.ndarray, reference_rows: int, known: int, quantile: float, resamples: int, rng):
    if not known or not reference_rows:
        return {}
    a, b = _draw(rng, reference_rows, fractions, resamples), _draw(rng, known, fractions, resamples)
    return {"psi": _summary(_psi_rows(a, b), quantile), "js_distance": _summary(_js_rows(a, b), quantile)}


def feature_psi(reference: dict[str, Any], df: pd.DataFrame) -> dict[str, float]:
    """PSI of every profiled feature present in `df` against the reference profile."""
    return {feature: stats["psi"] for feature, stats in compare(reference, df).items()}
