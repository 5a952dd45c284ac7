"""`mlops demo`: the whole chain on the bundled flights of 2013, through the real Airflow DAGs.

A first model is trained on January 2013, then the daily DAG runs for 1-14 February with the weekly
retrain at the end of its week (Monday 11 February). Everything is written under `$MLOPS_HOME`.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
import shutil
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

from mlops.airflow import environment as airflow_env
from mlops.core.interval import Interval
from mlops.io.paths import mail_dir, mlops_home

FIRST_TRAINING = Interval(dt.date(2013, 1, 1), dt.date(2013, 2, 1))
DAILY = Interval(dt.date(2013, 2, 1), dt.date(2013, 2, 15))
RETRAIN_WEEK = Interval(dt.date(2013, 2, 4), dt.date(2013, 2, 11))
OUTPUT_FOLDERS = ("airflow", "mlflow", "lake")


def reset_home(home: Path) -> None:
    """Remove what an earlier demo wrote (only the demo's own folders; mails are kept, numbered on)."""
    for name in OUTPUT_FOLDERS:
        shutil.rmtree(home / name, ignore_errors=True)


def run_demo(pipeline: str = "flights", quiet: bool = True) -> int:
    """Run the demo; returns the exit code (non-zero only when the chain itself broke)."""
    started = time.monotonic()
    home = mlops_home()
    reset_home(home)
    from mlops.local.mailsink import MailSink

    with (
        MailSink(mail_dir()) as sink,
        airflow_env.overridden({"AIRFLOW_CONN_SMTP_DEFAULT": airflow_env.smtp_connection(sink.host, sink.port)}),
    ):
        airflow_env.configure()
        print(f"mlops demo: writing under {home}; SMTP sink on {sink.host}:{sink.port}", flush=True)
        outcomes = _run_chain(pipeline, quiet)
        mails = list(zip(sink.files, sink.messages, strict=True))
    broken = [o for o in outcomes if not o.succeeded and not _failed_validation_only(o)]
    print(summary(pipeline, outcomes, mails, time.monotonic() - started))
    if broken:
        for o in broken:
            print(f"BROKEN: {o.dag_id} {o.interval}: {o.tasks}")
        return 1
    return 0


def _failed_validation_only(outcome) -> bool:
    """A run stopped by a data check or a monitoring alarm: the chain worked as designed."""
    failed = [t for t, s in outcome.tasks.items() if s == "failed"]
    return failed in (["validate"], ["monitor"])


def _run_chain(pipeline: str, quiet: bool) -> list:
    from mlops.local import runs

    def step(label: str, dag_id: str, interval: Interval, conf: dict[str, Any] | None = None):
        t = time.monotonic()
        sink = io.StringIO()
        if quiet:
            logging.disable(logging.CRITICAL)
            with redirect_stdout(sink), redirect_stderr(sink):
                outcome = runs.run(dag_id, interval, conf)
            logging.disable(logging.NOTSET)
        else:
            outcome = runs.run(dag_id, interval, conf)
        alarm = "MONITOR ALARM" if outcome.tasks.get("monitor") == "failed" else "VALIDATION FAILED"
        mark = "ok" if outcome.succeeded else (alarm if _failed_validation_only(outcome) else "FAILED")
        print(f"  {label:<34} {outcome.state:<8} {mark:<18} {time.monotonic() - t:5.1f} s", flush=True)
        return outcome

    print("  preparing Airflow metadata DB (SQLite) ...", flush=True)
    with redirect_stdout(io.StringIO()):
        runs.init_db()
    daily, retrain = f"{pipeline}_daily", f"{pipeline}_retrain"
    outcomes = [
        step(
            f"{retrain} {FIRST_TRAINING.key}",
            retrain,
            FIRST_TRAINING,
            {"window_start": FIRST_TRAINING.start.isoformat(), "window_end": FIRST_TRAINING.end.isoformat()},
        )
    ]
    for day in DAILY.days():
        outcomes.append(step(f"{daily} {day}", daily, Interval(day, day + dt.timedelta(days=1))))
        if day + dt.timedelta(days=1) == RETRAIN_WEEK.end:
            outcomes.append(step(f"{retrain} {RETRAIN_WEEK.key}", retrain, RETRAIN_WEEK))
    return outcomes


def days_text(interval: Interval) -> str:
    """`2013-01-07 to 2013-01-27 (21 days)`: first and last day, both included."""
    last = interval.end - dt.timedelta(days=1)
    return f"{interval.start} to {last} ({len(interval.days())} days)"


def windows_text(cfg, training_key: str) -> str:
    """The three time-ordered parts of a training window, named: training, calibration, evaluation."""
    from mlops.core.splits import split_window

    split = split_window(cfg, Interval.parse(training_key))
    return (
        f"training {days_text(split.train)}, threshold calibration {days_text(split.calibration)}, "
        f"evaluation {days_text(split.evaluation)}"
    )


def summary(pipeline: str, outcomes: list, mails: list, seconds: float) -> str:
    """The readable end-of-demo report; `mails` holds (kept file, message) pairs."""
    from mlops.core.checks import shorten
    from mlops.core.config import load_pipeline
    from mlops.io import registry
    from mlops.io.datasets import read_report
    from mlops.local.status import pipeline_status

    cfg = load_pipeline(pipeline)
    st = pipeline_status(cfg)
    champion = st["champion"]
    lines = ["", f"=== mlops demo: pipeline {pipeline} ({seconds:.0f} s) ===", ""]
    lines.append(
        f"Champion: {pipeline} version {champion['version']}, threshold {champion['threshold']:.4f}"
        if champion["version"]
        else "Champion: none"
    )
    for o in outcomes:
        if o.dag_id.endswith("_retrain") and "promote" in o.xcoms:
            p = o.xcoms["promote"]
            verdict = "promoted" if p["promoted"] else "kept the champion"
            lines.append(f"  retrain {o.interval}: version {p['version']} {verdict}")
            if "train" in o.xcoms:
                lines.append(f"      window {windows_text(cfg, o.xcoms['train']['training_key'])}")
            lines += [f"      {r}" for r in p["reasons"]]
    last_retrain = next((o for o in reversed(outcomes) if o.dag_id.endswith("_retrain") and "train" in o.xcoms), None)
    if last_retrain:
        from mlops.core.splits import split_window

        trained = last_retrain.xcoms["train"]
        evaluation = split_window(cfg, Interval.parse(trained["training_key"])).evaluation
        lines += [
            "",
            f"Last evaluation (version {trained['version']}, challenger and champion on the same rows of the "
            f"evaluation window {days_text(evaluation)}):",
        ]
        lines += _slice_table(registry, trained["run_id"])
    lines += ["", "Validation per day:"]
    scored_rows, alarms = 0, []
    for day in DAILY.days():
        report = read_report(pipeline, day.isoformat())
        o = next((o for o in outcomes if o.dag_id.endswith("_daily") and o.interval == day.isoformat()), None)
        rows = (o.xcoms.get("score") or {}).get("rows", 0) if o else 0
        scored_rows += rows
        if report is None:
            lines.append(f"  {day}  not validated")
            continue
        failed = [c for c in report["checks"] if not c["success"] and c["severity"] == "error"]
        warnings = [c for c in report["checks"] if not c["success"] and c["severity"] == "warning"]
        verdict = (
            "passed"
            if not failed
            else "FAILED: "
            + "; ".join(f"{c['check']}[{c['column']}] observed {shorten(c['observed'], 60)}" for c in failed)
        )
        alarm = "  MONITOR ALARM" if o and o.tasks.get("monitor") == "failed" else ""
        if alarm:
            alarms.append(day.isoformat())
        lines.append(
            f"  {day}  {report['rows']:4d} rows  {verdict}  ({len(warnings)} drift warnings)  "
            f"{'scored ' + str(rows) if rows else 'NOT SCORED'}{alarm}"
        )
    lines += ["", f"Scored rows: {scored_rows} (predictions in {mlops_home() / 'lake' / pipeline / 'predictions'})"]
    lines += [
        f"Monitoring alarms (a scored day's predictions outside their limits): "
        f"{', '.join(alarms) if alarms else 'none'}"
    ]
    lines += ["", f"Alert mails sent: {len(mails)} (kept in {mail_dir()})"]
    lines += [f"  {path.name}  Subject: {m['Subject']}" for path, m in mails]
    lines += [
        "",
        "Where to look:",
        f"  MLflow UI:   uv run mlflow ui --backend-store-uri sqlite:///{mlops_home() / 'mlflow' / 'mlflow.db'}",
        f"  Lake:        {mlops_home() / 'lake' / pipeline}",
        "  Status:      uv run mlops status --json",
    ]
    return "\n".join(lines)


def _slice_table(registry, run_id: str) -> list[str]:
    import mlflow.artifacts
    import pandas as pd

    registry.client()
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/slice_metrics.csv")
    df = pd.read_csv(path)
    wide = df.pivot_table(index=["slice_feature", "slice_value", "n"], columns=["model", "metric"], values="value")
    keep = [c for c in wide.columns if c[1] in ("roc_auc", "precision", "recall")]
    wide = wide[keep]
    wide.columns = [f"{m}.{k}" for m, k in wide.columns]
    order = ["overall", *[f for f in df.slice_feature.unique() if f != "overall"]]
    wide = wide.reset_index().set_index("slice_feature").loc[order].reset_index()
    small = df.loc[df.status == "small", ["slice_feature", "slice_value"]].astype(str)
    small = set(zip(small.slice_feature, small.slice_value, strict=True))
    wide["note"] = [
        "small: no interval, never gates" if key in small else ""
        for key in zip(wide.slice_feature, wide.slice_value.astype(str), strict=True)
    ]
    return ["  " + line for line in wide.to_string(index=False, float_format=lambda v: f"{v:.3f}").splitlines()]
