"""Judging the outcomes history (core.alerting) on hand-computed cases, and the retrain trigger's rules
(stages.alerts): persistence k of m, minimum n, interval rules, bias, skew, rate limit, backfills.

No Airflow, no MLflow: outcome rows are written by hand; the lake is a fresh MLOPS_HOME.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from mlops.core.alerting import (
    bias_breach,
    degradation,
    drop_breach,
    floor_breach,
    judge_performance,
    judge_skew,
    rate_limited,
)
from mlops.core.config import BiasRule, Monitoring, PerformanceRule, Persistence, RetrainTrigger, SkewRule
from mlops.io import audit, lake, registry
from mlops.io.paths import outcomes_dir, shift_scores_dir
from mlops.stages.alerts import TRIGGER_EVENT, decide_trigger, judge, record_judgement, triggered_retrains

DAYS = [f"2013-03-0{d}" for d in range(1, 8)]  # 1..7 March
FLOOR = PerformanceRule(metric="roc_auc", kind="realized", min_value=0.6)
DROP = PerformanceRule(metric="roc_auc", kind="realized", max_drop=0.05)


def row(
    day,
    value,
    low,
    high,
    n=500,
    metric="roc_auc",
    kind="realized",
    feature="overall",
    slice_value="overall",
    version="3",
):
    return {
        "day": day,
        "model_version": version,
        "slice_feature": feature,
        "slice_value": slice_value,
        "metric": metric,
        "kind": kind,
        "value": value,
        "ci_low": low,
        "ci_high": high,
        "n": n,
    }


def monitoring(*rules, k=3, m=5, min_n=200, bias=None, retrain=None) -> Monitoring:
    return Monitoring(
        min_n=min_n,
        persistence=Persistence(days=m, breaches=k),
        performance=list(rules),
        prediction_bias=bias,
        retrain=retrain,
    )


def test_interval_rules_by_hand():
    # floor 0.6: the whole interval must lie below it
    assert floor_breach(0.55, 0.50, 0.59, 0.6) and not floor_breach(0.55, 0.48, 0.62, 0.6)
    # drop 0.05 from 0.70: value below 0.65 and ci_high below 0.70
    assert drop_breach(0.64, 0.58, 0.69, 0.70, 0.05)
    assert not drop_breach(0.64, 0.57, 0.71, 0.70, 0.05)  # the interval includes no drop
    assert not drop_breach(0.66, 0.63, 0.68, 0.70, 0.05)  # a drop of 0.04 only
    # bias 0.1: large and significant
    assert bias_breach(0.15, 0.05, 0.25, 0.1) and bias_breach(-0.2, -0.3, -0.1, 0.1)
    assert not bias_breach(0.15, -0.01, 0.30, 0.1)  # interval includes 0
    assert not bias_breach(0.08, 0.05, 0.11, 0.1)  # small


def test_k_of_m_persistence():
    # breaching (ci_high < 0.6) on 3, 5 and 7 March; 4 and 6 fine; 1-2 breaching but outside the window
    values = {1: 0.5, 2: 0.5, 3: 0.5, 4: 0.7, 5: 0.5, 6: 0.7, 7: 0.5}
    history = pd.DataFrame([row(f"2013-03-0{d}", v, v - 0.05, v + 0.05) for d, v in values.items()])
    (alert,) = judge_performance("flights", history, "2013-03-07", monitoring(FLOOR, k=3, m=5), {})
    assert [c.day for c in alert.days] == DAYS[2:]  # the last 5 days up to the judged day
    assert alert.breach_days == ["2013-03-03", "2013-03-05", "2013-03-07"]
    assert alert.breaches == 3 and alert.fired
    (alert,) = judge_performance("flights", history, "2013-03-07", monitoring(FLOOR, k=4, m=5), {})
    assert alert.breaches == 3 and not alert.fired
    # judged on 6 March: window 2..6, breaches on 2, 3, 5
    (alert,) = judge_performance("flights", history, "2013-03-06", monitoring(FLOOR, k=3, m=5), {})
    assert alert.breach_days == ["2013-03-02", "2013-03-03", "2013-03-05"] and alert.fired
    assert "flights version 3, slice overall: realized roc_auc 0.5" in alert.line()
    assert "limit realized roc_auc min_value 0.6 -> 0.6" in alert.line()


def test_days_under_min_n_or_without_interval_are_not_judged():
    history = pd.DataFrame(
        [
            row(DAYS[0], 0.5, 0.45, 0.55, n=150),  # too few rows
            row(DAYS[1], 0.5, float("nan"), float("nan")),  # no interval
            row(DAYS[2], 0.5, 0.45, 0.55),
        ]
    )
    (alert,) = judge_performance("flights", history, DAYS[2], monitoring(FLOOR, k=2, m=3), {})
    assert [c.judged for c in alert.days] == [False, False, True]
    assert alert.breaches == 1 and not alert.fired
    (alert,) = judge_performance("flights", history, DAYS[2], monitoring(FLOOR, k=2, m=3, min_n=100), {})
    assert alert.breaches == 2 and alert.fired


def test_drop_rule_uses_the_versions_own_evaluation_value_per_slice():
    history = pd.DataFrame(
        [row(d, 0.62, 0.58, 0.66) for d in DAYS[:3]]
        + [row(d, 0.62, 0.58, 0.66, feature="origin", slice_value="JFK") for d in DAYS[:3]]
    )
    baselines = {("3", "overall", "overall", "roc_auc"): 0.70, ("3", "origin", "JFK", "roc_auc"): 0.64}
    sliced = PerformanceRule(metric="roc_auc", max_drop=0.05, per_slice=True)
    alerts = judge_performance("flights", history, DAYS[2], monitoring(sliced, k=3, m=3), baselines)
    by_slice = {a.slice_value: a for a in alerts}
    assert by_slice["overall"].fired and by_slice["overall"].limit == pytest.approx(0.65)
    assert not by_slice["JFK"].fired  # 0.62 is 0.02 below its own 0.64
    # per_slice false: the whole day only; no baseline: not judged at all
    assert [
        a.slice_value for a in judge_performance("flights", history, DAYS[2], monitoring(DROP, k=3, m=3), baselines)
    ] == ["overall"]
    assert judge_performance("flights", history, DAYS[2], monitoring(DROP, k=3, m=3), {}) == []


def test_bias_alert_per_slice_and_degradation_ignores_it():
    history = pd.DataFrame(
        [row(d, 0.15, 0.08, 0.22, metric="prediction_bias", feature="carrier", slice_value="UA") for d in DAYS[:3]]
        + [row(d, 0.02, -0.01, 0.05, metric="prediction_bias") for d in DAYS[:3]]
    )
    alerts = judge_performance("flights", history, DAYS[2], monitoring(k=2, m=3, bias=BiasRule(max_abs=0.1)), {})
    fired = [a for a in alerts if a.fired]
    assert [(a.signal, a.slice_value) for a in fired] == [("bias", "UA")]
    assert degradation(alerts, DAYS[2], ["realized", "estimated", "skew"]) is None


def test_degradation_needs_a_fired_rule_on_the_whole_day_of_an_allowed_signal():
    history = pd.DataFrame(
        [row(d, 0.5, 0.45, 0.55, kind="estimated") for d in DAYS[:3]]
        + [row(d, 0.5, 0.45, 0.55, feature="origin", slice_value="EWR") for d in DAYS[:3]]
    )
    est = PerformanceRule(metric="roc_auc", kind="estimated", min_value=0.6)
    sliced = PerformanceRule(metric="roc_auc", min_value=0.6, per_slice=True)
    alerts = judge_performance("flights", history, DAYS[2], monitoring(est, sliced, k=3, m=3), {})
    assert len([a for a in alerts if a.fired]) == 2  # the estimate overall, the realized slice EWR
    found = degradation(alerts, DAYS[2], ["estimated"])
    assert found.signal == "estimated" and found.days == DAYS[:3] and [v["value"] for v in found.values] == [0.5] * 3
    assert degradation(alerts, DAYS[2], ["realized", "skew"]) is None  # a slice alone triggers nothing


def test_sustained_skew_ignores_record_only_features():
    rows = []
    for d, skewed in zip(DAYS[:5], [True, False, True, True, False], strict=True):
        rows.append(
            {
                "interval": d,
                "comparison": "skew",
                "feature": "carrier",
                "metric": "psi",
                "value": 0.4 if skewed else 0.1,
            }
        )
        rows.append({"interval": d, "comparison": "skew", "feature": "temp", "metric": "psi", "value": 2.0})
        rows.append({"interval": d, "comparison": "drift", "feature": "carrier", "metric": "psi", "value": 3.0})
    rows.append(
        {
            "interval": "2013-02-25..2013-03-04",
            "comparison": "skew",
            "feature": "carrier",
            "metric": "psi",
            "value": 9.0,
        }
    )
    scores = pd.DataFrame(rows)
    rule = SkewRule(metric="psi", min_value=0.25)
    alert = judge_skew("flights", scores, DAYS[4], rule, Persistence(days=5, breaches=3), ignore=["temp"])
    assert alert.breach_days == [DAYS[0], DAYS[2], DAYS[3]] and alert.fired
    assert [c.value for c in alert.days] == [1, 0, 1, 1, 0]
    alert = judge_skew("flights", scores, DAYS[4], rule, Persistence(days=4, breaches=3), ignore=["temp"])
    assert not alert.fired  # 2 of the last 4
    assert judge_skew("flights", scores, DAYS[4], rule, Persistence(days=5, breaches=5))  # temp counted: 5 of 5
    assert degradation([alert], DAYS[4], ["skew"]) is None


def test_rate_limit_by_hand():
    assert rate_limited([], "2013-03-10", 7) is None
    assert rate_limited(["2013-03-04"], "2013-03-10", 7) == "2013-03-04"  # 6 days
    assert rate_limited(["2013-03-03"], "2013-03-10", 7) is None  # 7 days
    assert rate_limited(["2013-03-12"], "2013-03-10", 7) == "2013-03-12"  # a re-run of older days
    assert rate_limited(["2013-03-09"], "2013-03-10", 0) is None


def _store_day(cfg_name: str, day: str, value: float) -> None:
    rows = pd.DataFrame([row(day, value, value - 0.04, value + 0.04)])
    lake.write_partition(rows, outcomes_dir(cfg_name), day, {"pipeline": cfg_name})
    lake.write_json(outcomes_dir(cfg_name) / f"{day}.json", {"pipeline": cfg_name, "day": day})


@pytest.fixture
def degrading(mlops_home, flights_cfg):
    """The flights config with one floor rule (2 of 3 days), skew off, at most one trigger per 7 days;
    stored outcomes below the floor on every day of March 1-12."""
    mon = monitoring(FLOOR, k=2, m=3, retrain=RetrainTrigger(signals=["realized"], min_days_between=7))
    cfg = flights_cfg.model_copy(update={"monitoring": mon})
    for d in range(1, 13):
        _store_day(cfg.name, f"2013-03-{d:02d}", 0.5)
    return cfg


def test_rate_limit_two_firings_within_n_days_trigger_once(degrading):
    cfg = degrading
    first = judge(cfg, dt.date(2013, 3, 5), baselines={})  # a Tuesday: its retrain would serve from Wednesday
    assert first.degradation is not None and first.degradation.days == ["2013-03-03", "2013-03-04", "2013-03-05"]
    fired = decide_trigger(cfg, first, "run-a", None)
    assert fired["emit"] and fired["extra"]["day"] == "2013-03-05" and fired["extra"]["signal"] == "realized"
    assert "realized roc_auc 0.5" in fired["extra"]["reason"] and fired["extra"]["version"] == "3"

    again = decide_trigger(cfg, first, "run-a", None)  # a retry of the same run: emits, recorded once
    assert again["emit"]
    second = decide_trigger(cfg, judge(cfg, dt.date(2013, 3, 8), baselines={}), "run-b", None)
    assert not second["emit"] and "rate limit" in second["why"] and "2013-03-05" in second["why"]
    third = decide_trigger(cfg, judge(cfg, dt.date(2013, 3, 12), baselines={}), "run-c", None)
    assert third["emit"]
    assert [e["day"] for e in triggered_retrains(cfg.name)] == ["2013-03-05", "2013-03-12"]
    assert all(e["event"] == TRIGGER_EVENT and e["reason"] for e in audit.history(cfg.name))


def test_no_trigger_when_the_weeks_retrain_takes_over_the_day_the_triggered_one_would(degrading):
    """Judged on Sunday 10 March with nothing scored after it: a triggered retrain's window would end on
    Monday 11 March and its version serve from then, the day the weekly retrain of 4-11 March serves
    from (`schedules.retrain` fires on Mondays). Not triggered; the next day's judgement may trigger."""
    cfg = degrading
    sunday = decide_trigger(cfg, judge(cfg, dt.date(2013, 3, 10), baselines={}), "run-a", None)
    assert not sunday["emit"] and sunday["extra"] is None
    assert sunday["why"] == (
        "a triggered retrain would serve from 2013-03-11, when the scheduled retrain of the interval ending "
        "2013-03-11 takes over: left to it"
    )
    assert triggered_retrains(cfg.name) == []
    # retrained on Thursdays instead, Sunday's judgement triggers
    thursdays = cfg.model_copy(update={"schedules": cfg.schedules.model_copy(update={"retrain": "0 0 * * 4"})})
    assert decide_trigger(thursdays, judge(thursdays, dt.date(2013, 3, 10), baselines={}), "run-c", None)["emit"]


def test_no_trigger_for_a_version_that_is_no_longer_the_champion(degrading):
    """The outcomes that fired are version 3's; version 1 holds `champion` (a rollback, or a retrain
    promoted since): its own outcomes will judge it."""
    cfg = degrading
    c = registry.client()
    c.create_registered_model(cfg.name)
    version = c.create_model_version(cfg.name, source="file:///nowhere").version
    c.set_registered_model_alias(cfg.name, registry.CHAMPION, version)
    decision = decide_trigger(cfg, judge(cfg, dt.date(2013, 3, 5), baselines={}), "run-a", None)
    assert not decision["emit"] and triggered_retrains(cfg.name) == []
    assert decision["why"] == "version 3 degraded, but version 1 is the champion now: its own outcomes will judge it"


def test_a_backfill_never_triggers_and_the_judgement_is_recorded(degrading):
    cfg = degrading
    judgement = judge(cfg, dt.date(2013, 3, 5), baselines={})
    decision = decide_trigger(
        cfg, judgement, "backfill__2013-03-06", "backfill run: backfills never trigger retraining"
    )
    assert not decision["emit"] and decision["extra"] is None and triggered_retrains(cfg.name) == []
    summary = record_judgement(cfg.name, "2013-03-05", judgement.to_json(), decision)
    stored = lake.read_json(outcomes_dir(cfg.name) / "2013-03-05.json")
    assert stored == summary
    j = stored["judgement"]
    assert j["trigger"] == {"emit": False, "why": "backfill run: backfills never trigger retraining"}
    (alert,) = j["alerts"]
    assert alert["rule"] == "realized roc_auc min_value 0.6" and alert["breach_days"] == [
        "2013-03-03",
        "2013-03-04",
        "2013-03-05",
    ]
    assert alert["days"][-1] == {
        "day": "2013-03-05",
        "value": 0.5,
        "ci_low": pytest.approx(0.46),
        "ci_high": pytest.approx(0.54),
        "n": 500,
        "judged": True,
        "breach": True,
    }
    assert j["degradation"]["signal"] == "realized"


def test_skew_from_the_lake_counts_daily_scores_only(mlops_home, flights_cfg):
    mon = monitoring(k=2, m=2, retrain=RetrainTrigger(signals=["skew"], skew=SkewRule(metric="psi", min_value=0.25)))
    cfg = flights_cfg.model_copy(update={"monitoring": mon})
    for d in DAYS[:2]:
        _store_day(cfg.name, d, 0.7)
        frame = pd.DataFrame(
            [
                {
                    "pipeline": "flights",
                    "interval": d,
                    "comparison": "skew",
                    "reference": "v3",
                    "feature": "carrier",
                    "metric": "psi",
                    "value": 0.5,
                    "rows": 900,
                    "null_mean": 0.0,
                    "null_quantile": 0.0,
                }
            ]
        )
        lake.write_partition(frame, shift_scores_dir(cfg.name), d, {"pipeline": "flights", "interval": d})
    found = judge(cfg, dt.date(2013, 3, 2), baselines={})
    assert found.degradation is not None and found.degradation.signal == "skew"
    assert found.degradation.days == DAYS[:2]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"persistence": {"days": 3, "breaches": 4}}, "breaches 4 is more than days 3"),
        ({"performance": [{"metric": "roc_auc", "min_value": 0.6, "max_drop": 0.05}]}, "exactly one of min_value"),
        ({"performance": [{"metric": "roc_auc"}]}, "exactly one of min_value"),
        ({"performance": [{"metric": "pr_auc", "kind": "estimated", "max_drop": 0.05}]}, "pr_auc is not estimated"),
        ({"performance": [{"metric": "log_loss", "min_value": 0.6}]}, "monitoring.performance.0.metric"),
        ({"retrain": {"signals": ["drift"]}}, "monitoring.retrain.signals.0"),
    ],
)
def test_a_bad_monitoring_section_is_refused_naming_the_key(tmp_path, section, message):
    import yaml

    from mlops.core.config import REPO_ROOT, ConfigError, load_config

    raw = yaml.safe_load((REPO_ROOT / "config" / "pipelines" / "flights.yaml").read_text())
    raw["monitoring"] = section
    path = tmp_path / "flights.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
        load_config(path)
