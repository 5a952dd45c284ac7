"""The validation report a person reads: one self-contained HTML page per run, also logged to MLflow."""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.drift import _category_fractions, _numeric_fractions
from mlops.io import lake
from mlops.io.paths import lake_dir

TOP_SHIFTED = 4


def reports_dir(pipeline: str) -> Path:
    return lake_dir(pipeline) / "reports"


def _plot_shift(feature: str, reference: dict[str, Any], df: pd.DataFrame, title: str) -> str:
    """A small bar chart (base64 PNG) of the reference's and the run's distribution of one feature."""
    from mlops.reporting.plots import _pyplot

    plt = _pyplot()
    if feature in reference["numeric"]:
        ref = reference["numeric"][feature]
        edges = ref["edges"]
        labels = [f"<{edges[0]:.4g}" if edges else "all", *[f">={e:.4g}" for e in edges], "missing"]
        expected = ref["fractions"]
        actual = _numeric_fractions(df[feature].to_numpy(dtype="float64", na_value=np.nan), edges)
    else:
        ref = reference["categorical"][feature]["fractions"]
        actual_all = _category_fractions(df[feature], None)
        labels = sorted(set(ref) | set(actual_all), key=lambda k: -(ref.get(k, 0) + actual_all.get(k, 0)))[:15]
        expected = [ref.get(k, 0.0) for k in labels]
        actual = [actual_all.get(k, 0.0) for k in labels]
    fig, ax = plt.subplots(figsize=(5, 2.6))
    x = np.arange(len(labels))
    ax.bar(x - 0.2, expected, 0.4, label="reference")
    ax.bar(x + 0.2, actual, 0.4, label="this run")
    ax.set_xticks(x, labels, rotation=60, ha="right", fontsize=6)
    ax.set_title(title, fontsize=8)
    ax.legend(fontsize=6)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def render(report: dict[str, Any], df: pd.DataFrame, profiles: dict[str, dict[str, Any]]) -> str:
    """HTML of a validation report: failed checks first, then plots of the most-shifted features, then the rest."""
    checks = report["checks"]
    failed = [c for c in checks if not c["success"] and c["severity"] == "error"]
    warned = [c for c in checks if not c["success"] and c["severity"] == "warning"]
    passed = [c for c in checks if c["success"]]

    def rows(items: list[dict[str, Any]]) -> str:
        return "".join(
            f"<tr><td>{html.escape(c['check'])}</td><td>{html.escape(str(c['column'] or ''))}</td>"
            f"<td>{html.escape(str(c['observed']))[:300]}</td><td>{html.escape(str(c['expected']))[:300]}</td></tr>"
            for c in items
        )

    plots = []
    for kind, by_feature in report["shifts"].items():
        if kind not in profiles:
            continue
        ranked = sorted(by_feature.items(), key=lambda kv: -np.nan_to_num(kv[1].get("psi", 0.0)))[:TOP_SHIFTED]
        for feature, stats in ranked:
            title = f"{feature} vs {report['references'][kind]} (PSI {stats.get('psi', 0):.3f})"
            plots.append(
                f'<img alt="{html.escape(title)}" src="data:image/png;base64,'
                f'{_plot_shift(feature, profiles[kind], df, title)}">'
            )
    verdict = "PASSED" if not failed else f"FAILED: {len(failed)} of {len(checks)} checks"
    css = "fail" if failed else ""
    head = "<tr><th>check</th><th>column</th><th>observed</th><th>expected</th></tr>"
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8">
<title>{html.escape(report["pipeline"])} {html.escape(report["interval"])}: validation</title>
<style>body{{font-family:sans-serif;margin:1.5em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:left}} .fail{{color:#b00}} img{{margin:4px}}</style>
</head><body>
<h1>{html.escape(report["pipeline"])} {html.escape(report["interval"])}: <span class="{css}">{verdict}</span></h1>
<p>{report["rows"]} rows, validated at {html.escape(report["validated_at"])}. References:
{html.escape(", ".join(f"{k}: {v}" for k, v in report["references"].items()))}.</p>
<h2 class="fail">Failed ({len(failed)})</h2><table>{head}{rows(failed)}</table>
<h2>Most shifted features</h2>{"".join(plots) or "<p>no reference to compare with</p>"}
<h2>Warnings ({len(warned)})</h2><table>{head}{rows(warned)}</table>
<h2>Passed ({len(passed)})</h2><table>{head}{rows(passed)}</table>
</body></html>"""


def write_report(report: dict[str, Any], df: pd.DataFrame, profiles: dict[str, dict[str, Any]]) -> Path:
    """Render and store the report atomically as `reports/<interval>.html`; returns its path."""
    path = reports_dir(report["pipeline"]) / f"{report['interval']}.html"
    lake.write_text(path, render(report, df, profiles))
    return path


def log_to_mlflow(report: dict[str, Any], html_path: Path) -> str:
    """One MLflow run per validation (experiment `<pipeline>-validation`): metrics, report and JSON."""
    from mlops.io import registry

    c = registry.client()
    experiment = registry.experiment_id(f"{report['pipeline']}-validation")
    run = c.create_run(
        experiment,
        run_name=f"validate {report['interval']}",
        tags={
            "pipeline": report["pipeline"],
            "stage": "validate",
            "interval": report["interval"],
            "success": str(report["success"]).lower(),
        },
    )
    failed = sum(1 for ch in report["checks"] if not ch["success"] and ch["severity"] == "error")
    warned = sum(1 for ch in report["checks"] if not ch["success"] and ch["severity"] == "warning")
    c.log_metric(run.info.run_id, "checks_failed", failed)
    c.log_metric(run.info.run_id, "checks_warned", warned)
    c.log_metric(run.info.run_id, "rows", report["rows"])
    for kind, by_feature in report["shifts"].items():
        for metric in ("psi", "js_distance", "ks"):
            values = [s[metric] for s in by_feature.values() if np.isfinite(s.get(metric, np.nan))]
            if values:
                c.log_metric(run.info.run_id, f"{kind}_max_{metric}", float(max(values)))
    c.log_artifact(run.info.run_id, str(html_path), "validation")
    c.log_dict(run.info.run_id, report, "validation/report.json")
    c.set_terminated(run.info.run_id, "FINISHED" if report["success"] else "FAILED")
    return run.info.run_id
