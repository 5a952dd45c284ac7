"""Feature-contribution audit of a trained model: permutation importance, leave-one-feature-out, correlations.

Pure computations (no Airflow, no MLflow, no files); the feature audit stage (`stages/feature_audit.py`)
gathers the rows and logs the result.

1. Permutation importance (Breiman 2001, "Random forests", section 10; scikit-learn's
   `sklearn.inspection.permutation_importance`): the drop of ROC AUC on the evaluation rows when one
   feature's column is shuffled, `repeats` times per feature. Its interval is the Student t interval of
   the mean of the repeats: mean +- t(1 - alpha/2, repeats - 1) x sd / sqrt(repeats), sd with ddof 1.
   It covers the shuffling noise only (the model and the evaluation rows are fixed).
2. Leave-one-feature-out (LOFO; Lei et al. 2018, "Distribution-free predictive inference for
   regression", section 6.2): for each feature whose importance interval includes zero, the same model
   config is fitted without that feature on the same training rows as the model "with" every feature
   (a seeded sample of them, stratified by label, when there are more than `lofo_max_train_rows`: both
   sides of every delta are refitted on that sample) and scored on the same evaluation rows; the delta
   (without - with) of ROC AUC, PR AUC, log loss and Brier gets a paired percentile bootstrap interval
   (`core.metrics.PairedBootstrap`: each resample of the evaluation rows is applied to both models). A
   feature is flagged when no delta's interval excludes zero: removing it changes no metric beyond the
   evaluation's sampling noise. On a sample, it measures the contribution at that training size: it can
   miss one that only more rows reveal, never invent one.
3. Correlated pairs: |Pearson| or |Spearman| correlation of two numeric features on the training rows
   (pairwise complete rows; LOFO's sample of them) at or above a threshold.
4. The budget (`audit`): all of it within `budget_factor` x T, T being one training fit on every row.
   Permutation importance takes at most `permutation_share` of it (`plan_permutation` sizes its sample
   from a probe of the prediction cost), LOFO what is left; each planned step keeps a headroom for the
   timing noise of a shared machine. Every time here is CPU seconds of this process (`cpu_seconds`, all
   its threads), T included: the other tasks on the machine's cores take wall time from the audit, not
   CPU time, so the audit runs beside another task and still does the work it does alone.

Definitions and choices: docs/statistics.md, section 9.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.config import Audit
from mlops.core.metrics import PairedBootstrap, counted_point_metrics, percentile_interval

LOFO_METRICS = ("roc_auc", "pr_auc", "log_loss", "brier")
IMPORTANCE_COLUMNS = ["feature", "importance", "sd", "ci_low", "ci_high", "repeats", "includes_zero"]
LOFO_COLUMNS = ["feature", "metric", "with_feature", "without_feature", "delta", "ci_low", "ci_high", "n", "seconds"]
PAIR_COLUMNS = ["feature_a", "feature_b", "pearson", "spearman", "n"]
# a feature's verdict: contributes (importance interval above zero), lofo_contributes (some delta beyond
# noise), flagged (no delta beyond noise), not_tested (its importance includes zero, LOFO beyond budget)
CONTRIBUTES, LOFO_CONTRIBUTES, FLAGGED, NOT_TESTED = "contributes", "lofo_contributes", "flagged", "not_tested"
VERDICTS = (CONTRIBUTES, LOFO_CONTRIBUTES, FLAGGED, NOT_TESTED)
CHUNK_ROWS = 250_000  # rows of shuffled copies scored per prediction call (permutation_drops)
# Timing headroom: a planned step must fit with its estimate times this. On the shared 2-core machine
# the fourth year replay ran permutation importance at a median 1.2 x (up to 2.05 x) the cost probed in
# 0.1 s just before, and LOFO refits at up to 1.57 x the longest refit before them (median 0.92 x); with
# these headrooms no audit of the 67 passed its budget (docs/benchmarks.md, fourth year replay).
PERMUTATION_HEADROOM = 1.5
LOFO_HEADROOM = 1.25


def cpu_seconds() -> float:
    """The audit's clock: CPU seconds used by this process so far, all its threads (`time.process_time`).

    A wall clock would shrink the audit whenever another task shares the cores (the audit beside
    recalibrate and evaluate in the retrain DAG tested a median of 0 LOFO candidates instead of 4,
    docs/benchmarks.md, eighth year replay); CPU seconds count the work done, whatever the load.
    """
    return time.process_time()


def permutation_importances(
    estimator, X: pd.DataFrame, y: np.ndarray, repeats: int, seed: int, confidence: float = 0.95
) -> tuple[pd.DataFrame, np.ndarray]:
    """Permutation importance (ROC AUC drop) per feature with a t interval over the repeats.

    `estimator`: fitted, with `predict_proba` on `X` (n rows, one column per feature, the model's input
    frame); `y`: (n,) 0/1 labels with both classes (else scikit-learn raises ValueError); `repeats` >= 2.
    Returns (table with IMPORTANCE_COLUMNS, one row per column of X in order; raw (features, repeats)
    importances, equal to what `sklearn.inspection.permutation_importance(estimator, X, y,
    scoring="roc_auc", n_repeats=repeats, random_state=seed)` returns: `permutation_drops`). Units: ROC AUC
    points (0..1 scale), positive = the feature helps.
    """
    from scipy.stats import t

    if repeats < 2:
        raise ValueError(f"permutation importance needs at least 2 repeats for an interval, got {repeats}")
    raw = permutation_drops(estimator, X, y, repeats, seed)
    mean = raw.mean(axis=1)
    sd = raw.std(axis=1, ddof=1)
    half = t.ppf(1 - (1 - confidence) / 2, repeats - 1) * sd / np.sqrt(repeats)
    table = pd.DataFrame(
        {
            "feature": list(X.columns),
            "importance": mean,
            "sd": sd,
            "ci_low": mean - half,
            "ci_high": mean + half,
            "repeats": repeats,
        }
    )
    table["includes_zero"] = table.ci_low <= 0  # includes zero, or lies below it (shuffling helped)
    return table, raw


def _ranked_scores(estimator, X: pd.DataFrame) -> np.ndarray:
    """What scikit-learn's `roc_auc` scorer ranks: `decision_function` when the estimator has one, else
    the probability of the positive class (`predict_proba[:, 1]`), as float64 of shape (len(X),)."""
    if hasattr(estimator, "decision_function"):
        return np.asarray(estimator.decision_function(X), dtype="float64")
    return np.asarray(estimator.predict_proba(X)[:, 1], dtype="float64")


def permutation_drops(
    estimator, X: pd.DataFrame, y: np.ndarray, repeats: int, seed: int, chunk_rows: int = CHUNK_ROWS
) -> np.ndarray:
    """(features, repeats) drops of ROC AUC when each column of X is shuffled: the importances of
    `sklearn.inspection.permutation_importance(..., scoring="roc_auc", n_repeats=repeats,
    random_state=seed)`, with a few large prediction calls instead of one per shuffle.

    The shuffles are scikit-learn's (1.x): a seed drawn from `RandomState(seed)`, then for each feature
    a fresh `RandomState(that seed)` that shuffles an index in place `repeats` times, each shuffle
    applied to the column as shuffled so far. The shuffled copies of X, of every feature, are stacked
    into frames of at most about `chunk_rows` rows (whole features: at least one feature's `repeats`
    copies) and each frame is scored in one call (rows are predicted independently, so the scores are
    those of separate calls). scikit-learn's call per shuffle costs about 30-50 ms of fixed overhead on
    a calibrated pipeline, which made permutation importance alone exceed the audit's budget
    (docs/benchmarks.md, the year replays). Memory: one frame of at most max(`chunk_rows`, `repeats` x
    len(X)) rows at a time. Raises ValueError when `y` has one class.
    """
    y = np.asarray(y)
    baseline = roc_auc_rows(y, _ranked_scores(estimator, X)[None, :])[0]
    n, block = len(X), repeats * len(X)
    positions = _shuffled_positions(n, repeats, seed, X.shape[1])
    per_chunk = max(chunk_rows // max(block, 1), 1)
    drops = np.empty((X.shape[1], repeats), dtype="float64")
    for first in range(0, X.shape[1], per_chunk):
        features = range(first, min(first + per_chunk, X.shape[1]))
        unshuffled = np.tile(np.arange(n), repeats * len(features))
        columns = {}
        for j, name in enumerate(X.columns):
            take = unshuffled
            if j in features:
                at = (j - first) * block
                take = unshuffled.copy()
                take[at : at + block] = positions[j].ravel()
            columns[name] = X[name].iloc[take].array
        scores = _ranked_scores(estimator, pd.DataFrame(columns)).reshape(len(features), repeats, n)
        drops[list(features)] = baseline - roc_auc_rows(y, scores.reshape(-1, n)).reshape(len(features), repeats)
    return drops


def roc_auc_rows(y: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """ROC AUC of each row of `scores` ((k, n) floats) against the (n,) 0/1 labels `y`: (k,) values.

    The Mann-Whitney form (Hanley and McNeil 1982): (sum of the positives' ranks - P(P + 1)/2) / (P x N),
    ties ranked by their average (scipy `rankdata`), which equals scikit-learn's `roc_auc_score` (the
    trapezoidal area, ties as a diagonal segment). Raises ValueError when `y` has one class.
    """
    from scipy.stats import rankdata

    positive = np.asarray(y) == 1
    p = int(positive.sum())
    n = positive.size - p
    if p == 0 or n == 0:
        raise ValueError("Only one class present in y_true. ROC AUC score is not defined in that case.")
    ranks = rankdata(scores, axis=1)
    return (ranks[:, positive].sum(axis=1) - p * (p + 1) / 2) / (p * n)


def _shuffled_positions(n: int, repeats: int, seed: int, features: int) -> np.ndarray:
    """(features, repeats, n) row positions of each shuffled column, drawn as scikit-learn draws them."""
    feature_seed = np.random.RandomState(seed).randint(np.iinfo(np.int32).max + 1)
    out = np.empty((features, repeats, n), dtype="int64")
    for j in range(features):
        shuffles, order, current = np.random.RandomState(feature_seed), np.arange(n), np.arange(n)
        for r in range(repeats):
            shuffles.shuffle(order)
            current = current[order]
            out[j, r] = current
    return out


@dataclass(frozen=True)
class PermutationPlan:
    """How many evaluation rows permutation importance shuffles to stay within its share of the budget.

    Measured on the largest sample allowed (`probe_rows`): one prediction call on those rows and one on
    `repeats` copies of them give the cost per call (`call_seconds`) and per row (`row_seconds`); one
    ROC AUC of those rows gives `auc_seconds`. `rows` is the sample size planned; `reason` says why it
    is smaller than `probe_rows` (empty when it is not). Times in CPU seconds (`cpu_seconds`).
    """

    rows: int
    probe_rows: int
    call_seconds: float
    row_seconds: float
    auc_seconds: float
    limit_seconds: float
    probe_seconds: float
    reason: str = ""


def permutation_cost(
    rows: int, features: int, repeats: int, call: float, row: float, auc: float, chunk_rows: int = CHUNK_ROWS
) -> float:
    """Seconds `permutation_drops` takes on `rows` rows by the cost model of `plan_permutation`:
    calls x `call` + (features x repeats + 1) x rows x `row` + features x repeats x `auc`, with
    calls = 1 + ceil(features x repeats x rows / chunk_rows) (the baseline, then the stacked copies)."""
    shuffled = features * repeats
    calls = 1 + -(-shuffled * rows // chunk_rows)
    return calls * call + (shuffled + 1) * rows * row + shuffled * auc


def permutation_rows_within(
    largest: int,
    left_seconds: float,
    features: int,
    repeats: int,
    call: float,
    row: float,
    auc: float,
    min_rows: int,
    chunk_rows: int = CHUNK_ROWS,
) -> int:
    """The most rows, at most `largest` and at least min(`min_rows`, `largest`), whose `permutation_cost`
    stays within `left_seconds`; the floor when none does."""
    floor = min(min_rows, largest)
    if permutation_cost(largest, features, repeats, call, row, auc, chunk_rows) <= left_seconds:
        return largest
    low, high = floor, largest  # the cost grows with the rows: bisect for the last that fits
    while low < high:
        middle = (low + high + 1) // 2
        if permutation_cost(middle, features, repeats, call, row, auc, chunk_rows) <= left_seconds:
            low = middle
        else:
            high = middle - 1
    return low


def plan_permutation(
    estimator,
    X: pd.DataFrame,
    y: np.ndarray,
    repeats: int,
    limit_seconds: float,
    min_rows: int,
    chunk_rows: int = CHUNK_ROWS,
) -> PermutationPlan:
    """The sample size of `permutation_drops` that fits in `limit_seconds`, probed on `X` (its rows the most).

    `X`, `y`: the largest sample allowed (n rows, both classes); `limit_seconds` (>= 0): the time
    permutation importance may take, this probe included; `min_rows` (>= 1): the floor, kept even
    when it does not fit (fewer rows would make the importance intervals meaningless: the audit's
    `time_ratio` then shows the overrun). Cost model: `permutation_cost`; its call and row costs are
    solved from the probe's two prediction calls (n rows, then `repeats` x n rows), the row cost kept
    at least a quarter of the larger call's average per row so timer noise cannot make it vanish. The
    rows planned must fit in (`limit_seconds` - the probe's time) / PERMUTATION_HEADROOM.
    Raises ValueError when `y` has one class.
    """
    n, features = len(X), X.shape[1]
    began = cpu_seconds()
    scores = _ranked_scores(estimator, X)
    one = cpu_seconds() - began
    roc_auc_rows(y, scores[None, :])
    auc = cpu_seconds() - began - one
    mark = cpu_seconds()
    _ranked_scores(estimator, pd.concat([X] * repeats, ignore_index=True))
    many = cpu_seconds() - mark
    row = max((many - one) / max((repeats - 1) * n, 1), many / (repeats * n) / 4)
    call = max(one - n * row, 0.0)
    probe = cpu_seconds() - began
    left = (limit_seconds - probe) / PERMUTATION_HEADROOM
    rows = permutation_rows_within(n, left, features, repeats, call, row, auc, min_rows, chunk_rows)
    reason = ""
    if rows < n:
        needed = permutation_cost(n, features, repeats, call, row, auc, chunk_rows)
        reason = (
            f"{n} rows would take about {needed:.2f} s, more than the {max(left, 0):.2f} s planned: what is left "
            f"of the {limit_seconds:.2f} s permutation importance may take, over a headroom of "
            f"{PERMUTATION_HEADROOM:g} for timing noise"
        )
        if permutation_cost(rows, features, repeats, call, row, auc, chunk_rows) > left:
            reason += f"; kept at audit.permutation_min_rows={min_rows}, beyond it"
    return PermutationPlan(rows, n, call, row, auc, limit_seconds, probe, reason)


def correlated_pairs(df: pd.DataFrame, numeric: list[str], threshold: float) -> pd.DataFrame:
    """Pairs of numeric features whose |Pearson| or |Spearman| correlation is at least `threshold`.

    `df`: the training rows; `numeric`: its numeric feature columns. Each pair uses the rows where both
    are present (pandas' pairwise-complete `corr`); a constant column has NaN correlations and pairs
    with nothing. Returns PAIR_COLUMNS rows, the strongest first (n: rows where both are present).
    """
    cols = [c for c in numeric if c in df.columns]
    frame = df[cols].astype("float64")
    pearson = frame.corr(method="pearson")
    spearman = frame.corr(method="spearman")
    present = frame.notna().astype("float64")
    both = present.T @ present
    rows = []
    for i, a in enumerate(cols):
        for b in cols[i + 1 :]:
            p, s = float(pearson.at[a, b]), float(spearman.at[a, b])
            if max(abs(np.nan_to_num(p)), abs(np.nan_to_num(s))) >= threshold:
                rows.append((a, b, p, s, int(both.at[a, b])))
    out = pd.DataFrame(rows, columns=PAIR_COLUMNS)
    strength = np.maximum(out.pearson.abs().fillna(0), out.spearman.abs().fillna(0))
    return out.iloc[np.argsort(-strength.to_numpy(), kind="stable")].reset_index(drop=True)


def sample_rows(y: np.ndarray, max_rows: int | None, seed: int) -> np.ndarray:
    """Positions of a seeded sample of at most `max_rows` of the rows labelled `y`, stratified by label, in order.

    All positions when `max_rows` is None or at least len(y). Else exactly `max_rows`, drawn without
    replacement within each label: each label keeps its share of the rows (largest remainders), and at
    least one row while it has any, so a sample of a two-class set has both classes.
    """
    n = len(y)
    if max_rows is None or n <= max_rows:
        return np.arange(n)
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    share = max_rows * counts / n
    take = np.floor(share).astype("int64")
    take[np.argsort(-(share - take), kind="stable")[: max_rows - int(take.sum())]] += 1
    take = np.minimum(np.maximum(take, 1), counts)
    take[np.argmax(take)] -= int(take.sum()) - max_rows  # the ones given to rare labels, taken from the largest
    rng = np.random.default_rng(seed)
    drawn = [rng.choice(np.flatnonzero(inverse == k), take[k], replace=False) for k in range(len(classes))]
    return np.sort(np.concatenate(drawn))


def refitter(
    build: Callable[[list[str]], Any], X_train: pd.DataFrame, y_train: np.ndarray, X_eval: pd.DataFrame
) -> Callable[[list[str]], np.ndarray]:
    """The `fit_score` of `lofo`: every model it fits sees the same training rows and the same evaluation rows.

    `build(columns)`: an unfitted estimator (with `predict_proba`) taking the frame of those columns;
    `X_train`, `y_train`: the rows every fit uses; `X_eval`: the rows every fit is scored on.
    `fit_score(columns)` returns the (len(X_eval),) positive-class probabilities of that fit.
    """

    def fit_score(columns: list[str]) -> np.ndarray:
        estimator = build(columns)
        estimator.fit(X_train[columns], y_train)
        return estimator.predict_proba(X_eval[columns])[:, 1]

    return fit_score


@dataclass
class LofoResult:
    """LOFO deltas (LOFO_COLUMNS rows), what was skipped and why, and the time spent."""

    deltas: pd.DataFrame
    tested: list[str]
    skipped: dict[str, str] = field(default_factory=dict)  # feature -> reason (budget, max_lofo_features)
    seconds: float = 0.0  # all of it, the fit of the model with every feature included
    with_seconds: float = 0.0  # the fit of the model with every feature (0: given as `full`, or not fitted)


def lofo(
    fit_score: Callable[[list[str]], np.ndarray],
    features: list[str],
    candidates: list[str],
    y_eval: np.ndarray,
    full: np.ndarray | None,
    *,
    max_features: int,
    budget_seconds: float,
    fit_seconds: float,
    bootstrap_samples: int,
    confidence: float,
    seed: int,
) -> LofoResult:
    """Leave-one-feature-out: refit without each candidate and compare with the full model, paired.

    `fit_score(columns)`: fits the configured model on the training rows using only `columns` and
    returns its (n,) scores (probabilities) on the evaluation rows; `features`: every feature;
    `candidates`: the features to leave out, in order (at most `max_features` are tried); `y_eval`:
    (n,) 0/1 labels; `full`: (n,) scores of `fit_score(features)` (the model with every feature), or
    None to fit it here, before the first refit (its time counts); `fit_seconds`: the estimate of one
    fit before any is timed here. A refit starts only while the time spent here plus the longest refit
    so far and the longest bootstrap of one model (measured on the model with every feature, resampled
    once for every candidate), times LOFO_HEADROOM, stay within `budget_seconds` (CPU seconds, >= 0); before
    the model with every feature exists, twice the fit estimate (times LOFO_HEADROOM) must fit: it and
    one refit. The candidates left are in `skipped` with the reason.
    Deltas are without - with; intervals: paired percentile bootstrap (`bootstrap_samples`
    resamples, 0: none) of the evaluation rows, seeded with `seed`.
    """
    start = cpu_seconds()
    one_fit, with_seconds, boot_seconds = fit_seconds, 0.0, 0.0
    full_points = counted_point_metrics(y_eval, full, None) if full is not None else None
    with_values: dict[str, np.ndarray] | None = None
    rows, tested, skipped = [], [], {}
    for number, feature in enumerate(candidates):
        if number >= max_features:
            skipped[feature] = f"beyond audit.max_lofo_features={max_features}"
            continue
        spent = cpu_seconds() - start
        if full is None:
            if spent + 2 * one_fit * LOFO_HEADROOM > budget_seconds:
                skipped[feature] = _beyond_budget(
                    spent, 2 * one_fit * LOFO_HEADROOM, "the model with every feature and a refit", budget_seconds
                )
                continue
            began = cpu_seconds()
            full = fit_score(features)
            with_seconds = one_fit = cpu_seconds() - began
            full_points = counted_point_metrics(y_eval, full, None)
        if bootstrap_samples and with_values is None:  # once: every candidate is paired with these resamples
            began = cpu_seconds()
            with_values = _resampled(y_eval, full, bootstrap_samples, seed)
            boot_seconds = cpu_seconds() - began
        spent = cpu_seconds() - start
        step = (one_fit + boot_seconds) * LOFO_HEADROOM
        if spent + step > budget_seconds:
            skipped[feature] = _beyond_budget(spent, step, "a refit and its bootstrap", budget_seconds)
            continue
        began = cpu_seconds()
        without = fit_score([f for f in features if f != feature])
        seconds = cpu_seconds() - began
        one_fit = max(one_fit, seconds)
        points = counted_point_metrics(y_eval, without, None)
        if with_values is not None:
            began = cpu_seconds()
            without_values = _resampled(y_eval, without, bootstrap_samples, seed)
            boot_seconds = max(boot_seconds, cpu_seconds() - began)
        for metric in LOFO_METRICS:
            low = high = float("nan")
            if with_values is not None:
                ci = percentile_interval(without_values[metric] - with_values[metric], confidence, mc_error=False)
                low, high = ci.low, ci.high
            delta = points[metric] - full_points[metric]
            rows.append((feature, metric, full_points[metric], points[metric], delta, low, high, len(y_eval), seconds))
        tested.append(feature)
    deltas = pd.DataFrame(rows, columns=LOFO_COLUMNS)
    return LofoResult(deltas, tested, skipped, cpu_seconds() - start, with_seconds)


def _resampled(y: np.ndarray, scores: np.ndarray, samples: int, seed: int) -> dict[str, np.ndarray]:
    """LOFO_METRICS of `scores` on each of `samples` bootstrap resamples of the rows, drawn from `seed`.

    The draws depend on the seed, the number of rows and `samples` only (`core.metrics.PairedBootstrap`),
    so two models resampled with the same seed are paired: resample i holds the same rows for both.
    """
    boot = PairedBootstrap(y, {"model": (scores, None)}, seed)
    boot.draw(samples, frozenset(LOFO_METRICS))
    return {metric: boot.values("model", metric) for metric in LOFO_METRICS}


def _beyond_budget(spent: float, needed: float, what: str, budget_seconds: float) -> str:
    return (
        f"beyond the time budget ({spent:.1f} s spent on LOFO + {needed:.1f} s for {what}, "
        f"headroom {LOFO_HEADROOM:g} included, > {budget_seconds:.1f} s left for LOFO)"
    )


@dataclass
class AuditResult:
    """What `audit` measured; times in CPU seconds (`cpu_seconds`), `seconds` = permutation + correlations + LOFO."""

    importances: pd.DataFrame  # IMPORTANCE_COLUMNS
    lofo: LofoResult
    pairs: pd.DataFrame  # PAIR_COLUMNS
    permutation_rows: int  # evaluation rows shuffled
    lofo_train_rows: int  # training rows of every LOFO fit, with and without, and of the correlations
    permutation_seconds: float
    correlation_seconds: float
    budget_seconds: float  # budget_factor x the training fit (CPU seconds)
    seconds: float
    permutation_plan: PermutationPlan  # how the permutation sample was sized (its probe's time included)


def audit(
    model,
    build: Callable[[list[str]], Any],
    X_train: pd.DataFrame,
    y_train: np.ndarray,
    X_eval: pd.DataFrame,
    y_eval: np.ndarray,
    numeric: list[str],
    settings: Audit,
    fit_seconds: float,
    reference: np.ndarray | None = None,
) -> AuditResult:
    """The whole audit within `settings.budget_factor` x `fit_seconds`: importances, correlations, then LOFO.

    `model`: the fitted model audited (permutation importance on a `sample_rows` sample of at most
    `settings.permutation_max_rows` evaluation rows, fewer when `plan_permutation` finds that many
    would take more than `settings.permutation_share` of the budget); `build(columns)`: an unfitted
    estimator of the configured kind on those columns (the LOFO fits); `X_train`, `y_train`: every
    training row, one column per feature (both classes); `X_eval`, `y_eval`: the evaluation rows (both
    classes); `numeric`: the numeric features (correlated pairs); `fit_seconds`: T, the CPU seconds of one
    training fit on every training row (> 0; the clock of the whole audit is `cpu_seconds`). The
    correlations, and LOFO's fits of the model with every feature and of each candidate's model without
    it, use the same `sample_rows` sample of at most `settings.lofo_max_train_rows` training rows; LOFO
    gets the budget left after permutation and correlations, its first fit estimated at T x sample rows
    / training rows, then timed.
    `reference`: the evaluation scores of `build(every feature)` fitted on every training row, when the
    caller has them (it measured T so): the model with every feature when the sample is every row.
    """
    a = settings
    budget = a.budget_factor * fit_seconds
    started = cpu_seconds()
    largest = sample_rows(y_eval, a.permutation_max_rows, a.seed)
    plan = plan_permutation(
        model,
        X_eval.iloc[largest],
        y_eval[largest],
        a.repeats,
        a.permutation_share * budget,
        min(a.permutation_min_rows, len(largest)),
    )
    shuffled = largest if plan.rows == len(largest) else sample_rows(y_eval, plan.rows, a.seed)
    importances, _ = permutation_importances(
        model, X_eval.iloc[shuffled], y_eval[shuffled], a.repeats, a.seed, a.confidence
    )
    permutation_seconds = cpu_seconds() - started
    rows = sample_rows(y_train, a.lofo_max_train_rows, a.seed)
    every = len(rows) == len(y_train)
    X_sample = X_train if every else X_train.iloc[rows]
    pairs = correlated_pairs(X_sample, numeric, a.correlation_threshold)
    correlation_seconds = cpu_seconds() - started - permutation_seconds
    fit_score = refitter(build, X_sample, y_train[rows], X_eval)
    candidates = importances[importances.includes_zero].sort_values("importance").feature.tolist()
    result = lofo(
        fit_score,
        list(X_train.columns),
        candidates,
        y_eval,
        reference if every else None,
        max_features=a.max_lofo_features,
        budget_seconds=max(budget - (cpu_seconds() - started), 0.0),
        fit_seconds=fit_seconds * len(rows) / len(y_train),
        bootstrap_samples=a.bootstrap_samples,
        confidence=a.confidence,
        seed=a.seed,
    )
    seconds = cpu_seconds() - started
    return AuditResult(
        importances,
        result,
        pairs,
        len(shuffled),
        len(rows),
        permutation_seconds,
        correlation_seconds,
        budget,
        seconds,
        plan,
    )


def verdicts(importances: pd.DataFrame, lofo_result: LofoResult | None) -> dict[str, str]:
    """Per feature: contributes, lofo_contributes, flagged or not_tested (see the module's constants).

    A LOFO delta is beyond noise when its paired interval excludes zero; without intervals
    (bootstrap_samples 0) no delta is, so every tested feature is flagged.
    """
    out = {}
    deltas = lofo_result.deltas if lofo_result is not None else pd.DataFrame(columns=LOFO_COLUMNS)
    for row in importances.itertuples():
        if not row.includes_zero:
            out[row.feature] = CONTRIBUTES
            continue
        part = deltas[deltas.feature == row.feature]
        if part.empty:
            out[row.feature] = NOT_TESTED
            continue
        beyond = ((part.ci_low > 0) | (part.ci_high < 0)).any()
        out[row.feature] = LOFO_CONTRIBUTES if beyond else FLAGGED
    return out
