"""System test: `mlops replay` over two weeks under the real scheduler (its own PostgreSQL, MLflow
server, SMTP sink, Airflow api-server, scheduler, dag-processor and triggerer), as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psutil
import pytest

from mlops.local.stack import bin_path
from tests.system.airflow_stack import base_env

pytestmark = pytest.mark.system


@pytest.fixture(scope="module")
def replayed():
    """`mlops replay flights --start 2013-02-01 --end 2013-02-15` in a fresh MLOPS_HOME.

    The home is a `mkdtemp` folder, not pytest's tmp_path: pytest prunes old base temp folders, which
    would delete a running server's data when another pytest session starts meanwhile.
    """
    home = Path(tempfile.mkdtemp(prefix="mlops-replay-"))
    env = {**base_env(), "MLOPS_HOME": str(home)}
    cmd = [bin_path("mlops"), "replay", "flights", "--start", "2013-02-01", "--end", "2013-02-15"]
    try:
        out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500, check=False)
        print(out.stdout[-4000:], out.stderr[-4000:])
        assert out.returncode == 0, out.stderr[-4000:]
        leftovers = [
            p.info for p in psutil.process_iter(["pid", "cmdline"]) if str(home) in " ".join(p.info["cmdline"] or [])
        ]
        assert not leftovers, f"processes left behind: {leftovers}"
        yield home, json.loads((home / "reports" / "flights-replay.json").read_text()), out.stdout
    finally:
        shutil.rmtree(home, ignore_errors=True)


def test_every_day_is_scored_or_failed_for_a_named_cause(replayed):
    _, data, _ = replayed
    days = {d["day"]: d for d in data["days"]}
    assert sorted(days) == [f"2013-02-{i:02d}" for i in range(1, 15)]
    for day, entry in days.items():
        assert entry["status"] in ("scored", "failed"), entry
        if entry["status"] == "failed":
            assert entry["reasons"], f"{day} failed without a named cause"
        else:
            assert entry["scored_rows"] == entry["rows"] > 0 and entry["model_version"]
    # the blizzard: most flights of 8-9 February were cancelled and have no arrival delay
    assert days["2013-02-08"]["status"] == days["2013-02-09"]["status"] == "failed"
    assert any("arr_delay" in r for r in days["2013-02-08"]["reasons"])
    assert data["alerts"]["mails"] >= 2


def test_the_week_retrain_ran_after_its_days_and_each_day_has_the_champion_of_that_day(replayed):
    _, data, _ = replayed
    weekly = [r for r in data["retrains"] if r["kind"] == "retrain"]
    assert [r["interval"] for r in weekly] == ["2013-01-28", "2013-02-04"]
    assert all(r["state"] == "success" for r in data["retrains"]), data["retrains"]
    bootstrap = next(r for r in data["retrains"] if r["kind"] == "bootstrap")
    assert bootstrap["promoted"] and bootstrap["version"] == "1"
    days = {d["day"]: d for d in data["days"]}
    assert days["2013-02-01"]["model_version"] == "1"  # before the first weekly retrain
    # days after a promotion are scored by the promoted version, days before by the earlier one
    promoted = {r["interval"]: r["version"] for r in weekly if r["promoted"]}
    if "2013-02-04" in promoted:
        assert days["2013-02-11"]["model_version"] == promoted["2013-02-04"]


def test_the_report_has_realized_auc_wall_time_and_overhead(replayed):
    home, data, stdout = replayed
    assert data["wall_seconds"] > 0
    assert data["per_run"]["median_overhead_seconds"] is not None
    assert data["realized"]["weekly"] and all(0.5 < w["roc_auc"] < 0.9 for w in data["realized"]["weekly"])
    html = (home / "reports" / "flights-replay.html").read_text()
    assert "Replay of flights" in html and "data:image/png;base64," in html
    assert data["mlflow_run_id"]
    assert "=== replay of flights 2013-02-01..2013-02-15" in stdout
    assert os.path.exists(home / "replay" / "flights" / "lake" / "flights" / "predictions" / "2013-02-14.parquet")
