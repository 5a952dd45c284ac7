"""The two user-facing contracts, as a newcomer runs them: `mlops demo`, then `mlops status --json`."""

from __future__ import annotations

import json
import subprocess

import pytest

from mlops.local.stack import bin_path
from tests.system.airflow_stack import base_env

pytestmark = pytest.mark.e2e

DEMO_DAYS = [f"2013-02-{d:02d}" for d in range(1, 15)]
BLIZZARD = ("2013-02-08", "2013-02-09")


def _mlops(*args: str, home) -> subprocess.CompletedProcess:
    """The `mlops` console script in a fresh process, with nothing of this test session's settings."""
    env = base_env() | {"MLOPS_HOME": str(home)}
    return subprocess.run([bin_path("mlops"), *args], env=env, capture_output=True, text=True, timeout=900, check=False)


def test_demo_then_status(tmp_path):
    home = tmp_path / "demo-home"
    demo = _mlops("demo", home=home)
    assert demo.returncode == 0, demo.stdout[-4000:] + demo.stderr[-4000:]
    out = demo.stdout
    print(out)

    lines = {day: next(line for line in out.splitlines() if line.startswith(f"  {day}  ")) for day in DEMO_DAYS}
    for day in DEMO_DAYS:
        if day in BLIZZARD:
            assert "FAILED: " in lines[day] and "NOT SCORED" in lines[day], lines[day]
        else:
            assert " passed " in lines[day] and "scored " in lines[day], lines[day]
    assert "retrain 2013-01-01..2013-02-01: version 1 promoted" in out
    alarmed = [day for day in DEMO_DAYS if "MONITOR ALARM" in lines[day]]  # said even when there is none
    assert f"Monitoring alarms (a scored day's predictions outside their limits): {', '.join(alarmed) or 'none'}" in out
    assert "Last evaluation (version 2, challenger and champion on the same rows of the evaluation window " in out
    # the weekly retrain trains on every day since 1 January (window_days 182): 27 + 7 + 7, named as such
    assert (
        "      window training 2013-01-01 to 2013-01-27 (27 days), threshold calibration 2013-01-28 to 2013-02-03 "
        "(7 days), evaluation 2013-02-04 to 2013-02-10 (7 days)"
    ) in out
    for day in BLIZZARD:
        assert f"Subject: [mlops] flights: flights_daily.validate failed for {day}: " in out
    assert len(list((home / "mail").glob("*.eml"))) >= len(BLIZZARD)

    status = _mlops("status", "--json", home=home)
    assert status.returncode == 0, status.stderr[-4000:]
    flights = json.loads(status.stdout)["pipelines"]["flights"]
    champion_line = next(line for line in out.splitlines() if line.startswith("Champion: "))
    assert champion_line.startswith(f"Champion: flights version {flights['champion']['version']}, threshold ")
    assert 0 < flights["champion"]["threshold"] < 1
    assert flights["last_ingested"] == flights["last_validated"] == flights["last_scored"] == "2013-02-14"
    assert {alert["interval"] for alert in flights["open_alerts"]} == set(BLIZZARD)
    counts = flights["counts"]
    assert (counts["validation_passed"], counts["validation_failed"]) == (len(DEMO_DAYS) - len(BLIZZARD), len(BLIZZARD))
    assert counts["validated"] == counts["validation_passed"]
    assert all(alert["report"].endswith(f"/reports/{alert['interval']}.html") for alert in flights["open_alerts"])
