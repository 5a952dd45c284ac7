"""Judging the outcomes history: performance and prediction-bias alerts, sustained skew, degradation.

Pure: plain Python and pandas on the tidy outcome rows (`stages.outcomes.OUTCOME_COLUMNS`) and the
shift scores of validation; no Airflow, MLflow or files. Definitions (docs/statistics.md, section 8):

- A *series* is one metric of one kind (`realized`, `estimated`) of one model version on one slice,
  over scored days. A day of a series is *judged* when it has at least `min_n` rows (`n`: labelled
  rows for realized values, scored rows for estimates) and a finite value and interval; otherwise it
  is recorded as not judged and never breaches.
- Floor (`min_value`): breached when the whole interval lies below the floor (ci_high < floor).
- Drop (`max_drop`): breached when value < baseline - max_drop and ci_high < baseline (the interval
  excludes "no drop"); the baseline is the version's evaluation value of that slice and metric; no
  baseline: not judged.
- Bias (`max_abs`): breached when |value| > max_abs and the interval excludes 0 (ci_low > 0 or
  ci_high < 0): significant and large.
- Skew: a day breaches when at least `min_features` features have a skew score above `min_value`.
- Persistence: the window is the last `days` (m) scored days up to and including the judged day (the
  days that have any outcome row; for skew, any shift score); a rule *fires* for a series when it
  breaches on at least `breaches` (k) of them. Days the series is absent from count as not breached.
- Degradation: a fired realized or estimated rule on the whole day (`overall`), or fired skew, whose
  signal is in `retrain.signals`. Rate limit: no trigger when an earlier trigger (another run) was for
  a scored day less than `min_days_between` days before.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from mlops.core.config import BiasRule, Monitoring, PerformanceRule, Persistence, SkewRule
from mlops.core.metrics import OVERALL, slice_scope

BIAS, SKEW = "bias", "skew"
# (model_version, slice_feature, slice_value, metric) -> the version's evaluation value
Baselines = Mapping[tuple[str, str, str, str], float]


@dataclass(frozen=True)
class DayCheck:
    """One day of a series under one rule: its numbers and whether it was judged and breached."""

    day: str
    value: float | None
    ci_low: float | None
    ci_high: float | None
    n: int
    judged: bool
    breach: bool


@dataclass(frozen=True)
class Alert:
    """A rule judged on one series over the persistence window; `fired`: breached on k of the last m days.

    `signal`: realized, estimated, bias or skew. `limit`: the number the value was compared with (the
    floor; baseline - max_drop; max_abs; the skew score limit). `baseline`: the evaluation value
    (drop rules). `days`: the window's checks, oldest first.
    """

    pipeline: str
    rule: str
    signal: str
    model_version: str
    slice_feature: str
    slice_value: str
    metric: str
    limit: float
    baseline: float | None
    days: list[DayCheck]
    breaches: int
    needed: int
    fired: bool

    @property
    def latest(self) -> DayCheck:
        return self.days[-1]

    @property
    def breach_days(self) -> list[str]:
        return [d.day for d in self.days if d.breach]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["breach_days"] = self.breach_days
        return out

    def line(self) -> str:
        """One line for the alert mail: pipeline, version, slice, metric, value, interval, limit, days."""
        last = next((d for d in reversed(self.days) if d.breach), self.latest)
        where = slice_scope(self.slice_feature, self.slice_value)
        version = f"version {self.model_version}" if self.model_version else "all versions"
        interval = f"[{_num(last.ci_low)}, {_num(last.ci_high)}]" if last.ci_low is not None else "(none)"
        return (
            f"{self.pipeline} {version}, slice {where}: {self.signal} {self.metric} {_num(last.value)} "
            f"(interval {interval}, n {last.n}) on {last.day}, limit {self.rule} -> {_num(self.limit)}; "
            f"breached on {self.breaches} of the last {len(self.days)} days ({', '.join(self.breach_days)}), "
            f"needed {self.needed}"
        )


def _num(x: float | None) -> str:
    return "nan" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4g}"


def _finite(*values: Any) -> bool:
    return all(v is not None and isinstance(v, int | float) and math.isfinite(v) for v in values)


def floor_breach(value: float, ci_low: float, ci_high: float, floor: float) -> bool:
    """The whole interval lies below the floor."""
    return ci_high < floor


def drop_breach(value: float, ci_low: float, ci_high: float, baseline: float, max_drop: float) -> bool:
    """Below the baseline by more than max_drop, and the interval excludes no drop (ci_high < baseline)."""
    return value < baseline - max_drop and ci_high < baseline


def bias_breach(value: float, ci_low: float, ci_high: float, max_abs: float) -> bool:
    """|bias| above max_abs and the interval excludes 0."""
    return abs(value) > max_abs and (ci_low > 0 or ci_high < 0)


def window_days(days: Iterable[str], day: str, persistence: Persistence) -> list[str]:
    """The last `persistence.days` distinct days up to and including `day` (ISO dates), oldest first."""
    return sorted({d for d in days if d <= day})[-persistence.days :]


def _check(day: str, row: Mapping[str, Any] | None, min_n: int, breached) -> DayCheck:
    if row is None:
        return DayCheck(day, None, None, None, 0, False, False)
    value, low, high, n = (row.get(k) for k in ("value", "ci_low", "ci_high", "n"))
    value, low, high = (None if x is None or not math.isfinite(float(x)) else float(x) for x in (value, low, high))
    n = int(n or 0)
    judged = n >= min_n and _finite(value, low, high)
    return DayCheck(day, value, low, high, n, judged, bool(judged and breached(value, low, high)))


def _series(history: pd.DataFrame, days: list[str]) -> dict[tuple[str, str, str, str, str], dict[str, dict]]:
    """(kind, version, slice_feature, slice_value, metric) -> day -> row, for the window's days."""
    part = history[history["day"].astype(str).isin(days)]
    out: dict[tuple[str, str, str, str, str], dict[str, dict]] = {}
    for row in part.to_dict("records"):
        key = (row["kind"], str(row["model_version"]), row["slice_feature"], str(row["slice_value"]), row["metric"])
        out.setdefault(key, {})[str(row["day"])] = row
    return out


def _alert(pipeline, rule, signal, key, limit, baseline, checks, persistence) -> Alert:
    _, version, feature, value, metric = key
    breaches = sum(c.breach for c in checks)
    return Alert(
        pipeline,
        rule,
        signal,
        version,
        feature,
        value,
        metric,
        limit,
        baseline,
        checks,
        breaches,
        persistence.breaches,
        breaches >= persistence.breaches,
    )


def judge_performance(
    pipeline: str,
    history: pd.DataFrame,
    day: str,
    monitoring: Monitoring,
    baselines: Baselines,
) -> list[Alert]:
    """Every performance and bias rule on every series that has a row on `day` (the judged day).

    `history`: outcome rows (columns day, model_version, slice_feature, slice_value, metric, kind,
    value, ci_low, ci_high, n) of any days; only the persistence window's days are read. Returns one
    Alert per (rule, series) with at least one judged day in the window; `fired` says whether it persists.
    """
    if history.empty:
        return []
    persistence = monitoring.persistence
    days = window_days(history["day"].astype(str), day, persistence)
    series = _series(history, days)
    alerts: list[Alert] = []
    for key, by_day in series.items():
        kind, _, feature, _, metric = key
        if day not in by_day:
            continue
        for rule in monitoring.performance:
            if rule.kind != kind or rule.metric != metric or (feature != OVERALL and not rule.per_slice):
                continue
            alert = _judge_rule(pipeline, rule, key, by_day, days, monitoring, baselines)
            if alert is not None:
                alerts.append(alert)
        bias = monitoring.prediction_bias
        is_bias = kind == "realized" and metric == "prediction_bias"
        if bias is not None and is_bias and (feature == OVERALL or bias.per_slice):
            alerts.append(_judge_bias(pipeline, bias, key, by_day, days, monitoring))
    return [a for a in alerts if any(c.judged for c in a.days)]


def _judge_rule(pipeline, rule: PerformanceRule, key, by_day, days, monitoring: Monitoring, baselines) -> Alert | None:
    _, version, feature, value, metric = key
    if rule.min_value is not None:
        floor = rule.min_value
        checks = [
            _check(d, by_day.get(d), monitoring.min_n, lambda v, lo, hi: floor_breach(v, lo, hi, floor)) for d in days
        ]
        return _alert(pipeline, rule.name, rule.kind, key, floor, None, checks, monitoring.persistence)
    baseline = baselines.get((version, feature, value, metric))
    if baseline is None or not _finite(baseline):
        return None
    drop = float(rule.max_drop)
    checks = [
        _check(d, by_day.get(d), monitoring.min_n, lambda v, lo, hi: drop_breach(v, lo, hi, baseline, drop))
        for d in days
    ]
    return _alert(pipeline, rule.name, rule.kind, key, baseline - drop, baseline, checks, monitoring.persistence)


def _judge_bias(pipeline, rule: BiasRule, key, by_day, days, monitoring: Monitoring) -> Alert:
    limit = rule.max_abs
    checks = [_check(d, by_day.get(d), monitoring.min_n, lambda v, lo, hi: bias_breach(v, lo, hi, limit)) for d in days]
    return _alert(pipeline, f"prediction_bias max_abs {limit}", BIAS, key, limit, None, checks, monitoring.persistence)


def judge_skew(
    pipeline: str,
    scores: pd.DataFrame,
    day: str,
    rule: SkewRule,
    persistence: Persistence,
    ignore: Iterable[str] = (),
) -> Alert | None:
    """Sustained skew from validation shift scores (columns interval, comparison, feature, metric, value).

    Only single-day intervals and comparison `skew` count; features in `ignore` (record-only, excluded)
    never do. A day's value is the number of features whose `rule.metric` is above `rule.min_value`;
    it breaches with at least `rule.min_features`. None when no day of the window has scores.
    """
    if scores.empty:
        return None
    ignored = set(ignore)
    daily = scores[
        (scores["comparison"] == SKEW)
        & (scores["interval"].astype(str).str.len() == 10)
        & (scores["metric"] == rule.metric)
        & ~scores["feature"].isin(ignored)
    ]
    days = window_days(daily["interval"].astype(str), day, persistence)
    if not days or days[-1] != day:
        return None
    checks = []
    for d in days:
        part = daily[daily["interval"].astype(str) == d]
        skewed = int((part["value"] > rule.min_value).sum())
        checks.append(DayCheck(d, float(skewed), None, None, len(part), True, skewed >= rule.min_features))
    key = (SKEW, "", OVERALL, OVERALL, f"features with {rule.metric} > {rule.min_value}")
    name = f"skew {rule.metric} > {rule.min_value} on >= {rule.min_features} feature(s)"
    return _alert(pipeline, name, SKEW, key, float(rule.min_features), None, checks, persistence)


@dataclass(frozen=True)
class Degradation:
    """Why a retrain is due: the first fired alert of an allowed signal (`reason` is one line)."""

    day: str
    signal: str
    reason: str
    days: list[str]
    values: list[dict[str, Any]]
    alerts: list[str] = field(default_factory=list)  # every fired degradation alert's rule
    version: str = ""  # the model version whose series fired ("" for skew, which is judged on the data)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def degradation(alerts: list[Alert], day: str, signals: Iterable[str]) -> Degradation | None:
    """Sustained decay or skew on `day`: fired realized/estimated rules on the whole day, or fired skew."""
    wanted = set(signals)
    fired = [a for a in alerts if a.fired and a.signal in wanted and (a.signal == SKEW or a.slice_feature == OVERALL)]
    if not fired:
        return None
    first = fired[0]
    values = [
        {"day": c.day, "value": c.value, "ci_low": c.ci_low, "ci_high": c.ci_high, "n": c.n, "breach": c.breach}
        for c in first.days
    ]
    return Degradation(
        day, first.signal, first.line(), first.breach_days, values, [a.rule for a in fired], first.model_version
    )


def rate_limited(previous: Iterable[str], day: str, min_days_between: int) -> str | None:
    """The earlier trigger day that forbids a trigger for scored `day`, or None.

    `previous`: the scored days (ISO) of earlier triggers (from the audit trail, other runs only). A
    trigger less than `min_days_between` days before `day` (or after it: a re-run of older days)
    forbids it.
    """
    target = dt.date.fromisoformat(day)
    for earlier in sorted(previous, reverse=True):
        if abs((target - dt.date.fromisoformat(earlier)).days) < min_days_between:
            return earlier
    return None
