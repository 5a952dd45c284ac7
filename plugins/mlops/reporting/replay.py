"""The year report of `mlops replay`: one HTML page a person reads, and its record in MLflow."""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from mlops.core.feature_audit import VERDICTS
from mlops.reporting.html_table import table

STATUS_COLOURS = {"scored": "#2e7d32", "failed": "#c62828", "skipped": "#9e9e9e"}


def summary_lines(data: dict[str, Any]) -> list[str]:
    """The report as plain text lines (printed at the end of a replay)."""
    c, per_run, realized = data["counts"], data["per_run"], data["realized"]
    lines = [
        f"=== replay of {data['pipeline']} {data['range'][0]}..{data['range'][1]}: {data['wall_seconds']:.0f} s ===",
        f"days: {c['scored']} scored, {c['failed']} failed, {c['skipped']} skipped "
        f"({data['daily_runs']} daily runs, {data['retrain_runs']} retrains)",
        f"per daily run: median {per_run['median_run_seconds']} s, of which tasks {per_run['median_task_seconds']} s, "
        f"Airflow overhead {per_run['median_overhead_seconds']} s",
        f"realized ROC AUC: overall {_f(realized.get('overall'))}, November-December "
        f"{_f(realized.get('november_december'))}",
        "realized ROC AUC per month: "
        + ", ".join(f"{m['period']} {_f(m['roc_auc'])}" for m in realized.get("monthly", [])),
        f"alert mails: {data['alerts']['mails']}",
    ]
    if files := data.get("files"):
        lines.append(f"year report: {files['html']} (its data: {files['json']})")
    loop = data.get("outcomes") or {}
    if loop:
        lines.append(
            f"outcomes: {loop['days_with_outcomes']} of {loop['scored_days']} days with predictions evaluated; "
            f"{len(loop.get('alerts', []))} monitoring alerts; {len(loop.get('triggered_retrains', []))} "
            "degradation-triggered retrains"
        )
        lines.append(
            "realized / estimated ROC AUC per month (daily means): "
            + ", ".join(
                f"{m['month']} {_f(m['realized_roc_auc_daily_mean'])}/{_f(m['estimated_roc_auc_daily_mean'])}"
                for m in loop.get("monthly", [])
            )
        )
        for e in loop.get("estimate_error", []):
            lines.append(
                f"estimate error of daily {e['metric']}: median |error| {_f(e['median_absolute_error'])}, "
                f"mean {_f(e['mean_error'])} over {e['days']} days"
            )
        for t in loop.get("triggered_retrains", []):
            lines.append(f"  triggered retrain on {t['day']} ({t['signal']}): {'; '.join(t.get('reasons') or [])}")
    lines += _audit_lines(data.get("feature_audit") or {})
    for r in data["retrains"]:
        verdict = "promoted" if r.get("promoted") else ("rejected" if r.get("version") else r.get("state"))
        what = "triggered retrain" if r["kind"] == "triggered" else "retrain"
        flagged = f"; audit flags {', '.join(r['audit_flagged'])}" if r.get("audit_flagged") else ""
        lines.append(f"  {what} {r['interval'] or r['run_id']}: v{r.get('version')} {verdict}{flagged}")
    failed = [d for d in data["days"] if d["status"] == "failed"]
    for d in failed:
        lines.append(f"  FAILED {d['day']}: {'; '.join(d['reasons'])[:300]}")
    if "reprocess_check" in data:
        rc = data["reprocess_check"]
        lines.append(f"second replay: {rc['identical']} of {rc['days_compared']} days identical")
    return lines


def audit_over_retrains(audits: list[dict[str, Any]]) -> dict[str, Any]:
    """The feature audits of a replay's retrains, summed up: per feature, how often each verdict came.

    `audits`: one dict per audited version with `verdicts` (feature -> verdict), `lofo_tested`,
    `permutation_rows`, `fit_seconds`, `audit_seconds`, `budget_seconds` and `pairs` ([a, b] lists);
    entries with an `error` are counted apart. Returns `audits` (how many), `errors`, `features` (one
    dict per feature: counts per verdict and `tested` = times LOFO judged it, most flagged first),
    `over_budget` (audits whose time passed their budget), the median and max of the time ratio
    audit / fit, the median and min permutation rows, the median LOFO candidates tested, and `pairs`
    ([a, b, times named]).
    """
    import statistics
    from collections import Counter

    good = [a for a in audits if "error" not in a]
    counts: dict[str, dict[str, int]] = {}
    for a in good:
        for feature, verdict in (a.get("verdicts") or {}).items():
            tally = counts.setdefault(feature, dict.fromkeys(VERDICTS, 0))
            tally[verdict] = tally.get(verdict, 0) + 1
    features = [
        {"feature": f, **c, "tested": c["lofo_contributes"] + c["flagged"]}
        for f, c in sorted(counts.items(), key=lambda fc: (-fc[1]["flagged"], -fc[1]["lofo_contributes"], fc[0]))
    ]
    ratios = [a["audit_seconds"] / a["fit_seconds"] for a in good if a.get("fit_seconds")]
    rows = [a["permutation_rows"] for a in good if a.get("permutation_rows") is not None]
    pairs = Counter(tuple(sorted(pair)) for a in good for pair in a.get("pairs") or [])
    return {
        "audits": len(good),
        "errors": len(audits) - len(good),
        "features": features,
        "over_budget": sum(
            1 for a in good if a.get("budget_seconds") is not None and a["audit_seconds"] > a["budget_seconds"]
        ),
        "time_ratio_median": statistics.median(ratios) if ratios else None,
        "time_ratio_max": max(ratios) if ratios else None,
        "permutation_rows_median": statistics.median(rows) if rows else None,
        "permutation_rows_min": min(rows) if rows else None,
        "lofo_tested_median": statistics.median([len(a.get("lofo_tested") or []) for a in good]) if good else None,
        "pairs": [[a, b, n] for (a, b), n in pairs.most_common()],
    }


def _audit_lines(audit: dict[str, Any]) -> list[str]:
    if not audit or not audit.get("audits"):
        return []
    flagged = [f"{f['feature']} {f['flagged']}/{f['tested']}" for f in audit["features"] if f["flagged"]]
    return [
        f"feature audit over {audit['audits']} retrains: audit / fit median {_f(audit['time_ratio_median'])}, "
        f"max {_f(audit['time_ratio_max'])}, over budget {audit['over_budget']}; permutation rows median "
        f"{audit['permutation_rows_median']}, min {audit['permutation_rows_min']}; LOFO candidates tested "
        f"median {audit['lofo_tested_median']}",
        "  flagged (times flagged / times LOFO tested it): " + (", ".join(flagged) or "none"),
        "  correlated pairs: " + (", ".join(f"{a}-{b} ({n})" for a, b, n in audit["pairs"]) or "none"),
    ]


def _f(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _plot(data: dict[str, Any]) -> str:
    """A PNG (base64) of the weekly realized ROC AUC and the daily outcomes."""
    from mlops.reporting.plots import png_base64, pyplot

    plt = pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 5), sharex=False)
    weekly = [w for w in data["realized"].get("weekly", []) if w["roc_auc"] is not None]
    top.plot([w["period"] for w in weekly], [w["roc_auc"] for w in weekly], marker="o")
    top.set_ylabel("realized ROC AUC")
    top.set_title("Champion's realized ROC AUC per week")
    top.tick_params(axis="x", labelrotation=90, labelsize=6)
    days = data["days"]
    bottom.bar(
        range(len(days)), [d["scored_rows"] or 0 for d in days], color=[STATUS_COLOURS[d["status"]] for d in days]
    )
    bottom.set_ylabel("scored rows")
    bottom.set_title("Daily outcome (green scored, red failed, grey skipped)")
    return png_base64(fig, dpi=90)


def write_html(data: dict[str, Any], path: Path) -> Path:
    """Write the year report page (self-contained: the plot is inline, nothing loads from elsewhere)."""
    esc = html.escape
    days = table(
        ["day", "status", "rows", "scored", "version", "reasons"],
        [
            [
                d["day"],
                f"<span style='color:{STATUS_COLOURS[d['status']]}'>{d['status']}</span>",
                "" if d["rows"] is None else d["rows"],
                d["scored_rows"],
                esc(str(d["model_version"] or "")),
                esc("; ".join(d["reasons"])),
            ]
            for d in data["days"]
        ],
        escaped=True,
    )
    retrains = table(
        ["interval", "training window", "version", "decision", "reasons", "kind, run note", "feature audit flags"],
        [
            [
                r["interval"] or r["run_id"],
                r.get("training_window", ""),
                r.get("version", ""),
                "promoted" if r.get("promoted") else "not promoted",
                "; ".join(r.get("reasons") or []),
                f"{r['kind']} {r.get('note') or ''}",
                ", ".join(r.get("audit_flagged") or []),
            ]
            for r in data["retrains"]
        ],
    )
    months = table(
        ["month", "ROC AUC", "labelled rows", "delay rate", "versions"],
        [
            [m["period"], _f(m["roc_auc"]), m["rows"], f"{m['prevalence']:.3f}", ", ".join(m["model_versions"])]
            for m in data["realized"].get("monthly", [])
        ],
    )
    mails = "".join(f"<li>{esc(s)}</li>" for s in data["alerts"]["subjects"])
    loop = data.get("outcomes") or {}
    loop_months = table(
        ["month", "realized", "estimated (CBPE)", "days"],
        [
            [m["month"], _f(m["realized_roc_auc_daily_mean"]), _f(m["estimated_roc_auc_daily_mean"]), m["days"]]
            for m in loop.get("monthly", [])
        ],
    )
    errors = table(
        ["metric", "days", "median |error|", "mean error", "max |error|"],
        [
            [e["metric"], e["days"], _f(e["median_absolute_error"]), _f(e["mean_error"]), _f(e["max_absolute_error"])]
            for e in loop.get("estimate_error", [])
        ],
    )
    loop_alerts = table(
        ["day", "signal", "rule", "slice", "version"],
        [[a["day"], a["signal"], a["rule"], a["slice"], a["model_version"]] for a in loop.get("alerts", [])],
    )
    triggers = "".join(
        f"<li>{t['day']} ({esc(str(t['signal']))}): {esc('; '.join(t.get('reasons') or []))}</li>"
        for t in loop.get("triggered_retrains", [])
    )
    audit = data.get("feature_audit") or {}
    audit_table = table(
        ["feature", *VERDICTS, "tested by LOFO"],
        [[f["feature"], *(f[v] for v in VERDICTS), f["tested"]] for f in audit.get("features", [])],
    )
    audit_notes = "".join(f"<li>{esc(line.strip())}</li>" for line in _audit_lines(audit))
    summary = "".join(f"<li>{esc(line)}</li>" for line in summary_lines(data)[:6])
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Replay of {esc(data["pipeline"])}</title>
<style>body{{font-family:sans-serif;margin:2em}} table{{border-collapse:collapse;font-size:12px}}
td,th{{border:1px solid #ccc;padding:2px 6px;text-align:left}}</style></head><body>
<h1>Replay of {esc(data["pipeline"])}, {data["range"][0]} to {data["range"][1]}</h1>
<ul>{summary}</ul>
<img alt="weekly realized ROC AUC and daily outcomes" src="data:image/png;base64,{_plot(data)}">
<h2>Realized performance per month</h2>
{months}
<h2>Realized and estimated ROC AUC per month (means of the daily values)</h2>
{loop_months}
<h2>Error of the estimate once labels landed</h2>
{errors}
<h2>Monitoring alerts ({len(loop.get("alerts", []))}) and degradation-triggered retrains
({len(loop.get("triggered_retrains", []))})</h2><ul>{triggers}</ul>
{loop_alerts}
<h2>Retrains</h2>
{retrains}
<h2>Feature audit over the retrains (verdicts per feature; docs/statistics.md, section 9)</h2>
<ul>{audit_notes}</ul>
{audit_table}
<h2>Alert mails ({data["alerts"]["mails"]})</h2><ul>{mails}</ul>
<h2>Days</h2>
{days}
</body></html>"""
    path.write_text(page)
    return path


def log_to_mlflow(data: dict[str, Any], json_path: Path, html_path: Path) -> str:
    """Log the report (JSON, HTML, headline metrics) as a run of experiment `<pipeline>-replay`."""
    import mlflow

    from mlops.io import registry

    registry.client()
    experiment = registry.experiment_id(f"{data['pipeline']}-replay")
    name = f"replay {data['range'][0]}..{data['range'][1]}"
    with mlflow.start_run(experiment_id=experiment, run_name=name) as run:
        metrics = {
            "wall_seconds": data["wall_seconds"],
            **{f"days_{k}": float(v) for k, v in data["counts"].items()},
            **{k: v for k, v in data["per_run"].items() if v is not None},
        }
        for key in ("overall", "november_december"):
            if data["realized"].get(key) is not None:
                metrics[f"realized_roc_auc_{key}"] = data["realized"][key]
        loop = data.get("outcomes") or {}
        metrics["outcome_days"] = float(loop.get("days_with_outcomes", 0))
        metrics["monitoring_alerts"] = float(len(loop.get("alerts", [])))
        metrics["triggered_retrains"] = float(len(loop.get("triggered_retrains", [])))
        for e in loop.get("estimate_error", []):
            if e.get("median_absolute_error") is not None:
                metrics[f"estimate_median_abs_error_{e['metric']}"] = e["median_absolute_error"]
        audit = data.get("feature_audit") or {}
        for key in ("time_ratio_median", "time_ratio_max", "over_budget"):
            if audit.get(key) is not None:
                metrics[f"feature_audit_{key}"] = float(audit[key])
        mlflow.log_metrics(metrics)
        for i, week in enumerate(w for w in data["realized"].get("weekly", []) if w["roc_auc"] is not None):
            mlflow.log_metric("realized_roc_auc_weekly", week["roc_auc"], step=i)
        mlflow.log_artifact(str(json_path), "replay")
        mlflow.log_artifact(str(html_path), "replay")
        mlflow.set_tags({"pipeline": data["pipeline"], "range": json.dumps(data["range"])})
        return run.info.run_id
