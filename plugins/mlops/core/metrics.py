"""Binary-classification metrics: point values (scikit-learn's) and a streamed, paired bootstrap.

Point values are scikit-learn's on a slice's rows, with one definition for every undefined case
(`point_metrics`); the stages compute them from counts per distinct score (`counted_point_metrics`). A
bootstrap resample draws n rows with replacement, and every metric of a resample is its point definition
applied to the drawn rows (`Resampled.metrics`): F1 with no true positive is 0 in both, never dropped;
what is undefined is undefined in both, and counted.

Each model's scores are sorted once per slice: rows fall into cells (distinct score, label) in score
order, and a resample is summarised by its counts per cell, from which every metric follows without
a sort (ROC AUC by the Mann-Whitney sum, average precision by cumulative sums). Resamples are drawn
in chunks of at most `CHUNK_DRAWS` rows, so memory does not grow with the number of resamples. The
draws are those of `numpy.random.default_rng(seed).integers(0, n, size=(B, n))` row by row, so a
slice's resamples are reproducible from its seed, and the first B of a longer stream are the B of a
shorter one.

Definitions, sample-size behaviour and sources of every statistic: docs/statistics.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

ALL_METRICS = (
    "roc_auc",
    "pr_auc",
    "log_loss",
    "brier",
    "ece",
    "prevalence",
    "precision",
    "recall",
    "f1",
    "predicted_positive_rate",
)
THRESHOLD_METRICS = ("precision", "recall", "f1", "predicted_positive_rate")
OVERALL = "overall"  # the slice name of all rows together


def slice_scope(feature: str, value: str) -> str:
    """A slice as reports, gates and alerts name it: `overall`, or `<feature>=<value>`."""
    return OVERALL if feature == OVERALL else f"{feature}={value}"


EPS = np.finfo(np.float64).eps  # scikit-learn's clipping in log_loss
ECE_BINS = 10
CHUNK_DRAWS = 1 << 18  # drawn rows held at once (resamples x rows), whatever the number of resamples


def expected_calibration_error(y: np.ndarray, score: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE: sum over equal-width probability bins of (rows in bin / n) x |mean label - mean score|.

    Bins are ((b-1)/B, b/B] (the first also holds 0), as scikit-learn's `calibration_curve` with
    `strategy="uniform"` cuts them (Naeini et al. 2015; Guo et al. 2017, eq. 3, on the probability of
    the positive class). `y`: (n,) of 0/1, `score`: (n,) probabilities; NaN when n is 0.
    """
    y = np.asarray(y, dtype="float64")
    score = np.asarray(score, dtype="float64")
    if len(y) == 0:
        return float("nan")
    which = _ece_bins(score, bins)
    gap = np.bincount(which, weights=y - score, minlength=bins)
    return float(np.abs(gap).sum() / len(y))


def _ece_bins(score: np.ndarray, bins: int) -> np.ndarray:
    return np.searchsorted(np.linspace(0.0, 1.0, bins + 1)[1:-1], score, side="left")


def point_metrics(y: np.ndarray, score: np.ndarray, threshold: float | None) -> dict[str, float]:
    """Every metric on one set of rows (scikit-learn's values); NaN where a metric is undefined.

    `y`: (n,) 0/1 labels; `score`: (n,) probabilities of class 1; predicted positive: score >= threshold.
    Undefined: ROC and PR AUC with one class; precision with nothing predicted positive; recall with
    no positive; F1 (= 2TP / (2TP + FP + FN), 0 when TP = 0) with neither; every metric on no rows.
    Without a threshold the threshold metrics are left out.
    """
    y = np.asarray(y, dtype="int64")
    score = np.asarray(score, dtype="float64")
    nan = float("nan")
    if len(y) == 0:
        return dict.fromkeys(ALL_METRICS if threshold is not None else _NO_THRESHOLD, nan)
    two_classes = 0 < y.sum() < len(y)
    out = {
        "roc_auc": float(roc_auc_score(y, score)) if two_classes else nan,
        "pr_auc": float(average_precision_score(y, score)) if two_classes else nan,
        "log_loss": float(log_loss(y, score, labels=[0, 1])),
        "brier": float(brier_score_loss(y, score, labels=[0, 1])),
        "ece": expected_calibration_error(y, score),
        "prevalence": float(y.mean()),
    }
    if threshold is not None:
        predicted = (score >= threshold).astype("int64")
        out["precision"] = float(precision_score(y, predicted, zero_division=np.nan))
        out["recall"] = float(recall_score(y, predicted, zero_division=np.nan))
        out["f1"] = float(f1_score(y, predicted, zero_division=np.nan))
        out["predicted_positive_rate"] = float(predicted.mean())
    return out


_NO_THRESHOLD = tuple(m for m in ALL_METRICS if m not in THRESHOLD_METRICS)


def proportions(y: np.ndarray, score: np.ndarray, threshold: float | None) -> dict[str, tuple[int, int]]:
    """The metrics that are a share of rows, as (successes, trials): prevalence, precision, recall, predicted rate."""
    y = np.asarray(y, dtype="int64")
    out = {"prevalence": (int(y.sum()), len(y))}
    if threshold is not None:
        predicted = np.asarray(score, dtype="float64") >= threshold
        tp = int((predicted & (y == 1)).sum())
        out |= {
            "precision": (tp, int(predicted.sum())),
            "recall": (tp, int(y.sum())),
            "predicted_positive_rate": (int(predicted.sum()), len(y)),
        }
    return out


def wilson_interval(successes: int, trials: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion, two-sided, without continuity correction.

    `successes` of `trials` (ints, 0 <= successes <= trials), `confidence` in (0, 1); returns (low, high)
    in [0, 1], low 0 when there is no success and high 1 when all succeed; (NaN, NaN) without trials.
    Wilson (1927), in the form of Newcombe (1998), method 3: centre (2np + z^2) / 2(n + z^2), half-width
    z sqrt(4npq + z^2) / 2(n + z^2), z the normal quantile of (1 + confidence) / 2. The same operations
    as `scipy.stats.binomtest(...).proportion_ci(method="wilson")` (tests/unit/test_metrics.py
    compares them bit for bit), without the exact binomial test that `binomtest` also runs (its p-value,
    a root search over the binomial pmf: about 0.08 s of each scored day's outcomes).
    """
    if trials == 0:
        return float("nan"), float("nan")
    from scipy.special import ndtri

    n, p = trials, successes / trials
    z = ndtri(0.5 + 0.5 * confidence)
    denom = 2 * (n + z**2)
    center = (2 * n * p + z**2) / denom
    delta = z / denom * np.sqrt(4 * n * p * (1 - p) + z**2)
    low = 0.0 if successes == 0 else center - delta
    high = 1.0 if successes == trials else center + delta
    return float(low), float(high)


class Resampled:
    """One model's scores on one set of rows, prepared once for any number of resamples.

    `y`: (n,) 0/1 labels; `score`: (n,) probabilities; `threshold`: or None for no threshold metrics.
    Rows are grouped by distinct score, highest first: a resample is summarised by how many drawn
    rows of each label fall at each distinct score, and every metric follows from those counts by
    cumulative sums (tied scores form one step of the ROC and PR curves, as in scikit-learn).
    """

    def __init__(self, y: np.ndarray, score: np.ndarray, threshold: float | None) -> None:
        y = np.asarray(y, dtype="int64")
        score = np.asarray(score, dtype="float64")
        self.n = len(y)
        self.threshold = threshold
        distinct, group = np.unique(-score, return_inverse=True)  # group 0: the highest score
        self.scores = -distinct
        self.groups = len(distinct)
        self.cell_of_row = y * self.groups + group.astype("int64")  # label 0 cells first, then label 1
        clipped = np.clip(self.scores, EPS, 1 - EPS)
        self.loss_positive, self.loss_negative = -np.log(clipped), -np.log(1 - clipped)
        self.brier_positive, self.brier_negative = (self.scores - 1) ** 2, self.scores**2
        bins = _ece_bins(self.scores, ECE_BINS)  # decreasing with the group
        self.bin_ends = np.flatnonzero(np.r_[bins[1:] != bins[:-1], True])  # last group of each bin
        self.predicted_groups = int((self.scores >= threshold).sum()) if threshold is not None else 0

    def counts(self, draws: np.ndarray) -> np.ndarray:
        """(k, 2, groups) drawn rows per label and distinct score; `draws`: (k, n) row indices of k resamples."""
        k = draws.shape[0]
        cells = self.cell_of_row[draws]
        cells += (np.arange(k, dtype="int64") * 2 * self.groups)[:, None]
        return np.bincount(cells.ravel(), minlength=k * 2 * self.groups).reshape(k, 2, self.groups)

    def metrics(self, counts: np.ndarray, wanted: frozenset[str] | None = None) -> dict[str, np.ndarray]:
        """Every metric (or the `wanted` ones) on each resample, from its `counts` (see `counts`).

        Returns metric -> (k,) values, NaN where undefined exactly as in `point_metrics`.
        """
        wanted = wanted or frozenset(ALL_METRICS if self.threshold is not None else _NO_THRESHOLD)
        n = self.n
        neg = np.asarray(counts[:, 0], dtype="float64")
        pos = np.asarray(counts[:, 1], dtype="float64")
        positives = pos.sum(axis=1)
        negatives = n - positives
        both = (positives > 0) & (negatives > 0)
        out: dict[str, np.ndarray] = {}
        with np.errstate(divide="ignore", invalid="ignore"):
            if wanted & {"roc_auc", "pr_auc", "ece"}:
                tp = np.cumsum(pos, axis=1)  # positives scored at or above each distinct score
            if wanted & {"roc_auc", "pr_auc"}:
                fp = np.cumsum(neg, axis=1)
                # Mann-Whitney: the share of (positive, negative) pairs ordered right, ties counting one half
                wrong = np.einsum("ij,ij->i", pos, fp) - 0.5 * np.einsum("ij,ij->i", pos, neg)
                out["roc_auc"] = np.where(both, 1 - wrong / (positives * negatives), np.nan)
                # average precision: sum over distinct scores, highest first, of (recall step) x precision
                fp += tp
                precision = np.divide(tp, fp, out=fp, where=fp > 0)
                out["pr_auc"] = np.where(both, np.einsum("ij,ij->i", pos, precision) / positives, np.nan)
            if "ece" in wanted:  # per probability bin (contiguous groups): drawn labels minus drawn scores
                score_sums = np.cumsum((pos + neg) * self.scores, axis=1)[:, self.bin_ends]
                gaps = np.diff(tp[:, self.bin_ends] - score_sums, axis=1, prepend=0.0)
                out["ece"] = np.abs(gaps).sum(axis=1) / n
            if "log_loss" in wanted:
                out["log_loss"] = (pos @ self.loss_positive + neg @ self.loss_negative) / n
            if "brier" in wanted:
                out["brier"] = (pos @ self.brier_positive + neg @ self.brier_negative) / n
            if "prevalence" in wanted:
                out["prevalence"] = positives / n
            if self.threshold is not None and wanted & set(THRESHOLD_METRICS):
                top = self.predicted_groups  # the groups scored at or above the threshold come first
                hits = pos[:, :top].sum(axis=1)
                flagged = hits + neg[:, :top].sum(axis=1)
                out["precision"] = np.where(flagged > 0, hits / flagged, np.nan)
                out["recall"] = np.where(positives > 0, hits / positives, np.nan)
                out["f1"] = np.where(flagged + positives > 0, 2 * hits / (flagged + positives), np.nan)
                out["predicted_positive_rate"] = flagged / n
        return {m: out[m] for m in ALL_METRICS if m in wanted and m in out}


def counted_point_metrics(y: np.ndarray, score: np.ndarray, threshold: float | None) -> dict[str, float]:
    """`point_metrics` from the rows' counts per distinct score (`Resampled` on the rows themselves).

    The same metrics, keys and undefined cases, equal to scikit-learn's within a relative 1e-12
    (`tests/unit/test_metrics.py`), without scikit-learn's input checks on each of its ten calls: about
    0.2 ms instead of 14 ms on a 1,000-row slice. What the stages use (a day's outcomes and a retrain's
    evaluation compute 40-100 slices); `point_metrics` stays the definition and the reference.
    `y`: (n,) 0/1 labels; `score`: (n,) probabilities.
    """
    y = np.asarray(y, dtype="int64")
    if len(y) == 0:
        return point_metrics(y, score, threshold)
    model = Resampled(y, score, threshold)
    counts = model.counts(np.arange(len(y), dtype=np.int64)[None, :])
    return {metric: float(values[0]) for metric, values in model.metrics(counts).items()}


def resample_draws(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """(k, n) row indices of k resamples of n rows drawn with replacement (the next k of `rng`'s stream).

    The same draws as `rng.integers(0, n, size=(k, n))` (int32 draws equal int64 ones below 2**31).
    """
    return rng.integers(0, n, size=(k, n), dtype=np.int32 if n < 2**31 else np.int64)


class PairedBootstrap:
    """Seeded bootstrap of several models on the same rows: every resample is applied to every model.

    `y`: (n,) labels; `models`: name -> (scores (n,), threshold or None). `draw(total)` extends the
    stream to `total` resamples, `CHUNK_DRAWS` drawn rows at a time; `values(model, metric)` gives
    one value per resample drawn so far, in draw order.
    """

    def __init__(self, y: np.ndarray, models: dict[str, tuple[np.ndarray, float | None]], seed: int) -> None:
        self.n = len(y)
        self._rng = np.random.default_rng(seed)
        self._models = {name: Resampled(y, score, threshold) for name, (score, threshold) in models.items()}
        self._chunks: dict[str, dict[str, list[np.ndarray]]] = {m: {} for m in models}
        self.resamples = 0

    def draw(self, total: int, metrics: frozenset[str] | None = None) -> None:
        """Draw resamples until `total` are held; beyond the first draw, only `metrics` are computed (all: None)."""
        per_chunk = max(1, CHUNK_DRAWS // max(self.n, 1))
        wanted = metrics if self.resamples else None
        while self.resamples < total:
            k = min(per_chunk, total - self.resamples)
            draws = resample_draws(self._rng, self.n, k)
            for name, model in self._models.items():
                for metric, values in model.metrics(model.counts(draws), wanted).items():
                    self._chunks[name].setdefault(metric, []).append(values)
            self.resamples += k

    def values(self, model: str, metric: str, first: int | None = None) -> np.ndarray:
        """The metric of `model` on each resample for which it was computed (the first `first` only)."""
        chunks = self._chunks[model][metric]
        if len(chunks) > 1:
            chunks[:] = [np.concatenate(chunks)]
        return chunks[0][:first]


@dataclass(frozen=True)
class BootstrapInterval:
    """A percentile interval and its Monte Carlo standard errors (of each end, from the resamples' spread)."""

    low: float
    high: float
    low_se: float
    high_se: float
    resamples: int
    undefined: int  # resamples on which the statistic was undefined (left out of the interval)


NO_INTERVAL = BootstrapInterval(np.nan, np.nan, np.nan, np.nan, 0, 0)


def percentile_interval(values: np.ndarray, confidence: float, mc_error: bool = True) -> BootstrapInterval:
    """Percentile interval (Efron & Tibshirani 1993, ch. 13) of bootstrap values, NaN resamples left out.

    The Monte Carlo standard error of each end is the Maritz-Jarrett estimate (`quantile_mc_se`): how
    much the end would move with another seed (NaN unless `mc_error`).
    Fewer than 2 defined resamples: no interval.
    """
    values = np.asarray(values, dtype="float64")
    finite = np.sort(values[np.isfinite(values)])
    undefined = len(values) - len(finite)
    if len(finite) < 2:
        return BootstrapInterval(np.nan, np.nan, np.nan, np.nan, len(values), undefined)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(finite, [alpha, 1 - alpha])
    low_se, high_se = quantile_mc_se(finite, (alpha, 1 - alpha)) if mc_error else (np.nan, np.nan)
    return BootstrapInterval(float(low), float(high), low_se, high_se, len(values), undefined)


def quantile_mc_se(values: np.ndarray, probabilities: tuple[float, ...]) -> tuple[float, ...]:
    """Maritz-Jarrett standard error of the sample quantiles of sorted `values` at `probabilities`.

    The m-th order statistic, m = int(p n + 0.5), weighted by Beta(m - 1, n - m) probabilities of each
    order statistic (Maritz & Jarrett 1978; as `scipy.stats.mstats.mjci`, computed on centred values
    and never negative under rounding). NaN when m < 2 or m > n - 1 (too few resamples for that tail).
    """
    from scipy.stats import beta

    x = np.asarray(values, dtype="float64")
    n = len(x)
    x = x - x[n // 2]  # centred: the variance below is a difference of two sums
    grid = np.arange(n + 1) / n
    out = []
    for p in probabilities:
        m = int(p * n + 0.5)
        if m < 2 or m > n - 1:
            out.append(float("nan"))
            continue
        weights = np.diff(beta.cdf(grid, m - 1, n - m))
        first, second = weights @ x, weights @ x**2
        out.append(float(np.sqrt(max(second - first**2, 0.0))))
    return tuple(out)
