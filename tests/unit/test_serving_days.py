"""Which model scores a day, on real flights and real MLflow: a day keeps the model that scored it.

The defect (a four-week replay, 2013-06): the outcomes run judging 6 June ran after 7-9 June were
scored by version 1; it triggered a retrain whose window ended 7 June, promoted as version 2. The
champion of a day was then "the latest training window ended on or before it", so a re-run (a
backfill, `mlops replay --reprocess`) of 7-9 June would have scored them with version 2: other
predictions than the first run's. A promoted version now serves from the day after the last day
scored when it was promoted (`serves_from`), and the rescore DAG's day moves that start back.

Here: version 1 trained on 1-21 January serves 22-26 January; version 2, trained on 4-24 January (as
a retrain triggered by the outcomes of 24 January), is promoted after they were scored.
"""

from __future__ import annotations

import datetime as dt

import pytest

from mlops.core.config import Evaluation, Gate, Promotion
from mlops.core.interval import Interval
from mlops.io import audit, lake, registry
from mlops.io.paths import predictions_dir
from mlops.stages.assemble import assemble
from mlops.stages.evaluate import evaluate
from mlops.stages.ingest import ingest_missing
from mlops.stages.promote import promote, rollback
from mlops.stages.recalibrate import recalibrate
from mlops.stages.score import InTrainingWindowError, rescore, score
from mlops.stages.train import train

pytestmark = pytest.mark.usefixtures("one_openmp_thread")

FIRST = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 22))
SECOND = Interval(dt.date(2013, 1, 4), dt.date(2013, 1, 25))
SCORED_FIRST = Interval(dt.date(2013, 1, 22), dt.date(2013, 1, 27))  # 22-26 January, by version 1


def d(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


@pytest.fixture(scope="module")
def cfg(small_cfg):
    evaluation = Evaluation(min_slice_size=200, bootstrap_samples=20, seed=0)
    return small_cfg.model_copy(
        update={"promotion": Promotion(gates=[Gate(metric="roc_auc", min_value=0.5)]), "evaluation": evaluation}
    )


def trained_and_promoted(cfg, window: Interval) -> str:
    ingest_missing(cfg, window)
    assembled = assemble(cfg, window)
    version = train(cfg, assembled.key, window).version
    recalibrate(cfg, assembled.key, window, version)
    evaluation = evaluate(cfg, assembled.key, window, version)
    decision = promote(cfg, version, evaluated_champion=evaluation.champion_version)
    assert decision.promoted, decision.reasons
    return version


def predictions_of(day: str):
    return lake.read_partition(predictions_dir("flights"), day)


def digest(day: str) -> str:
    """The day's predictions without the time they were made (as `mlops replay --reprocess` compares them)."""
    return lake.content_digest(predictions_of(day).drop(columns=["scored_at"]))


@pytest.fixture(scope="module")
def history(module_home, cfg):
    """Version 1 promoted, 22-26 January scored by it, then version 2 promoted; the first digests."""
    v1 = trained_and_promoted(cfg, FIRST)
    ingest_missing(cfg, Interval(d("2013-01-22"), d("2013-01-29")))
    score(cfg, SCORED_FIRST)
    first = {day.isoformat(): digest(day.isoformat()) for day in SCORED_FIRST.days()}
    v2 = trained_and_promoted(cfg, SECOND)
    return {"v1": v1, "v2": v2, "digests": first}


def test_each_version_serves_from_the_day_after_the_last_scored_one(history):
    tags = {v: registry.client().get_model_version("flights", history[v]).tags for v in ("v1", "v2")}
    assert tags["v1"]["serves_from"] == "2013-01-22"  # nothing scored yet: the end of its window
    assert tags["v2"]["serves_from"] == "2013-01-27"  # not 25 January, the end of its window
    promoted = [e for e in audit.history("flights") if e["event"] == "promoted"]
    assert [(e["version"], e["serves_from"]) for e in promoted] == [
        (history["v1"], "2013-01-22"),
        (history["v2"], "2013-01-27"),
    ]


def test_a_re_run_of_the_scored_days_gives_their_first_predictions(history, cfg):
    champions = registry.champions("flights")
    assert {day: champions(day).version for day in SCORED_FIRST.days()} == dict.fromkeys(
        SCORED_FIRST.days(), history["v1"]
    )
    result = score(cfg, SCORED_FIRST)  # a backfill of the same days
    assert set(result.versions.values()) == {history["v1"]}
    assert {day: digest(day) for day in history["digests"]} == history["digests"]
    # the next day is the new champion's
    assert score(cfg, Interval.parse("2013-01-27")).versions == {"2013-01-27": history["v2"]}


def test_a_rescored_day_is_served_by_the_champion_from_then_on(history, cfg):
    v1, v2 = history["v1"], history["v2"]
    # 25 January: 26 January, between it and the champion's start, is still version 1's, so 25 January
    # is re-scored but stays the exception; a re-run scores it with version 1 again
    done = rescore(cfg, d("2013-01-25"))
    assert done.result.versions == {"2013-01-25": v2} and not done.serves_day
    assert registry.serves_from(registry.client().get_model_version("flights", v2).tags) == d("2013-01-27")
    # 26 January: nothing between, so version 2 serves it from now on, and a re-run agrees
    done = rescore(cfg, d("2013-01-26"))
    assert done.result.versions == {"2013-01-26": v2} and done.serves_day
    assert registry.client().get_model_version("flights", v2).tags["serves_from"] == "2013-01-26"
    rescored = digest("2013-01-26")
    assert score(cfg, Interval.parse("2013-01-26")).versions == {"2013-01-26": v2}
    assert digest("2013-01-26") == rescored
    assert registry.champion_for("flights", d("2013-01-25")).version == v1


def test_a_day_in_the_champions_training_window_is_not_rescored(history, cfg):
    before = digest("2013-01-24")
    with pytest.raises(InTrainingWindowError, match=r"flights 2013-01-24: inside the training window of version"):
        rescore(cfg, d("2013-01-24"))
    assert digest("2013-01-24") == before and set(predictions_of("2013-01-24").model_version) == {history["v1"]}


def test_a_rollback_gives_the_revoked_versions_days_back_and_keeps_the_starts(history, cfg):
    v1, v2 = history["v1"], history["v2"]
    assert rollback(cfg, v1, reason="test") == v1
    assert registry.client().get_model_version("flights", v2).tags["revoked"] == "true"
    assert registry.client().get_model_version("flights", v1).tags["serves_from"] == "2013-01-22"
    assert registry.champion_for("flights", d("2013-01-27")).version == v1
    assert registry.champion_for("flights", d("2013-01-26")).version == v1  # version 2 is revoked


def test_a_version_promoted_before_serves_from_the_end_of_its_window():
    """Versions promoted before `serves_from` existed have only their training window."""
    assert registry.serves_from({"training_window": "2013-01-01..2013-01-22"}) == d("2013-01-22")
    assert registry.serves_from({"training_window": "2013-01-01..2013-01-22", "serves_from": "2013-01-25"}) == d(
        "2013-01-25"
    )
    assert registry.serves_from({}) is None
