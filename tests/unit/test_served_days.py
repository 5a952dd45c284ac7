"""`datasets.served_days` and `latest_served_day`: the days a champion has decided, against brute force.

A day is decided when its predictions are done, or when its validation report compared it with a
champion's training data (`references.skew` set); a report of several days decides each of them;
training-window reports decide none; a day scored but whose record is not done is not decided.
"""

from __future__ import annotations

import datetime as dt
import random

import pandas as pd

from mlops.core.interval import Interval
from mlops.io import lake, predictions
from mlops.io.datasets import latest_served_day, served_days
from mlops.io.paths import predictions_dir, validation_dir


def report(key: str, skew: str | None) -> None:
    references = {"drift": "partition 2013-01-01", "skew": skew}
    lake.write_json(validation_dir("flights") / f"{key}.json", {"interval": key, "references": references})


def scored(key: str, done: bool = True) -> None:
    manifest = lake.write_partition(pd.DataFrame({"score": [0.5]}), predictions_dir("flights"), key, {})
    if done:
        predictions.mark_done("flights", key, manifest, None, 0)


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def test_the_days_decided_are_the_scored_ones_and_those_validated_against_a_champion(mlops_home):
    assert served_days("flights") == [] and latest_served_day("flights") is None
    scored("2013-01-02")
    scored("2013-01-09", done=False)  # its record was never written: not scored
    report("2013-01-03", "training data of flights v1 (every row)")
    report("2013-01-04", None)  # no champion yet: nothing to decide
    report("2013-01-05..2013-01-08", "training data of flights v1 (every row)")
    report("training-2013-01-01..2013-01-31", "training data of flights v1 (every row)")
    decided = [d("2013-01-02"), d("2013-01-03"), d("2013-01-05"), d("2013-01-06"), d("2013-01-07")]
    assert served_days("flights") == decided
    assert served_days("flights", after=d("2013-01-05")) == decided[3:]
    assert latest_served_day("flights") == d("2013-01-07")
    scored("2013-01-09")
    assert latest_served_day("flights") == d("2013-01-09")


def test_against_brute_force_over_random_histories(mlops_home):
    rng = random.Random(7)
    start = d("2013-03-01")
    calendar = [start + dt.timedelta(days=i) for i in range(64)]
    for i in range(40):
        first = rng.choice(calendar[:60])
        interval = Interval(first, first + dt.timedelta(days=rng.choice([1, 1, 1, 2, 3])))
        kind = rng.choice(["scored", "validated", "validated without champion", "training"])
        if kind == "scored":
            scored(first.isoformat())
        elif kind == "validated":  # replaces a report of the same key
            report(interval.key, f"training data of flights v{i}")
        elif kind == "training":
            report(f"training-{interval.key}", "training data of flights v1")
        else:
            report(interval.key, None)
        truth = [day for day in calendar if _decided(day)]
        assert served_days("flights") == truth
        assert latest_served_day("flights") == (truth[-1] if truth else None)
        cut = rng.choice(calendar)
        assert served_days("flights", after=cut) == [day for day in truth if day > cut]


def _decided(day: dt.date) -> bool:
    """Brute force: scored, or inside some stored report (not of a training window) with a skew reference."""
    if predictions.is_done("flights", day.isoformat()):
        return True
    for path in validation_dir("flights").glob("*.json"):
        if path.stem.startswith("training-"):
            continue
        if day in Interval.parse(path.stem).days() and lake.read_json(path)["references"]["skew"]:
            return True
    return False
