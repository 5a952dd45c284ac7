"""benchmarks/replay_tasks.py: the idle time within a run, against a brute-force count, and its tables."""

from __future__ import annotations

import datetime as dt
import random
import sys

import pytest

from mlops.core.config import REPO_ROOT

T0 = dt.datetime(2026, 12, 3, tzinfo=dt.UTC)


@pytest.fixture(scope="module")
def replay_tasks():
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import replay_tasks

        yield replay_tasks
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))


def _at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def test_idle_seconds_count_the_seconds_no_task_covers(replay_tasks):
    rng = random.Random(7)
    for _ in range(300):
        start, end = rng.randint(0, 20), rng.randint(20, 60)
        tasks = []
        for _ in range(rng.randint(0, 6)):  # some overlap, some lie partly outside the run
            a = rng.randint(-5, 65)
            tasks.append((a, a + rng.randint(0, 15)))
        # brute force: each one-second cell of the run, idle when no task interval contains it
        idle = sum(1 for s in range(start, end) if not any(a <= s and s + 1 <= b for a, b in tasks))
        got = replay_tasks.idle_seconds(_at(start), _at(end), [(_at(a), _at(b)) for a, b in tasks])
        assert got == pytest.approx(idle), (start, end, tasks)


def test_summary_per_dag_and_task(replay_tasks):
    runs = [
        {"dag_id": "d", "run_id": "r1", "queued_at": _at(0), "start_date": _at(1), "end_date": _at(11)},
        {"dag_id": "d", "run_id": "r2", "queued_at": None, "start_date": _at(20), "end_date": None},  # running
    ]
    tasks = [
        {
            "dag_id": "d",
            "run_id": "r1",
            "task_id": "a",
            "scheduled_dttm": _at(1),
            "queued_dttm": _at(2),
            "start_date": _at(3),
            "end_date": _at(5),
        },
        {
            "dag_id": "d",
            "run_id": "r1",
            "task_id": "b",
            "scheduled_dttm": _at(6),
            "queued_dttm": _at(6),
            "start_date": _at(7),
            "end_date": _at(10),
        },
        {
            "dag_id": "d",
            "run_id": "r2",
            "task_id": "a",
            "scheduled_dttm": _at(20),
            "queued_dttm": _at(20),
            "start_date": _at(21),
            "end_date": _at(22),
        },
    ]
    s = replay_tasks.summarize(runs, tasks)
    assert dict(s["dags"]["d"]) == {"run": [10.0], "queued to start": [1.0], "task time": [5.0], "idle within": [5.0]}
    assert dict(s["tasks"]["d a"]) == {"duration": [2.0], "scheduled to queued": [1.0], "queued to start": [1.0]}
    assert s["tasks"]["d b"]["queued to start"] == [1.0]
