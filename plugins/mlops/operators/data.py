"""Operators of the data stages: ingest, validate, score."""

from __future__ import annotations

from typing import Any

from airflow.sdk.exceptions import AirflowFailException

from mlops.operators.base import PipelineOperator


class IngestOperator(PipelineOperator):
    """Ingest the data interval's partitions (replacing earlier ones)."""

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.ingest import ingest

        result = ingest(self.config(), self.interval(context), context.get("run_id"))
        self.log.info("ingested %s partitions: %s", len(result.partitions), result.partitions)
        return {"interval": result.interval.key, "partitions": result.partitions}


class ValidateOperator(PipelineOperator):
    """Validate the interval's partitions, or the training window assembled upstream.

    A failed check fails the task without retries (the data will not change) and so sends the alert.
    """

    def __init__(self, *, training_task_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.training_task_id = training_task_id

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.validate import champion_reference, validate, validate_training_set

        cfg = self.config()
        reference, reference_name = champion_reference(cfg)
        if self.training_task_id:
            assembled = self.pulled(context, self.training_task_id)
            report = validate_training_set(
                cfg, assembled["training_key"], len(assembled["days"]), reference, reference_name
            )
        else:
            report = validate(cfg, self.interval(context), reference, reference_name)
        for check in report.warnings:
            self.log.warning("warning %s [%s]: observed %s", check["check"], check["column"], check["observed"])
        if not report.success:
            raise AirflowFailException(report.summary())
        self.log.info("%s: %d checks passed, %d warnings", report.interval, len(report.checks), len(report.warnings))
        return {"interval": report.interval, "checks": len(report.checks), "warnings": len(report.warnings)}


class ScoreOperator(PipelineOperator):
    """Score the interval with the champion (or the version pinned by param `model_version`)."""

    def execute(self, context: Any) -> dict[str, Any]:
        from mlops.stages.score import score

        pinned = (context.get("params") or {}).get("model_version")
        try:
            result = score(self.config(), self.interval(context), pinned)
        except LookupError as exc:
            raise AirflowFailException(str(exc)) from None
        self.log.info(
            "scored %d rows with version %s at threshold %.4f", result.rows, result.model_version, result.threshold
        )
        return {
            "interval": result.interval,
            "rows": result.rows,
            "model_version": result.model_version,
            "threshold": result.threshold,
        }
