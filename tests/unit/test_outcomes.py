"""Outcomes: labels joined to stored predictions, realized metrics against scikit-learn, CBPE estimates,
label counts, and re-runs that replace their own day in the lake and in MLflow.

Real flights days are ingested once per module; their predictions are written to the lake as the
score stage writes them, with scores made up from the real labels (no model is trained here).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import yaml
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_score,
    recall_score,
    roc_auc_score,
)

from mlops.core.config import ConfigError, Evaluation, PipelineConfig, load_config
from mlops.core.features import ROW_KEY, labels
from mlops.core.interval import Interval
from mlops.core.outcomes import estimate_errors, estimated, expected_counts, realized
from mlops.io import lake, outcome_runs, predictions, registry
from mlops.io.datasets import outcome_history
from mlops.io.labels import read_labels
from mlops.io.paths import outcomes_dir, predictions_dir, raw_dir
from mlops.stages.ingest import ingest
from mlops.stages.outcomes import OUTCOME_COLUMNS, day_outcomes, scored_days

DAY, OTHER = dt.date(2013, 3, 5), dt.date(2013, 3, 6)
THRESHOLD = 0.3


@pytest.fixture(scope="module")
def cfg(small_cfg) -> PipelineConfig:
    return small_cfg.model_copy(update={"evaluation": Evaluation(bootstrap_samples=100, min_slice_size=200)})


@pytest.fixture(scope="module")
def days(module_home, cfg):
    ingest(cfg, Interval(DAY, OTHER + dt.timedelta(days=1)))
    return {d: lake.read_partition(raw_dir(cfg.name), d.isoformat()) for d in (DAY, OTHER)}


def write_predictions(cfg, day: dt.date, raw: pd.DataFrame, version: str, seed: int) -> pd.DataFrame:
    """Predictions of `day` as the score stage stores them: scores informative of the real label, plus noise."""
    rng = np.random.default_rng(seed)
    y = labels(raw, cfg.target).fillna(0).to_numpy()
    score = np.clip(0.15 + 0.35 * y + rng.normal(0, 0.2, len(raw)), 0.001, 0.999)
    frame = pd.DataFrame(
        {
            "pipeline": cfg.name,
            ROW_KEY: raw[ROW_KEY].to_numpy(),
            "model_name": cfg.name,
            "model_version": version,
            "mlflow_run_id": "none",
            "threshold": THRESHOLD,
            "score": score,
            "predicted_label": (score >= THRESHOLD).astype("int8"),
        }
    )
    manifest = lake.write_partition(frame, predictions_dir(cfg.name), day.isoformat(), {"model_version": version})
    predictions.mark_done(cfg.name, day.isoformat(), manifest, None, 0)
    return frame


def overall(rows: pd.DataFrame, kind: str, metric: str, feature="overall", value="overall") -> pd.Series:
    hit = rows[(rows.kind == kind) & (rows.metric == metric) & (rows.slice_feature == feature)]
    hit = hit[hit.slice_value == value]
    assert len(hit) == 1, (kind, metric, feature, value)
    return hit.iloc[0]


# config


def test_labels_config_defaults_and_errors(tmp_path, flights_cfg):
    assert flights_cfg.labels.delay_days == 1 and flights_cfg.label_column == "arr_delay"
    text = (flights_cfg.model_dump(mode="json")) | {"labels": {"delay_days": -1}}
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(text))
    with pytest.raises(ConfigError, match=r"bad\.yaml: invalid pipeline config: labels\.delay_days: .*greater than"):
        load_config(path)
    with pytest.raises(ValueError, match=r"labels\.column 'distance' is a feature"):
        PipelineConfig.model_validate(text | {"labels": {"column": "distance"}})
    sql = {"kind": "sql", "conn_id": "labels_db", "query": "select * from t where d >= :start and d < :end"}
    with pytest.raises(ValueError, match=r"a separate sql label source needs 'url'"):
        PipelineConfig.model_validate(text | {"labels": {"source": sql}})
    with pytest.raises(ValueError, match=r"(?s)labels\.colum\b.*Extra inputs"):
        PipelineConfig.model_validate(text | {"labels": {"colum": "arr_delay"}})


def test_the_scored_day_is_the_interval_day_minus_the_delay(flights_cfg):
    assert scored_days(flights_cfg, Interval.parse("2013-03-06")) == [DAY]


# labels and realized metrics on real days


def test_labels_reread_from_the_source_carry_the_ingested_row_keys(cfg, days):
    raw = days[DAY]
    got = read_labels(cfg, DAY)
    assert got[ROW_KEY].is_unique and set(got[ROW_KEY]) == set(raw[ROW_KEY])
    expected = labels(raw, cfg.target).set_axis(raw[ROW_KEY])
    pd.testing.assert_series_equal(
        got.set_index(ROW_KEY)["label"].loc[raw[ROW_KEY]], expected, check_names=False, check_index=False
    )


def test_realized_metrics_equal_scikit_learn_on_the_joined_rows(cfg, days):
    raw = days[DAY]
    scored = write_predictions(cfg, DAY, raw, "1", seed=1)
    result = day_outcomes(cfg, DAY)
    assert list(result.rows.columns) == OUTCOME_COLUMNS
    stored = lake.read_partition(outcomes_dir(cfg.name), DAY.isoformat())
    pd.testing.assert_frame_equal(stored, result.rows)

    # the oracle: scikit-learn on an independent join of the ingested labels and the stored scores
    truth = raw[[ROW_KEY, "origin"]].assign(y=labels(raw, cfg.target).to_numpy())
    joined = scored.merge(truth, on=ROW_KEY).dropna(subset=["y"])
    for feature, value, rows in (("overall", "overall", joined), ("origin", "JFK", joined[joined.origin == "JFK"])):
        y, s = rows.y.to_numpy(dtype=int), rows.score.to_numpy()
        oracle = {
            "roc_auc": roc_auc_score(y, s),
            "pr_auc": average_precision_score(y, s),
            "precision": precision_score(y, s >= THRESHOLD),
            "recall": recall_score(y, s >= THRESHOLD),
            "log_loss": log_loss(y, s),
            "brier": brier_score_loss(y, s),
            "observed_positive_rate": y.mean(),
            "predicted_positive_rate": (s >= THRESHOLD).mean(),
            "mean_score": s.mean(),
            "prediction_bias": s.mean() - y.mean(),
        }
        for metric, want in oracle.items():
            row = overall(result.rows, "realized", metric, feature, value)
            assert row.value == pytest.approx(want, abs=1e-12), (feature, metric)
            assert row.n == len(rows) and row.model_version == "1" and row.day == DAY.isoformat()
            if feature == "overall":  # hundreds of rows: a bootstrap interval
                assert row.interval_method == "bootstrap" and row.ci_low <= row.value <= row.ci_high, metric
    counts = result.counts
    cancelled = int(labels(raw, cfg.target).isna().sum())
    assert counts["predictions"] == len(raw) and counts["unknown"] == cancelled > 0
    assert counts["labelled"] == len(joined) and counts["missing"] == counts["unmatched"] == 0
    assert result.status == "partial"
    assert set(result.rows.kind) == {"realized", "estimated"}
    est = overall(result.rows, "estimated", "roc_auc")
    assert est.n == len(raw) and est.estimate_error == pytest.approx(
        est.value - overall(result.rows, "realized", "roc_auc").value
    )


def test_missing_unknown_unmatched_and_duplicate_labels_are_counted(cfg, days):
    raw = days[OTHER]
    write_predictions(cfg, OTHER, raw, "1", seed=2)
    full = read_labels(cfg, OTHER)
    known = full[full.label.notna()].reset_index(drop=True)
    crafted = pd.concat(
        [
            known.iloc[40:].assign(label=lambda f: f.label.where(f.index >= 50)),  # 40 missing, 10 unknown
            pd.DataFrame({ROW_KEY: [f"2013-03-06_ZZ_{i}_EWR" for i in range(7)], "label": 1.0}),  # 7 unmatched
            known.iloc[60:63],  # 3 duplicated keys
        ],
        ignore_index=True,
    )
    result = day_outcomes(cfg, OTHER, labels=crafted, log_to_mlflow=False)
    c = result.counts
    no_label_row = len(full) - len(known) + 40  # the cancelled flights are left out of `known` too
    assert (c["missing"], c["unknown"], c["unmatched"], c["duplicate_keys"]) == (no_label_row, 10, 7, 3)
    assert c["labelled"] == len(known) - 50 and c["label_rows"] == len(crafted)
    assert c["coverage"] == pytest.approx(c["labelled"] / len(raw)) and result.status == "partial"
    summary = lake.read_json(outcomes_dir(cfg.name) / f"{OTHER.isoformat()}.json")
    assert summary["counts"] == c
    assert lake.read_manifest(outcomes_dir(cfg.name), OTHER.isoformat())["counts"] == c
    assert overall(result.rows, "realized", "roc_auc").n == c["labelled"]

    none = day_outcomes(cfg, OTHER, labels=full.iloc[:0], log_to_mlflow=False)
    assert none.status == "missing" and none.counts["missing"] == len(raw)
    assert set(none.rows.kind) == {"estimated"} and none.rows.estimate_error.isna().all()


def forget_month(cfg, month: str) -> None:
    """No outcomes of `month` in the lake, no month run in MLflow (other tests of the module logged some)."""
    for key in outcome_runs.month_days_in_lake(cfg.name, month):
        lake.partition_path(outcomes_dir(cfg.name), key).unlink()
    while (run_id := outcome_runs.find_month_run(cfg.name, month)) is not None:
        registry.client().delete_run(run_id)


def test_a_rerun_replaces_its_day_in_the_lake_and_its_step_in_mlflow(cfg, days):
    forget_month(cfg, "2013-03")
    write_predictions(cfg, DAY, days[DAY], "1", seed=1)
    write_predictions(cfg, OTHER, days[OTHER], "1", seed=2)
    first = day_outcomes(cfg, DAY)
    other = day_outcomes(cfg, OTHER)
    run_id = outcome_runs.find_month_run(cfg.name, "2013-03")
    assert first.mlflow["run_id"] == run_id == other.mlflow["run_id"] and not other.mlflow["rebuilt"]
    key = outcome_runs.metric_key("realized", "roc_auc", "overall", "overall")
    before = outcome_runs.metric_series(run_id, key)
    assert before == pytest.approx(
        {DAY.toordinal(): first.overall("realized", "roc_auc"), OTHER.toordinal(): other.overall("realized", "roc_auc")}
    )

    write_predictions(cfg, DAY, days[DAY], "2", seed=99)  # the day re-scored by another version
    again = day_outcomes(cfg, DAY)

    assert lake.list_partitions(outcomes_dir(cfg.name)).count(DAY.isoformat()) == 1
    stored = lake.read_partition(outcomes_dir(cfg.name), DAY.isoformat())
    assert set(stored.model_version) == {"2"}
    new_run = outcome_runs.find_month_run(cfg.name, "2013-03")
    assert again.mlflow["rebuilt"] and again.mlflow["run_id"] == new_run != run_id
    history = registry.client().get_metric_history(new_run, key)
    assert sorted(m.step for m in history) == [DAY.toordinal(), OTHER.toordinal()]  # one point per day
    after = outcome_runs.metric_series(new_run, key)
    assert after[DAY.toordinal()] == pytest.approx(again.overall("realized", "roc_auc"))
    assert after[OTHER.toordinal()] == pytest.approx(before[OTHER.toordinal()])
    assert after[DAY.toordinal()] != pytest.approx(before[DAY.toordinal()])
    assert registry.client().get_run(run_id).info.lifecycle_stage == "deleted"

    history = outcome_history(cfg.name)
    assert sorted(set(history.day)) == [DAY.isoformat(), OTHER.isoformat()]
    errors = estimate_errors(history).set_index("metric")
    assert set(errors.index) == {"roc_auc", "precision", "recall"} and (errors.days == 2).all()
    realized_auc = history[
        (history.kind == "realized") & (history.metric == "roc_auc") & (history.slice_feature == "overall")
    ]
    estimated_auc = history[
        (history.kind == "estimated") & (history.metric == "roc_auc") & (history.slice_feature == "overall")
    ]
    gaps = estimated_auc.value.to_numpy() - realized_auc.value.to_numpy()
    assert errors.loc["roc_auc", "median_absolute_error"] == pytest.approx(np.median(np.abs(gaps)))


def month_runs(cfg, month: str) -> list:
    """Every run of the month, active or deleted."""
    from mlflow.entities import ViewType

    experiment = registry.experiment_id(outcome_runs.experiment_name(cfg.name))
    return registry.client().search_runs(
        [experiment], filter_string=f"tags.month = '{month}'", run_view_type=ViewType.ALL, max_results=100
    )


def test_days_rerun_in_one_task_rebuild_their_month_once(cfg, days):
    """The operator's loop (batched_rebuilds): one new run for the month, not one per day re-run."""
    forget_month(cfg, "2013-03")
    write_predictions(cfg, DAY, days[DAY], "1", seed=1)
    write_predictions(cfg, OTHER, days[OTHER], "1", seed=2)
    day_outcomes(cfg, DAY)
    day_outcomes(cfg, OTHER)
    old = outcome_runs.find_month_run(cfg.name, "2013-03")
    runs_before = {r.info.run_id for r in month_runs(cfg, "2013-03")}
    write_predictions(cfg, DAY, days[DAY], "2", seed=99)
    write_predictions(cfg, OTHER, days[OTHER], "2", seed=98)

    with outcome_runs.batched_rebuilds() as rebuilt:
        results = [day_outcomes(cfg, d) for d in (DAY, OTHER)]
        assert outcome_runs.find_month_run(cfg.name, "2013-03") == old  # not rebuilt yet

    new = outcome_runs.find_month_run(cfg.name, "2013-03")
    assert rebuilt == {"2013-03": new} and new != old
    assert [r.mlflow["rebuilt"] for r in results] == [outcome_runs.PENDING] * 2
    assert {r.info.run_id for r in month_runs(cfg, "2013-03")} - runs_before == {new}  # one run made
    assert registry.client().get_run(old).info.lifecycle_stage == "deleted"
    for kind, metric in (("realized", "roc_auc"), ("estimated", "roc_auc"), ("realized", "precision")):
        key = outcome_runs.metric_key(kind, metric, "overall", "overall")
        assert sorted(m.step for m in registry.client().get_metric_history(new, key)) == [
            DAY.toordinal(),
            OTHER.toordinal(),
        ]  # one point per day
        assert outcome_runs.metric_series(new, key) == pytest.approx(
            {d.toordinal(): r.overall(kind, metric) for d, r in zip((DAY, OTHER), results, strict=True)}
        )


def test_a_day_not_scored_has_no_outcomes(cfg, days):
    write_predictions(cfg, OTHER, days[OTHER], "1", seed=2)
    day_outcomes(cfg, OTHER)
    run_id = outcome_runs.find_month_run(cfg.name, "2013-03")
    assert OTHER.toordinal() in outcome_runs.metric_series(run_id, outcome_runs.SENTINEL)
    predictions.retract(cfg.name, OTHER.isoformat(), "failed validation", None, (None, None))

    result = day_outcomes(cfg, OTHER)

    assert result.status == "not_scored" and "failed validation" in result.reason
    assert OTHER.isoformat() not in lake.list_partitions(outcomes_dir(cfg.name))
    rebuilt = outcome_runs.find_month_run(cfg.name, "2013-03")
    assert result.mlflow["run_id"] == rebuilt != run_id
    assert OTHER.toordinal() not in outcome_runs.metric_series(rebuilt, outcome_runs.SENTINEL)
    assert day_outcomes(cfg, OTHER).mlflow is None  # nothing left to drop


# CBPE on synthetic scores


def nannyml_roc_auc(score: np.ndarray) -> float:
    """NannyML's CBPE ROC AUC, written from its published description: the expected ROC curve's area."""
    thresholds = np.sort(score)
    tp = np.cumsum(thresholds[::-1])[::-1]
    fp = np.cumsum((1 - thresholds)[::-1])[::-1]
    fn = np.cumsum(np.insert(thresholds, 0, 0)[:-1])
    tn = np.cumsum(np.insert(1 - thresholds, 0, 0)[:-1])
    distinct = np.diff(np.insert(thresholds, 0, -1)).astype(bool)
    tpr = np.r_[tp[distinct] / (tp[distinct] + fn[distinct]), 0.0]
    fpr = np.r_[fp[distinct] / (fp[distinct] + tn[distinct]), 0.0]
    return float(-np.trapezoid(tpr, fpr))


def test_cbpe_point_values_follow_the_expected_confusion_matrix():
    rng = np.random.default_rng(3)
    score = np.round(rng.beta(2, 5, 2_000), 3)  # with ties
    est = estimated(score, THRESHOLD, resamples=0, confidence=0.95, seed=0)
    above = score >= THRESHOLD
    assert est["precision"].value == pytest.approx(score[above].sum() / above.sum())
    assert est["recall"].value == pytest.approx(score[above].sum() / score.sum())
    assert est["roc_auc"].value == pytest.approx(nannyml_roc_auc(score), abs=1e-12)
    _, counts = expected_counts(score)
    assert counts.sum() == pytest.approx(len(score))


def test_cbpe_on_calibrated_scores_matches_the_realized_value_within_its_interval():
    """Labels drawn Bernoulli(score): the realized metric falls in the estimate's interval at its nominal rate."""
    rng = np.random.default_rng(5)
    inside = {m: 0 for m in ("roc_auc", "precision", "recall")}
    trials = 40
    for trial in range(trials):
        score = rng.beta(2, 5, 800)
        y = (rng.random(800) < score).astype(int)
        est = estimated(score, THRESHOLD, resamples=200, confidence=0.95, seed=trial)
        real = realized(y, score, THRESHOLD, resamples=0, confidence=0.95, seed=0, min_slice_size=10**9)
        for metric in inside:
            e, r = est[metric], real[metric].value
            inside[metric] += e.ci_low <= r <= e.ci_high
            assert abs(e.value - r) < 0.1
    assert all(count >= 0.85 * trials for count in inside.values()), inside
