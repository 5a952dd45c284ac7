"""When the replay driver looks at Airflow (`mlops.local.replay.Pacing`), on a fake clock."""

from __future__ import annotations

import pytest

from mlops.local.replay import FAST_POLL, HISTORY, SLEEP_SHARE, Pacing


class FakeTime:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def clock(self) -> float:
        return self.now


def a_step(fake: FakeTime, seconds: float, polls: list):
    """A wait whose step ends `seconds` after the pacing began (the fake clock moves to that time)."""

    def wait(interval: float) -> str:
        polls.append(interval)
        fake.now = max(fake.now, seconds + fake.began)
        return "success"

    return wait


def run(pacing: Pacing, fake: FakeTime, kind, seconds: float) -> list:
    polls: list = []
    fake.began = fake.now
    assert pacing.wait(kind, a_step(fake, seconds, polls)) == "success"
    return polls


def test_the_first_step_of_a_kind_is_polled_at_once_then_each_sleeps_through_most_of_the_fastest_recent():
    fake = FakeTime()
    pacing = Pacing(fake.sleep, fake.clock)
    assert run(pacing, fake, ("retrain", 1), 15.0) == [FAST_POLL]
    assert fake.slept == [0.0]
    assert pacing.expected(("retrain", 1)) == pytest.approx(15.0)
    run(pacing, fake, ("retrain", 1), 12.0)
    assert fake.slept[-1] == pytest.approx(SLEEP_SHARE * 15.0)
    run(pacing, fake, ("retrain", 1), 20.0)
    assert fake.slept[-1] == pytest.approx(SLEEP_SHARE * 12.0)  # the least of the recent ones
    assert pacing.expected(("daily", 4)) == 0.0  # each kind on its own


def test_only_the_last_durations_count():
    fake = FakeTime()
    pacing = Pacing(fake.sleep, fake.clock)
    run(pacing, fake, "outcomes", 1.0)  # an unusually fast one, then HISTORY slower ones
    for _ in range(HISTORY):
        run(pacing, fake, "outcomes", 3.0)
    assert pacing.expected("outcomes") == pytest.approx(3.0)


def test_a_wait_that_raises_records_nothing():
    fake = FakeTime()
    pacing = Pacing(fake.sleep, fake.clock)

    def lost(interval: float):
        raise TimeoutError("flights_daily run x: not ready after 1800 s")

    with pytest.raises(TimeoutError, match="not ready"):
        pacing.wait("daily", lost)
    assert pacing.expected("daily") == 0.0
