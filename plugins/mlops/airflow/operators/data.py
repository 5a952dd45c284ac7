"""Operators of the data stages: ingest, validate, score (and re-score), monitor.

Errors that a retry cannot fix (bad source data, a damaged lake file, a sink refusing the rows)
fail the task at once, without retries; transient ones (a server unreachable) are retried.
"""

from __future__ import annotations

import contextlib
import datetime as dt
from collections.abc import Iterator
from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops.airflow.connections import sink_url, source_url
from mlops.airflow.links import XCOM_KEY, MlflowRunLink
from mlops.airflow.operators.base import ChecksFailed, PipelineOperator
from mlops.core.interval import Interval


def deterministic(exc: BaseException) -> bool:
    """Whether retrying cannot help: the same data, file or rows would fail the same way."""
    from mlops.io.lake import PartitionReadError
    from mlops.io.sinks import SinkError
    from mlops.io.sources import SourceSchemaError

    if isinstance(exc, SinkError):
        return not exc.transient
    return isinstance(exc, SourceSchemaError | PartitionReadError | LookupError)


@contextlib.contextmanager
def failing_at_once() -> Iterator[None]:
    """Turn deterministic errors (see `deterministic`) into AirflowFailException, which skips the retries."""
    try:
        yield
    except Exception as exc:
        if deterministic(exc):
            raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc
        raise


class IngestOperator(PipelineOperator):
    """Ingest the data interval's partitions (replacing earlier ones), and the reference days that
    validating them reads when they have no partition yet (the day before, the volume history), so a
    run validates the same way whatever the order of a backfill's runs."""

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.ingest import ingest, ingest_references

        cfg = self.config()
        interval = self.interval(context)
        self.check_within_data(cfg, interval, context)
        self.record_note(context, f"{cfg.name} {interval.key}")
        url = self.resolved(source_url, cfg)
        with failing_at_once():
            result = ingest(cfg, interval, context.get("run_id"), url=url)
            references = ingest_references(cfg, interval, context.get("run_id"), url=url)
        self.log.info("ingested %s partitions: %s", len(result.partitions), result.partitions)
        for day, what in references.items():
            (self.log.info if what == "ingested" else self.log.warning)("reference day %s: %s", day, what)
        return {"interval": result.interval.key, "partitions": result.partitions, "references": references}


class ValidateOperator(PipelineOperator):
    """Validate the interval's partitions, or the training window assembled upstream.

    A failed check fails the task without retries (the data will not change) and so sends the alert.
    The interval's predictions, if any, no longer hold then and are retracted (Parquet and SQL), as
    they are when every day of the interval is empty.
    """

    operator_extra_links = (MlflowRunLink(),)

    def __init__(self, *, training_task_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_task_id = training_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.validate import validate, validate_training_set

        cfg = self.config()
        interval = None
        with failing_at_once():
            if self.training_task_id:
                assembled = self.pulled(context, self.training_task_id)
                report = validate_training_set(cfg, assembled["training_key"], len(assembled["days"]), publish=True)
            else:
                interval = self.interval(context)
                skip_if_empty(cfg, interval, retract=True)
                report = validate(cfg, interval, data_docs=True, publish=True)
        context["ti"].xcom_push(key=XCOM_KEY, value=report.mlflow_run_id)
        for check in report.warnings:
            self.log.warning("warning %s [%s]: observed %s", check["check"], check["column"], check["observed"])
        if not report.success:
            if interval is not None:
                try:
                    self.retract(cfg, interval, f"failed validation: {report.summary().splitlines()[0]}")
                except Exception as exc:  # e.g. the sink is unreachable: retried, and so re-validated
                    raise RuntimeError(
                        f"{report.summary()}\nThe interval's earlier predictions could not be retracted: {exc}"
                    ) from exc
            raise ChecksFailed(
                report.summary(), f"{len(report.failed)} of {len(report.checks)} checks failed", report_links(report)
            )
        self.log.info("%s: %d checks passed, %d warnings", report.interval, len(report.checks), len(report.warnings))
        return {
            "interval": report.interval,
            "checks": len(report.checks),
            "warnings": len(report.warnings),
            "report": report.report_path,
            "mlflow_run_id": report.mlflow_run_id,
        }

    def retract(self, cfg, interval: Interval, reason: str) -> None:
        """Retract the interval's predictions; a failure to do so fails the task (retried) saying why."""
        from mlops.stages.score import retract

        retracted = retract(cfg, interval, reason, sink_url=sink_url(cfg))
        removed = {day: r["removed"] for day, r in retracted.items() if any(v for v in r["removed"].values())}
        self.log.warning("%s %s: predictions retracted (%s): %s", cfg.name, interval.key, reason, removed or "none")


def report_links(report) -> dict[str, str]:
    """Links to a validation report: its HTML page (a file URL) and its MLflow run, when published."""
    from pathlib import Path

    from mlops.io.paths import mlflow_run_url

    links = {}
    if report.report_path:
        links["Report"] = Path(report.report_path).resolve().as_uri()
    if report.mlflow_run_id:
        links["MLflow run"] = mlflow_run_url(report.mlflow_run_id)
    return links


def skip_if_empty(cfg, interval, retract: bool = False) -> None:
    """Skip the task (and so the stages after it) when every partition of the interval is empty.

    With `retract`, earlier predictions of those days, which no longer hold, are retracted first
    (Parquet and SQL).
    """
    from mlops.io.datasets import is_empty
    from mlops.stages.score import EMPTY_DAY
    from mlops.stages.score import retract as retract_predictions

    if all(is_empty(cfg, day) for day in interval.days()):
        if retract:
            retract_predictions(cfg, interval, EMPTY_DAY, sink_url=sink_url(cfg))
        raise AirflowSkipException(f"{cfg.name} {interval.key}: the source had no rows (recorded as empty)")


def scored_xcom(result) -> dict[str, Any]:
    """The XCom of a scoring task: what it scored, with which version, and what went to the sink."""
    return {
        "interval": result.interval,
        "rows": result.rows,
        "model_version": result.model_version,
        "threshold": result.threshold,
        "sink_rows": result.sink_rows,
    }


class ScoreOperator(PipelineOperator):
    """Score the interval with the champion of each day (or the version pinned by param `model_version`).

    Predictions go to Parquet and, with a sink configured, to the SQL table.
    """

    def target(self, context: Any) -> tuple[Interval, str | None]:
        """The interval to score and the pinned model version (None: the champion of each day)."""
        return self.interval(context), (context.get("params") or {}).get("model_version")

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.score import score

        cfg = self.config()
        interval, pinned = self.target(context)
        with failing_at_once():
            skip_if_empty(cfg, interval, retract=True)
            result = score(cfg, interval, pinned, sink_url=sink_url(cfg))
        self.log.info(
            "scored %s: %d rows with version %s at threshold %s%s",
            result.interval,
            result.rows,
            result.model_version,
            result.threshold,
            f"; {result.sink_rows} rows to {result.sink}" if result.sink else "",
        )
        for day, reason in result.retracted.items():
            self.log.warning("%s: predictions retracted: %s", day, reason)
        return scored_xcom(result)


class RescoreOperator(PipelineOperator):
    """Score one day again with the current champion: param `day`, else the latest day scored so far.

    Runs when the champion changes (the `<name>_rescore` DAG is scheduled on the champion asset); its
    predictions replace that day's, in Parquet and in the SQL table, and the champion serves the day
    from then on (`stages.score.rescore`). A day inside the champion's training window is skipped.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.io.datasets import latest_scored_day
        from mlops.stages.score import InTrainingWindowError, rescore

        cfg = self.config()
        day = (context.get("params") or {}).get("day")
        day = dt.date.fromisoformat(day) if day else latest_scored_day(self.pipeline)
        if day is None:
            raise AirflowSkipException(f"{self.pipeline}: no day has been scored yet, nothing to re-score")
        with failing_at_once():
            skip_if_empty(cfg, Interval(day, day + dt.timedelta(days=1)), retract=True)
            try:
                done = rescore(cfg, day, sink_url=sink_url(cfg))
            except InTrainingWindowError as exc:
                raise AirflowSkipException(str(exc)) from None
        result = done.result
        self.log.info(
            "re-scored %s: %d rows with version %s at threshold %s",
            day,
            result.rows,
            result.model_version,
            result.threshold,
        )
        if not done.serves_day:
            self.log.warning(
                "%s: other days scored since keep their versions, so a re-run of %s scores it with the "
                "champion of that day, not version %s",
                self.pipeline,
                day,
                result.model_version,
            )
        return {**scored_xcom(result), "serves_day": done.serves_day}


class MonitorOperator(PipelineOperator):
    """Watch the interval's predictions: score drift against the model's evaluation, positive-rate limits.

    An error-level breach fails the task without retries, which sends the alert mail; the predictions
    written by `score` stay as they are (monitoring alerts, it does not undo). With `score_task_id`, the
    interval is the one that task scored, else the run's.
    """

    def __init__(self, *, score_task_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.score_task_id = score_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.monitor import monitor_predictions

        cfg = self.config()
        if self.score_task_id:  # the interval the upstream task scored
            interval = Interval.parse(self.pulled(context, self.score_task_id)["interval"])
        else:
            interval = self.interval(context)
        with failing_at_once():
            skip_if_empty(cfg, interval)
            report = monitor_predictions(cfg, interval)
        for check in report.warnings:
            self.log.warning(
                "warning %s on %s: observed %s, expected %s",
                check["check"],
                check["day"],
                check["observed"],
                check["expected"],
            )
        if not report.success:
            from mlops.io.paths import monitoring_dir

            raise ChecksFailed(
                report.summary(),
                f"{len(report.failed)} of {len(report.checks)} prediction checks failed",
                {"Monitoring report": (monitoring_dir(cfg.name) / f"{interval.key}.json").resolve().as_uri()},
            )
        return {"interval": interval.key, "checks": len(report.checks), "warnings": len(report.warnings)}


class OutcomesOperator(PipelineOperator):
    """Realized and estimated performance of the scored days whose labels are due in the run's interval.

    The run's data interval [D, D + 1) is the day the labels of scored day D - `labels.delay_days`
    are due; params `start`/`end` name scored days directly instead. Label counts (missing, unknown,
    unmatched) are logged as warnings and returned; a run whose days were none of them scored is skipped.

    Each scored day is then judged against config `monitoring` (`stages.alerts`); the judgement is in
    the day's summary and `outcomes/<day>.json` under `judgement`. Sustained degradation adds one event
    on the Asset `<name>_degraded` through the outlet alias `<name>_degradation_signals` (at most one
    per run; never in a backfill run; rate-limited by the audit trail). Returns the days' summaries.
    """

    operator_extra_links = (MlflowRunLink(),)

    def execute(self, context: Any) -> list[dict[str, Any]]:
        from mlops.io.outcome_runs import batched_rebuilds
        from mlops.stages.outcomes import NOT_SCORED, day_outcomes, scored_days

        cfg = self.config()
        params = context.get("params") or {}
        if params.get("start") or params.get("end"):
            days = self.interval(context).days()
        else:
            days = scored_days(cfg, self.interval(context))
        self.check_within_data(cfg, Interval(days[0], days[-1] + dt.timedelta(days=1)), context)
        url = self.resolved(source_url, cfg) if cfg.labels.source is None else None
        forbidden = "backfill run: backfills never trigger retraining" if _run_type(context) == "backfill" else None
        summaries, emitted = [], False
        with failing_at_once(), batched_rebuilds() as rebuilt:  # a month's MLflow run rebuilt once, not per day
            for day in days:
                result = day_outcomes(cfg, day, url=url)
                summary = result.summary()
                self._log_result(result, cfg.validation.label_completeness)
                if result.status != NOT_SCORED:
                    why_not = forbidden or ("this run triggered a retrain already" if emitted else None)
                    summary["judgement"] = self._judge(context, cfg, day, why_not)
                    emitted = emitted or summary["judgement"]["trigger"]["emit"]
                summaries.append(summary)
        for s in summaries:
            if s.get("mlflow") and s["mlflow"].get("month") in rebuilt:
                s["mlflow"] = {**s["mlflow"], "run_id": rebuilt[s["mlflow"]["month"]]}
        logged = [s["mlflow"]["run_id"] for s in summaries if s.get("mlflow")]
        if logged:
            context["ti"].xcom_push(key=XCOM_KEY, value=logged[-1])
        if all(s["status"] == NOT_SCORED for s in summaries):
            raise AirflowSkipException(
                f"{cfg.name}: no scored day to evaluate: " + "; ".join(f"{s['day']}: {s['reason']}" for s in summaries)
            )
        return summaries

    def _judge(self, context: Any, cfg, day: dt.date, forbidden: str | None) -> dict[str, Any]:
        """Judge the day (config `monitoring`), record it in its outcomes JSON, emit `<name>_degraded` if due."""
        from mlops.airflow.assets import announce_degradation
        from mlops.stages.alerts import decide_trigger, judge, record_judgement

        judgement = judge(cfg, day)
        trigger = decide_trigger(cfg, judgement, context.get("run_id"), forbidden)
        recorded = record_judgement(cfg.name, judgement.day, judgement.to_json(), trigger)["judgement"]
        for alert in judgement.fired:
            self.log.warning("alert: %s", alert.line())
        if trigger["emit"]:
            announce_degradation(context, cfg.name, trigger["extra"])
            self.log.warning(
                "%s: retrain triggered (event on %s_degraded): %s", cfg.name, cfg.name, trigger["extra"]["reason"]
            )
        elif judgement.degradation is not None:
            self.log.warning("%s %s: degradation, no retrain triggered: %s", cfg.name, judgement.day, trigger["why"])
        return recorded

    def _log_result(self, result, completeness: float) -> None:
        """The day's status and label counts in the task log; every shortfall of labels is a warning."""
        counts = result.counts
        if result.status == "not_scored":
            self.log.warning("%s %s: not scored, no outcomes: %s", result.pipeline, result.day, result.reason)
            return
        self.log.info(
            "%s %s (versions %s): %s labels, %d of %d predictions labelled (coverage %.3f); realized ROC AUC %s, "
            "estimated %s",
            result.pipeline,
            result.day,
            ", ".join(result.versions),
            result.status,
            counts["labelled"],
            counts["predictions"],
            counts["coverage"],
            result.overall("realized", "roc_auc"),
            result.overall("estimated", "roc_auc"),
        )
        for name, what in (
            ("missing", "predictions with no label row (labels not arrived)"),
            ("unknown", "predictions whose label row has no value"),
            ("unmatched", "label rows whose key matches no prediction"),
            ("duplicate_keys", "label rows repeating a key (first kept)"),
        ):
            if counts.get(name):
                self.log.warning("%s %s: %d %s", result.pipeline, result.day, counts[name], what)
        if counts["coverage"] < completeness:
            self.log.warning(
                "%s %s: only %.1f%% of the predictions have a label, below validation.label_completeness %.0f%%: "
                "its realized metrics describe the labelled rows only",
                result.pipeline,
                result.day,
                100 * counts["coverage"],
                100 * completeness,
            )


def _run_type(context: Any) -> str:
    """The dag run's run type as a plain string (`scheduled`, `manual`, `backfill`, `asset_triggered`)."""
    run_type = getattr(context.get("dag_run"), "run_type", "")
    return str(getattr(run_type, "value", run_type))


class AlertsOperator(PipelineOperator):
    """Fail (without retries, so the alert mail goes out) when the outcomes task's judgement fired alerts.

    Separate from the outcomes task because Airflow records a task's asset events only when it
    succeeds: the outcomes task emits `<name>_degraded`, this one pages. The mail lists every fired
    rule: pipeline, model version, slice, metric, value, interval, limit and the days it breached.
    """

    def __init__(self, *, outcomes_task_id: str = "outcomes", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.outcomes_task_id = outcomes_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.io.paths import outcomes_dir

        summaries = self.pulled(context, self.outcomes_task_id)
        lines, links = [], {}
        for summary in summaries:
            judgement = summary.get("judgement") or {}
            for alert in judgement.get("alerts", []):
                lines.append(_alert_line(alert))
            if judgement.get("alerts"):
                links[f"Outcomes {summary['day']}"] = (
                    (outcomes_dir(self.pipeline) / f"{summary['day']}.json").resolve().as_uri()
                )
            degradation = judgement.get("degradation")
            if degradation:
                trigger = judgement["trigger"]
                outcome = "triggered" if trigger["emit"] else f"not triggered: {trigger['why']}"
                lines.append(f"degradation ({degradation['signal']}) on {summary['day']}: retrain {outcome}")
        alerts = sum(len((s.get("judgement") or {}).get("alerts", [])) for s in summaries)
        if alerts:
            raise ChecksFailed(
                "\n".join(lines + [f"{label}: {url}" for label, url in links.items()]),
                f"{alerts} performance alert(s)",
                links,
            )
        return {"alerts": 0, "days": [s["day"] for s in summaries]}


def _alert_line(alert: dict[str, Any]) -> str:
    """The mail line of a fired alert (its JSON from `core.alerting.Alert.to_json`)."""
    from mlops.core.alerting import Alert, DayCheck

    fields = {**alert, "days": [DayCheck(**d) for d in alert["days"]]}
    fields.pop("breach_days", None)
    return Alert(**fields).line()
