"""Stage 2, validation: Great Expectations checks plus PSI drift against the training reference."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mlops import lake
from mlops.config import PipelineConfig
from mlops.drift import feature_psi
from mlops.gx_checks import build_suite, run_suite
from mlops.interval import Interval
from mlops.paths import lake_dir
from mlops.stages.ingest import read_interval


@dataclass
class ValidationReport:
    """Outcome of validating one interval; `failed` lists the checks that stop the chain."""

    pipeline: str
    interval: str
    rows: int
    checks: list[dict[str, Any]]
    drift: dict[str, float]
    reference: str | None
    validated_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["success"] and c["severity"] == "error"]

    @property
    def warnings(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if not c["success"] and c["severity"] == "warning"]

    @property
    def success(self) -> bool:
        return not self.failed

    def summary(self) -> str:
        """One line per failed check, for logs and alert mail."""
        lines = [f"{self.pipeline} {self.interval}: {len(self.failed)} of {len(self.checks)} checks failed"]
        for c in self.failed:
            column = f" [{c['column']}]" if c["column"] else ""
            lines.append(
                f"- {c['check']}{column}: observed {shorten(c['observed'])}, expected {shorten(c['expected'])}"
            )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "success": self.success}


def shorten(value: Any, width: int = 240) -> str:
    """A value's text, cut to `width` characters for one-line messages."""
    text = str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def results_dir(pipeline: str) -> Path:
    """Folder of validation reports, one JSON per interval."""
    return lake_dir(pipeline) / "validation"


def drift_checks(cfg: PipelineConfig, psi_by_feature: dict[str, float], rows: int) -> list[dict[str, Any]]:
    """One check per feature: error or warning when its PSI passes the configured limits."""
    d = cfg.validation.drift
    checks = []
    for feature, value in sorted(psi_by_feature.items()):
        if feature in d.exclude:
            continue
        warn, error = d.limits(feature)
        gating = rows >= d.min_rows
        severity = "error" if error is not None and value > error and gating else "warning"
        success = not ((error is not None and value > error) or (warn is not None and value > warn))
        checks.append(
            {
                "check": "psi_vs_training_reference",
                "column": feature,
                "success": success,
                "severity": severity,
                "observed": round(value, 4),
                "expected": {"psi_warn": warn, "psi_error": error, "gates": gating},
            }
        )
    return checks


def validate_frame(
    cfg: PipelineConfig, df, key: str, n_days: int, reference: dict[str, Any] | None, reference_name: str | None
) -> ValidationReport:
    """Run the suite and the drift checks on a frame covering `n_days` days; store the report under `key`."""
    checks = [{**c, "severity": "error"} for c in run_suite(build_suite(cfg, n_days), df)]
    psi_by_feature = feature_psi(reference, df) if reference else {}
    checks += drift_checks(cfg, psi_by_feature, len(df))
    report = ValidationReport(cfg.name, key, len(df), checks, psi_by_feature, reference_name)
    lake.write_json(results_dir(cfg.name) / f"{key}.json", report.to_dict())
    return report


def validate(
    cfg: PipelineConfig, interval: Interval, reference: dict[str, Any] | None = None, reference_name: str | None = None
) -> ValidationReport:
    """Validate the ingested partitions of `interval` (the report replaces an earlier one)."""
    return validate_frame(
        cfg, read_interval(cfg, interval), interval.key, len(interval.days()), reference, reference_name
    )


def validate_training_set(
    cfg: PipelineConfig,
    training_key: str,
    n_days: int,
    reference: dict[str, Any] | None = None,
    reference_name: str | None = None,
) -> ValidationReport:
    """Validate an assembled training window; its report is stored as `training-<key>`."""
    from mlops.stages.assemble import read_training_set

    df = read_training_set(cfg.name, training_key)
    return validate_frame(cfg, df, f"training-{training_key}", n_days, reference, reference_name)


def champion_reference(cfg: PipelineConfig) -> tuple[dict[str, Any] | None, str | None]:
    """The champion's training-data profile and a name for it, or (None, None) before any champion."""
    from mlops import registry
    from mlops.stages.train import load_reference

    champion = registry.version_by_alias(cfg.name, registry.CHAMPION)
    if champion is None:
        return None, None
    return load_reference(champion.run_id), f"{cfg.name} v{champion.version} training data"


def read_report(pipeline: str, key: str) -> dict[str, Any] | None:
    """The stored validation report of an interval key, if any."""
    path = results_dir(pipeline) / f"{key}.json"
    return lake.read_json(path) if path.exists() else None
