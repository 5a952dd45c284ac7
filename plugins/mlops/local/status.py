"""What `mlops status` reports per pipeline: champion, last intervals, open alerts."""

from __future__ import annotations

from typing import Any

from mlops.core.config import PipelineConfig
from mlops.io import lake, registry
from mlops.io.paths import raw_dir, validation_dir
from mlops.io.predictions import scored_days


def pipeline_status(cfg: PipelineConfig) -> dict[str, Any]:
    """Champion version and threshold, last ingested/validated/scored intervals, counts, open alerts.

    `counts` has the number of ingested and scored days and of validated intervals (training windows
    left out): `validation_passed` (also under its first name, `validated`) and `validation_failed`.
    """
    champion = registry.version_by_alias(cfg.name, registry.CHAMPION)
    reports = {}
    folder = validation_dir(cfg.name)
    if folder.exists():
        for path in sorted(folder.glob("*.json")):
            if not path.stem.startswith("training-"):
                reports[path.stem] = lake.read_json(path)
    validated = [k for k, r in reports.items() if r["success"]]
    alerts = [
        {
            "interval": k,
            "failed_checks": [
                f"{c['check']}[{c['column']}]" for c in r["checks"] if not c["success"] and c["severity"] == "error"
            ],
            "report": r.get("report_path"),  # the HTML report (self-contained: reads offline), when published
        }
        for k, r in reports.items()
        if not r["success"]
    ]
    scored = scored_days(cfg.name)
    ingested = lake.list_partitions(raw_dir(cfg.name))
    return {
        "champion": {
            "version": champion.version if champion else None,
            "threshold": champion.threshold if champion else None,
            "run_id": champion.run_id if champion else None,
        },
        "last_ingested": ingested[-1] if ingested else None,
        "last_validated": validated[-1] if validated else None,
        "last_scored": scored[-1] if scored else None,
        "counts": {
            "ingested": len(ingested),
            "validated": len(validated),  # passed (kept as it was: "validated" means passed)
            "validation_passed": len(validated),
            "validation_failed": len(alerts),
            "scored": len(scored),
        },
        "open_alerts": alerts,
    }


def status(configs: list[PipelineConfig]) -> dict[str, Any]:
    return {"pipelines": {cfg.name: pipeline_status(cfg) for cfg in configs}}
