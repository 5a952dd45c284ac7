"""`mlops replay`: operate a pipeline over a range of days under the real scheduler, as a team would.

It starts the local stack (`LocalStack`: PostgreSQL, MLflow server, SMTP sink, Airflow api-server,
scheduler, dag-processor, triggerer; LocalExecutor; preloaded task libraries) on a folder of its own,
`$MLOPS_HOME/replay/<pipeline>`, and drives Airflow through its REST API only:

1. a first retrain on the month before `start` (its params give the window), or, when the source has
   no data there, on the first month of the range; promotion allowed. The days of that bootstrap
   window are training data of the first champion: they are reported as skipped, never scored.
2. then, in time order, a backfill of the daily DAG over the days up to the end of each retrain
   interval, followed by a backfill of the retrain DAG for that interval (promotion allowed), so each
   week's retrain sees the days before it and each day is scored by the champion of that day.

The year report (`$MLOPS_HOME/reports/<pipeline>-replay.{json,html}`, also logged to MLflow) gives per
day the outcome, per retrain the decision and its reasons, the champion's realized ROC AUC per week
and month (predictions joined with the labels in the lake by row key), the alert mails, wall time
and the per-run overhead of Airflow. `reprocess=True` runs the same backfills again over the kept
state (`reprocess_behavior: completed`) and reports whether every partition, validation report and
prediction came out identical.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPORT_NAME = "{pipeline}-replay"
BACKFILL_TIMEOUT = 3600.0


@dataclass
class ReplayPlan:
    """What a replay runs, in order: the bootstrap window, then (daily days, retrain logical date) steps."""

    bootstrap: tuple[dt.date, dt.date]
    steps: list[tuple[str, dt.date, dt.date]] = field(default_factory=list)  # (dag kind, first, last)
    bootstrap_days: list[dt.date] = field(default_factory=list)  # days of the range used to bootstrap


def month_before(day: dt.date) -> dt.date:
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def month_after(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def plan(
    start: dt.date,
    end: dt.date,
    retrain_weekday: int,
    has_data_before: bool,
    label_delay_days: int | None = None,
    chunk_days: int = 4,
) -> ReplayPlan:
    """The order of backfills for days [start, end) with weekly retrains starting on `retrain_weekday`.

    A retrain's data interval is the week [M, M + 7) that starts on that weekday; it runs once the
    daily runs of that week are done. Retrains whose week ends before the bootstrap window does are
    left out (their window would lie before the data).

    With `label_delay_days` (the pipeline's `labels.delay_days`; None: no outcomes steps), each week's
    daily runs go in chunks of at most `chunk_days` days, and each chunk is followed by an
    ("outcomes", first, last) step over the scored days whose labels are due by then (day D once the
    daily run of D + delay has run), so a degradation judged mid-week can trigger a retrain whose
    champion scores the rest of that week. A last outcomes step covers the days left at the end.
    """
    if end <= start:
        raise ValueError(f"empty replay range {start}..{end}")
    if chunk_days < 1:
        raise ValueError(f"chunk_days must be >= 1, got {chunk_days}")
    bootstrap = (month_before(start), start) if has_data_before else (start, min(month_after(start), end))
    out = ReplayPlan(bootstrap)
    first_daily = max(start, bootstrap[1])
    out.bootstrap_days = [start + dt.timedelta(days=i) for i in range((first_daily - start).days)]
    one = dt.timedelta(days=1)
    day, labelled = first_daily, first_daily  # next day to run daily, next day to evaluate outcomes of

    def daily_until(last: dt.date) -> None:  # daily chunks up to `last`, each followed by its outcomes
        nonlocal day, labelled
        while day <= last:
            chunk_last = min(last, day + (chunk_days - 1) * one) if label_delay_days is not None else last
            out.steps.append(("daily", day, chunk_last))
            day = chunk_last + one
            if label_delay_days is not None:
                due = chunk_last - label_delay_days * one
                if labelled <= due:
                    out.steps.append(("outcomes", labelled, due))
                    labelled = due + one

    monday = bootstrap[1] - dt.timedelta(days=(bootstrap[1].weekday() - retrain_weekday) % 7)
    while monday + dt.timedelta(days=7) <= end:
        week_end = monday + dt.timedelta(days=7)
        if week_end > bootstrap[1]:
            daily_until(week_end - one)
            out.steps.append(("retrain", monday, monday))
        monday = week_end
    daily_until(end - one)
    if label_delay_days is not None and labelled < end:
        out.steps.append(("outcomes", labelled, end - one))
    return out


def replay(
    pipeline: str,
    start: dt.date,
    end: dt.date,
    reprocess: bool = False,
    max_active_runs: int = 4,
    home: Path | None = None,
    echo=print,
    report_only: bool = False,
) -> dict[str, Any]:
    """Replay `pipeline` over [start, end) under the real scheduler; returns the year report's data.

    `report_only`: run nothing; start the stack without a scheduler on the kept replay state (so runs
    a stopped replay left queued stay as they are) and write the report of the runs it holds over
    [start, end) (e.g. after a replay stopped with Ctrl-C); its `wall_seconds` is
    then the span from the first run's start to the last run's end.
    Raises RuntimeError naming the run or backfill when Airflow refuses or loses one (or, with
    `report_only`, when there is no kept replay), and KeyboardInterrupt on SIGINT or SIGTERM, once
    every process of the stack has stopped.
    """
    from mlops.airflow import environment as airflow_env
    from mlops.core.config import load_pipeline
    from mlops.io.paths import mlops_home
    from mlops.local.ports import free_port
    from mlops.local.stack import LocalStack, stopped_by_signals

    cfg = load_pipeline(pipeline)
    reports_dir = mlops_home() / "reports"
    home = Path(home or mlops_home() / "replay" / pipeline).resolve()
    previous = _read_json(reports_dir / f"{REPORT_NAME.format(pipeline=pipeline)}.json") if reprocess else None
    if report_only and not (home / "airflow").exists():
        raise RuntimeError(f"no replay of {pipeline} kept in {home}: nothing to report")
    if not (reprocess or report_only) and home.exists():
        shutil.rmtree(home)
    home.mkdir(parents=True, exist_ok=True)
    retrain_weekday = _cron_weekday(cfg.schedules.retrain)
    the_plan = plan(start, end, retrain_weekday, _source_has_day(cfg, month_before(start)), cfg.labels.delay_days)
    started = time.monotonic()
    stack = LocalStack(home, free_port(), free_port(), free_port(), scheduling=not report_only)
    with stopped_by_signals(), stack:  # Ctrl-C or SIGTERM: KeyboardInterrupt, and the stack stops whole
        echo(f"replay {pipeline}: stack up in {time.monotonic() - started:.0f} s ({stack.airflow_url})")
        driver = _Driver(stack, pipeline, max_active_runs, reprocess, echo)
        driver.wait_for_dags()
        if report_only:
            span = driver.load_runs()
            with airflow_env.overridden({"MLFLOW_TRACKING_URI": stack.env["MLFLOW_TRACKING_URI"]}):
                return _report(cfg, stack, driver, the_plan, None, reports_dir, (start, end, span))
        driver.set_paused(f"{pipeline}_rescore", True)  # a replay scores each day with the champion of that day
        for dag in ("daily", "retrain", "outcomes"):
            driver.set_paused(f"{pipeline}_{dag}", False)
        b0, b1 = the_plan.bootstrap
        if not reprocess:
            driver.bootstrap(b0, b1)
        for kind, first, last in the_plan.steps:
            if kind == "outcomes":
                driver.outcomes(first, last)
            else:
                driver.backfill(kind, first, last)
        wall = time.monotonic() - started
        with airflow_env.overridden({"MLFLOW_TRACKING_URI": stack.env["MLFLOW_TRACKING_URI"]}):
            data = _report(cfg, stack, driver, the_plan, previous, reports_dir, (start, end, wall))
    return data


def _report(cfg, stack, driver, the_plan, previous, reports_dir: Path, span: tuple) -> dict[str, Any]:
    """Collect the report's data, write its JSON and HTML and log both to MLflow (the stack's server)."""
    from mlops.reporting.replay import log_to_mlflow, write_html

    data = _collect(cfg, stack, driver, the_plan, *span)
    if previous is not None:
        data["reprocess_check"] = _compare(previous.get("digests", {}), data["digests"])
    reports_dir.mkdir(parents=True, exist_ok=True)
    json_path = reports_dir / f"{REPORT_NAME.format(pipeline=cfg.name)}.json"
    json_path.write_text(json.dumps(data, indent=2, default=str))
    html_path = write_html(data, reports_dir / f"{REPORT_NAME.format(pipeline=cfg.name)}.html")
    data["files"] = {"html": str(html_path), "json": str(json_path)}
    data["mlflow_run_id"] = log_to_mlflow(data, json_path, html_path)
    json_path.write_text(json.dumps(data, indent=2, default=str))
    return data


class _Driver:
    """Issues the replay's triggers and backfills through the REST API and waits for them."""

    def __init__(self, stack, pipeline: str, max_active_runs: int, reprocess: bool, echo) -> None:
        self.stack, self.api, self.pipeline = stack, stack.api, pipeline
        self.max_active_runs, self.reprocess, self.echo = max_active_runs, reprocess, echo
        self.runs: list[dict[str, Any]] = []  # every run the replay made, with its kind

    def wait_for_dags(self) -> None:
        from mlops.local.stack import wait_until

        wanted = {f"{self.pipeline}_{k}" for k in ("daily", "retrain", "rescore")}

        def parsed() -> bool:
            found = {d["dag_id"] for d in self.api.get("/dags", dag_id_pattern=self.pipeline, limit=100)["dags"]}
            return wanted <= found

        wait_until(parsed, 300, f"the {self.pipeline} DAGs to be parsed", self.stack.services)

    def set_paused(self, dag_id: str, paused: bool) -> None:
        r = self.api.patch(f"/dags/{dag_id}", {"is_paused": paused})
        if r.status_code != 200:
            raise RuntimeError(f"cannot {'pause' if paused else 'unpause'} {dag_id}: HTTP {r.status_code} {r.text}")

    def bootstrap(self, first: dt.date, end: dt.date) -> None:
        dag_id = f"{self.pipeline}_retrain"
        run_id = f"replay_bootstrap_{first}_{end}"
        conf = {"window_start": first.isoformat(), "window_end": end.isoformat(), "allow_promotion": True}
        t0 = time.monotonic()
        self.api.trigger(dag_id, run_id, None, conf)
        state = self._wait_run(dag_id, run_id, 1800)
        self.runs.append({"kind": "bootstrap", "dag_id": dag_id, "run_id": run_id, "state": state})
        self.echo(f"bootstrap retrain on {first}..{end}: {state} in {time.monotonic() - t0:.0f} s")
        if state != "success":
            raise RuntimeError(f"the bootstrap retrain {run_id} ended {state}: {self.api.tasks(dag_id, run_id)}")

    def backfill(self, kind: str, first: dt.date, last: dt.date) -> None:
        dag_id = f"{self.pipeline}_{kind}"
        body = {
            "dag_id": dag_id,
            "from_date": f"{first.isoformat()}T00:00:00Z",
            "to_date": f"{last.isoformat()}T00:00:00Z",
            "max_active_runs": self.max_active_runs if kind == "daily" else 1,
            "reprocess_behavior": "completed" if self.reprocess else "none",
            "dag_run_conf": {"allow_promotion": True} if kind == "retrain" else {},
        }
        t0 = time.monotonic()
        r = self.api.post("/backfills", body)
        if r.status_code != 200:
            raise RuntimeError(f"backfill of {dag_id} {first}..{last} refused: HTTP {r.status_code} {r.text}")
        backfill_id = r.json()["id"]
        from mlops.local.airflow_api import ENDED_RUN_STATES
        from mlops.local.stack import wait_until

        # The scheduler marks a backfill completed only every 30 s (a fixed timer of Airflow 3.3): wait
        # for its runs to end instead, which is what the replay needs before its next step.
        expected = (last - first).days + 1 if kind == "daily" else 1
        runs: list[dict] = []

        def ended() -> bool:
            found = self.api.runs(
                dag_id,
                run_type="backfill",
                logical_date_gte=f"{first.isoformat()}T00:00:00Z",
                logical_date_lte=f"{last.isoformat()}T00:00:00Z",
            )
            runs[:] = found
            return len(found) >= expected and all(run["state"] in ENDED_RUN_STATES for run in found)

        wait_until(ended, BACKFILL_TIMEOUT, f"backfill {backfill_id} of {dag_id} {first}..{last}", self.stack.services)
        # Every run has ended: close the backfill now (cancel fails queued runs only, and there are none),
        # or the next backfill of this DAG is refused until that timer fires.
        closed = self.api.put(f"/backfills/{backfill_id}/cancel")
        if closed.status_code not in (200, 409):  # 409: the scheduler completed it already
            raise RuntimeError(
                f"cannot close backfill {backfill_id} of {dag_id}: HTTP {closed.status_code}: {closed.text}"
            )
        states = [run["state"] for run in runs]
        self.runs += [{"kind": kind, **run} for run in runs]
        # a retrain's data interval is the week that starts on its logical date
        days = f"{first}..{last}" if kind == "daily" else f"of the week {first}..{first + dt.timedelta(days=7)}"
        self.echo(
            f"{kind} {days}: {states.count('success')} of {len(states)} runs succeeded in {time.monotonic() - t0:.0f} s"
        )

    def load_runs(self) -> float:
        """Fill `runs` with the kept state's runs (for a report of a replay run earlier); returns the
        seconds from the first run's start to the last run's end."""
        kinds = {"backfill": None, "manual": "bootstrap", "asset_triggered": "triggered"}
        for dag in ("daily", "retrain", "outcomes"):
            for run in self.api.runs(f"{self.pipeline}_{dag}"):
                kind = dag if run["run_type"] == "backfill" or dag == "outcomes" else kinds.get(run["run_type"])
                if kind is not None and (kind != "bootstrap" or run["dag_run_id"].startswith("replay_bootstrap")):
                    self.runs.append({"kind": kind, "run_id": run["dag_run_id"], **run})
        starts = [run["start_date"] for run in self.runs if run.get("start_date")]
        ends = [run["end_date"] for run in self.runs if run.get("end_date")]
        if not starts or not ends:
            return 0.0
        first, last = (dt.datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (min(starts), max(ends)))
        return (last - first).total_seconds()

    def outcomes(self, first: dt.date, last: dt.date) -> None:
        """Evaluate scored days first..last once their labels are due: a manual run of `<name>_outcomes`
        (params start/end), as its daily schedule would; not a backfill, so sustained degradation may
        trigger a retrain (an asset-triggered run of `<name>_retrain`), which is waited for before the
        next daily runs, so they are scored by its champion when it is promoted."""
        from mlops.stages.alerts import read_judgement

        dag_id = f"{self.pipeline}_outcomes"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")  # a second replay makes its own runs
        run_id = f"replay_outcomes_{first}_{last}_{stamp}"
        conf = {"start": first.isoformat(), "end": (last + dt.timedelta(days=1)).isoformat()}
        retrain_id = f"{self.pipeline}_retrain"
        before = {r["dag_run_id"] for r in self.api.runs(retrain_id, run_type="asset_triggered")}
        t0 = time.monotonic()
        self.api.trigger(dag_id, run_id, None, conf)
        state = self._wait_run(dag_id, run_id, 1800)
        self.runs.append(
            {
                "kind": "outcomes",
                "dag_id": dag_id,
                "dag_run_id": run_id,
                "state": state,
                "days": [first.isoformat(), last.isoformat()],
            }
        )
        triggered, fired = [], []
        for i in range((last - first).days + 1):
            judgement = read_judgement(self.pipeline, (first + dt.timedelta(days=i)).isoformat()) or {}
            if (judgement.get("trigger") or {}).get("emit"):
                triggered.append(judgement["day"])
            fired += [f"{judgement['day']} {_alert_name(a)}" for a in judgement.get("alerts", [])]
        shown = "; ".join(fired[:3]) + (f"; and {len(fired) - 3} more" if len(fired) > 3 else "")
        self.echo(
            f"outcomes {first}..{last}: {state} in {time.monotonic() - t0:.0f} s"
            + (f"; alerts (mailed): {shown}" if fired else "")
            + (f"; degradation on {', '.join(triggered)} triggered a retrain" if triggered else "")
        )
        if triggered:
            self._wait_triggered(retrain_id, before)

    def _wait_triggered(self, dag_id: str, before: set[str]) -> None:
        """Wait for the asset-triggered run that an event on `<name>_degraded` creates, and its end."""
        from mlops.local.stack import wait_until

        found: list[dict] = []

        def created() -> bool:
            found[:] = [r for r in self.api.runs(dag_id, run_type="asset_triggered") if r["dag_run_id"] not in before]
            return bool(found)

        wait_until(created, 300, f"the retrain that the {self.pipeline}_degraded event triggers", self.stack.services)
        t0 = time.monotonic()
        for run in found:
            state = self._wait_run(dag_id, run["dag_run_id"], 1800)
            run = self.api.get(f"/dags/{dag_id}/dagRuns/{run['dag_run_id']}")
            self.runs.append({"kind": "triggered", **run, "state": state})
            self.echo(f"triggered retrain {run['dag_run_id']}: {state} in {time.monotonic() - t0:.0f} s")

    def _wait_run(self, dag_id: str, run_id: str, timeout: float) -> str:
        return self.api.wait_run(dag_id, run_id, timeout, self.stack.services)["state"]


def _alert_name(alert: dict[str, Any]) -> str:
    """A fired monitoring rule as the console names it: rule, slice, model version."""
    from mlops.core.metrics import slice_scope

    where = slice_scope(alert.get("slice_feature"), alert.get("slice_value"))
    return f"{alert.get('rule')} [{where}, version {alert.get('model_version')}]"


def _collect(cfg, stack, driver: _Driver, the_plan: ReplayPlan, start, end, wall: float) -> dict[str, Any]:
    """The report's data from the lake, MLflow, the mail sink and Airflow's runs."""
    import numpy as np

    from mlops.io import lake
    from mlops.io.datasets import read_report
    from mlops.io.paths import predictions_dir, raw_dir
    from mlops.reporting.replay import audit_over_retrains

    daily = {run["logical_date"][:10]: run for run in driver.runs if run["kind"] == "daily"}
    days, labelled = [], []
    digests: dict[str, dict[str, str]] = {}
    for i in range((end - start).days):
        day = (start + dt.timedelta(days=i)).isoformat()
        entry: dict[str, Any] = {"day": day, "rows": None, "scored_rows": 0, "model_version": None, "reasons": []}
        if dt.date.fromisoformat(day) in the_plan.bootstrap_days:
            entry.update(status="skipped", reasons=["training window of the first champion (bootstrap), not scored"])
            days.append(entry)
            continue
        run = daily.get(day)
        tasks = driver.api.tasks(f"{cfg.name}_daily", run["dag_run_id"]) if run else {}
        entry["airflow_run"] = run["dag_run_id"] if run else None
        entry["run_seconds"] = _seconds(run)
        entry["tasks"] = tasks
        with contextlib.suppress(Exception):
            entry["rows"] = lake.read_manifest(raw_dir(cfg.name), day)["row_count"]
        report = read_report(cfg.name, day)
        if report is not None:
            entry["reasons"] += [
                f"{c['check']}[{c['column']}]: observed {str(c['observed'])[:120]}"
                for c in report["checks"]
                if not c["success"] and c["severity"] == "error"
            ]
        pred_path = predictions_dir(cfg.name) / f"{day}.parquet"
        preds = None
        if pred_path.exists() and tasks.get("score") == "success":
            preds = lake.read_partition(predictions_dir(cfg.name), day)
            entry["scored_rows"] = len(preds)
            entry["model_version"] = ",".join(sorted(set(preds["model_version"].astype(str))))
            raw = lake.read_partition(raw_dir(cfg.name), day)
            labelled.append(_join_labels(cfg, preds, raw, day))
        if entry["rows"] is not None:  # a failed day too: its partition and validation report
            digests[day] = _digests(cfg, day, preds)
        if run is None:
            entry.update(status="failed", reasons=["no daily run was created for this day"])
        elif run["state"] == "success" and entry["scored_rows"]:
            entry["status"] = "scored"
        elif run["state"] == "success":
            entry["status"] = "skipped"
            entry["reasons"].append("nothing to score: " + ", ".join(f"{t} {s}" for t, s in sorted(tasks.items())))
        else:
            entry["status"] = "failed"
            entry["reasons"] += _monitoring_reasons(cfg, day)
            if not entry["reasons"]:
                entry["reasons"] += _task_errors(driver, f"{cfg.name}_daily", run["dag_run_id"])
        days.append(entry)
    retrains = _retrains(cfg, driver)
    performance = _realized(labelled)
    run_seconds = [d["run_seconds"] for d in days if d.get("run_seconds") is not None]
    task_seconds = [_task_seconds(driver, cfg, d["airflow_run"]) for d in days if d.get("airflow_run")]
    overhead = [r - t for r, t in zip(run_seconds, task_seconds, strict=False) if t is not None]
    mails = sorted(p.name for p in (stack.home / "mail").glob("*.eml"))
    return {
        "pipeline": cfg.name,
        "range": [start.isoformat(), end.isoformat()],
        "bootstrap_window": [the_plan.bootstrap[0].isoformat(), the_plan.bootstrap[1].isoformat()],
        "wall_seconds": round(wall, 1),
        "daily_runs": len(daily),
        "retrain_runs": len(retrains),
        "counts": {s: sum(d["status"] == s for d in days) for s in ("scored", "failed", "skipped")},
        "days": days,
        "retrains": retrains,
        "realized": performance,
        "alerts": {"mails": len(mails), "subjects": _subjects(stack.home / "mail")},
        "per_run": {
            "median_run_seconds": _median(run_seconds),
            "median_task_seconds": _median([t for t in task_seconds if t is not None]),
            "median_overhead_seconds": _median(overhead),
        },
        "outcomes": _outcomes(cfg, days),
        "feature_audit": audit_over_retrains([r["audit"] for r in retrains if r.get("audit")]),
        "digests": digests,
        "machine": {"load_average": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()},
        "notes": "overhead = run duration (start to end) minus the sum of its task durations; "
        + f"{np.nan if not overhead else len(overhead)} daily runs measured",
    }


def _outcomes(cfg, days: list[dict[str, Any]]) -> dict[str, Any]:
    """The closed loop over the replay: realized and estimated ROC AUC of the whole day per month (means
    of the daily values, from `outcomes/<day>.parquet`), the estimate's error once labels landed, the
    scored days without outcomes, the monitoring alerts that fired and the retrains they triggered."""
    from mlops.core.outcomes import ESTIMATED, REALIZED, estimate_errors
    from mlops.io.datasets import outcome_history
    from mlops.stages.alerts import read_judgement, triggered_retrains

    scored = [d["day"] for d in days if d["scored_rows"]]  # with predictions (a failed monitor keeps them)
    history = outcome_history(cfg.name)
    out: dict[str, Any] = {"scored_days": len(scored), "days_with_outcomes": 0, "scored_days_without": scored}
    if not history.empty:
        history = history[history["day"].isin([d["day"] for d in days])]
        evaluated = sorted(set(history["day"]))
        out["days_with_outcomes"] = len(evaluated)
        out["scored_days_without"] = sorted(set(scored) - set(evaluated))
        auc = history[(history["slice_feature"] == "overall") & (history["metric"] == "roc_auc")]
        daily = auc.pivot_table(index="day", columns="kind", values="value", aggfunc="mean")
        daily = daily.reindex(columns=[REALIZED, ESTIMATED])
        monthly = daily.groupby(daily.index.str[:7]).agg(["mean", "count"])
        out["monthly"] = [
            {
                "month": month,
                "realized_roc_auc_daily_mean": _num(row[(REALIZED, "mean")]),
                "estimated_roc_auc_daily_mean": _num(row[(ESTIMATED, "mean")]),
                "days": int(row[(REALIZED, "count")]),
            }
            for month, row in monthly.iterrows()
        ]
        out["daily_roc_auc"] = [
            {"day": day, "realized": _num(row[REALIZED]), "estimated": _num(row[ESTIMATED])}
            for day, row in daily.iterrows()
        ]
        out["estimate_error"] = [
            {k: (_num(v) if isinstance(v, float) else v) for k, v in row.items()}
            for row in estimate_errors(history).to_dict("records")
        ]
    alerts, judged = [], 0
    for d in days:
        judgement = read_judgement(cfg.name, d["day"])
        if not judgement:
            continue
        judged += 1
        for alert in judgement.get("alerts", []):
            alerts.append(
                {
                    "day": d["day"],
                    "signal": alert.get("signal"),
                    "rule": alert.get("rule"),
                    "slice": f"{alert.get('slice_feature')}={alert.get('slice_value')}",
                    "metric": alert.get("metric"),
                    "model_version": alert.get("model_version"),
                }
            )
    out["judged_days"], out["alerts"] = judged, alerts
    out["triggered_retrains"] = [
        {k: e.get(k) for k in ("day", "signal", "reasons", "days", "run_id", "at")}
        for e in triggered_retrains(cfg.name)
    ]
    return out


def _num(value: Any) -> float | None:
    import math

    return None if value is None or (isinstance(value, float) and math.isnan(value)) else round(float(value), 4)


def _monitoring_reasons(cfg, day: str) -> list[str]:
    """The failed error-level checks of the day's prediction monitoring report (`monitoring/<day>.json`)."""
    from mlops.io import lake
    from mlops.io.paths import monitoring_dir

    path = monitoring_dir(cfg.name) / f"{day}.json"
    report = lake.read_json(path) if path.exists() else {}
    return [
        f"monitor {c['check']}: observed {str(c.get('observed'))[:80]}, expected {str(c.get('expected'))[:80]}"
        for c in report.get("checks", [])
        if not c.get("success", True) and c.get("severity") == "error"
    ]


def _task_errors(driver: _Driver, dag_id: str, run_id: str) -> list[str]:
    """For each failed task of the run, `task <id> failed: <the last error of its log>` (REST API logs)."""
    out = []
    found = driver.api.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
    for ti in found:
        if ti["state"] != "failed":
            continue
        message = "see the task log"
        with contextlib.suppress(Exception):
            log = driver.api.get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{ti['task_id']}/logs/{max(ti['try_number'], 1)}",
                full_content=True,
            )
            message = _last_error(log.get("content") or []) or message
        out.append(f"task {ti['task_id']} failed: {message}")
    return out or ["the run failed with no failed task (see the run in Airflow)"]


def _last_error(content: list) -> str | None:
    """The last error-level event of a structured task log (Airflow 3: a list of dicts or strings)."""
    for item in reversed(content):
        if isinstance(item, dict) and str(item.get("level", "")).lower() in ("error", "critical"):
            text = str(item.get("event") or "")
            error = item.get("error_detail")
            if isinstance(error, list) and error and isinstance(error[-1], dict):
                text = f"{error[-1].get('exc_type', '')}: {error[-1].get('exc_value', '')}".strip(": ") or text
            return text[:300]
    return None


def _join_labels(cfg, preds, raw, day: str):
    import pandas as pd

    from mlops.core.features import ROW_KEY, labels

    truth = pd.DataFrame({ROW_KEY: raw[ROW_KEY], "label": labels(raw, cfg.target).to_numpy()})
    out = preds[[ROW_KEY, "score", "model_version"]].merge(truth, on=ROW_KEY, how="left")
    out["day"] = day
    return out


def _realized(labelled: list) -> dict[str, Any]:
    """The champion's realized ROC AUC per ISO week and per month, on rows whose label is known."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    if not labelled:
        return {"weekly": [], "monthly": [], "overall": None}
    df = pd.concat(labelled, ignore_index=True).dropna(subset=["label"])
    dates = pd.to_datetime(df["day"])
    out: dict[str, Any] = {}
    for name, key in (
        ("weekly", dates.dt.to_period("W-SUN").dt.start_time.dt.date.astype(str)),
        ("monthly", dates.dt.strftime("%Y-%m")),
    ):
        rows = []
        for period, part in df.groupby(key):
            y = part["label"].to_numpy()
            auc = float(roc_auc_score(y, part["score"])) if 0 < y.sum() < len(y) else None
            versions = sorted(set(part["model_version"].astype(str)), key=int)
            rows.append(
                {
                    "period": period,
                    "roc_auc": auc,
                    "rows": len(part),
                    "prevalence": float(y.mean()),
                    "model_versions": versions,
                }
            )
        out[name] = rows
    y = df["label"].to_numpy()
    out["overall"] = float(roc_auc_score(y, df["score"])) if 0 < y.sum() < len(y) else None
    nd = df[dates.dt.month >= 11]
    out["november_december"] = (
        float(roc_auc_score(nd["label"], nd["score"])) if len(nd) and 0 < nd["label"].sum() < len(nd) else None
    )
    return out


def _retrains(cfg, driver: _Driver) -> list[dict[str, Any]]:
    out = []
    for run in driver.runs:
        if run["kind"] not in ("retrain", "bootstrap", "triggered"):
            continue
        dag_id = f"{cfg.name}_retrain"
        run_id = run.get("dag_run_id") or run["run_id"]
        entry: dict[str, Any] = {
            "run_id": run_id,
            "kind": run["kind"],
            "state": run["state"],
            "interval": (run.get("logical_date") or "")[:10],
        }
        with contextlib.suppress(Exception):
            promote = driver.api.get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/promote/xcomEntries/return_value", deserialize=True
            )["value"]
            entry.update(
                version=promote.get("version"),
                promoted=promote.get("promoted"),
                reasons=promote.get("reasons"),
                champion_before=promote.get("previous_champion"),
            )
        with contextlib.suppress(Exception):
            train = driver.api.get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/train/xcomEntries/return_value", deserialize=True
            )["value"]
            entry.update(training_window=train.get("training_key"), skipped_training=train.get("skipped"))
        with contextlib.suppress(Exception):
            audited = driver.api.get(
                f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/audit/xcomEntries/return_value", deserialize=True
            )["value"]
            entry["audit_flagged"] = audited.get("flagged")
        if entry.get("version"):
            entry["audit"] = _audit_of(cfg, entry["version"])
        if run.get("note"):
            entry["note"] = run["note"]
        if "version" not in entry:
            tasks = driver.api.tasks(dag_id, run_id)
            entry["reasons"] = [f"task {t} {s}" for t, s in sorted(tasks.items()) if s not in ("success", None)]
        out.append(entry)
    return out


AUDIT_KEYS = (
    "verdicts",
    "flagged",
    "lofo_tested",
    "permutation_rows",
    "fit_seconds",
    "audit_seconds",
    "budget_seconds",
    "wall_seconds",
)


def _audit_of(cfg, version: str) -> dict[str, Any] | None:
    """What the year report keeps of a version's feature audit (`audit/feature_audit.json` on its training
    run): the verdicts, the flags, what LOFO tested and the time against the budget; None without one."""
    from mlflow.exceptions import MlflowException

    from mlops.io import registry
    from mlops.io.feature_audit import read_feature_audit

    try:
        summary = read_feature_audit(registry.version(cfg.name, version).run_id)
    except (LookupError, OSError, MlflowException) as exc:  # OSError: RegistryUnavailableError too
        return {"error": f"{type(exc).__name__}: {exc}"}
    if not summary or summary.get("skipped"):
        return None
    out = {k: summary.get(k) for k in AUDIT_KEYS}
    out["pairs"] = [[p["feature_a"], p["feature_b"]] for p in summary.get("correlated_pairs") or []]
    return out


def _digests(cfg, day: str, preds) -> dict[str, str]:
    """Digests of what a daily run leaves, without what names the run or the time it ran: the raw
    partition, the validation report and (for a scored day) the predictions."""
    from mlops.io import lake
    from mlops.io.datasets import read_report
    from mlops.io.paths import raw_dir

    report = read_report(cfg.name, day) or {}
    stable = {k: report.get(k) for k in ("rows", "checks", "shifts", "references", "success")}
    out = {
        "raw": lake.read_manifest(raw_dir(cfg.name), day)["content_digest"],
        "validation": hashlib.sha256(json.dumps(stable, sort_keys=True, default=str).encode()).hexdigest()[:16],
    }
    if preds is not None:
        kept = preds.drop(columns=[c for c in ("scored_at", "mlflow_run_id") if c in preds.columns])
        out["predictions"] = lake.content_digest(kept)
    return out


def _compare(before: dict[str, dict[str, str]], after: dict[str, dict[str, str]]) -> dict[str, Any]:
    common = sorted(set(before) & set(after))
    differ = {d: sorted(k for k in {*before[d], *after[d]} if before[d].get(k) != after[d].get(k)) for d in common}
    differ = {d: ks for d, ks in differ.items() if ks}
    return {"days_compared": len(common), "identical": len(common) - len(differ), "differences": differ}


def _task_seconds(driver: _Driver, cfg, run_id: str) -> float | None:
    with contextlib.suppress(Exception):
        found = driver.api.get(f"/dags/{cfg.name}_daily/dagRuns/{run_id}/taskInstances")["task_instances"]
        return sum(float(t["duration"] or 0) for t in found)
    return None


def _seconds(run: dict | None) -> float | None:
    if not run or not run.get("start_date") or not run.get("end_date"):
        return None
    start = dt.datetime.fromisoformat(run["start_date"].replace("Z", "+00:00"))
    end = dt.datetime.fromisoformat(run["end_date"].replace("Z", "+00:00"))
    return (end - start).total_seconds()


def _subjects(folder: Path) -> list[str]:
    import email
    import email.policy

    out = []
    for path in sorted(folder.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        out.append(str(message["Subject"]))
    return out


def _median(values: list[float]) -> float | None:
    import statistics

    return round(statistics.median(values), 2) if values else None


def _cron_weekday(cron: str) -> int:
    """Python weekday (Monday 0) of a weekly cron such as `0 0 * * 1`."""
    field_ = cron.split()[4]
    if not field_.isdigit():
        raise ValueError(f"schedules.retrain {cron!r}: the replay needs a weekly cron with one day of week")
    return (int(field_) - 1) % 7


def _source_has_day(cfg, day: dt.date) -> bool:
    from mlops.io.sources import open_source

    with contextlib.suppress(Exception):
        return len(open_source(cfg.source).read_day(day)) > 0
    return False


def _read_json(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() else None
