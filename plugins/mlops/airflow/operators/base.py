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
        try:
            return Interval.from_datetimes(interval_start, interval_end)
        except ValueError as exc:
            raise AirflowFailException(str(exc)) from None

    @staticmethod
    def pulled(context: Any, task_id: str) -> dict[str, Any]:
        """The XCom an upstream stage returned; fails clearly when it is missing."""
        value = context["ti"].xcom_pull(task_ids=task_id)
        if not value:
            raise AirflowFailException(f"upstream task {task_id!r} returned nothing")
        return value
