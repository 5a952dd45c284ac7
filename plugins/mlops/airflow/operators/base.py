"""What every stage operator shares: the pipeline config and the run's data interval."""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from mlops.core.interval import Interval


class PipelineOperator(BaseOperator):
    """Base of the stage operators: translates Airflow context into plain stage arguments."""

    ui_color = "#e8f1fb"

    def __init__(self, *, pipeline: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline = pipeline

    def config(self):
        from mlops.core.config import load_pipeline

        return load_pipeline(self.pipeline)

    def pre_execute(self, context: Any) -> None:
        """Refuse a run whose conf has keys that are not params of the DAG (a misspelt param is no default)."""
        dag_run = context.get("dag_run")
        conf = getattr(dag_run, "conf", None) or {}
        known = set(self.dag.params.keys()) if self.dag is not None else set()
        unknown = sorted(set(conf) - known)
        if unknown:
            raise AirflowFailException(
                f"pipeline {self.pipeline!r}, DAG {self.dag_id}: the run's conf has unknown keys {unknown}; "
                f"this DAG's params are {sorted(known)}: trigger it again with those names"
            )

    @staticmethod
    def resolved(resolve, cfg) -> str | None:
        """A connection URL from `mlops.airflow.connections`; an undefined connection fails without retries."""
        from mlops.airflow.connections import ConnectionNotFoundError

        try:
            return resolve(cfg)
        except ConnectionNotFoundError as exc:
            raise AirflowFailException(str(exc)) from None

    def interval(self, context: Any, start_param: str = "start", end_param: str = "end") -> Interval:
        """The interval to work on: the params' dates when given, else the run's data interval."""
        params = context.get("params") or {}
        start, end = params.get(start_param), params.get(end_param)
        if start or end:
            if not (start and end):
                raise AirflowFailException(f"give both params {start_param!r} and {end_param!r}, or neither")
            try:
                return Interval(dt.date.fromisoformat(start), dt.date.fromisoformat(end))
            except ValueError as exc:
                raise AirflowFailException(
                    f"bad date range {start_param}={start!r}, {end_param}={end!r}: {exc}"
                ) from None
        interval_start, interval_end = context.get("data_interval_start"), context.get("data_interval_end")
        if interval_start is None or interval_end is None:
            raise AirflowFailException(
                f"run {context.get('run_id')} has no data interval (triggered without a logical date): "
                f"trigger it with a logical date, or set params {start_param!r} and {end_param!r}"
            )
        interval_start, interval_end = self._interval_of_logical_date(context, interval_start, interval_end)
        try:
            return Interval.from_datetimes(interval_start, interval_end)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None

    def _interval_of_logical_date(self, context: Any, start, end):
        """The data interval that a manual run's logical date defines, when Airflow gave it another one.

        Airflow 3 gives a run created by `airflow dags trigger --logical-date X` (CLI) the interval of
        the trigger time, not of X; the REST API and the UI give the interval that ends at X. The
        logical date is what the user asked for: process its interval, and say so in the log.
        """
        logical = context.get("logical_date")
        dag_run = context.get("dag_run")
        dag = context.get("dag")
        if (
            logical is None
            or dag is None
            or str(getattr(dag_run, "run_type", "")) not in ("manual", "DagRunType.MANUAL")
        ):
            return start, end
        expected = _manual_interval(dag.timetable, logical)
        if expected is None:
            return start, end
        if (expected.start, expected.end) != (start, end):
            self.log.warning(
                "run %s: logical date %s defines the data interval %s..%s, but Airflow gave it %s..%s "
                "(a CLI trigger takes the interval of the trigger time): processing %s..%s",
                context.get("run_id"),
                logical,
                expected.start,
                expected.end,
                start,
                end,
                expected.start,
                expected.end,
            )
        return expected.start, expected.end

    def check_within_data(self, cfg, interval: Interval, context: Any) -> None:
        """Fail when the interval lies after the pipeline's `schedules.end_date` (no data there by definition)."""
        end = cfg.schedules.end_date
        if end is not None and interval.start > end:
            raise AirflowFailException(
                f"{cfg.name}: run {context.get('run_id')} would process {interval.key}, after schedules.end_date "
                f"{end} (the data ends there): trigger it with a logical date in range, or set params start/end"
            )

    def record_note(self, context: Any, text: str) -> None:
        """Set the run's note (shown in the runs list) through the REST API; best effort, never fails.

        Works where the API needs no login (the local stack) or `MLOPS_AIRFLOW_API_TOKEN` holds a token.
        """
        import os

        try:
            import requests
            from airflow.configuration import conf

            base = conf.get("api", "base_url", fallback=None)
            dag_run = context.get("dag_run")
            if not base or dag_run is None:
                return
            headers = {}
            if token := os.environ.get("MLOPS_AIRFLOW_API_TOKEN"):
                headers["Authorization"] = f"Bearer {token}"
            url = f"{base.rstrip('/')}/api/v2/dags/{dag_run.dag_id}/dagRuns/{dag_run.run_id}"
            requests.patch(url, json={"note": text}, params={"update_mask": "note"}, headers=headers, timeout=5)
        except Exception as exc:
            self.log.debug("run note not recorded: %s", exc)

    @staticmethod
    def pulled(context: Any, task_id: str) -> dict[str, Any]:
        """The XCom an upstream stage returned; fails clearly when it is missing."""
        value = context["ti"].xcom_pull(task_ids=task_id)
        if not value:
            raise AirflowFailException(f"upstream task {task_id!r} returned nothing")
        return value


def _manual_interval(timetable, logical):
    """The interval Airflow's scheduler gives a manual run whose run-after time is `logical`, or None
    (a timetable without data intervals, e.g. an asset schedule)."""
    import pendulum

    timetable = getattr(timetable, "timetable", timetable)  # AssetOrTimeSchedule: its time part
    infer = getattr(timetable, "infer_manual_data_interval", None)
    return None if infer is None else infer(run_after=pendulum.instance(logical))


class ChecksFailed(AirflowFailException):
    """Data or prediction checks failed: the task fails at once, without retries.

    `headline` is the count for the mail subject ("3 of 161 checks failed"); `links` maps a label to
    a report's URL ("Report" -> file:///.../2013-02-08.html, "MLflow run" -> http://...).
    """

    def __init__(self, message: str, headline: str = "", links: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headline = headline
        self.links = links or {}
