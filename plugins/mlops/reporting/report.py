"""The validation report a person reads: one self-contained HTML page per run, also logged to MLflow."""

from __future__ import annotations

import base64
import html
import json
import shutil
import tempfile
import time
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


PLOT_WIDTH, PLOT_HEIGHT = 400, 210  # pixels of one shift chart


def _plot_shift(feature: str, reference: dict[str, Any], df: pd.DataFrame, title: str) -> str:
    """A small bar chart (base64 SVG) of the reference's and the run's distribution of one feature.

    Bars are shares of rows (0-1): for a numeric feature per bin of the reference profile (edges are
    data values, then `missing`), for a categorical one per category (the 15 largest of both sides).
    Drawn as SVG text by hand: matplotlib cost about 0.3 s a chart (import, layout, PNG encoding).
    Raises KeyError when `feature` is in neither the profile nor `df`.
    """
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
    svg = _bars_svg(labels, [float(v) for v in expected], [float(v) for v in actual], title)
    return base64.b64encode(svg.encode()).decode()


def _bars_svg(labels: list[str], expected: list[float], actual: list[float], title: str) -> str:
    """SVG of paired bars (reference, this run) per label, PLOT_WIDTH x PLOT_HEIGHT pixels, with a legend.

    `expected` and `actual` have one share per label; the vertical scale is the largest share (at
    least 1e-9, so an all-zero chart draws flat bars).
    """
    left, top, bottom, right = 34, 22, 62, 8
    plot_w, plot_h = PLOT_WIDTH - left - right, PLOT_HEIGHT - top - bottom
    peak = max([*expected, *actual, 1e-9])
    step = plot_w / max(len(labels), 1)
    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{PLOT_WIDTH}" height="{PLOT_HEIGHT}" '
        f'font-family="sans-serif" font-size="8">',
        f'<text x="{PLOT_WIDTH / 2:.1f}" y="12" text-anchor="middle" font-size="10">{esc(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>',
        f'<text x="{left - 3}" y="{top + 3}" text-anchor="end">{peak:.2g}</text>',
        f'<text x="{left - 3}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for i, label in enumerate(labels):
        x = left + i * step
        for j, (share, colour) in enumerate(((expected[i], "#1f77b4"), (actual[i], "#ff7f0e"))):
            h = plot_h * share / peak
            parts.append(
                f'<rect x="{x + step * (0.1 + 0.4 * j):.1f}" y="{top + plot_h - h:.1f}" width="{step * 0.4:.1f}" '
                f'height="{h:.1f}" fill="{colour}"><title>{esc(label)}: {share:.4f}</title></rect>'
            )
        cx, cy = x + step / 2, top + plot_h + 6
        parts.append(
            f'<text x="{cx:.1f}" y="{cy:.1f}" text-anchor="end" transform="rotate(-60 {cx:.1f} {cy:.1f})">'
            f"{esc(label)}</text>"
        )
    for j, (name, colour) in enumerate((("reference", "#1f77b4"), ("this run", "#ff7f0e"))):
        y = top + 4 + 11 * j
        parts.append(f'<rect x="{PLOT_WIDTH - 70}" y="{y}" width="8" height="8" fill="{colour}"/>')
        parts.append(f'<text x="{PLOT_WIDTH - 58}" y="{y + 7}">{name}</text>')
    parts.append("</svg>")
    return "".join(parts)


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
                f'<img alt="{html.escape(title)}" src="data:image/svg+xml;base64,'
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
    from mlflow.entities import Metric

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
    values = {"checks_failed": failed, "checks_warned": warned, "rows": report["rows"]}
    for kind, by_feature in report["shifts"].items():
        for metric in ("psi", "js_distance", "ks"):
            shifts = [s[metric] for s in by_feature.values() if np.isfinite(s.get(metric, np.nan))]
            if shifts:
                values[f"{kind}_max_{metric}"] = float(max(shifts))
    # one call for the metrics, one for both files (each MLflow call is a store transaction)
    now = int(time.time() * 1000)
    c.log_batch(run.info.run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()])
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copyfile(html_path, Path(tmp) / html_path.name)
        with (Path(tmp) / "report.json").open("w") as fh:
            json.dump(report, fh, indent=2, default=str)  # as MlflowClient.log_dict writes it
        c.log_artifacts(run.info.run_id, tmp, "validation")
    c.set_terminated(run.info.run_id, "FINISHED" if report["success"] else "FAILED")
    return run.info.run_id
