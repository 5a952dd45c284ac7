"""The feature audit of a challenger: which features carry its predictions (core.feature_audit).

A stage of the retrain DAG of its own (task `audit`), after `train` and beside `recalibrate` ->
`evaluate`: it needs the registered challenger and its training window only (ROC AUC does not depend
on the decision threshold), so it runs on the second core while the challenger is calibrated and
evaluated, and `promote` waits for both. Its summary is logged to the challenger's run under `audit/`
and shown in the promotion report; it flags, it does not gate.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from mlops.core import feature_audit as fa
from mlops.core.config import Features, PipelineConfig
from mlops.core.features import labels
from mlops.core.interval import Interval
from mlops.core.modeling import build_estimator, model_input
from mlops.core.splits import Split, split_frame, split_window
from mlops.io import registry
from mlops.io.datasets import model_columns, read_training_set
from mlops.io.feature_audit import log_feature_audit

log = logging.getLogger(__name__)


def audit_challenger(
    cfg: PipelineConfig, training_key: str, window: Interval, challenger_version: str
) -> dict[str, Any]:
    """Audit registered version `challenger_version` of `cfg.name` on its training window `window`.

    Reads the assembled training set `training_key` (features, target and date columns), splits it as
    the train stage did, and runs `run_feature_audit`; returns its summary. Raises
    RegistryUnavailableError when MLflow is unreachable, and LookupError for an unknown version.
    """
    challenger = registry.version(cfg.name, challenger_version)
    df = read_training_set(cfg.name, training_key, model_columns(cfg))
    return run_feature_audit(cfg, df, split_window(cfg, window), challenger)


def run_feature_audit(cfg: PipelineConfig, df: pd.DataFrame, split: Split, challenger) -> dict[str, Any]:
    """The feature-contribution audit of the challenger, logged to its run under `audit/` (core.feature_audit).

    1. T, the training time: the challenger's run metric `fit_cpu_seconds` (the train stage's fit of
       the estimator on the train rows, in CPU seconds). A run without it (trained before the train stage
       timed its fit so) gets a reference fit instead: the configured model (uncalibrated) on the train
       rows with every feature, timed, outside the budget. The summary says which (`fit_seconds_source`).
       Every time of the audit is CPU seconds of this process (`core.feature_audit.cpu_seconds`), so the
       task beside it (recalibrate -> evaluate) does not shrink it; `wall_seconds` is its wall time.
    2. Permutation importance of the registered challenger on the evaluation rows (ROC AUC, t interval;
       a seeded sample of `audit.permutation_max_rows` of them when set, fewer when a probe of the
       prediction cost says that many would take more than `audit.permutation_share` of the budget:
       `permutation_plan` in the summary), then the correlated numeric pairs on the LOFO sample (step 3).
    3. LOFO (uncalibrated fits) for the features whose importance interval includes zero, at most
       `audit.max_lofo_features`, on a seeded sample of `audit.lofo_max_train_rows` train rows (all of
       them when fewer): the model with every feature and each model without one are fitted on that
       sample, while the audit (steps 2-3) stays within `audit.budget_factor` x T; the candidates left
       are skipped and named.
    Returns the summary logged as `audit/feature_audit.json`; the ratio audit time / T is logged.
    """
    a = cfg.audit
    train_part = split_frame(df, cfg, split.train)
    eval_part = split_frame(df, cfg, split.evaluation)
    X_train, X_eval = model_input(train_part, cfg.features), model_input(eval_part, cfg.features)
    y_train = labels(train_part, cfg.target).to_numpy(dtype="int64")
    y_eval = labels(eval_part, cfg.target).to_numpy(dtype="int64")
    summary: dict[str, Any] = {
        "version": challenger.version,
        "model_kind": cfg.training.model.kind,  # the kind refitted (the retrain run's model_kind param)
        "evaluation_rows": len(y_eval),
        "train_rows": len(y_train),
    }
    if len(np.unique(y_eval)) < 2 or len(np.unique(y_train)) < 2:
        summary |= {"skipped": "one class only in the train or evaluation rows: no ROC AUC", "flagged": []}
        log_feature_audit(challenger.run_id, summary, {})
        return summary

    def build(columns: list[str]):
        features = Features(
            categorical=[c for c in cfg.features.categorical if c in columns],
            numeric=[c for c in cfg.features.numeric if c in columns],
        )
        return build_estimator(cfg.training.model, features)

    fit_seconds = registry.client().get_run(challenger.run_id).data.metrics.get(registry.FIT_CPU_SECONDS)
    source, reference = "train run", None
    if fit_seconds is None:
        began = fa.cpu_seconds()
        reference = fa.refitter(build, X_train, y_train, X_eval)(cfg.features.all)
        fit_seconds, source = fa.cpu_seconds() - began, "reference fit"
    model = registry.load_sklearn(challenger)
    began = time.perf_counter()
    result = fa.audit(model, build, X_train, y_train, X_eval, y_eval, cfg.features.numeric, a, fit_seconds, reference)
    wall = time.perf_counter() - began
    lofo, importances, pairs, plan = result.lofo, result.importances, result.pairs, result.permutation_plan
    verdicts = fa.verdicts(importances, lofo)
    flagged = [f for f, v in verdicts.items() if v == fa.FLAGGED]
    ratio = result.seconds / fit_seconds if fit_seconds > 0 else math.inf
    summary |= {
        "method": {
            "permutation": f"sklearn permutation_importance, scoring roc_auc, {a.repeats} repeats, "
            f"t interval of the mean ({a.confidence:.0%}), on {result.permutation_rows} of {len(y_eval)} "
            "evaluation rows" + (f" ({plan.reason})" if plan.reason else ""),
            "lofo": f"the model with every feature and the model without the feature fitted on the same "
            f"{result.lofo_train_rows} of {len(y_train)} train rows (seeded, stratified by label), paired "
            f"bootstrap of the evaluation rows ({a.bootstrap_samples})",
            "correlation": f"|Pearson| or |Spearman| >= {a.correlation_threshold} on the same "
            f"{result.lofo_train_rows} train rows",
        },
        "verdicts": verdicts,
        "flagged": flagged,
        "not_tested": [f for f, v in verdicts.items() if v == fa.NOT_TESTED],
        "lofo_tested": lofo.tested,
        "lofo_skipped": lofo.skipped,
        "correlated_pairs": pairs.to_dict(orient="records"),
        "importance": importances.drop(columns="includes_zero").to_dict(orient="records"),
        "clock": "CPU seconds of the process, all threads (time.process_time): every *_seconds but wall_seconds",
        "fit_seconds": fit_seconds,
        "fit_seconds_source": source,
        "permutation_rows": result.permutation_rows,
        "permutation_seconds": result.permutation_seconds,
        "permutation_plan": asdict(plan),
        "correlation_seconds": result.correlation_seconds,
        "lofo_train_rows": result.lofo_train_rows,
        "lofo_with_seconds": lofo.with_seconds,
        "lofo_seconds": lofo.seconds,
        "audit_seconds": result.seconds,
        "wall_seconds": wall,
        "budget_seconds": result.budget_seconds,
        "time_ratio": ratio,
        "metrics": {
            "audit_flagged_features": len(flagged),
            "audit_correlated_pairs": len(pairs),
            "audit_lofo_tested": len(lofo.tested),
            "audit_seconds": result.seconds,
            "audit_time_ratio": ratio,
        },
    }
    log.info(
        "feature audit of version %s: %.2f CPU s (%.2f s wall) against one training fit of %.2f CPU s (from the "
        "%s; ratio %.2f, budget %.1f x): permutation %.2f s on %d evaluation rows, correlations %.2f s, LOFO %.2f s "
        "on %d of %d train rows (the model with every feature %.2f s); LOFO on %s; skipped %s; flagged %s; "
        "correlated pairs %s",
        challenger.version,
        result.seconds,
        wall,
        fit_seconds,
        source,
        ratio,
        a.budget_factor,
        result.permutation_seconds,
        result.permutation_rows,
        result.correlation_seconds,
        lofo.seconds,
        result.lofo_train_rows,
        len(y_train),
        lofo.with_seconds,
        lofo.tested or "none",
        lofo.skipped or "none",
        flagged or "none",
        [(p["feature_a"], p["feature_b"]) for p in summary["correlated_pairs"]] or "none",
    )
    tables = {"permutation_importance": importances, "lofo": lofo.deltas, "correlated_pairs": pairs}
    log_feature_audit(challenger.run_id, summary, tables)
    return summary
