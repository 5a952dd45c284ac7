"""Build each pipeline's Airflow DAGs from its config: `<name>_daily`, `<name>_retrain`, `<name>_rollback`,
`<name>_rescore` and `<name>_outcomes`.

Cheap to import and to call: only Airflow's authoring API and the operators' light modules.
"""

from __future__ import annotations

import datetime as dt
import logging
from pathlib import Path

from airflow.sdk import DAG, AssetOrTimeSchedule, Param

from mlops.airflow.assets import champion_asset, champion_changes, degradation_signals, degraded_asset
from mlops.airflow.operators import (
    AlertsOperator,
    AssembleTrainingWindowOperator,
    EvaluateOperator,
    FeatureAuditOperator,
    IngestOperator,
    MonitorOperator,
    OutcomesOperator,
    PromoteOperator,
    RecalibrateOperator,
    RescoreOperator,
    RollbackOperator,
    ScoreOperator,
    TrainOperator,
    ValidateOperator,
)
from mlops.airflow.timetables import EndingCronDataIntervalTimetable
from mlops.core.config import MODEL_KINDS, REPO_ROOT, THRESHOLD_POLICIES, ConfigError, PipelineConfig, load_each

MAIL_TEMPLATE = REPO_ROOT / "include" / "templates" / "failure_mail.html"
MAIL_TEXT_TEMPLATE = MAIL_TEMPLATE.with_suffix(".txt")
# `mail` is what FailureMailNotifier adds to the context: the processed interval, the try, the headline
MAIL_SUBJECT = (
    "{{ dag.dag_id }}.{{ ti.task_id }} failed"
    "{% if mail.interval %} for {{ mail.interval }}{% endif %}"
    "{% if mail.headline %}: {{ mail.headline }}{% endif %}"
)
DATE_PARAM = {"type": ["null", "string"], "format": "date"}
log = logging.getLogger(__name__)


def failure_notifier(cfg: PipelineConfig):
    """Mail to the pipeline's alert list when a task fails (SMTP connection `smtp_default`)."""
    from mlops.airflow.notify import FailureMailNotifier

    html, text = (path.read_text().replace("__PIPELINE__", cfg.name) for path in (MAIL_TEMPLATE, MAIL_TEXT_TEMPLATE))
    return FailureMailNotifier(
        to=cfg.alerts.email,
        subject=f"[mlops] {cfg.name}: {MAIL_SUBJECT}",
        html_content=html,
        text_content=text,
        fallback_from=cfg.alerts.from_email,
    )


def default_args(cfg: PipelineConfig) -> dict:
    return {
        "owner": cfg.owner_email or "mlops",
        "retries": cfg.alerts.retries,
        "retry_delay": dt.timedelta(seconds=cfg.alerts.retry_delay_seconds),
        "on_failure_callback": [failure_notifier(cfg)],
    }


def _common(cfg: PipelineConfig, kind: str) -> dict:
    """DAG arguments every DAG of a pipeline shares."""
    docs = Path(__file__).with_name("dag_docs.md").read_text()
    return {
        "start_date": dt.datetime.combine(cfg.schedules.start_date, dt.time(), tzinfo=dt.UTC),
        "catchup": False,
        "default_args": default_args(cfg),
        "tags": ["mlops", cfg.name, kind],
        "doc_md": next((f"## {part}" for part in docs.split("## ")[1:] if part.startswith(kind)), None),
    }


def _schedule(cfg: PipelineConfig, cron: str, delay_days: int = 0) -> EndingCronDataIntervalTimetable:
    """Real data intervals on `cron` (UTC); no scheduled run after `schedules.end_date` (the data ends).

    Not the DAG's `end_date`: tasks would inherit it, and a run triggered after it would succeed with no
    task at all. With the end in the timetable, such a run fails at its first task, naming the date.
    """
    end = cfg.schedules.end_date
    end = end + dt.timedelta(days=delay_days) if end else None
    return EndingCronDataIntervalTimetable(
        cron, "UTC", dt.datetime.combine(end, dt.time(), tzinfo=dt.UTC) if end else None
    )


def daily_dag(cfg: PipelineConfig) -> DAG:
    """ingest -> validate -> score -> monitor, one run per day."""
    with DAG(
        dag_id=f"{cfg.name}_daily",
        description=f"{cfg.name}: ingest, validate and score one day. {cfg.description}",
        schedule=_schedule(cfg, cfg.schedules.daily),
        max_active_runs=4,
        **_common(cfg, "daily"),
        params={
            "start": Param(
                None, description="First day to process (YYYY-MM-DD); empty: the run's data interval", **DATE_PARAM
            ),
            "end": Param(None, description="Day after the last day to process (exclusive)", **DATE_PARAM),
            "model_version": Param(
                None,
                type=["null", "string"],
                pattern=r"^[0-9]+$",
                description="Score with this registered version instead of the champion",
            ),
        },
    ) as dag:
        ingest = IngestOperator(task_id="ingest", pipeline=cfg.name)
        validate = ValidateOperator(task_id="validate", pipeline=cfg.name)
        score = ScoreOperator(task_id="score", pipeline=cfg.name)
        monitor = MonitorOperator(task_id="monitor", pipeline=cfg.name)
        ingest >> validate >> score >> monitor
    return dag


def retrain_dag(cfg: PipelineConfig) -> DAG:
    """assemble -> validate -> train -> recalibrate -> evaluate -> promote, weekly or when the model degrades.

    With `audit.enabled`, the feature audit (task `audit`) runs after train beside recalibrate ->
    evaluate, and promote waits for it too.

    Scheduled on its cron or on an event of the Asset `<name>_degraded` (the outcomes task emits it on
    sustained degradation): such a run trains on the window that ends the day after the latest scored
    day named in the event (see AssembleTrainingWindowOperator).
    """
    schedule = _schedule(cfg, cfg.schedules.retrain)
    if cfg.monitoring.retrain is not None:
        schedule = AssetOrTimeSchedule(timetable=schedule, assets=[degraded_asset(cfg.name)])
    with DAG(
        dag_id=f"{cfg.name}_retrain",
        description=f"{cfg.name}: train a challenger on the latest window and promote it if it passes the gates.",
        schedule=schedule,
        max_active_runs=1,
        **_common(cfg, "retrain"),
        params={
            "window_start": Param(
                None, description="Train on this window instead (first day, YYYY-MM-DD)", **DATE_PARAM
            ),
            "window_end": Param(None, description="End of that window (exclusive)", **DATE_PARAM),
            "force_retrain": Param(
                False, type="boolean", description="Train even when data, config and code are unchanged"
            ),
            "allow_promotion": Param(
                None,
                type=["null", "boolean"],
                description="Let a passing challenger become champion. Empty: yes, except in backfill runs",
            ),
            "model_kind": Param(cfg.training.model.kind, enum=list(MODEL_KINDS), description="Kind of model to train"),
            "threshold_policy": Param(
                cfg.threshold.policy,
                enum=list(THRESHOLD_POLICIES),
                description="How to choose the decision threshold (with the settings of config key 'threshold')",
            ),
        },
    ) as dag:
        assemble = AssembleTrainingWindowOperator(task_id="assemble", pipeline=cfg.name)
        validate = ValidateOperator(task_id="validate", pipeline=cfg.name, training_task_id="assemble")
        train = TrainOperator(task_id="train", pipeline=cfg.name, assemble_task_id="assemble")
        recalibrate = RecalibrateOperator(task_id="recalibrate", pipeline=cfg.name, train_task_id="train")
        evaluate = EvaluateOperator(task_id="evaluate", pipeline=cfg.name, train_task_id="train")
        promote = PromoteOperator(
            task_id="promote",
            pipeline=cfg.name,
            train_task_id="train",
            evaluate_task_id="evaluate",
            outlets=[champion_changes(cfg.name)],
        )
        assemble >> validate >> train >> recalibrate >> evaluate >> promote
        if cfg.audit.enabled:  # beside recalibrate -> evaluate: it needs the trained version only
            train >> FeatureAuditOperator(task_id="audit", pipeline=cfg.name, train_task_id="train") >> promote
    return dag


def rollback_dag(cfg: PipelineConfig) -> DAG:
    """Manual only: give the champion alias back to an earlier version."""
    with DAG(
        dag_id=f"{cfg.name}_rollback",
        description=f"{cfg.name}: restore an earlier champion (default: previous_champion).",
        schedule=None,
        max_active_runs=1,
        **_common(cfg, "rollback"),
        params={
            "version": Param(
                None,
                type=["null", "string"],
                pattern=r"^[0-9]+$",
                description="Version to restore; empty: the previous champion",
            ),
            "reason": Param("", type="string", description="Why (recorded in the audit trail)"),
        },
    ) as dag:
        RollbackOperator(task_id="rollback", pipeline=cfg.name, outlets=[champion_changes(cfg.name)])
    return dag


def rescore_dag(cfg: PipelineConfig) -> DAG:
    """rescore -> monitor, whenever the champion changes (an event on the champion asset)."""
    with DAG(
        dag_id=f"{cfg.name}_rescore",
        description=f"{cfg.name}: score the latest scored day again with a new champion.",
        schedule=[champion_asset(cfg.name)],
        max_active_runs=1,
        **_common(cfg, "rescore"),
        params={
            "day": Param(None, description="Day to re-score (YYYY-MM-DD); empty: the latest scored day", **DATE_PARAM),
        },
    ) as dag:
        rescore = RescoreOperator(task_id="rescore", pipeline=cfg.name)
        monitor = MonitorOperator(task_id="monitor", pipeline=cfg.name, score_task_id="rescore")
        rescore >> monitor
    return dag


def outcomes_dag(cfg: PipelineConfig) -> DAG:
    """outcomes -> alerts, daily: its data interval [D, D + 1) is the day the labels of scored day D - delay_days
    are due. outcomes judges the day (config `monitoring`) and may emit `<name>_degraded`; alerts fails
    and mails when rules fired."""
    delay = cfg.labels.delay_days
    common = _common(cfg, "outcomes")
    common["start_date"] += dt.timedelta(days=delay)
    with DAG(
        dag_id=f"{cfg.name}_outcomes",
        description=f"{cfg.name}: realized and estimated performance of the day scored {delay} day(s) before.",
        schedule=_schedule(cfg, cfg.schedules.daily, delay),
        max_active_runs=1,  # the month's MLflow run is shared by the days of a month
        **common,
        params={
            "start": Param(
                None,
                description="First scored day to evaluate (YYYY-MM-DD); empty: the run's data interval minus "
                f"labels.delay_days ({delay})",
                **DATE_PARAM,
            ),
            "end": Param(None, description="Day after the last scored day to evaluate (exclusive)", **DATE_PARAM),
        },
    ) as dag:
        outcomes = OutcomesOperator(task_id="outcomes", pipeline=cfg.name, outlets=[degradation_signals(cfg.name)])
        alerts = AlertsOperator(task_id="alerts", pipeline=cfg.name, outcomes_task_id="outcomes")
        outcomes >> alerts
    return dag


class PipelineConfigError(ConfigError):
    """One or more pipeline configs are invalid; the message has one line per file, naming the key."""


def build_pipeline(cfg: PipelineConfig) -> list[DAG]:
    """The five DAGs of one pipeline."""
    return [daily_dag(cfg), retrain_dag(cfg), rollback_dag(cfg), rescore_dag(cfg), outcomes_dag(cfg)]


def build_all(config_dir: str | Path | None = None) -> dict[str, DAG]:
    """Every DAG of every valid pipeline config, by dag_id.

    Each pipeline is built on its own: an invalid file loses its own DAGs only (it is raised as an
    import error of `dags/invalid_pipelines.py` by `raise_pipeline_errors`, and logged here).
    """
    configs, errors = load_each(config_dir)
    for error in errors.values():
        log.error("pipeline config left out: %s", error)
    dags: dict[str, DAG] = {}
    for path, cfg in configs.items():
        try:
            built = build_pipeline(cfg)
        except Exception:  # whatever the config model let through and Airflow refuses: this pipeline only
            log.exception("%s: pipeline %r: its DAGs cannot be built", path, cfg.name)
            continue
        dags.update((dag.dag_id, dag) for dag in built)
    return dags


def pipeline_errors(config_dir: str | Path | None = None) -> dict[Path, str]:
    """The problem of each invalid pipeline config file (file -> message naming the file, the key, the rule)."""
    return {path: str(exc) for path, exc in load_each(config_dir)[1].items()}


def raise_pipeline_errors(config_dir: str | Path | None = None) -> None:
    """Raise PipelineConfigError listing every invalid pipeline config (one line per file); else nothing."""
    problems = pipeline_errors(config_dir)
    if problems:
        lines = "\n".join(problems[path] for path in sorted(problems))
        raise PipelineConfigError(
            f"{len(problems)} pipeline config(s) give no DAGs; the other pipelines are not affected:\n{lines}"
        )
