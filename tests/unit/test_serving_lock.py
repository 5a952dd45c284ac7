"""A day is decided and served by one champion, on real flights and real MLflow, also while one is promoted.

The defect: a daily run validates a day against the training data of the champion of that day (its
skew reference), then scores it. A promotion that completed between the two gave the new version the
day after the last *scored* day, so the validated day was decided by version 1 (its report names it)
and, once scored or run again, served by version 2; a promotion committing while a run read the
registry did the same. Now the days a champion has decided are the scored ones and those validated
against it (`datasets.served_days`), and the runs that decide a day hold the serving lock shared
(`locks.serving`) while a promotion's commit, a rollback and a re-score hold it exclusively.

Here: version 1 (trained on 1-21 January) scores 22-25 January and validates 26 January; version 2
(4-24 January) is promoted then; version 3 (6-26 January) is promoted while a run holds the lock.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import threading
import time

import pytest

from mlops.core.config import Evaluation, Gate, Promotion
from mlops.core.interval import Interval
from mlops.io import audit, locks, predictions, registry
from mlops.io.datasets import latest_served_day, served_days
from mlops.io.paths import mlops_home
from mlops.stages import promote as promote_stage
from mlops.stages import validate as validate_stage
from mlops.stages.assemble import assemble
from mlops.stages.evaluate import evaluate
from mlops.stages.ingest import ingest_missing
from mlops.stages.promote import promote, rollback
from mlops.stages.recalibrate import recalibrate
from mlops.stages.score import rescore, score
from mlops.stages.train import train
from mlops.stages.validate import validate

pytestmark = pytest.mark.usefixtures("one_openmp_thread")

FIRST = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 22))
SECOND = Interval(dt.date(2013, 1, 4), dt.date(2013, 1, 25))
THIRD = Interval(dt.date(2013, 1, 6), dt.date(2013, 1, 27))


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


def day(text: str) -> Interval:
    return Interval.parse(text)


@pytest.fixture(scope="module")
def cfg(small_cfg):
    evaluation = Evaluation(min_slice_size=200, bootstrap_samples=20, seed=0)
    return small_cfg.model_copy(
        update={"promotion": Promotion(gates=[Gate(metric="roc_auc", min_value=0.5)]), "evaluation": evaluation}
    )


def trained(cfg, window: Interval) -> tuple[str, str | None]:
    """A version trained, recalibrated and evaluated on `window`, and the champion it was compared with."""
    ingest_missing(cfg, window)
    assembled = assemble(cfg, window)
    version = train(cfg, assembled.key, window).version
    recalibrate(cfg, assembled.key, window, version)
    return version, evaluate(cfg, assembled.key, window, version).champion_version


def promoted(cfg, window: Interval) -> str:
    version, champion = trained(cfg, window)
    decision = promote(cfg, version, evaluated_champion=champion)
    assert decision.promoted, decision.reasons
    return version


def holder() -> str:
    """Who holds the flights serving lock, seen from a new open file: "exclusive", "shared" or "none"."""
    path = mlops_home() / "locks" / "flights.serving.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
            return "none"
        except BlockingIOError:
            pass
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            fcntl.flock(fh, fcntl.LOCK_UN)
            return "shared"
        except BlockingIOError:
            return "exclusive"


def starts(version: str) -> dt.date | None:
    return registry.serves_from(registry.client().get_model_version("flights", version).tags)


def champion() -> str:
    return registry.version_by_alias("flights", registry.CHAMPION).version


def waiting_for_the_lock(thread: threading.Thread, what: str) -> None:
    """Wait until `thread` has recorded its champion move (written ahead, before it takes the serving
    lock), then 1 s more: unlocked, the alias would move within milliseconds of the record."""
    deadline = time.monotonic() + 120
    while registry.pending_move("flights") is None and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert registry.pending_move("flights") is not None, f"{what} was not recorded"
    time.sleep(1.0)


@pytest.fixture(scope="module")
def history(module_home, cfg):
    """Version 1 scores 22-25 January and validates 26 January; then version 2 is promoted."""
    v1 = promoted(cfg, FIRST)
    ingest_missing(cfg, Interval(d("2013-01-22"), d("2013-01-30")))
    score(cfg, Interval(d("2013-01-22"), d("2013-01-26")))
    first = validate(cfg, day("2013-01-26"))
    v2 = promoted(cfg, SECOND)
    return {"v1": v1, "v2": v2, "report": first.to_dict()}


def test_a_validated_day_is_decided_and_the_promoted_version_serves_from_the_day_after(history):
    v1, v2 = history["v1"], history["v2"]
    assert history["report"]["references"]["skew"].startswith(f"training data of flights v{v1} ")
    assert latest_served_day("flights") == d("2013-01-26")  # scored up to 25 January, validated on 26
    assert starts(v2) == d("2013-01-27")  # by the scored days alone, 26 January
    promotions = [e for e in audit.history("flights") if e["event"] == "promoted"]
    assert promotions[-1]["version"] == v2 and promotions[-1]["serves_from"] == "2013-01-27"


def test_the_validated_day_is_scored_and_validated_again_with_the_champion_that_decided_it(history, cfg):
    assert score(cfg, day("2013-01-26")).versions == {"2013-01-26": history["v1"]}
    again = validate(cfg, day("2013-01-26")).to_dict()
    first = history["report"]
    assert again["references"] == first["references"]
    assert again["checks"] == first["checks"] and again["shifts"] == first["shifts"]


def test_a_rescore_before_a_day_decided_by_another_version_leaves_that_days_champion(history, cfg):
    v1, v2 = history["v1"], history["v2"]
    done = rescore(cfg, d("2013-01-25"))
    assert done.result.versions == {"2013-01-25": v2} and not done.serves_day  # 26 January is version 1's
    assert starts(v2) == d("2013-01-27")
    assert registry.champion_for("flights", d("2013-01-26")).version == v1
    assert score(cfg, day("2013-01-25")).versions == {"2013-01-25": v1}  # a re-run: the first champion


def test_a_daily_run_decides_its_day_under_the_serving_lock(history, cfg, monkeypatch):
    """From reading the registry until the outputs are stored, a promotion cannot commit."""
    seen: list[tuple[str, str]] = []

    def spy(module, name: str):
        real = getattr(module, name)

        def wrapper(*args, **kwargs):
            seen.append((f"{name} before", holder()))
            out = real(*args, **kwargs)
            seen.append((f"{name} after", holder()))
            return out

        monkeypatch.setattr(module, name, wrapper)

    spy(validate_stage, "champion_training_data")
    spy(validate_stage, "validate_frame")  # it stores the report
    spy(registry, "champions")
    spy(predictions, "mark_done")  # the day's last write
    validate(cfg, day("2013-01-27"))
    assert score(cfg, day("2013-01-27")).versions == {"2013-01-27": history["v2"]}
    names = ("champion_training_data", "validate_frame", "champions", "mark_done")
    assert {s[0] for s in seen} == {f"{name} {when}" for name in names for when in ("before", "after")}
    assert {s[1] for s in seen} == {"shared"}
    assert holder() == "none"
    assert served_days("flights", after=d("2013-01-25")) == [d("2013-01-26"), d("2013-01-27")]


def test_a_promotion_commits_after_the_runs_deciding_days_and_sets_its_first_day_then(history, cfg, monkeypatch):
    v2 = history["v2"]
    v3, compared = trained(cfg, THIRD)  # its window ends on 27 January, already scored
    assert compared == v2
    checked: list[str] = []
    real = promote_stage.latest_served_day
    monkeypatch.setattr(promote_stage, "latest_served_day", lambda name: (checked.append(holder()), real(name))[1])
    done: list = []
    with locks.serving("flights"):  # a daily run is deciding 28 January
        thread = threading.Thread(target=lambda: done.append(promote(cfg, v3, evaluated_champion=compared)))
        thread.start()
        waiting_for_the_lock(thread, "the promotion")
        assert champion() == v2 and thread.is_alive()  # recorded, waiting for the run
        assert score(cfg, day("2013-01-28")).versions == {"2013-01-28": v2}
    thread.join(60)
    assert not thread.is_alive() and done and done[0].promoted
    assert checked == ["exclusive"]
    assert champion() == v3 and starts(v3) == d("2013-01-29")  # not 28 January, decided meanwhile
    assert score(cfg, day("2013-01-29")).versions == {"2013-01-29": v3}


def test_a_rollback_waits_for_the_runs_deciding_days(history, cfg):
    v3 = champion()
    assert v3 not in (history["v1"], history["v2"])
    done: list[str] = []
    with locks.serving("flights"):
        thread = threading.Thread(target=lambda: done.append(rollback(cfg, reason="test")))
        thread.start()
        waiting_for_the_lock(thread, "the rollback")
        assert champion() == v3 and thread.is_alive()
    thread.join(60)
    assert done == [history["v2"]] and champion() == history["v2"]
