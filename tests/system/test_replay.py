"""System test: `mlops replay` over two weeks under the real scheduler (its own PostgreSQL, MLflow
server, SMTP sink, Airflow api-server, scheduler, dag-processor and triggerer), as a user runs it."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from mlops.core.config import REPO_ROOT
from mlops.local.stack import bin_path
from tests.system.airflow_stack import base_env

pytestmark = pytest.mark.system


START, END = "2013-02-04", "2013-02-19"  # Monday to Monday: two weeks, their retrains, the Monday after
DAYS = [f"2013-02-{d:02d}" for d in range(4, 19)]
REPROCESSED = ["2013-02-07", "2013-02-08"]  # a scored day and a blizzard day (fails validation)


def _mlops_replay(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**base_env(), "MLOPS_HOME": str(home)}
    cmd = [bin_path("mlops"), "replay", "flights", *args]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500, check=False)
    print(out.stdout[-4000:], out.stderr[-4000:])
    assert out.returncode == 0, out.stderr[-4000:]
    leftovers = [
        p.info for p in psutil.process_iter(["pid", "cmdline"]) if str(home) in " ".join(p.info["cmdline"] or [])
    ]
    assert not leftovers, f"processes left behind: {leftovers}"
    return out


@pytest.fixture(scope="module")
def replayed():
    """`mlops replay flights --start 2013-02-04 --end 2013-02-19` in a fresh MLOPS_HOME, then
    `--reprocess` over 7-8 February (a scored day and the first blizzard day, which fails validation:
    one of each outcome, which is what the reprocess check needs; the second blizzard day would only
    repeat the first).

    Then `--report-only` over 4-10 February: the report of the kept runs, running nothing.
    Yields (home, the first replay's report, its stdout, the reprocess's report, the report-only
    report, the stdouts of the reprocess and of the report-only run). The home is a
    `mkdtemp` folder, not pytest's tmp_path: pytest prunes old base temp folders, which would delete
    a running server's data when another pytest session starts meanwhile.
    """
    home = Path(tempfile.mkdtemp(prefix="mlops-replay-"))
    report = home / "reports" / "flights-replay.json"
    try:
        out = _mlops_replay(home, "--start", START, "--end", END)
        first = json.loads(report.read_text())
        later = [_mlops_replay(home, "--start", REPROCESSED[0], "--end", "2013-02-09", "--reprocess").stdout]
        again = json.loads(report.read_text())
        later.append(_mlops_replay(home, "--start", START, "--end", "2013-02-11", "--report-only").stdout)
        yield home, first, out.stdout, again, json.loads(report.read_text()), later
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_every_day_is_scored_or_failed_for_a_named_cause(replayed):
    _, data, _, _, _, _ = replayed
    days = {d["day"]: d for d in data["days"]}
    assert sorted(days) == DAYS
    for day, entry in days.items():
        assert entry["status"] in ("scored", "failed"), entry
        if entry["status"] == "failed":
            assert entry["reasons"], f"{day} failed without a named cause"
            assert not any("see the task log" in r or "no failed task" in r for r in entry["reasons"]), entry
        else:
            assert entry["scored_rows"] == entry["rows"] > 0 and entry["model_version"]
    # the blizzard: most flights of 8-9 February were cancelled and have no arrival delay
    assert days["2013-02-08"]["status"] == days["2013-02-09"]["status"] == "failed"
    assert any("arr_delay" in r for r in days["2013-02-08"]["reasons"])
    assert data["alerts"]["mails"] >= 2


def test_the_week_retrain_ran_after_its_days_and_each_day_has_the_champion_of_that_day(replayed):
    _, data, _, _, _, _ = replayed
    weekly = [r for r in data["retrains"] if r["kind"] == "retrain"]
    assert [r["interval"] for r in weekly] == ["2013-02-04", "2013-02-11"]
    assert all(r["state"] == "success" for r in data["retrains"]), data["retrains"]
    bootstrap = next(r for r in data["retrains"] if r["kind"] == "bootstrap")
    assert bootstrap["promoted"] and bootstrap["version"] == "1"
    days = {d["day"]: d for d in data["days"]}
    assert days["2013-02-04"]["model_version"] == "1"  # before the first weekly retrain
    # days after a promotion are scored by the promoted version, days before by the earlier one
    promoted = {r["interval"]: r["version"] for r in weekly if r["promoted"]}
    if "2013-02-04" in promoted:
        assert days["2013-02-11"]["model_version"] == promoted["2013-02-04"]


def test_each_scored_day_has_the_model_a_re_run_would_use(replayed, monkeypatch):
    """The registry the replay leaves names, for every scored day, the version that scored it
    (`registry.champion_for`): a backfill of any of these days scores it with the same model, even
    where a retrain triggered by the outcomes of an earlier day was promoted after it was scored."""
    from mlops.io import registry

    home, data, _, _, _, _ = replayed
    monkeypatch.setenv("MLOPS_HOME", str(home / "replay" / "flights"))  # the stack's home: its MLflow store
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    champions = registry.champions("flights")
    scored = {d["day"]: d["model_version"] for d in data["days"] if d["status"] == "scored"}
    assert scored and {day: champions(dt.date.fromisoformat(day)).version for day in scored} == scored


def test_the_report_has_realized_auc_wall_time_and_overhead(replayed):
    home, data, stdout, _, _, _ = replayed
    assert data["wall_seconds"] > 0
    assert data["per_run"]["median_overhead_seconds"] is not None
    assert data["realized"]["weekly"] and all(0.5 < w["roc_auc"] < 0.9 for w in data["realized"]["weekly"])
    html = (home / "reports" / "flights-replay.html").read_text()
    assert "Replay of flights" in html and "data:image/png;base64," in html
    assert data["mlflow_run_id"]
    assert f"=== replay of flights {START}..{END}" in stdout
    # where the report went, and each weekly retrain by the week it is the data interval of
    files = {kind: str(home / "reports" / f"flights-replay.{kind}") for kind in ("html", "json")}
    assert data["files"] == files
    assert f"year report: {files['html']} (its data: {files['json']})" in stdout
    assert "retrain of the week 2013-02-04..2013-02-11: 1 of 1 runs succeeded" in stdout
    # an outcomes run fails when a monitoring rule fires (its alerts task mails them): the line says which
    failed = [line for line in stdout.splitlines() if line.startswith("outcomes ") and ": failed in " in line]
    assert failed and all("; alerts (mailed): 2013-02-" in line for line in failed), failed
    assert os.path.exists(home / "replay" / "flights" / "lake" / "flights" / "predictions" / "2013-02-12.parquet")


def test_outcomes_cover_every_day_with_predictions_and_the_estimate_is_judged(replayed):
    """The loop closes in the replay: an outcomes run after each chunk of daily runs evaluates every day
    that has predictions (realized and CBPE-estimated metrics), and the report says how far the
    estimate was from the realized ROC AUC once the labels landed."""
    home, data, stdout, _, _, _ = replayed
    loop = data["outcomes"]
    with_predictions = [d["day"] for d in data["days"] if d["scored_rows"]]
    assert loop["scored_days"] == len(with_predictions) >= 10
    assert loop["days_with_outcomes"] == len(with_predictions) and loop["scored_days_without"] == []
    assert all(r["realized"] is not None and r["estimated"] is not None for r in loop["daily_roc_auc"])
    errors = {e["metric"]: e for e in loop["estimate_error"]}
    assert errors["roc_auc"]["days"] == len(with_predictions)
    assert 0 <= errors["roc_auc"]["median_absolute_error"] < 0.15
    assert loop["judged_days"] == len(with_predictions)
    outcome_runs = [r for r in data["retrains"] if r["kind"] == "triggered"]
    assert len(outcome_runs) == len(loop["triggered_retrains"])  # each trigger's retrain was waited for
    html = (home / "reports" / "flights-replay.html").read_text()
    assert "Realized and estimated ROC AUC per month" in html and "Error of the estimate" in html
    assert "estimate error of daily roc_auc" in stdout


def test_the_report_sums_up_each_retrains_feature_audit_as_mlflow_recorded_it(replayed):
    """Every version a retrain registered has its feature audit in the report, as its training run's
    `audit/feature_audit.json` says (read from the MLflow artifact store on disk), and the report
    counts the verdicts per feature over them."""
    home, data, stdout, _, _, _ = replayed
    stored = {}
    for path in (home / "replay" / "flights" / "mlflow" / "artifacts").glob("*/*/artifacts/audit/feature_audit.json"):
        summary = json.loads(path.read_text())
        stored[str(summary["version"])] = summary
    versions = [r for r in data["retrains"] if r.get("version")]
    assert len(versions) >= 3 and all(r.get("audit") for r in versions), versions
    for r in versions:
        assert r["audit"]["verdicts"] == stored[r["version"]]["verdicts"]
        assert r["audit"]["permutation_rows"] == stored[r["version"]]["permutation_rows"]
        assert r["audit_flagged"] == stored[r["version"]]["flagged"]  # the audit task's XCom
    audit = data["feature_audit"]
    assert audit["audits"] == len(versions) and audit["errors"] == 0
    for f in audit["features"]:
        verdicts = [stored[r["version"]]["verdicts"].get(f["feature"]) for r in versions]
        assert f["flagged"] == verdicts.count("flagged") and f["contributes"] == verdicts.count("contributes")
    assert "feature audit over" in stdout
    assert "Feature audit over the retrains" in (home / "reports" / "flights-replay.html").read_text()


def test_a_second_replay_of_the_same_days_leaves_digest_identical_outputs(replayed):
    """`--reprocess` runs the completed runs again (backfills with reprocess_behavior: completed): the
    raw partitions, validation reports and predictions are digest-identical, failed days included."""
    _, first, _, again, _, _ = replayed
    check = again["reprocess_check"]
    assert sorted(first["digests"]) == DAYS and sorted(again["digests"]) == REPROCESSED
    assert check == {"days_compared": len(REPROCESSED), "identical": len(REPROCESSED), "differences": {}}, check
    assert all("predictions" in first["digests"][d] for d in ("2013-02-07", "2013-02-11", "2013-02-12"))
    assert "predictions" not in first["digests"]["2013-02-08"]  # the blizzard: validated, not scored
    assert "predictions" in again["digests"]["2013-02-07"] and "predictions" not in again["digests"]["2013-02-08"]
    rerun, days = {d["day"]: d for d in again["days"]}, {d["day"]: d for d in first["days"]}
    assert rerun["2013-02-07"]["status"] == "scored" and rerun["2013-02-08"]["status"] == "failed", rerun
    assert rerun["2013-02-07"]["model_version"] == days["2013-02-07"]["model_version"]
    assert rerun["2013-02-08"]["reasons"] == days["2013-02-08"]["reasons"]  # failed again, for the same cause


def test_a_report_of_the_kept_runs_needs_no_new_run(replayed):
    """`--report-only` (e.g. after a replay stopped with Ctrl-C) reports the kept runs of its range as
    the replay itself did, and creates no run: its stack has no scheduler, dag-processor or triggerer."""
    _, first, _, _, report, later = replayed
    assert "started airflow-api-server" in later[1] and "started mlflow" in later[1]
    assert not any(f"started airflow-{name}" in later[1] for name in ("scheduler", "dag-processor", "triggerer"))
    days = {d["day"]: d for d in first["days"]}
    assert [d["day"] for d in report["days"]] == [f"2013-02-{d:02d}" for d in range(4, 11)]
    for entry in report["days"]:
        if entry["day"] not in REPROCESSED:  # the reprocess ran these again
            assert {k: entry[k] for k in ("status", "scored_rows", "model_version", "reasons")} == {
                k: days[entry["day"]][k] for k in ("status", "scored_rows", "model_version", "reasons")
            }
    kinds = sorted(r["kind"] for r in report["retrains"])
    assert kinds.count("bootstrap") == 1 and kinds.count("retrain") == 2  # the weekly retrains of 4 and 11 February
    assert report["daily_runs"] == len(first["days"])  # every kept daily run, none added
    assert report["wall_seconds"] > 0


def test_a_stack_started_again_on_its_home_does_not_migrate_the_airflow_database_again(replayed):
    home, _, stdout, _, _, later = replayed
    assert "Airflow's database is current" not in stdout  # a fresh home: migrated
    marker = (home / "replay" / "flights" / "postgres" / "airflow-schema").read_text().split()  # the stack home
    assert len(marker) == 2 and marker[0].startswith("3."), marker  # Airflow version, alembic revision
    for out in later:  # the same Airflow, the database at the revision it left: nothing to migrate
        assert f"Airflow's database is current (Airflow {marker[0]}, revision {marker[1]})" in out


def test_the_replay_tasks_benchmark_reads_each_run_and_task_from_airflows_records(replayed):
    """`benchmarks/replay_tasks.py --home` on the kept replay: a row per DAG with its runs (each daily run
    of the range once, the reprocessed ones included), a row per task that ran, and no negative wait."""
    home, first, _, _, _, _ = replayed
    script = REPO_ROOT / "benchmarks" / "replay_tasks.py"
    out = subprocess.run(
        [sys.executable, str(script), "--home", str(home / "replay" / "flights")],
        env={**base_env(), "MLOPS_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {m[0]: m[1:] for m in re.findall(r"^\| (\S+(?: \S+)?) \| (\d+) \| (.+) \|$", out.stdout, re.M)}
    assert int(rows["flights_daily"][0]) == len(first["days"]), out.stdout
    assert int(rows["flights_retrain"][0]) >= len(first["retrains"]), out.stdout  # bootstrap, weekly, triggered
    for task in ("ingest", "validate", "score", "monitor"):
        assert int(rows[f"flights_daily {task}"][0]) > 0, out.stdout
    assert not any(re.search(r"-\d", cells) for _, cells in rows.values()), out.stdout  # no negative seconds
