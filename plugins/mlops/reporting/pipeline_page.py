"""The pipeline page (shown inside the Airflow UI by the mlops plugin): one HTML page per pipeline.

Per pipeline: the champion timeline (promotions, rejections, rollbacks from the audit trail, with who
triggered them and why), realized against estimated performance per slice (the outcomes series),
drift and skew series (the shift scores of validation) and alerts (failed validation and prediction
checks). `page_data` reads what the stages wrote under `$MLOPS_HOME`; `render_page` and
`render_index` are pure functions from those plain values to HTML. Plots are server-side matplotlib
PNGs inlined as base64: the page loads nothing from elsewhere.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.core.interval import Interval
from mlops.core.outcomes import ESTIMATED, REALIZED, estimate_errors
from mlops.io import audit, lake
from mlops.io.datasets import outcome_history, shift_history
from mlops.io.paths import monitoring_dir, validation_dir
from mlops.reporting.html_table import table

PERFORMANCE_METRICS = ("roc_auc", "precision", "recall")  # the ones with both a realized and an estimated series
SLICE_VALUES_SHOWN = 4  # per slice feature: the values with the most rows
FEATURES_SHOWN = 6  # per shift comparison: the features with the largest shift
SHIFT_METRIC = "psi"
EVENT_HEAD = ["data day", "at", "event", "version", "previous", "triggered by", "reasons", "report"]
ALERT_HEAD = ("interval", "source", "check", "column or day", "observed", "expected")
EVENT_STYLES = {  # audit event -> (marker, colour, label)
    "promoted": ("^", "#2e7d32", "promoted"),
    "rejected": ("x", "#c62828", "rejected"),
    "not_promoted": ("o", "#757575", "passed, not promoted"),
    "rollback": ("v", "#ef6c00", "rollback"),
}
_CSS = """body{font-family:sans-serif;margin:1em 1.5em;max-width:90em}
table{border-collapse:collapse;font-size:12px;margin-bottom:1em}td,th{border:1px solid #ccc;padding:3px 6px;
text-align:left;vertical-align:top}.promoted{color:#2e7d32}.rejected{color:#c62828}.rollback{color:#ef6c00}
img{max-width:100%;margin:4px 0}.note{color:#555}"""


# gathering


def _json_reports(folder: Path, skip_prefix: str = "") -> dict[str, dict[str, Any]]:
    if not folder.exists():
        return {}
    return {p.stem: lake.read_json(p) for p in sorted(folder.glob("*.json")) if not p.stem.startswith(skip_prefix)}


def alerts(pipeline: str) -> list[dict[str, Any]]:
    """Failed error-level checks of validation (days and training windows) and of prediction monitoring.

    Rows {interval, source (validation | monitoring), check, column, observed, expected}, oldest first.
    """
    rows = []
    sources = (("validation", validation_dir(pipeline)), ("monitoring", monitoring_dir(pipeline)))
    for source, folder in sources:
        for key, report in _json_reports(folder).items():
            for c in report.get("checks", []):
                if not c.get("success", True) and c.get("severity") == "error":
                    rows.append(
                        {
                            "interval": key,
                            "source": source,
                            "check": c.get("check"),
                            "column": c.get("column") or c.get("day") or "",
                            "observed": str(c.get("observed"))[:200],
                            "expected": str(c.get("expected"))[:200],
                        }
                    )
    return sorted(rows, key=lambda r: r["interval"])


def page_data(pipeline: str) -> dict[str, Any]:
    """Everything the page of `pipeline` shows, read from `$MLOPS_HOME` (nothing is written).

    Returns {pipeline, events (audit entries, oldest first), outcomes (DataFrame of the outcomes series,
    possibly empty), shifts (DataFrame of shift scores, possibly empty), alerts (see `alerts`)}.
    Raises lake.PartitionReadError on a damaged partition.
    """
    return {
        "pipeline": pipeline,
        "events": audit.history(pipeline),
        "outcomes": outcome_history(pipeline),
        "shifts": shift_history(pipeline),
        "alerts": alerts(pipeline),
    }


# plots


def data_day(event: dict[str, Any]) -> str | None:
    """The data day an audit event belongs to (ISO date), None when it names none.

    A degradation trigger or a triggered retrain: its `day`; a decision on a version (promoted,
    rejected, not promoted): the end of the version's `training_window`, the first day it can score.
    """
    if event.get("day"):
        return str(event["day"])
    window = event.get("training_window")
    if window:
        return Interval.parse(str(window)).end.isoformat()
    return None


def event_days(events: list[dict[str, Any]]) -> list[str | None]:
    """`data_day` of each event; an event without one (a rollback) takes the data day of the event
    before it, since it acted after that one. Events before any data day get None."""
    out: list[str | None] = []
    last = None
    for e in events:
        last = data_day(e) or last
        out.append(last)
    return out


def timeline_plot(events: list[dict[str, Any]]) -> str | None:
    """Champion version over data time (a step line) with every decision marked; None without events.

    The x axis is the data day of each decision (`event_days`), so a replay of a year, run in an hour,
    spreads over its year. When a decision has no data day (an audit trail written before decisions
    recorded their training window), the axis is the wall-clock time of the decisions instead."""
    days = event_days(events)
    kept = [
        (e, d)
        for e, d in zip(events, days, strict=True)
        if e.get("event") in EVENT_STYLES and str(e.get("version", "")).isdigit()
    ]
    if not kept:
        return None
    from mlops.reporting.plots import png_base64, pyplot

    points = [e for e, _ in kept]
    by_data_day = all(d is not None for _, d in kept)
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(11, 2.8))
    times = pd.to_datetime(
        [d for _, d in kept] if by_data_day else [e["at"] for e in points], utc=True, format="ISO8601"
    )
    champion_at, champion = [], []
    for t, e in zip(times, points, strict=True):
        if e["event"] in ("promoted", "rollback"):
            champion_at.append(t)
            champion.append(int(e["version"]))
    if champion:
        ax.step([*champion_at, times.max()], [*champion, champion[-1]], where="post", color="#1565c0", label="champion")
    for event, (marker, colour, label) in EVENT_STYLES.items():
        hit = [(t, int(e["version"])) for t, e in zip(times, points, strict=True) if e["event"] == event]
        if hit:
            ax.scatter(
                [t for t, _ in hit], [v for _, v in hit], marker=marker, color=colour, s=50, label=label, zorder=3
            )
    ax.set_ylabel("model version")
    ax.set_xlabel("data day (end of the training window)" if by_data_day else "time of the decision (UTC)")
    ax.set_title("Champion timeline")
    ax.legend(fontsize=7, loc="upper left")
    fig.autofmt_xdate()
    return png_base64(fig)


def _series(rows: pd.DataFrame) -> pd.DataFrame:
    out = rows.assign(day=pd.to_datetime(rows["day"])).sort_values("day")
    return out


def performance_plot(outcomes: pd.DataFrame, metric: str) -> str | None:
    """Realized (line, interval band) and estimated (dashed) `metric` per day: overall, then one panel per
    slice feature with its `SLICE_VALUES_SHOWN` largest values. None when the series has no value of `metric`."""
    if outcomes.empty:
        return None
    rows = outcomes[(outcomes.metric == metric) & outcomes.value.notna()]
    if rows.empty:
        return None
    from mlops.reporting.plots import png_base64, pyplot

    plt = pyplot()
    features = ["overall", *[f for f in dict.fromkeys(rows.slice_feature) if f != "overall"]]
    fig, axes = plt.subplots(len(features), 1, figsize=(11, 2.6 * len(features)), squeeze=False)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, feature in zip(axes[:, 0], features, strict=True):
        part = rows[rows.slice_feature == feature]
        sizes = part[part.kind == REALIZED].groupby("slice_value")["n"].sum().sort_values(ascending=False)
        values = list(sizes.index[:SLICE_VALUES_SHOWN]) or list(dict.fromkeys(part.slice_value))[:SLICE_VALUES_SHOWN]
        for i, value in enumerate(values):
            colour = colours[i % len(colours)]
            name = "overall" if feature == "overall" else str(value)
            real = _series(part[(part.slice_value == value) & (part.kind == REALIZED)])
            est = _series(part[(part.slice_value == value) & (part.kind == ESTIMATED)])
            if len(real):
                ax.plot(real.day, real.value, marker="o", ms=3, color=colour, label=f"{name} realized")
                band = real.dropna(subset=["ci_low", "ci_high"])
                ax.fill_between(band.day, band.ci_low, band.ci_high, color=colour, alpha=0.15)
            if len(est):
                ax.plot(est.day, est.value, ls="--", marker=".", color=colour, label=f"{name} estimated (CBPE)")
        ax.set_title(f"{metric} by {feature}: realized (band: 95% interval) and estimated", fontsize=9)
        ax.legend(fontsize=6, ncol=2, loc="lower left")
        ax.tick_params(labelsize=7)
    fig.autofmt_xdate()
    return png_base64(fig)


def shift_plot(shifts: pd.DataFrame, metric: str = SHIFT_METRIC) -> str | None:
    """The `metric` of the most shifted features per day, one panel per comparison (skew against the
    training data, drift against recent days). None without shift scores."""
    if shifts.empty:
        return None
    rows = shifts[(shifts.metric == metric) & shifts.value.notna()]
    rows = rows[rows.interval.str.len() == 10]  # days only (training windows are validated too)
    if rows.empty:
        return None
    from mlops.reporting.plots import png_base64, pyplot

    plt = pyplot()
    comparisons = list(dict.fromkeys(rows.comparison))
    fig, axes = plt.subplots(len(comparisons), 1, figsize=(11, 2.8 * len(comparisons)), squeeze=False)
    for ax, comparison in zip(axes[:, 0], comparisons, strict=True):
        part = rows[rows.comparison == comparison]
        top = part.groupby("feature")["value"].max().sort_values(ascending=False).index[:FEATURES_SHOWN]
        for feature in top:
            series = part[part.feature == feature].assign(day=lambda f: pd.to_datetime(f.interval)).sort_values("day")
            ax.plot(series.day, series.value, marker="o", ms=3, label=feature)
        references = ", ".join(sorted({str(r) for r in part.reference.dropna()}))[:120]
        ax.set_title(f"{comparison}: {metric} per day (reference: {references})", fontsize=9)
        ax.legend(fontsize=6, ncol=3, loc="upper left")
        ax.tick_params(labelsize=7)
    fig.autofmt_xdate()
    return png_base64(fig)


# HTML


REPORTED_EVENTS = ("promoted", "rejected", "not_promoted")  # decisions of the promote stage: they have a report


def _report_link(pipeline: str, event: dict[str, Any]) -> str:
    """A relative link (from `pipelines/<name>`) to the promotion report of a decided version, else ""."""
    version = str(event.get("version", ""))
    if event.get("event") not in REPORTED_EVENTS or not version.isdigit():
        return ""
    return f'<a href="{html.escape(pipeline)}/versions/{version}/promotion">promotion report</a>'


def _img(png: str | None, alt: str, empty: str) -> str:
    if png is None:
        return f'<p class="note">{html.escape(empty)}</p>'
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{png}">'


def _f(value: Any) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def render_page(data: dict[str, Any]) -> str:
    """HTML of one pipeline's page from `page_data`'s values."""
    esc = html.escape
    name = data["pipeline"]
    events, outcomes, shifts, alert_rows = data["events"], data["outcomes"], data["shifts"], data["alerts"]
    event_rows = [
        [
            esc(day or ""),
            esc(str(e.get("at", ""))),
            esc(str(e.get("event", ""))),
            esc(str(e.get("version", ""))),
            esc(str(e.get("previous") or "")),
            esc(str(e.get("triggered_by") or "")),
            esc("; ".join(e.get("reasons") or [])[:400]),
            _report_link(name, e),
        ]
        for e, day in reversed(list(zip(events, event_days(events), strict=True)))
    ]
    performance = "".join(
        _img(performance_plot(outcomes, m), f"{m}: realized and estimated per slice", f"no {m} outcomes yet")
        for m in PERFORMANCE_METRICS
    )
    errors = ""
    if not outcomes.empty:
        errs = estimate_errors(outcomes)
        errors = "<h3>Error of the estimates (estimated - realized, whole days)</h3>" + table(
            list(errs.columns), [[r[0], r[1], *(_f(v) for v in r[2:])] for r in errs.itertuples(index=False)]
        )
    days = sorted(set(outcomes.day)) if not outcomes.empty else []
    span = f"{days[0]} to {days[-1]} ({len(days)} days)" if days else "none yet"
    champion = next((e for e in reversed(events) if e.get("event") in ("promoted", "rollback")), None)
    headline = f"champion: version {champion['version']} (since {champion['at']})" if champion else "no champion yet"
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(name)}: pipeline</title>
<link rel="icon" href="data:,"><style>{_CSS}</style></head><body>
<p><a href="../">all pipelines</a></p>
<h1>Pipeline {esc(name)}</h1>
<p>{esc(headline)}; outcomes: {esc(span)}; {len(alert_rows)} alerts.</p>
<h2>Champion timeline</h2>
{_img(timeline_plot(events), "champion timeline", "no promotion decision recorded yet")}
{table(EVENT_HEAD, event_rows, escaped=True)}
<h2>Realized and estimated performance per slice</h2>{performance}{errors}
<h2>Drift and skew</h2>
{_img(shift_plot(shifts), "shift scores per day", "no shift scores yet")}
<h2>Alerts ({len(alert_rows)})</h2>
{table(list(ALERT_HEAD), [list(a.values()) for a in alert_rows])}
</body></html>"""


def render_index(pipelines: list[str], errors: dict[str, str] | None = None) -> str:
    """HTML of the list of pipelines (relative links `pipelines/<name>`); `errors`: config file -> error."""
    esc = html.escape
    items = "".join(f'<li><a href="pipelines/{esc(p)}">{esc(p)}</a></li>' for p in pipelines)
    broken = "".join(f"<li>{esc(k)}: {esc(v)[:300]}</li>" for k, v in (errors or {}).items())
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>MLOps pipelines</title>
<link rel="icon" href="data:,"><style>{_CSS}</style></head><body><h1>MLOps pipelines</h1>
<ul>{items or "<li>no pipeline configured</li>"}</ul>
{f"<h2>Invalid configs</h2><ul>{broken}</ul>" if broken else ""}</body></html>"""
