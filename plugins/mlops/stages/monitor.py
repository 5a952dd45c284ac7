"""Stage 8, prediction monitoring: the scores and the predicted positive rate of every scored day.

- score drift: PSI of the day's scores against the evaluation scores of the version that scored
  the day (`evaluation/eval_predictions.parquet`, column `challenger_score`, logged to that
  version's own training run), on the deciles of those reference scores; limits
  `scoring.score_psi_warn` and `scoring.score_psi_error`;
- predicted positive rate: the share of rows predicted positive against the action limits
  `scoring.predicted_positive_rate` [low, high]; outside them is an error.

The predictions are already written when monitoring runs: a breach is flagged, recorded and (by
the daily DAG's monitor task) turned into a failed task and its alert mail; it never undoes the
scoring.
Every report is stored as JSON under `lake/<pipeline>/monitoring/<interval>.json`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from mlops.core.checks import CheckOutcomes, shorten
from mlops.core.config import PipelineConfig
from mlops.core.drift import profile, psi
from mlops.core.interval import Interval
from mlops.io import artifact_cache, lake, predictions
from mlops.io.paths import mlflow_tracking_uri, monitoring_dir, predictions_dir

EVALUATION_SCORES = "evaluation/eval_predictions.parquet"
SCORE_COLUMN = "challenger_score"  # in the version's own run, the challenger is that version
GATING_ROWS = 200  # a day with fewer rows is too noisy to gate on: its breaches are warnings
READ_ROWS = 1_000_000


@dataclass
class MonitorReport(CheckOutcomes):
    """Monitoring of one scored interval; `failed` lists the error-level breaches."""

    pipeline: str
    interval: str
    rows: int
    checks: list[dict[str, Any]]
    days: dict[str, dict[str, Any]]  # day -> version, rows, predicted positive rate, score PSI and its bins
    monitored_at: str = field(default_factory=lambda: dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))

    def summary(self) -> str:
        """One line per error-level breach, for logs and the alert mail."""
        lines = [
            f"{self.pipeline} {self.interval}: {len(self.failed)} of {len(self.checks)} prediction checks failed "
            "(the predictions are written; investigate the model or the data)"
        ]
        for c in self.failed:
            lines.append(
                f"- {c['check']} on {c['day']} (version {c['model_version']}): observed {shorten(c['observed'])}, "
                f"expected {shorten(c['expected'])}"
            )
        return "\n".join(lines)


def evaluation_scores(name: str, version: str) -> np.ndarray | None:
    """Version `version` of model `name`: its (n,) float64 scores on its evaluation rows; None when never evaluated.

    The artifact is downloaded from MLflow once and then read from `$MLOPS_HOME/cache/`
    (io.artifact_cache): a daily monitor task asks MLflow nothing, nor imports it, once a copy is
    kept; a process reads it once (a monitored interval of many days, `dag.test()`) and returns the
    same read-only array every time. Raises LookupError for a missing version,
    registry.RegistryUnavailableError when MLflow must be asked and cannot be ("could not ask" is not
    "never evaluated").
    """
    key = (mlflow_tracking_uri(), name, str(version))
    if key in _SCORES:
        return _SCORES[key]
    path = artifact_cache.fetch(name, version, EVALUATION_SCORES)
    if path is None:
        return None  # not remembered: the version may be evaluated later
    scores = pd.read_parquet(path, columns=[SCORE_COLUMN])[SCORE_COLUMN].to_numpy(dtype="float64", copy=True)
    scores.setflags(write=False)  # shared by every later call of this process
    if len(_SCORES) >= _MAX_PROFILES:
        _SCORES.pop(next(iter(_SCORES)))
    _SCORES[key] = scores
    return scores


def _day_stats(pipeline: str, day: str, edges: list[float] | None) -> dict[str, Any]:
    """Rows, positives and (with `edges`) the binned score fractions of one day, read in batches."""
    rows, positives, counts = 0, 0, np.zeros(len(edges) + 2 if edges is not None else 0, dtype="int64")
    for batch in lake.iter_partition(predictions_dir(pipeline), day, READ_ROWS, columns=["score", "predicted_label"]):
        scores = batch["score"].to_numpy(dtype="float64", na_value=np.nan)
        rows += len(batch)
        positives += int(batch["predicted_label"].sum())
        if edges is not None:  # bins as drift.profile: (-inf, e0), [e0, e1), ..., [ek, inf), then missing
            missing = np.isnan(scores)
            idx = np.searchsorted(np.asarray(edges, dtype="float64"), scores[~missing], side="right")
            counts[:-1] += np.bincount(idx, minlength=len(edges) + 1)
            counts[-1] += int(missing.sum())
    fractions = (counts / max(rows, 1)).tolist() if edges is not None else None
    return {"rows": rows, "positives": positives, "fractions": fractions}


def _check(name: str, column: str, day: str, version: str, breach: str | None, observed: Any, expected: Any):
    """A check record like the validation reports' (`breach`: None, 'warning' or 'error')."""
    return {
        "check": name,
        "column": column,
        "day": day,
        "model_version": version,
        "success": breach is None,
        "severity": breach or "warning",  # as in the validation reports: a passed check is never an error
        "observed": observed,
        "expected": expected,
    }


_SCORES: dict[tuple[str, str, str], np.ndarray] = {}  # (tracking URI, model, version) -> evaluation scores
_PROFILES: dict[bytes, dict[str, Any]] = {}  # digest of reference scores -> their profile
_BY_ARRAY: dict[int, tuple[weakref.ref, dict[str, Any]]] = {}  # id of a read-only array -> (the array, profile)
_MAX_PROFILES = 16


def score_profile(reference: np.ndarray) -> dict[str, Any]:
    """The decile profile (`drift.profile`, numeric) of a version's reference scores, cached by content.

    `reference`: (n,) float64 scores, n >= 1. The same scores give the same profile, so the profile
    is computed once per version and process instead of once per monitored day; the key is a hash of
    the values themselves (a re-evaluated version with other scores gets its own profile). Treat the
    result as read-only.
    """
    seen = _BY_ARRAY.get(id(reference))
    if seen is not None and seen[0]() is reference:  # the same read-only array again: not hashed again
        return seen[1]
    values = np.ascontiguousarray(reference, dtype="float64")
    key = hashlib.blake2b(values.tobytes(), digest_size=16).digest() + len(values).to_bytes(8, "little")
    if key not in _PROFILES:
        if len(_PROFILES) >= _MAX_PROFILES:
            _PROFILES.pop(next(iter(_PROFILES)))
        _PROFILES[key] = profile(pd.DataFrame({"score": values}), [], ["score"])["numeric"]["score"]
    if isinstance(reference, np.ndarray) and not reference.flags.writeable:
        if len(_BY_ARRAY) >= _MAX_PROFILES:
            _BY_ARRAY.pop(next(iter(_BY_ARRAY)))
        _BY_ARRAY[id(reference)] = (weakref.ref(reference), _PROFILES[key])
    return _PROFILES[key]


def monitor_day(
    cfg: PipelineConfig, day: str, version: str, reference: np.ndarray | None
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The statistics and checks of one scored day against the version's reference scores."""
    scoring = cfg.scoring
    ref_profile = score_profile(reference) if reference is not None and len(reference) else None
    stats = _day_stats(cfg.name, day, ref_profile["edges"] if ref_profile else None)
    rows = stats["rows"]
    gates = rows >= GATING_ROWS
    rate = stats["positives"] / rows if rows else 0.0
    info: dict[str, Any] = {
        "model_version": version,
        "rows": rows,
        "predicted_positive_rate": rate,
        "reference_rows": len(reference) if reference is not None else 0,
        "score_psi": None,
    }
    checks = []
    if ref_profile is None:
        checks.append(
            _check(
                "score_reference",
                "score",
                day,
                version,
                "warning",
                f"no {EVALUATION_SCORES} in the run of version {version}",
                "the version's evaluation scores",
            )
        )
    else:
        value = psi(ref_profile["fractions"], stats["fractions"])
        info.update(score_psi=value, edges=ref_profile["edges"], reference_fractions=ref_profile["fractions"])
        info["fractions"] = stats["fractions"]
        warn, error = scoring.score_psi_warn, scoring.score_psi_error
        if warn is not None or error is not None:
            over_error = error is not None and value > error
            over_warn = warn is not None and value > warn
            breach = ("error" if gates else "warning") if over_error else ("warning" if over_warn else None)
            expected = {"warn_above": warn, "error_above": error, "gates": gates, "reference_rows": len(reference)}
            checks.append(_check("score_psi_vs_evaluation", "score", day, version, breach, round(value, 4), expected))
    if scoring.predicted_positive_rate is not None:
        low, high = scoring.predicted_positive_rate
        breach = None if low <= rate <= high else ("error" if gates else "warning")
        expected = {"between": [low, high], "gates": gates, "rows": rows}
        checks.append(
            _check("predicted_positive_rate", "predicted_label", day, version, breach, round(rate, 4), expected)
        )
    return info, checks


def monitor_predictions(
    cfg: PipelineConfig, interval: Interval, references: Mapping[str, np.ndarray] | None = None
) -> MonitorReport:
    """Check every scored day of `interval`; store the report (replacing an earlier one) and return it.

    Each day is compared with the evaluation scores of the version that scored it, read from
    MLflow (once per MLOPS_HOME, see `evaluation_scores`) unless `references` (model version ->
    scores) gives them. Monitoring runs after the
    predictions are written and does not undo them: callers decide what a failed report means.
    """
    loaded: dict[str, np.ndarray | None] = dict(references or {})
    days, checks, rows = {}, [], 0
    for day in interval.days():
        key = day.isoformat()
        if not predictions.is_done(cfg.name, key):  # e.g. an empty day, whose predictions were retracted
            rec = predictions.record(cfg.name, key) or {}
            days[key] = {"model_version": None, "rows": 0, "not_scored": rec.get("reason", "no predictions")}
            continue
        version = str(lake.read_manifest(predictions_dir(cfg.name), key)["model_version"])
        if version not in loaded:
            loaded[version] = evaluation_scores(cfg.name, version)
        days[key], day_checks = monitor_day(cfg, key, version, loaded[version])
        checks += day_checks
        rows += days[key]["rows"]
    report = MonitorReport(cfg.name, interval.key, rows, checks, days)
    lake.write_json(monitoring_dir(cfg.name) / f"{interval.key}.json", report.to_dict())
    return report


def read_monitoring(pipeline: str, key: str) -> dict[str, Any] | None:
    """A stored monitoring report, or None."""
    path = monitoring_dir(pipeline) / f"{key}.json"
    return lake.read_json(path) if path.exists() else None
