"""Stage 10, alerts: judge a scored day's outcomes against config `monitoring`, and decide a retrain.

For scored day S (after `stages.outcomes.day_outcomes` stored it):

1. the outcome rows of the last `monitoring.persistence.days` scored days up to S
   (`io.datasets.outcome_history`), each model version's own evaluation values (the baselines of
   drop rules, `io.registry.evaluation_values`) and, when skew is a retrain signal, the daily skew
   scores (`io.datasets.shift_history`) are judged by `core.alerting` (rules and definitions there);
2. the judgement goes into `outcomes/S.json` under `judgement`: `alerts` (each fired rule with its
   series, limit and the window's days and values), `watch` (rules breached on fewer than k days, one
   line each), `judged` (rule x series judged), `degradation` (signal, reason, days, values, or null)
   and `trigger` (whether an event on `<name>_degraded` is emitted, and why not);
3. a degradation may trigger a retrain unless the caller forbids it (a backfill), the retrain would
   serve no day (`moot_trigger`: the degraded version is no longer the champion, or a scheduled
   retrain takes over on the day the triggered version would start), or an earlier trigger of another
   run was for a scored day less than `retrain.min_days_between` days away (rate limit, judged from the
   audit trail's `degradation_trigger` entries). A trigger is recorded in the audit trail first
   (`degradation_trigger`, keyed by day and run, so a retry records it once).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from mlops.core.alerting import Alert, Degradation, degradation, judge_performance, judge_skew, rate_limited
from mlops.core.config import PipelineConfig
from mlops.core.serving import first_served_day, scheduled_retrain_starts
from mlops.io import audit, lake, registry
from mlops.io.datasets import latest_served_day, outcome_history, shift_history
from mlops.io.paths import outcomes_dir, shift_scores_dir

TRIGGER_EVENT = "degradation_trigger"


@dataclass(frozen=True)
class Judgement:
    """The alerts of one scored day and the degradation they mean (see the module docstring)."""

    pipeline: str
    day: str
    alerts: list[Alert]  # every rule x series judged in the window (fired or not)
    degradation: Degradation | None

    @property
    def fired(self) -> list[Alert]:
        return [a for a in self.alerts if a.fired]

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.day,
            "judged": len(self.alerts),
            "alerts": [a.to_json() for a in self.fired],
            "watch": [a.line() for a in self.alerts if a.breaches and not a.fired],
            "degradation": self.degradation.to_json() if self.degradation else None,
        }


def _window_keys(keys: list[str], day: str, days: int) -> list[str]:
    return sorted(k for k in keys if len(k) == 10 and k <= day)[-days:]


def judge(cfg: PipelineConfig, day: dt.date, baselines: dict | None = None) -> Judgement:
    """Judge scored `day` (its outcomes must be stored). `baselines` replaces reading MLflow (tests).

    Raises RegistryUnavailableError when MLflow cannot be asked for a version's evaluation values.
    """
    mon = cfg.monitoring
    key = day.isoformat()
    keys = _window_keys(lake.list_partitions(outcomes_dir(cfg.name)), key, mon.persistence.days)
    history = outcome_history(cfg.name, keys)
    if baselines is None:
        baselines = {}
        if any(r.max_drop is not None for r in mon.performance) and not history.empty:
            for version in sorted(set(history.loc[history["day"] == key, "model_version"].astype(str))):
                try:
                    values = registry.evaluation_values(cfg.name, version)
                except LookupError:
                    values = {}
                baselines.update({(version, *k): v for k, v in values.items()})
    alerts = judge_performance(cfg.name, history, key, mon, baselines) if not history.empty else []
    retrain = mon.retrain
    if retrain is not None and "skew" in retrain.signals:
        skew_keys = _window_keys(lake.list_partitions(shift_scores_dir(cfg.name)), key, mon.persistence.days)
        ignore = [*cfg.validation.skew.record_only, *cfg.validation.skew.exclude]
        skew = judge_skew(cfg.name, shift_history(cfg.name, skew_keys), key, retrain.skew, mon.persistence, ignore)
        if skew is not None:
            alerts.append(skew)
    found = degradation(alerts, key, retrain.signals) if retrain is not None else None
    return Judgement(cfg.name, key, alerts, found)


def decide_trigger(
    cfg: PipelineConfig, judgement: Judgement, run_id: str | None, forbidden: str | None
) -> dict[str, Any]:
    """Whether the day's degradation triggers a retrain: {"emit", "why", "extra"}; records a trigger in the audit.

    `forbidden`: why this run may not trigger (e.g. "backfill run"), or None. `extra` is what the
    event on `<name>_degraded` carries: pipeline, day, signal, reason, days, values, run_id.
    """
    found = judgement.degradation
    if found is None:
        return {"emit": False, "why": "no sustained degradation", "extra": None}
    if forbidden:
        return {"emit": False, "why": forbidden, "extra": None}
    if moot := moot_trigger(cfg, found):
        return {"emit": False, "why": moot, "extra": None}
    decision_id = f"degraded:{judgement.day}:{run_id}"
    earlier = [
        e["day"]
        for e in audit.history(cfg.name)
        if e.get("event") == TRIGGER_EVENT and e.get("decision_id") != decision_id and e.get("day")
    ]
    limit = cfg.monitoring.retrain.min_days_between
    blocking = rate_limited(earlier, judgement.day, limit)
    if blocking is not None:
        return {
            "emit": False,
            "why": f"rate limit: a retrain was triggered for {blocking}, less than {limit} days before",
            "extra": None,
        }
    extra = {"pipeline": cfg.name, "run_id": run_id, **found.to_json()}
    fields = {k: v for k, v in extra.items() if k != "pipeline"}
    audit.record_once(cfg.name, TRIGGER_EVENT, decision_id, reasons=[found.reason], **fields)
    return {"emit": True, "why": "sustained degradation", "extra": extra}


def moot_trigger(cfg: PipelineConfig, found: Degradation) -> str | None:
    """Why a retrain triggered by `found` would serve no day, or None when it would serve some.

    - The series that fired is of a version that is no longer the champion: the model it judged has
      been replaced (by a scheduled retrain, a rollback), and the new champion's own outcomes judge it.
    - The triggered version would serve from the day a scheduled retrain's version serves from too
      (core.serving): its window ends the day after the judged day, its first day is that or the day
      after the last day decided so far (scored, or validated against a champion's training data:
      `datasets.latest_served_day`), and the retrain schedule ends an interval that day. The year replay
      judges the second half of each week after it was scored, just before the week's retrain: every
      trigger there was such a retrain, promoted and then replaced before it scored a day.
    A persisting degradation is judged again on the next scored day, so the trigger is deferred, not lost.
    """
    if found.version:
        champion = registry.version_by_alias(cfg.name, registry.CHAMPION)
        if champion is not None and champion.version != found.version:
            return (
                f"version {found.version} degraded, but version {champion.version} is the champion now: "
                "its own outcomes will judge it"
            )
    start = first_served_day(dt.date.fromisoformat(found.day) + dt.timedelta(days=1), latest_served_day(cfg.name))
    if start is not None and scheduled_retrain_starts(start, cfg.schedules):
        return (
            f"a triggered retrain would serve from {start}, when the scheduled retrain of the interval ending "
            f"{start} takes over: left to it"
        )
    return None


def record_judgement(pipeline: str, day: str, judgement: dict[str, Any], trigger: dict[str, Any]) -> dict[str, Any]:
    """Add `judgement` (with `trigger`: emit and why) to `outcomes/<day>.json`; returns the document."""
    path = outcomes_dir(pipeline) / f"{day}.json"
    summary = lake.read_json(path) if path.exists() else {"pipeline": pipeline, "day": day}
    summary["judgement"] = {**judgement, "trigger": {"emit": trigger["emit"], "why": trigger["why"]}}
    lake.write_json(path, summary)
    return summary


def read_judgement(pipeline: str, day: str) -> dict[str, Any] | None:
    """The judgement `record_judgement` stored for scored `day` (with its `trigger`), or None."""
    path = outcomes_dir(pipeline) / f"{day}.json"
    return (lake.read_json(path) if path.exists() else {}).get("judgement")


def triggered_retrains(pipeline: str) -> list[dict[str, Any]]:
    """The audit trail's degradation triggers, oldest first."""
    return [e for e in audit.history(pipeline) if e.get("event") == TRIGGER_EVENT]
