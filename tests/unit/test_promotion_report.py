"""The promotion report: one self-contained HTML page per retrain, logged to the challenger's MLflow run.

A champion (version 1, the configured model) and a challenger with other model parameters (version 2)
are trained once for the module on 2013-01-01..2013-01-22 of the real flights data, against real MLflow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import math
import re

import mlflow.artifacts
import numpy as np
import pandas as pd
import pytest

from mlops.core.config import Evaluation, Gate, Model, Promotion
from mlops.core.interval import Interval
from mlops.io import registry
from mlops.reporting.promotion import (
    REPORT_PATH,
    config_diff,
    delta_plot,
    flatten,
    render_promotion_report,
    slice_deltas,
)
from mlops.stages.assemble import assemble
from mlops.stages.evaluate import evaluate
from mlops.stages.feature_audit import audit_challenger, run_feature_audit
from mlops.stages.ingest import ingest_missing
from mlops.stages.promote import load_evaluation, promote, report_location
from mlops.stages.recalibrate import recalibrate
from mlops.stages.train import train

pytestmark = pytest.mark.usefixtures("one_openmp_thread")

WINDOW = Interval(dt.date(2013, 1, 1), dt.date(2013, 1, 22))
EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


def no_external_urls(page: str) -> None:
    assert not EXTERNAL.search(page), EXTERNAL.search(page).group(0)
    sources = re.findall(r"""src\s*=\s*["']([^"']*)""", page)
    assert all(s.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,")) for s in sources), sources


# pure rendering


def delta_row(scope: str, difference: float, low: float, high: float, status: str = "ok", metric: str = "roc_auc"):
    feature, _, value = scope.partition("=")
    return {
        "slice_feature": feature,
        "slice_value": value or "overall",
        "metric": metric,
        "n": 40 if status == "small" else 900,
        "status": status,
        "challenger": 0.70 + difference,
        "challenger_low": 0.65,
        "challenger_high": 0.75,
        "champion": 0.70,
        "champion_low": 0.65,
        "champion_high": 0.75,
        "difference": difference,
        "ci_low": low,
        "ci_high": high,
    }


def test_the_delta_plot_draws_each_slice_at_its_difference_and_interval():
    """Parsed back from the SVG: one dot and one segment per slice, on one affine scale; colours by sign."""
    import base64
    import xml.etree.ElementTree as ET

    nan = float("nan")
    rows = [
        delta_row("overall", 0.012, 0.004, 0.020),  # wholly above 0: green
        delta_row("carrier=UA", -0.031, -0.050, -0.012),  # wholly below: red
        delta_row("carrier=AA", 0.003, -0.010, 0.016),  # straddles 0: grey
        delta_row("origin=LGA", -0.020, nan, nan, status="small"),  # no interval: the difference alone, faded
        delta_row("carrier=DL", nan, nan, nan),  # no difference: not drawn
        delta_row("overall", 0.5, 0.4, 0.6, metric="pr_auc"),  # another metric: not drawn
    ]
    svg = ET.fromstring(delta_plot(rows, "roc_auc"))
    ns = {"s": "http://www.w3.org/2000/svg"}
    dots = svg.findall(".//s:circle", ns)
    segments = [g.find("s:line", ns) for g in svg.findall(".//s:g", ns)]
    drawn = rows[:4]
    assert len(dots) == len(segments) == 4
    labels = [t.text for t in svg.findall("s:text", ns)]
    for scope in ("overall", "carrier=UA", "carrier=AA", "origin=LGA (n=40, small)"):
        assert scope in labels
    cx = np.array([float(d.get("cx")) for d in dots])
    diff = np.array([r["difference"] for r in drawn])
    slope, intercept = np.polyfit(diff, cx, 1)  # the oracle: every dot on one increasing affine scale
    assert slope > 0 and np.allclose(slope * diff + intercept, cx, atol=0.06)
    ends = np.array([[float(s.get("x1")), float(s.get("x2"))] for s in segments])
    bounds = np.array(
        [[r["ci_low"], r["ci_high"]] if r["ci_low"] == r["ci_low"] else [r["difference"]] * 2 for r in drawn]
    )
    assert np.allclose(slope * bounds + intercept, ends, atol=0.06)
    zero = [line for line in svg.findall("s:line", ns) if line.get("stroke-dasharray")]
    assert len(zero) == 1 and abs(float(zero[0].get("x1")) - intercept) < 0.06
    assert [d.get("fill") for d in dots] == ["#2e7d32", "#c62828", "#555555", "#c62828"]
    assert [d.get("fill-opacity") for d in dots] == ["1", "1", "1", "0.4"]
    assert [float(d.get("cy")) for d in dots] == sorted(float(d.get("cy")) for d in dots)  # in the rows' order
    assert delta_plot([delta_row("overall", nan, nan, nan)], "roc_auc") is None
    page = render_promotion_report(
        {
            "pipeline": "flights",
            "decided_at": "2013-07-01T00:00:00",
            "passed": True,
            "promoted": True,
            "reasons": [],
            "checks": [],
            "challenger": {"version": "2"},
            "champion": {"version": "1"},
            "config_diff": [],
            "slices": rows,
        }
    )
    embedded = re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page)
    assert len(embedded) == 2  # roc_auc and pr_auc
    assert ET.fromstring(base64.b64decode(embedded[0])).tag == "{http://www.w3.org/2000/svg}svg"
    no_external_urls(page)


def test_config_diff_names_changed_added_and_removed_keys():
    old = {"a": 1, "training": {"model": {"params": {"max_iter": 100, "depth": 4}}}, "slices": ["x"]}
    new = {"a": 1, "training": {"model": {"params": {"max_iter": 30}}}, "slices": ["x", "y"], "b": True}
    assert config_diff(old, new) == [
        {"key": "b", "old": "(absent)", "new": True},
        {"key": "slices", "old": ["x"], "new": ["x", "y"]},
        {"key": "training.model.params.depth", "old": 4, "new": "(absent)"},
        {"key": "training.model.params.max_iter", "old": 100, "new": 30},
    ]
    assert config_diff(new, new) == []
    assert flatten({"a": {}}) == {"a": {}}


@pytest.mark.parametrize(
    ("passed", "promoted", "blocked_by", "outcome", "verdict"),
    [
        (True, True, None, "pass", "PROMOTED: version 1 is the champion"),
        (True, False, "param allow_promotion is false", "pass", "PASSED, NOT PROMOTED: param allow_promotion is false"),
        (False, False, None, "fail", "REJECTED: 1 of 1 checks failed"),
    ],
)
def test_a_report_without_champion_renders_offline(passed, promoted, blocked_by, outcome, verdict):
    metrics = pd.DataFrame(
        [("overall", "overall", "challenger", "roc_auc", 0.7, 500, 0.65, 0.75, "ok")],
        columns=["slice_feature", "slice_value", "model", "metric", "value", "n", "ci_low", "ci_high", "status"],
    )
    comparison = pd.DataFrame(columns=["slice_feature", "slice_value", "metric", "difference", "ci_low", "ci_high"])
    rows = slice_deltas(metrics, comparison)
    assert len(rows) == 1 and math.isnan(rows[0]["difference"])
    page = render_promotion_report(
        {
            "pipeline": "p",
            "decided_at": "2026-01-01T00:00:00+00:00",
            "passed": passed,
            "promoted": promoted,
            "blocked_by": blocked_by,
            "reasons": ["a reason"],
            "checks": [{"name": "roc_auc_min_value", "scope": "overall", "outcome": outcome, "detail": "0.7 >= 0.5"}],
            "challenger": {"version": "1", "run_id": "r", "threshold": 0.3, "data": {}},
            "champion": None,
            "config_diff": [],
            "slices": rows,
            "images": [],
        }
    )
    assert verdict in page and "no champion to compare with" in page and "0.7000 [0.6500, 0.7500]" in page
    assert "0.7 &gt;= 0.5" in page and f'<span class="{outcome}">{outcome}</span>' in page
    assert "<h2>Feature audit</h2><p>no feature audit on the challenger's run" in page
    no_external_urls(page)


# a real retrain


@pytest.fixture(scope="module")
def cfg(small_cfg):
    gates = [Gate(metric="roc_auc", min_value=0.5, max_regression=0.3), Gate(metric="brier", max_value=0.5)]
    evaluation = Evaluation(min_slice_size=200, bootstrap_samples=30, seed=0)
    return small_cfg.model_copy(update={"promotion": Promotion(gates=gates), "evaluation": evaluation})


OTHER_PARAMS = {"max_iter": 30, "max_depth": 3, "random_state": 0}  # the second version's: not the config's


@pytest.fixture(scope="module")
def promoted(module_home, cfg):
    """Version 1 as champion; version 2 (other model parameters) trained, evaluated and promoted over it."""
    ingest_missing(cfg, WINDOW)
    key = assemble(cfg, WINDOW).key
    first = train(cfg, key, WINDOW)
    recalibrate(cfg, key, WINDOW, first.version)
    registry.client().set_registered_model_alias("flights", registry.CHAMPION, first.version)
    model = Model(kind="hist_gradient_boosting", params=OTHER_PARAMS)
    other = cfg.model_copy(update={"training": cfg.training.model_copy(update={"model": model})})
    second = train(other, key, WINDOW)
    recalibrate(other, key, WINDOW, second.version)
    evaluate(other, key, WINDOW, second.version)
    audit_challenger(other, key, WINDOW, second.version)
    decision = promote(other, second.version, evaluated_champion=first.version, triggered_by="test")
    page = mlflow.artifacts.load_text(f"runs:/{second.run_id}/{REPORT_PATH}")
    return {"decision": decision, "page": page, "first": first, "second": second}


def test_the_report_is_logged_with_every_gate_and_its_numbers(promoted):
    decision, page = promoted["decision"], promoted["page"]
    assert decision.champion_version == "1" and decision.challenger_version == "2"
    names = {c.name for c in decision.checks}
    assert {"training_data_validated", "threshold_set", "roc_auc_min_value", "brier_max_value"} <= names
    assert any(n.startswith("roc_auc_") and n not in ("roc_auc_min_value",) for n in names)  # the comparison
    for check in decision.checks:
        assert html.escape(check.name) in page
        assert html.escape(check.detail) in page  # the numbers: values, bounds, limits, n
    verdict = "PROMOTED" if decision.promoted else ("PASSED, NOT PROMOTED" if decision.passed else "REJECTED")
    assert verdict in page
    no_external_urls(page)


def test_the_report_shows_the_config_diff_data_and_slice_deltas(promoted, cfg):
    page, first, second = promoted["page"], promoted["first"], promoted["second"]
    configured = cfg.training.model.params
    assert all(configured[key] != OTHER_PARAMS[key] for key in ("max_iter", "max_depth"))
    for key in ("max_iter", "max_depth"):
        old, new = configured[key], OTHER_PARAMS[key]
        row = re.search(rf"training\.model\.params\.{key}</td><td><code>(.*?)</code></td><td><code>(.*?)</code>", page)
        assert row and row.groups() == (str(old), str(new)), key
    assert "learning_rate</td><td><code>0.05</code></td><td><code>(absent)</code>" in page
    run = registry.client().get_run(second.run_id).data
    assert run.tags["lake_digest.train"] in page and run.tags["training_window"] in page
    assert f"{run.metrics['evaluation_prevalence']:.4f}" in page
    assert f"{int(run.metrics['train_rows'])}" in page
    _, comparison = load_evaluation(second.run_id)
    overall = comparison[(comparison.slice_feature == "overall") & (comparison.metric == "roc_auc")].iloc[0]
    assert f"{overall.difference:+.4f} [{overall.ci_low:+.4f}, {overall.ci_high:+.4f}]" in page
    sliced = comparison[(comparison.slice_feature != "overall") & (comparison.metric == "roc_auc")]
    assert len(sliced) and all(f"{r.slice_feature}={r.slice_value}" in page for r in sliced.itertuples())
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) >= 3 and all(len(i) > 2000 for i in images)
    assert first.run_id in page and second.run_id in page


def test_report_location_is_the_challengers_run(promoted):
    where = report_location("flights", "2")
    assert where["run_id"] == promoted["second"].run_id and where["path"] == REPORT_PATH
    assert where["experiment_id"] == registry.experiment_id("flights")


def test_the_pipeline_page_serves_the_report_and_links_it(promoted):
    from fastapi.testclient import TestClient

    from mlops.airflow.pipeline_page import create_app

    client = TestClient(create_app())
    response = client.get("/pipelines/flights/versions/2/promotion")
    assert response.status_code == 200 and response.text == promoted["page"]
    assert response.headers["content-type"].startswith("text/html")
    missing = client.get("/pipelines/flights/versions/1/promotion")  # set as champion by hand: never judged
    assert missing.status_code == 404 and "has no promotion report" in missing.json()["detail"]
    assert client.get("/pipelines/flights/versions/99/promotion").status_code == 404
    page = client.get("/pipelines/flights").text
    assert '<a href="flights/versions/2/promotion">promotion report</a>' in page


def test_the_feature_audit_is_logged_and_shown(promoted, cfg):
    from mlops.io.feature_audit import SUMMARY_PATH, read_feature_audit

    run_id, page = promoted["second"].run_id, promoted["page"]
    audit = read_feature_audit(run_id)
    assert audit is not None and SUMMARY_PATH == "audit/feature_audit.json"
    assert set(audit["verdicts"]) == set(cfg.features.all)
    assert {r["feature"] for r in audit["importance"]} == set(cfg.features.all)
    paths = {f.path for f in registry.client().list_artifacts(run_id, "audit")}
    assert {"audit/permutation_importance.csv", "audit/lofo.csv", "audit/correlated_pairs.csv"} <= paths
    metrics = registry.client().get_run(run_id).data.metrics
    assert metrics["audit_flagged_features"] == len(audit["flagged"]) and metrics["audit_time_ratio"] > 0
    # T is the train stage's own fit, logged to the run and returned; the calibration is timed apart
    timings = ("fit_seconds", "fit_cpu_seconds", "calibration_seconds")
    assert all(metrics[k] > 0 for k in timings)
    assert promoted["second"].seconds == {k: metrics[k] for k in timings}
    # the audit's clock is CPU time (it runs beside recalibrate -> evaluate): T is the fit's CPU seconds
    assert audit["fit_seconds_source"] == "train run" and audit["fit_seconds"] == metrics["fit_cpu_seconds"]
    assert audit["budget_seconds"] == pytest.approx(cfg.audit.budget_factor * metrics["fit_cpu_seconds"])
    assert audit["clock"].startswith("CPU seconds") and audit["wall_seconds"] > 0
    assert audit["lofo_train_rows"] == audit["train_rows"] < cfg.audit.lofo_max_train_rows  # a short window
    tested_or_skipped = set(audit["lofo_tested"]) | set(audit["lofo_skipped"])
    assert tested_or_skipped == {f for f, v in audit["verdicts"].items() if v != "contributes"}
    assert "<h2>Feature audit</h2>" in page
    assert (
        f"Flagged (removal changes no metric beyond noise): <b>{html.escape(', '.join(audit['flagged']) or 'none')}"
        in page
    )
    assert f"{audit['time_ratio']:.2f} x one training fit" in page
    print(
        "feature audit:",
        {
            k: audit[k]
            for k in (
                "flagged",
                "lofo_tested",
                "lofo_skipped",
                "time_ratio",
                "fit_seconds",
                "fit_seconds_source",
                "permutation_seconds",
                "permutation_rows",
                "lofo_train_rows",
                "lofo_seconds",
            )
        },
    )
    print(
        "correlated pairs:",
        [(p["feature_a"], p["feature_b"], round(p["pearson"], 3)) for p in audit["correlated_pairs"]],
    )


def test_with_a_generous_budget_lofo_tests_every_candidate_and_names_the_flagged(promoted, cfg):
    """The configured model (version 1) on the short window, LOFO unbounded: the flights features that add nothing."""
    from mlops.io.datasets import read_training_set

    first = promoted["first"]
    audit = cfg.audit.model_copy(update={"budget_factor": 1e6, "max_lofo_features": len(cfg.features.all)})
    generous = cfg.model_copy(update={"audit": audit})
    df = read_training_set("flights", first.training_key)
    summary = run_feature_audit(generous, df, first.split, registry.version("flights", first.version))
    candidates = {f for f, v in summary["verdicts"].items() if v != "contributes"}
    assert set(summary["lofo_tested"]) == candidates and not summary["lofo_skipped"] and not summary["not_tested"]
    assert set(summary["flagged"]) <= candidates
    print("generous budget:", {k: summary[k] for k in ("flagged", "lofo_tested", "time_ratio", "fit_seconds")})
    print("verdicts:", summary["verdicts"])


def test_a_version_without_fit_seconds_gets_a_reference_fit(promoted, cfg):
    """A run trained before the train stage logged `fit_cpu_seconds`: the audit times a reference fit instead."""
    from mlops.io.datasets import read_training_set
    from mlops.io.feature_audit import read_feature_audit

    first = promoted["first"]
    run = registry.client().create_run(registry.experiment_id("audit-without-fit-seconds"))
    older = dataclasses.replace(registry.version("flights", first.version), run_id=run.info.run_id)
    summary = run_feature_audit(cfg, read_training_set("flights", first.training_key), first.split, older)
    assert summary["fit_seconds_source"] == "reference fit" and summary["fit_seconds"] > 0
    assert summary["budget_seconds"] == pytest.approx(cfg.audit.budget_factor * summary["fit_seconds"])
    assert read_feature_audit(run.info.run_id)["fit_seconds_source"] == "reference fit"
