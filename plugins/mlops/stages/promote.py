"""Stage 6, promotion: a gated, audited, reversible move of the `champion` alias."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from mlops import audit, registry
from mlops.config import PipelineConfig


@dataclass(frozen=True)
class GateCheck:
    name: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class PromotionDecision:
    pipeline: str
    challenger_version: str
    champion_version: str | None
    promoted: bool
    checks: list[GateCheck]

    @property
    def reasons(self) -> list[str]:
        return [f"{'pass' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in self.checks]


def gate(
    cfg: PipelineConfig,
    challenger: registry.VersionRef,
    champion: registry.VersionRef | None,
    overall: dict[str, dict[str, float]],
    validation_status: str | None,
) -> list[GateCheck]:
    """The promotion checks of the config, judged on the evaluation's overall metrics."""
    p = cfg.promotion
    metric = p.metric
    value = overall.get("challenger", {}).get(metric, float("nan"))
    checks = [
        GateCheck("training_data_validated", validation_status == "passed", f"validation_status={validation_status}"),
        GateCheck("threshold_set", challenger.threshold is not None, f"threshold={challenger.threshold}"),
        GateCheck(f"{metric}_min_value", value >= p.min_value, f"challenger {metric}={value:.4f} >= {p.min_value}"),
    ]
    if champion is not None:
        base = overall.get("champion", {}).get(metric, float("nan"))
        checks.append(
            GateCheck(
                f"{metric}_vs_champion",
                value - base >= p.min_improvement,
                f"challenger {value:.4f} - champion v{champion.version} {base:.4f} >= {p.min_improvement}",
            )
        )
    return checks


def promote(
    cfg: PipelineConfig,
    challenger_version: str,
    overall: dict[str, dict[str, float]],
    allow_promotion: bool = True,
    triggered_by: str = "schedule",
    airflow_run_id: str | None = None,
) -> PromotionDecision:
    """Give the challenger alias `champion` when every gate passes; record the decision either way."""
    c = registry.client()
    challenger = registry.version(cfg.name, challenger_version)
    champion = registry.version_by_alias(cfg.name, registry.CHAMPION)
    validation_status = c.get_model_version(cfg.name, challenger_version).tags.get("validation_status")
    checks = gate(cfg, challenger, champion, overall, validation_status)
    if not allow_promotion:
        checks.append(GateCheck("allow_promotion", False, "promotion not allowed for this run"))
    decision = PromotionDecision(
        cfg.name, challenger.version, champion.version if champion else None, all(ch.passed for ch in checks), checks
    )
    if decision.promoted:
        if champion is not None:
            c.set_registered_model_alias(cfg.name, registry.PREVIOUS_CHAMPION, champion.version)
        c.set_registered_model_alias(cfg.name, registry.CHAMPION, challenger.version)
    outcome = "promoted" if decision.promoted else "rejected"
    registry.set_version_tags(
        cfg.name, challenger.version, {"promotion_decision": outcome, "promotion_reasons": json.dumps(decision.reasons)}
    )
    c.set_tag(challenger.run_id, "promotion_decision", outcome)
    c.log_dict(challenger.run_id, {**asdict(decision), "reasons": decision.reasons}, "promotion/decision.json")
    audit.record(
        cfg.name,
        outcome,
        version=challenger.version,
        previous=decision.champion_version,
        run_id=challenger.run_id,
        airflow_run_id=airflow_run_id,
        triggered_by=triggered_by,
        reasons=decision.reasons,
    )
    return decision


def rollback(cfg: PipelineConfig, to_version: str | None = None, triggered_by: str = "cli", reason: str = "") -> str:
    """Give `champion` back to `to_version` (default: the `previous_champion`); returns that version."""
    c = registry.client()
    current = registry.version_by_alias(cfg.name, registry.CHAMPION)
    if to_version is None:
        previous = registry.version_by_alias(cfg.name, registry.PREVIOUS_CHAMPION)
        if previous is None:
            raise LookupError(f"model {cfg.name!r} has no previous_champion to roll back to; give a version")
        to_version = previous.version
    target = registry.version(cfg.name, to_version)
    if target.threshold is None:
        raise ValueError(f"version {to_version} of {cfg.name!r} has no threshold tag: it was never recalibrated")
    c.set_registered_model_alias(cfg.name, registry.CHAMPION, target.version)
    if current is not None and current.version != target.version:
        c.set_registered_model_alias(cfg.name, registry.PREVIOUS_CHAMPION, current.version)
    registry.set_version_tags(cfg.name, target.version, {"rolled_back_to_from": current.version if current else "none"})
    audit.record(
        cfg.name,
        "rollback",
        version=target.version,
        previous=current.version if current else None,
        triggered_by=triggered_by,
        reasons=[reason] if reason else [],
    )
    return target.version
