"""Run a pipeline DAG in-process with `dag.test()` for a given data interval (demo and tests)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from mlops.core.interval import Interval


@dataclass(frozen=True)
class RunOutcome:
    dag_id: str
    interval: str
    state: str
    tasks: dict[str, str]  # task_id -> state
    xcoms: dict[str, Any]  # task_id -> returned value
    tries: dict[str, int] = field(default_factory=dict)  # task_id -> attempts made
    run_id: str = ""  # the Airflow run id

    @property
    def succeeded(self) -> bool:
        return self.state == "success"


def init_db(reset: bool = False) -> None:
    """Create (or reset) the embedded Airflow metadata database."""
    from airflow.utils.db import initdb, resetdb

    resetdb() if reset else initdb()


def load_dags() -> dict:
    """The DAGs built from the pipeline configs."""
    from mlops.airflow.dag_factory import build_all

    return build_all()


def run(
    dag_id: str, interval: Interval, conf: dict[str, Any] | None = None, mark_success: str | None = None
) -> RunOutcome:
    """One `dag.test()` run whose data interval is `interval` (its logical date is the interval's end).

    The DAG is built afresh for every run: `dag.test()` leaves the run's params on the DAG object.
    `mark_success` is a regex of task ids to mark successful without running them. The run keeps
    its true start time (see :func:`record_start`).
    """
    dag = load_dags()[dag_id]
    logical_date = dt.datetime.combine(interval.end, dt.time(), tzinfo=dt.UTC)
    started = dt.datetime.now(dt.UTC)
    dag_run = dag.test(logical_date=logical_date, run_conf=conf or {}, mark_success_pattern=mark_success)
    record_start(dag_run.dag_id, dag_run.run_id, started)
    tasks, xcoms, tries = {}, {}, {}
    for ti in dag_run.get_task_instances():
        tasks[ti.task_id] = str(ti.state.value if hasattr(ti.state, "value") else ti.state)
        tries[ti.task_id] = ti.try_number
        if tasks[ti.task_id] == "success":
            xcoms[ti.task_id] = ti.xcom_pull(task_ids=ti.task_id)
    state = dag_run.state.value if hasattr(dag_run.state, "value") else str(dag_run.state)
    return RunOutcome(dag.dag_id, interval.key, state, tasks, xcoms, tries, dag_run.run_id)


def record_start(dag_id: str, run_id: str, started: dt.datetime) -> None:
    """Give a `dag.test()` run its wall-clock start time (UTC).

    `dag.test()` starts a run at its logical date, so a run of a 2013 day "started" in 2013 and the
    UI's run durations read thousands of days. Its end time, and its tasks' times, are already true.
    """
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from sqlalchemy import update

    with create_session() as session:
        session.execute(
            update(DagRun).where(DagRun.dag_id == dag_id, DagRun.run_id == run_id).values(start_date=started)
        )
