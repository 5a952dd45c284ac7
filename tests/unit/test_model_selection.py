"""Smoke test of benchmarks/model_selection.py on two short origins: it runs and its figures agree."""

from __future__ import annotations

import json
import re
import statistics
import subprocess
import sys

from mlops.core.config import REPO_ROOT


def test_rolling_origins_print_each_auc_their_mean_and_the_best(tmp_path):
    candidates = [{}, {"max_depth": 3, "max_iter": 20}]
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "model_selection.py"), "--first-origin", "2013-02-04"]
    command += ["--origins", "2", "--step-days", "7", "--window", "28", "--test-days", "7"]
    command += ["--candidates", json.dumps(candidates)]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    rows = [line for line in lines if " mean ROC AUC " in line and "|" in line]
    assert len(rows) == 2 and rows[0].startswith("config ") and rows[1].startswith('{"max_depth": 3')
    means = []
    for row in rows:
        mean = float(re.search(r"mean ROC AUC (\d\.\d{4})", row).group(1))
        aucs = [float(a) for a in row.split("|")[1].split()]
        assert len(aucs) == 2 and all(0.5 < a < 0.9 for a in aucs)
        assert abs(statistics.mean(aucs) - mean) < 1e-3
        means.append(mean)
    best = "config" if means[0] >= means[1] else json.dumps(candidates[1])
    assert lines[-1] == f"best mean ROC AUC over 2 origins: {best} {max(means):.4f}"
