"""The order of a replay's steps (`mlops.local.replay.plan`) and how it names a failed task's cause."""

from __future__ import annotations

import datetime as dt

import pytest

from mlops.local.replay import _alert_name, _last_error, plan

D = dt.date


def _days(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


@pytest.mark.parametrize("delay", [0, 1, 3])
@pytest.mark.parametrize(("start", "end"), [(D(2013, 2, 4), D(2013, 2, 19)), (D(2013, 1, 1), D(2014, 1, 1))])
def test_every_day_runs_once_and_its_outcomes_come_after_its_labels_are_due(start, end, delay):
    p = plan(start, end, 0, has_data_before=start > D(2013, 1, 1), label_delay_days=delay)
    daily_done: list[dt.date] = []  # days whose daily run has happened, in order
    evaluated: list[dt.date] = []
    for kind, first, last in p.steps:
        if kind == "daily":
            assert last - first < dt.timedelta(days=4)  # chunks of at most 4 days
            daily_done += _days(first, last)
        elif kind == "outcomes":
            for day in _days(first, last):
                # the labels of `day` are due once the daily run of day + delay ran (or at the range's end)
                due = day + dt.timedelta(days=delay)
                assert due in daily_done or due >= end, (day, p.steps)
                assert day in daily_done
            evaluated += _days(first, last)
        else:  # a week's retrain runs after every daily run of its week
            assert all(d in daily_done for d in _days(first, first + dt.timedelta(days=6)) if d >= p.bootstrap[1])
    scored = [d for d in _days(start, end - dt.timedelta(days=1)) if d not in p.bootstrap_days]
    assert daily_done == scored  # every day once, in order
    assert evaluated == scored  # every scored day's outcomes once, in order


def test_without_labels_a_week_is_one_backfill():
    p = plan(D(2013, 2, 4), D(2013, 2, 13), 0, has_data_before=True)
    assert p.steps == [
        ("daily", D(2013, 2, 4), D(2013, 2, 10)),
        ("retrain", D(2013, 2, 4), D(2013, 2, 4)),
        ("daily", D(2013, 2, 11), D(2013, 2, 12)),
    ]


def test_a_week_is_split_so_a_trigger_can_act_within_it():
    p = plan(D(2013, 2, 4), D(2013, 2, 11), 0, has_data_before=True, label_delay_days=1)
    assert p.steps == [
        ("daily", D(2013, 2, 4), D(2013, 2, 7)),
        ("outcomes", D(2013, 2, 4), D(2013, 2, 6)),
        ("daily", D(2013, 2, 8), D(2013, 2, 10)),
        ("outcomes", D(2013, 2, 7), D(2013, 2, 9)),
        ("retrain", D(2013, 2, 4), D(2013, 2, 4)),
        ("outcomes", D(2013, 2, 10), D(2013, 2, 10)),
    ]


def test_the_last_error_of_a_structured_task_log_names_the_exception():
    log = [
        {"event": "::group::Pre Execute", "level": "info"},
        {
            "event": "Task failed with exception",
            "level": "error",
            "error_detail": [{"exc_type": "ChecksFailed", "exc_value": "2 of 9 prediction checks failed"}],
        },
        {"event": "::endgroup::", "level": "info"},
    ]
    assert _last_error(log) == "ChecksFailed: 2 of 9 prediction checks failed"
    assert _last_error([{"event": "a plain failure", "level": "error"}]) == "a plain failure"
    assert _last_error([{"event": "fine", "level": "info"}, "a text line"]) is None


def test_a_fired_rule_is_named_by_rule_slice_and_version():
    """As stored in the day's judgement (`Alert.to_json`), as the console prints it after an outcomes run."""
    overall = {"rule": "realized roc_auc max_drop 0.05", "slice_feature": "overall", "slice_value": "overall"}
    assert _alert_name(overall | {"model_version": "4"}) == "realized roc_auc max_drop 0.05 [overall, version 4]"
    sliced = {"rule": "bias prediction_bias max_abs 0.2", "slice_feature": "hour_band", "slice_value": "evening"}
    named = _alert_name(sliced | {"model_version": "10"})
    assert named == "bias prediction_bias max_abs 0.2 [hour_band=evening, version 10]"
