"""Smoke test of benchmarks/chain.py: both sides run on five days and write their outputs (no timing)."""

from __future__ import annotations

import re
import subprocess
import sys

from mlops.core.config import REPO_ROOT

LAST_LINE = re.compile(r"^whole chain at 1M rows: \d+\.\d\dx wall, \d+\.\d\dx CPU$")


def test_chain_benchmark_runs_both_sides_and_ends_with_the_summary_line(tmp_path):
    # 1-5 January 2013: 3 train days, 1 calibration day, 1 evaluation day; validation without Data Docs
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "chain.py"), "--window", "2013-01-01,2013-01-06,1,1"]
    command += ["--pairs", "1", "--scales", "1", "--light"]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert LAST_LINE.match(lines[-1]), lines[-1]
    outputs = next(line for line in lines if line.startswith("outputs (last pair)"))
    days = re.search(r"days (\d+)/(\d+)", outputs).groups()
    files = re.search(r"prediction files (\d+)/(\d+)", outputs).groups()
    assert days == ("5", "5")
    assert int(files[0]) > 0 and int(files[1]) > 0, outputs
    # the same drift checks on both sides: each day's statistics against the day before and their null
    # quantiles (200 resamples), to 4 decimals, and the same verdicts
    checks = re.search(r"drift checks (\d+)/(\d+)", outputs).groups()
    digests = re.search(r"digest (\w+)/(\w+)", outputs).groups()
    assert checks[0] == checks[1] and int(checks[0]) >= 4 * 15, outputs
    assert digests[0] == digests[1], outputs
    for stage in ("ingest", "validate", "train", "threshold", "evaluate", "score", "monitor", "whole"):
        assert any(line.startswith(stage) for line in lines), stage
    assert "load average at start" in done.stdout


def test_the_plain_script_fits_the_model_the_pipeline_is_configured_with():
    """Same work on both sides: the script's HistGradientBoosting parameters are the flights config's."""
    sys.path.insert(0, str(REPO_ROOT / "benchmarks"))
    try:
        import plain_chain
    finally:
        sys.path.remove(str(REPO_ROOT / "benchmarks"))
    from mlops.core.config import load_pipeline

    cfg = load_pipeline("flights")
    assert cfg.training.model.kind == "hist_gradient_boosting"
    assert cfg.training.model.params == plain_chain.PARAMS
