"""The promotion report a reviewer reads: one self-contained HTML page per retrain.

Pure functions from plain data (dicts, lists, numbers, strings) to HTML: the promote stage gathers the
data (gate checks, the two models' recorded configs and data, the evaluation's slice metrics) and
logs the page to the challenger's MLflow run as `promotion/report.html`. The page loads nothing from
elsewhere: the CSS is inline, the slice deltas are inline SVG images and the evaluation's plots base64 PNGs.
"""

from __future__ import annotations

import base64
import html
import math
from functools import partial
from typing import Any

import pandas as pd

from mlops.core.metrics import slice_scope
from mlops.reporting.html_table import table

REPORT_PATH = "promotion/report.html"  # artifact path on the challenger's run
DELTA_METRICS = ("roc_auc", "pr_auc", "precision", "recall", "brier", "log_loss", "ece", "predicted_positive_rate")
PLOTTED_METRICS = ("roc_auc", "pr_auc")
PARTS = ("train", "calibration", "evaluation")
_ABSENT = "(absent)"

_CSS = """body{font-family:sans-serif;margin:1.5em;max-width:75em}
table{border-collapse:collapse;font-size:12px;margin-bottom:1em}
td,th{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
.pass{color:#2e7d32}.fail{color:#c62828;font-weight:bold}.inconclusive{color:#ef6c00}.not_judged{color:#777}
.num{text-align:right;font-family:monospace}code{font-size:11px;word-break:break-all}img{margin:4px;max-width:100%}"""
_table = partial(table, escaped=True)  # the cells of this page are HTML already


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dicts as one level with dotted keys (`training.model.params.max_iter`); lists stay whole values."""
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, Any] = {}
    for key, item in value.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(item, dict) and item:
            out.update(flatten(item, name))
        else:
            out[name] = item
    return out


def config_diff(old: dict[str, Any] | None, new: dict[str, Any]) -> list[dict[str, Any]]:
    """The keys whose value differs between two recorded configs, sorted by key.

    `old`: the champion's config (None: no champion, every key is new). Returns rows
    `{"key", "old", "new"}`; a key present on one side only shows `(absent)` on the other.
    """
    before, after = flatten(old or {}), flatten(new)
    rows = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key, _ABSENT), after.get(key, _ABSENT)
        if a != b:
            rows.append({"key": key, "old": a, "new": b})
    return rows


def slice_deltas(metrics: pd.DataFrame, comparison: pd.DataFrame, wanted: tuple[str, ...] = DELTA_METRICS) -> list:
    """One row per slice and metric: both models' values and intervals, and the paired difference.

    `metrics`: the evaluation's `slice_metrics.csv` (columns slice_feature, slice_value, model, metric,
    value, n, ci_low, ci_high, status); `comparison`: its `comparison.csv` (difference, ci_low, ci_high;
    empty without a champion). Returns a list of dicts with keys slice_feature, slice_value, metric, n,
    status, challenger, challenger_low, challenger_high, champion, champion_low, champion_high,
    difference, ci_low, ci_high (NaN where there is no value); overall first, then slices as evaluated.
    """
    rows = []
    m = metrics[metrics.metric.isin(wanted)]
    keyed = {(r.slice_feature, str(r.slice_value), r.model, r.metric): r for r in m.itertuples()}
    diffs = {(r.slice_feature, str(r.slice_value), r.metric): r for r in comparison.itertuples()}
    nan = math.nan
    for r in m[m.model == "challenger"].itertuples():
        key = (r.slice_feature, str(r.slice_value))
        champ = keyed.get((*key, "champion", r.metric))
        d = diffs.get((*key, r.metric))
        rows.append(
            {
                "slice_feature": r.slice_feature,
                "slice_value": str(r.slice_value),
                "metric": r.metric,
                "n": int(r.n),
                "status": str(r.status),
                "challenger": float(r.value),
                "challenger_low": float(r.ci_low),
                "challenger_high": float(r.ci_high),
                "champion": float(champ.value) if champ is not None else nan,
                "champion_low": float(champ.ci_low) if champ is not None else nan,
                "champion_high": float(champ.ci_high) if champ is not None else nan,
                "difference": float(d.difference) if d is not None else nan,
                "ci_low": float(d.ci_low) if d is not None else nan,
                "ci_high": float(d.ci_high) if d is not None else nan,
            }
        )
    rows.sort(key=lambda row: row["slice_feature"] != "overall")  # stable: the evaluation's order otherwise
    return rows


DELTA_WIDTH = 560  # pixels of the forest plot; its height grows with the rows (DELTA_ROW each)
DELTA_ROW = 16
_LABEL_WIDTH = 230  # the slice names, left of the plot area


def delta_plot(rows: list[dict[str, Any]], metric: str) -> str | None:
    """A forest plot, as SVG text, of challenger - champion per slice for `metric`, with the paired intervals.

    One row per slice that has a difference, in the order of `rows`: a segment from `ci_low` to
    `ci_high` (the difference alone when the interval is undefined) and a dot at the difference; red
    when the whole interval is below 0, green when above, grey otherwise; faded dots for small slices.
    The horizontal scale spans the intervals and 0 (a dotted line). DELTA_WIDTH pixels wide,
    DELTA_ROW pixels a row. None when no row of `metric` has a difference (no champion to compare
    with). Drawn as text: matplotlib took about 0.7 s a plot, most of the promote task.
    """
    part = [r for r in rows if r["metric"] == metric and not math.isnan(r["difference"])]
    if not part:
        return None
    spans = [_span(r) for r in part]
    lo, hi = min(0.0, *(a for a, _ in spans)), max(0.0, *(b for _, b in spans))
    pad = (hi - lo) * 0.05 or 0.01
    lo, hi = lo - pad, hi + pad
    top, bottom, right = 8, 34, 12
    plot_w = DELTA_WIDTH - _LABEL_WIDTH - right
    height = top + DELTA_ROW * len(part) + bottom

    def x(value: float) -> float:
        return _LABEL_WIDTH + plot_w * (value - lo) / (hi - lo)

    esc = html.escape
    axis_y = top + DELTA_ROW * len(part)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{DELTA_WIDTH}" height="{height}" '
        'font-family="sans-serif" font-size="9">',
        f'<line x1="{x(0):.1f}" y1="{top}" x2="{x(0):.1f}" y2="{axis_y}" stroke="grey" stroke-dasharray="2,2"/>',
        f'<line x1="{_LABEL_WIDTH}" y1="{axis_y}" x2="{_LABEL_WIDTH + plot_w}" y2="{axis_y}" stroke="#444"/>',
    ]
    for tick in _ticks(lo, hi):
        out.append(
            f'<text x="{x(tick):.1f}" y="{axis_y + 11}" text-anchor="middle">{tick:+.3g}</text>'
            if tick
            else f'<text x="{x(0):.1f}" y="{axis_y + 11}" text-anchor="middle">0</text>'
        )
    for i, (r, (low, high)) in enumerate(zip(part, spans, strict=True)):
        y = top + DELTA_ROW * i + DELTA_ROW / 2
        colour = "#c62828" if high < 0 else ("#2e7d32" if low > 0 else "#555555")
        label = _scope(r) + (f" (n={r['n']}, small)" if r["status"] == "small" else "")
        opacity = "0.4" if r["status"] == "small" else "1"
        tip = f"{label}: {r['difference']:+.4f} [{low:+.4f}, {high:+.4f}]"
        out += [
            f'<text x="{_LABEL_WIDTH - 6}" y="{y + 3:.1f}" text-anchor="end">{esc(label)}</text>',
            f"<g><title>{esc(tip)}</title>",
            f'<line x1="{x(low):.1f}" y1="{y:.1f}" x2="{x(high):.1f}" y2="{y:.1f}" '
            f'stroke="{colour}" stroke-width="1.5"/>',
            f'<circle cx="{x(r["difference"]):.1f}" cy="{y:.1f}" r="3" fill="{colour}" fill-opacity="{opacity}"/></g>',
        ]
    out.append(
        f'<text x="{_LABEL_WIDTH + plot_w / 2:.1f}" y="{height - 6}" text-anchor="middle" font-size="10">'
        f"{esc(metric)}: challenger - champion (95% paired interval)</text></svg>"
    )
    return "".join(out)


def _span(row: dict[str, Any]) -> tuple[float, float]:
    """(low, high) of a row's interval; the difference itself where a bound is undefined."""
    low = row["ci_low"] if not math.isnan(row["ci_low"]) else row["difference"]
    high = row["ci_high"] if not math.isnan(row["ci_high"]) else row["difference"]
    return low, high


def _ticks(lo: float, hi: float) -> list[float]:
    """About five round values within [lo, hi], 0 among them when it lies inside."""
    raw = (hi - lo) / 5
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(lo / step)
    return [round(k * step, 12) for k in range(first, math.floor(hi / step) + 1)]


def _scope(row: dict[str, Any]) -> str:
    return slice_scope(row["slice_feature"], row["slice_value"])


def _num(value: Any, digits: int = 4) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.{digits}f}"
    return html.escape(str(value))


def _interval(value: float, low: float, high: float, signed: bool = False) -> str:
    if math.isnan(value):
        return ""
    text = f"{value:+.4f}" if signed else f"{value:.4f}"
    if not (math.isnan(low) or math.isnan(high)):
        text += f" [{low:+.4f}, {high:+.4f}]" if signed else f" [{low:.4f}, {high:.4f}]"
    return text


def _value(value: Any) -> str:
    text = value if isinstance(value, str) else repr(value)
    return f"<code>{html.escape(text[:400])}</code>"


def _data_rows(data: dict[str, Any]) -> list[list[str]]:
    """Per part of the window: champion and challenger window, rows, label rate, digest."""
    esc = html.escape
    rows = []
    models = [("champion", data.get("champion")), ("challenger", data["challenger"])]
    for part in PARTS:
        for label, model in models:
            if not model:
                continue
            d = model.get("data", {}).get(part, {})
            rows.append(
                [
                    esc(part),
                    esc(f"{label} v{model['version']}"),
                    esc(str(d.get("window") or "")),
                    _num(d.get("rows"), 0),
                    _num(d.get("label_rate"), 4),
                    f"<code>{esc(str(d.get('digest') or ''))}</code>",
                ]
            )
    return rows


_DELTA_HEAD = ["scope", "metric", "n", "champion [95% CI]", "challenger [95% CI]", "difference [95% paired CI]"]


def _deltas_html(slices: list[dict[str, Any]]) -> str:
    """The whole window's table open; each slice feature's table folded (`<details>`), in the evaluation's order."""

    def row(r: dict[str, Any]) -> list[str]:
        return [
            html.escape(_scope(r)) + (" <i>(small)</i>" if r["status"] == "small" else ""),
            html.escape(r["metric"]),
            str(r["n"]),
            _interval(r["champion"], r["champion_low"], r["champion_high"]),
            _interval(r["challenger"], r["challenger_low"], r["challenger_high"]),
            _interval(r["difference"], r["ci_low"], r["ci_high"], signed=True),
        ]

    features = list(dict.fromkeys(r["slice_feature"] for r in slices))
    parts = []
    for feature in features:
        rows = [row(r) for r in slices if r["slice_feature"] == feature]
        if feature == "overall":
            parts.append(_table(_DELTA_HEAD, rows))
        else:
            count = len({r["slice_value"] for r in slices if r["slice_feature"] == feature})
            parts.append(
                f"<details><summary>by {html.escape(feature)} ({count} slices)</summary>{_table(_DELTA_HEAD, rows)}"
                "</details>"
            )
    return "".join(parts) or "<p>no slice metrics</p>"


def feature_audit_html(audit: dict[str, Any] | None) -> str:
    """The feature-audit section: verdicts, importances with intervals, LOFO skips, correlated pairs, timing.

    `audit`: the challenger's `audit/feature_audit.json` (see `stages.feature_audit.run_feature_audit`); None:
    the run has no audit (disabled, or trained before audits).
    """
    esc = html.escape
    if not audit:
        return "<p>no feature audit on the challenger's run (audit.enabled is false, or it predates audits)</p>"
    if audit.get("skipped"):
        return f"<p>feature audit skipped: {esc(str(audit['skipped']))}</p>"
    flagged = audit.get("flagged") or []
    verdicts = audit.get("verdicts", {})
    # audits since the clock was CPU time say so (`clock`); older ones were timed in wall seconds
    unit = "CPU s" if audit.get("clock") else "s"
    wall = f" ({audit['wall_seconds']:.1f} s wall)" if audit.get("wall_seconds") is not None else ""
    head = (
        f"<p>Flagged (removal changes no metric beyond noise): <b>{esc(', '.join(flagged) or 'none')}</b>. "
        f"Not tested by LOFO: {esc(', '.join(audit.get('not_tested') or []) or 'none')}. "
        f"Audit time {audit['audit_seconds']:.1f} {unit}{wall} = {audit['time_ratio']:.2f} x one training fit "
        f"({audit['fit_seconds']:.1f} {unit}, from the {esc(audit.get('fit_seconds_source', 'reference fit'))}; "
        f"budget {audit['budget_seconds']:.1f} {unit}). LOFO fits on "
        f"{audit.get('lofo_train_rows', audit.get('train_rows'))} of {audit.get('train_rows')} train rows.</p>"
    )
    method = "".join(f"<li>{esc(k)}: {esc(str(v))}</li>" for k, v in audit.get("method", {}).items())
    importance = _table(
        ["feature", "permutation importance (ROC AUC drop) [CI]", "sd", "verdict"],
        [
            [
                esc(r["feature"]),
                _interval(r["importance"], r["ci_low"], r["ci_high"], signed=True),
                _num(r["sd"]),
                f'<span class="{"fail" if verdicts.get(r["feature"]) == "flagged" else "not_judged"}">'
                f"{esc(verdicts.get(r['feature'], ''))}</span>",
            ]
            for r in sorted(audit.get("importance", []), key=lambda r: -r["importance"])
        ],
    )
    skipped = "".join(f"<li>{esc(f)}: {esc(why)}</li>" for f, why in (audit.get("lofo_skipped") or {}).items())
    pairs = audit.get("correlated_pairs") or []
    pair_table = (
        _table(
            ["feature a", "feature b", "Pearson", "Spearman", "n"],
            [
                [esc(p["feature_a"]), esc(p["feature_b"]), _num(p["pearson"], 3), _num(p["spearman"], 3), str(p["n"])]
                for p in pairs
            ],
        )
        if pairs
        else "<p>no strongly correlated numeric pair</p>"
    )
    return (
        f"{head}<ul>{method}</ul>{importance}"
        + (f"<p>LOFO skipped:</p><ul>{skipped}</ul>" if skipped else "")
        + f"<h3>Correlated pairs (train rows)</h3>{pair_table}"
    )


def render_promotion_report(data: dict[str, Any]) -> str:
    """HTML of one promotion decision.

    `data` (plain values, as `stages.promote.report_data` gathers them):
    - pipeline, decided_at (ISO text), passed, promoted, blocked_by (str | None), reasons (list of str)
    - checks: list of {name, scope, outcome (pass|fail|inconclusive|not_judged), detail}
    - challenger / champion (champion None without one): {version, run_id, threshold, training_window,
      config_digest, code_digest, git_commit, data: {part: {window, rows, label_rate, digest}}}
    - config_diff: rows of `config_diff` (None: a config was not recorded), config_note (str)
    - slices: rows of `slice_deltas`
    - images: list of {title, png (base64)} (the evaluation's plots)
    - feature_audit: the challenger's `audit/feature_audit.json`, or None (see `feature_audit_html`)
    """
    esc = html.escape
    challenger, champion = data["challenger"], data.get("champion")
    if data["promoted"]:
        verdict, css = f"PROMOTED: version {challenger['version']} is the champion", "pass"
    elif data["passed"]:
        verdict, css = f"PASSED, NOT PROMOTED: {data.get('blocked_by') or ''}", "inconclusive"
    else:
        failed = sum(c["outcome"] == "fail" for c in data["checks"])
        verdict, css = f"REJECTED: {failed} of {len(data['checks'])} checks failed", "fail"
    against = f"champion version {champion['version']}" if champion else "no champion"
    checks = _table(
        ["gate", "scope", "outcome", "numbers"],
        [
            [
                esc(c["name"]),
                esc(c["scope"]),
                f'<span class="{esc(c["outcome"])}">{esc(c["outcome"])}</span>',
                esc(c["detail"]),
            ]
            for c in sorted(data["checks"], key=lambda c: (c["outcome"] == "pass", c["outcome"] == "not_judged"))
        ],
    )
    models = _table(
        ["", "version", "threshold", "training window", "config digest", "code digest", "git commit", "MLflow run"],
        [
            [
                esc(label),
                esc(str(m["version"])),
                _num(m.get("threshold")),
                esc(str(m.get("training_window") or "")),
                f"<code>{esc(str(m.get('config_digest') or ''))}</code>",
                f"<code>{esc(str(m.get('code_digest') or ''))}</code>",
                f"<code>{esc(str(m.get('git_commit') or '')[:12])}</code>",
                f"<code>{esc(str(m.get('run_id') or ''))}</code>",
            ]
            for label, m in (("champion", champion), ("challenger", challenger))
            if m
        ],
    )
    diff = data.get("config_diff")
    if diff is None:
        config = f"<p>{esc(data.get('config_note') or 'a config was not recorded: no diff')}</p>"
    elif not diff:
        config = "<p>identical configs</p>" if champion else "<p>no champion to compare with</p>"
    else:
        config = _table(
            ["key", "champion", "challenger"], [[esc(r["key"]), _value(r["old"]), _value(r["new"])] for r in diff]
        )
    slices = data.get("slices") or []
    deltas = _deltas_html(slices)
    plots = [(f"{metric}: challenger - champion per slice", delta_plot(slices, metric)) for metric in PLOTTED_METRICS]
    images = [(title, "svg+xml", base64.b64encode(svg.encode()).decode()) for title, svg in plots if svg]
    images += [(i["title"], "png", i["png"]) for i in data.get("images", [])]
    imgs = "".join(
        f'<figure><img alt="{esc(t)}" src="data:image/{kind};base64,{p}"><figcaption>{esc(t)}</figcaption></figure>'
        for t, kind, p in images
    )
    reasons = "".join(f"<li>{esc(r)}</li>" for r in data.get("reasons", []))
    title = f"{data['pipeline']} version {challenger['version']}: promotion"
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>{esc(title)}</title>
<style>{_CSS}</style></head><body>
<h1>{esc(title)}</h1>
<p class="{css}" style="font-size:1.3em">{esc(verdict)}</p>
<p>Challenger version {esc(str(challenger["version"]))} against {esc(against)},
decided at {esc(data["decided_at"])}.</p>
<ul>{reasons}</ul>
<h2>Gates ({len(data["checks"])} checks)</h2>{checks}
<h2>Models</h2>{models}
<h2>Config diff (champion to challenger)</h2>{config}
<h2>Data</h2><p>Both models are evaluated on the challenger's evaluation window.</p>
{_table(["part", "model", "window", "rows", "label rate", "content digest"], _data_rows(data))}
<h2>Metrics per slice</h2>{deltas}
<h2>Feature audit</h2>{feature_audit_html(data.get("feature_audit"))}
<h2>Plots</h2>{imgs or "<p>no plots</p>"}
</body></html>"""
