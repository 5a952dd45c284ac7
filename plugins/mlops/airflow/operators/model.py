"""Operators of the model stages: assemble, train, recalibrate, evaluate, feature audit, promote."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException

from mlops.airflow.assets import announce_champion, degradation_event
from mlops.airflow.connections import source_url
from mlops.airflow.links import REPORT_XCOM_KEY, XCOM_KEY, MlflowRunLink, PromotionReportLink
from mlops.airflow.operators.base import PipelineOperator
from mlops.airflow.operators.data import failing_at_once

WINDOW_PARAMS = {"start_param": "window_start", "end_param": "window_end"}


def _window(interval_key: str):
    from mlops.core.interval import Interval

    return Interval.parse(interval_key)


class AssembleTrainingWindowOperator(PipelineOperator):
    """Assemble the training window that ends with the run's data interval (or params window_start/end).

    A run triggered by an event on `<name>_degraded` has no data interval of its own: it trains on the
    `training.window_days` window that ends the day after the latest scored day named in the event
    (`day`), and records the trigger's reason on the run (note), in the audit trail
    (`triggered_retrain`) and, through its XCom `trigger`, on the trained version (train task).
    """

    def execute(self, context: Any) -> dict[str, Any]:
        import datetime as dt

        from mlops.core.interval import Interval
        from mlops.io import audit
        from mlops.stages.assemble import assemble, training_window
        from mlops.stages.ingest import ingest_missing

        cfg = self.config()
        params = context.get("params") or {}
        trigger = None if params.get("window_start") else degradation_event(context, cfg.name)
        if trigger is not None:
            end = dt.date.fromisoformat(trigger["day"]) + dt.timedelta(days=1)
            window = training_window(cfg, Interval(end - dt.timedelta(days=1), end))
        else:
            interval = self.interval(context, **WINDOW_PARAMS)
            window = interval if params.get("window_start") else training_window(cfg, interval)
        self.check_within_data(cfg, window, context)
        if trigger is not None:
            reason = f"degradation ({trigger.get('signal')}): {trigger.get('reason')}"
            self.record_note(context, f"{cfg.name} training window {window.key}; triggered by {reason}")
            audit.record(
                cfg.name,
                "triggered_retrain",
                run_id=context.get("run_id"),
                window=window.key,
                signal=trigger.get("signal"),
                day=trigger.get("day"),
                days=trigger.get("days"),
                reasons=[reason],
            )
            self.log.warning("%s: retrain triggered by %s", cfg.name, reason)
        else:
            self.record_note(context, f"{cfg.name} training window {window.key}")
        with failing_at_once():  # bad source data or a damaged partition: retrying cannot help
            ingest_missing(cfg, window, context.get("run_id"), url=self.resolved(source_url, cfg))
            ts = assemble(cfg, window, context.get("run_id"))
        self.log.info("training window %s: %d rows, excluded %s", ts.key, ts.rows, ts.excluded or "nothing")
        out = {"training_key": ts.key, "days": ts.days, "excluded": ts.excluded, "rows": ts.rows}
        if trigger is not None:
            out["trigger"] = {k: trigger.get(k) for k in ("signal", "reason", "day", "days")}
        return out


class TrainOperator(PipelineOperator):
    """Train a challenger on the assembled window and register it."""

    operator_extra_links = (MlflowRunLink(),)

    def __init__(self, *, assemble_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.assemble_task_id = assemble_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.train import train

        params = context.get("params") or {}
        cfg = run_config(self, context)
        assembled = self.pulled(context, self.assemble_task_id)
        window = _window(assembled["training_key"])
        force = bool(params.get("force_retrain"))
        result = train(cfg, assembled["training_key"], window, context.get("run_id"), force=force)
        context["ti"].xcom_push(key=XCOM_KEY, value=result.run_id)
        if result.skipped:
            self.log.info(
                "inputs unchanged since version %s: training skipped (set force_retrain to train anyway)",
                result.version,
            )
        else:
            self.log.info(
                "registered %s version %s (run %s); fit %s",
                result.model_name,
                result.version,
                result.run_id,
                ", ".join(f"{k} {v:.2f}" for k, v in result.seconds.items()),
            )
            if trigger := assembled.get("trigger"):
                from mlops.io import registry

                registry.set_version_tags(
                    result.model_name,
                    result.version,
                    {
                        "retrain_trigger": trigger["signal"],
                        "retrain_reason": f"degradation ({trigger['signal']}) on {trigger['day']}: {trigger['reason']}",
                    },
                )
        return {
            "run_id": result.run_id,
            "version": result.version,
            "training_key": result.training_key,
            "skipped": result.skipped,
            "fingerprint": result.fingerprint,
        }


def run_config(operator: PipelineOperator, context: Any):
    """The pipeline's config as this retrain run's params change it (`model_kind`, `threshold_policy`).

    Every task of the run reads the same effective config, so the audit task's feature audit refits
    the kind of model the train task trained, and the promotion decision records it.
    """
    params = context.get("params") or {}
    cfg = operator.config()
    if params.get("model_kind"):
        cfg = cfg.with_model_kind(params["model_kind"])
    if params.get("threshold_policy") and params["threshold_policy"] != cfg.threshold.policy:
        threshold = cfg.threshold.model_copy(update={"policy": params["threshold_policy"]})
        cfg = cfg.model_copy(update={"threshold": threshold})
    return cfg


class _AfterTraining(PipelineOperator):
    def __init__(self, *, train_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.train_task_id = train_task_id

    def trained(self, context: Any) -> dict[str, Any]:
        """The train task's result; skips this task when training was skipped."""
        trained = self.pulled(context, self.train_task_id)
        if trained.get("skipped"):
            raise AirflowSkipException(f"training skipped: version {trained['version']} was trained on the same inputs")
        return trained


class RecalibrateOperator(_AfterTraining):
    """Choose the challenger's decision threshold on the calibration window."""

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.recalibrate import InfeasibleThresholdError, recalibrate

        cfg = run_config(self, context)
        trained = self.trained(context)
        try:
            choice = recalibrate(cfg, trained["training_key"], _window(trained["training_key"]), trained["version"])
        except InfeasibleThresholdError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info(
            "threshold %.4f by %s (precision %.3f, recall %.3f)",
            choice.threshold,
            choice.policy,
            choice.precision,
            choice.recall,
        )
        return {"threshold": choice.threshold, "policy": choice.policy}


class EvaluateOperator(_AfterTraining):
    """Evaluate challenger and champion per slice on the same evaluation rows."""

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.evaluate import evaluate

        trained = self.trained(context)
        cfg = run_config(self, context)
        result = evaluate(cfg, trained["training_key"], _window(trained["training_key"]), trained["version"])
        self.log.info("evaluation on %d rows: %s", result.rows, result.overall)
        return {
            "overall": result.overall,
            "champion_version": result.champion_version,
            "worst_slices": result.worst_slices,
        }


class FeatureAuditOperator(_AfterTraining):
    """Audit which features carry the challenger's predictions (permutation importance, then LOFO).

    Runs beside recalibrate -> evaluate (it needs the trained version only); promote waits for it.
    """

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.feature_audit import audit_challenger

        trained = self.trained(context)
        cfg = run_config(self, context)
        audit = audit_challenger(cfg, trained["training_key"], _window(trained["training_key"]), trained["version"])
        if "time_ratio" in audit:
            self.log.info(
                "feature audit: %.2f CPU s (%.2f s wall), %.2f x the training fit (%.2f CPU s, from the %s); "
                "LOFO on %s train rows tested %s, skipped: %s; flagged: %s",
                audit["audit_seconds"],
                audit["wall_seconds"],
                audit["time_ratio"],
                audit["fit_seconds"],
                audit["fit_seconds_source"],
                audit["lofo_train_rows"],
                audit["lofo_tested"] or "none",
                audit["lofo_skipped"] or "none",
                audit["flagged"] or "none",
            )
        else:
            self.log.info("feature audit skipped: %s", audit.get("skipped"))
        return {"version": trained["version"], "flagged": audit.get("flagged", []), "skipped": audit.get("skipped")}


class PromoteOperator(_AfterTraining):
    """Move the `champion` alias to the challenger when every gate passes (an event on the champion asset).

    Its extra links open the challenger's MLflow run and its promotion report.
    """

    operator_extra_links = (MlflowRunLink(), PromotionReportLink())

    def __init__(self, *, evaluate_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.evaluate_task_id = evaluate_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.promote import promote, promotion_allowed, report_location

        trained = self.trained(context)
        evaluated = self.pulled(context, self.evaluate_task_id)
        allowed = (context.get("params") or {}).get("allow_promotion")
        run_type = getattr(context.get("dag_run"), "run_type", None)
        run_type = str(getattr(run_type, "value", run_type) or "unknown")  # scheduled, manual, backfill, ...
        allowed, blocked = promotion_allowed(allowed, run_type)
        decision = promote(
            run_config(self, context),
            trained["version"],
            allow_promotion=allowed,
            blocked_reason=blocked,
            evaluated_champion=evaluated["champion_version"],
            triggered_by=run_type,
            airflow_run_id=context.get("run_id"),
        )
        for reason in decision.reasons:
            self.log.info(reason)
        where = report_location(self.pipeline, decision.challenger_version)
        context["ti"].xcom_push(key=XCOM_KEY, value=where["run_id"])
        context["ti"].xcom_push(key=REPORT_XCOM_KEY, value=where)
        self.log.info("promotion report: run %s, artifact %s", where["run_id"], where["path"])
        if decision.promoted:
            announce_champion(context, self.pipeline, decision.challenger_version, "promotion")
        return {
            "promoted": decision.promoted,
            "passed": decision.passed,
            "version": decision.challenger_version,
            "previous_champion": decision.champion_version,
            "reasons": decision.reasons,
        }


class RollbackOperator(PipelineOperator):
    """Give the champion alias back to param `version` (default: the previous champion); an asset event."""

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.promote import rollback

        params = context.get("params") or {}
        try:
            version = rollback(
                self.config(),
                params.get("version"),
                triggered_by=f"dag {context.get('run_id')}",
                reason=params.get("reason") or "",
                airflow_run_id=context.get("run_id"),
            )
        except (LookupError, ValueError) as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info("champion of %s is now version %s", self.pipeline, version)
        announce_champion(context, self.pipeline, version, "rollback")
        return {"champion": version}
