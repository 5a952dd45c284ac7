"""Plots with matplotlib (no display needed): evaluation plots as PNG files, and the helpers every
HTML page uses to inline a figure."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import numpy as np
import pandas as pd


def pyplot():
    """matplotlib.pyplot on the Agg backend (imported on first use: it costs about 0.5 s)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def png_base64(fig, dpi: int = 80) -> str:
    """The figure as a base64 PNG (for `<img src="data:image/png;base64,...">`), then closed."""
    plt = pyplot()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def evaluation_plots(
    predictions: pd.DataFrame,
    metrics: pd.DataFrame,
    thresholds: dict[str, float | None],
    folder: Path,
    slice_metric: str = "roc_auc",
) -> list[Path]:
    """ROC, PR, calibration, metric-versus-threshold and per-slice bars; returns the files written."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import precision_recall_curve, roc_curve

    plt = pyplot()
    folder.mkdir(parents=True, exist_ok=True)
    y = predictions["label"].to_numpy()
    models = [m for m in thresholds if predictions[f"{m}_score"].notna().all()]
    files = []

    fig, (roc, pr, cal) = plt.subplots(1, 3, figsize=(15, 4.5))
    for model in models:
        score = predictions[f"{model}_score"].to_numpy()
        fpr, tpr, _ = roc_curve(y, score)
        roc.plot(fpr, tpr, label=model)
        precision, recall, _ = precision_recall_curve(y, score)
        pr.plot(recall, precision, label=model)
        prob_true, prob_pred = calibration_curve(y, score, n_bins=10, strategy="quantile")
        cal.plot(prob_pred, prob_true, marker="o", label=model)
    roc.plot([0, 1], [0, 1], ls=":", c="grey")
    cal.plot([0, 1], [0, 1], ls=":", c="grey")
    for ax, title, xl, yl in (
        (roc, "ROC", "false positive rate", "true positive rate"),
        (pr, "Precision-recall", "recall", "precision"),
        (cal, "Calibration", "mean predicted probability", "observed positive rate"),
    ):
        ax.set(title=title, xlabel=xl, ylabel=yl)
        ax.legend()
    files.append(_save(plt, fig, folder / "roc_pr_calibration.png"))

    fig, axes = plt.subplots(1, len(models), figsize=(6 * len(models), 4.5), squeeze=False)
    grid = np.linspace(0.01, 0.99, 99)
    for ax, model in zip(axes[0], models, strict=True):
        score = predictions[f"{model}_score"].to_numpy()
        predicted = score[None, :] >= grid[:, None]
        tp = (predicted & (y[None, :] == 1)).sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            precision = np.where(predicted.sum(axis=1) > 0, tp / predicted.sum(axis=1), np.nan)
            recall = tp / max(y.sum(), 1)
            f1 = np.where(precision + recall > 0, 2 * precision * recall / (precision + recall), np.nan)
        for values, name in ((precision, "precision"), (recall, "recall"), (f1, "F1")):
            ax.plot(grid, values, label=name)
        if thresholds.get(model) is not None:
            ax.axvline(thresholds[model], c="k", ls="--", label=f"threshold {thresholds[model]:.3f}")
        ax.set(title=f"{model}: metric versus threshold", xlabel="threshold")
        ax.legend()
    files.append(_save(plt, fig, folder / "metric_vs_threshold.png"))

    rows = metrics[(metrics.metric == slice_metric) & (metrics.slice_feature != "overall")]
    features = list(dict.fromkeys(rows.slice_feature))
    fig, axes = plt.subplots(len(features), 1, figsize=(12, 3.2 * max(len(features), 1)), squeeze=False)
    for ax, feature in zip(axes[:, 0], features, strict=True):
        part = rows[rows.slice_feature == feature]
        values = list(dict.fromkeys(part.slice_value))
        width = 0.8 / max(len(models), 1)
        for i, model in enumerate(models):
            m = part[part.model == model].set_index("slice_value").reindex(values)
            x = np.arange(len(values)) + i * width
            small = (m.status == "small").to_numpy()
            err = np.vstack([(m.value - m.ci_low).clip(lower=0), (m.ci_high - m.value).clip(lower=0)]).astype(float)
            bars = ax.bar(x, m.value.fillna(0), width, yerr=np.nan_to_num(err), capsize=2, label=model)
            for bar, is_small, undefined in zip(bars, small, m.value.isna(), strict=True):
                if is_small:  # few rows: shown faded and hatched, never as certain
                    bar.set_alpha(0.35)
                    bar.set_hatch("//")
                if undefined:
                    ax.text(bar.get_x() + width / 2, 0.32, "undefined", rotation=90, ha="center", fontsize=6)
        labels = [f"{v}\n(n={n}, small)" if s == "small" else v for v, n, s in _first_rows(part, values)]
        ax.set_xticks(
            np.arange(len(values)) + width * (len(models) - 1) / 2, labels, rotation=45, ha="right", fontsize=7
        )
        ax.set(
            title=f"{slice_metric} by {feature} (95% intervals; hatched: under evaluation.min_slice_size rows, "
            "no bootstrap interval)",
            ylim=(0.3, 1.0),
        )
        ax.legend(fontsize=7)
    files.append(_save(plt, fig, folder / f"slices_{slice_metric}.png"))
    return files


def _first_rows(part: pd.DataFrame, values: list[str]) -> list[tuple[str, int, str]]:
    """(slice value, n, status) of each slice value, in the plot's order."""
    first = part.drop_duplicates("slice_value").set_index("slice_value")
    return [(v, int(first.loc[v, "n"]), str(first.loc[v, "status"])) for v in values]


def _save(plt, fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path
