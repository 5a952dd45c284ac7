"""Stage 6, promotion: a gated, audited, reversible move of the `champion` alias.

Gates work like TFMA's: value thresholds on the challenger, and change thresholds against the
champion judged on the paired bootstrap interval of their difference, overall and per slice (slices
of at least `evaluation.min_slice_size` rows). A challenger passes only when every check passes.

Nothing is judged when the evaluation window holds fewer positives or negatives than
`evaluation.min_positives` / `min_negatives`. A slice whose metric is undefined (one class) is
reported as not judged. A comparison whose bound lies within `evaluation.mc_z` Monte Carlo errors
of its limit is inconclusive and follows `promotion.inconclusive`.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import hashlib
import json
import math
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from mlops.core.config import LOWER_IS_BETTER, Gate, PipelineConfig
from mlops.core.gating import gain_bound, inconclusive, judges_slice
from mlops.core.metrics import OVERALL, slice_scope
from mlops.core.serving import first_served_day
from mlops.io import audit, locks, registry
from mlops.io.datasets import latest_served_day
from mlops.io.feature_audit import read_feature_audit
from mlops.io.paths import mlops_home
from mlops.reporting.promotion import PARTS, REPORT_PATH, config_diff, render_promotion_report, slice_deltas

PASS, FAIL, INCONCLUSIVE, NOT_JUDGED = "pass", "fail", "inconclusive", "not_judged"


@dataclass(frozen=True)
class GateCheck:
    name: str
    scope: str  # "overall" or "<slice_feature>=<slice_value>"
    passed: bool
    detail: str
    outcome: str = ""  # pass, fail, inconclusive (passed as promotion.inconclusive says) or not_judged

    def __post_init__(self) -> None:
        if not self.outcome:
            object.__setattr__(self, "outcome", PASS if self.passed else FAIL)


@dataclass(frozen=True)
class PromotionDecision:
    pipeline: str
    challenger_version: str
    champion_version: str | None
    passed: bool  # every gate passed (the model is "blessed")
    promoted: bool  # and it took the champion alias
    checks: list[GateCheck]
    blocked_by: str | None = None  # why a passing challenger was not promoted

    @property
    def reasons(self) -> list[str]:
        failed = [c for c in self.checks if not c.passed]
        lines = [f"FAIL {c.name} [{c.scope}]: {c.detail}" for c in failed]
        lines += [
            f"INCONCLUSIVE {c.name} [{c.scope}]: {c.detail}"
            for c in self.checks
            if c.passed and c.outcome == INCONCLUSIVE
        ]
        lines += [f"NOT JUDGED {c.name} [{c.scope}]: {c.detail}" for c in self.checks if c.outcome == NOT_JUDGED]
        if not failed:
            judged = sum(c.outcome != NOT_JUDGED for c in self.checks)
            lines.append(f"pass all {judged} checks")
        if self.blocked_by:
            lines.append(f"not promoted: {self.blocked_by}")
        return lines


def _scope(row) -> str:
    return slice_scope(row.slice_feature, row.slice_value)


def class_counts_check(cfg: PipelineConfig, metrics: pd.DataFrame) -> GateCheck:
    """Enough positives and negatives in the evaluation window to judge at all (from the overall prevalence)."""
    overall = metrics[
        (metrics.slice_feature == OVERALL) & (metrics.model == "challenger") & (metrics.metric == "prevalence")
    ]
    n = int(overall.n.iloc[0]) if len(overall) else 0
    positives = round(float(overall.value.iloc[0]) * n) if n else 0
    negatives = n - positives
    e = cfg.evaluation
    enough = positives >= e.min_positives and negatives >= e.min_negatives
    detail = (
        f"evaluation window: {positives} positive and {negatives} negative labels in {n} rows "
        f"(evaluation.min_positives {e.min_positives}, min_negatives {e.min_negatives})"
    )
    return GateCheck("evaluation_class_counts", OVERALL, enough, detail if enough else f"{detail}: not judged")


def judge(cfg: PipelineConfig, metrics: pd.DataFrame, comparison: pd.DataFrame, has_champion: bool) -> list[GateCheck]:
    """Every configured gate on the evaluation's artifacts (slice_metrics.csv and comparison.csv).

    The first check is the class-count guard: when it fails, no gate is judged.
    """
    guard = class_counts_check(cfg, metrics)
    if not guard.passed:
        return [guard]
    checks: list[GateCheck] = [guard]
    e = cfg.evaluation
    challenger = metrics[metrics.model == "challenger"]
    for gate in cfg.promotion.gates:
        rows = challenger[challenger.metric == gate.metric]
        for row in rows[
            [judges_slice(gate, f, n, e.min_slice_size) for f, n in zip(rows.slice_feature, rows.n, strict=True)]
        ].itertuples():
            if math.isnan(row.value):
                checks.append(_undefined(f"{gate.metric}_defined", row))
                continue
            if gate.min_value is not None:
                checks.append(
                    GateCheck(
                        f"{gate.metric}_min_value",
                        _scope(row),
                        row.value >= gate.min_value,
                        f"challenger {row.value:.4f} >= {gate.min_value} (n={row.n})",
                    )
                )
            if gate.max_value is not None:
                checks.append(
                    GateCheck(
                        f"{gate.metric}_max_value",
                        _scope(row),
                        row.value <= gate.max_value,
                        f"challenger {row.value:.4f} <= {gate.max_value} (n={row.n})",
                    )
                )
        if gate.max_regression is None and gate.min_improvement is None:
            continue
        if not has_champion:
            checks.append(GateCheck(f"{gate.metric}_vs_champion", OVERALL, True, "no champion yet: nothing to compare"))
            continue
        rows = comparison[comparison.metric == gate.metric]
        for row in rows[
            [judges_slice(gate, f, n, e.min_slice_size) for f, n in zip(rows.slice_feature, rows.n, strict=True)]
        ].itertuples():
            if math.isnan(row.difference):
                checks.append(_undefined(f"{gate.metric}_vs_champion", row))
                continue
            if gate.max_regression is not None:
                checks.append(_comparison(cfg, gate, row))
            if gate.min_improvement is not None and row.slice_feature == OVERALL:
                gain = (-1.0 if gate.metric in LOWER_IS_BETTER else 1.0) * row.difference
                checks.append(
                    GateCheck(
                        f"{gate.metric}_min_improvement",
                        OVERALL,
                        gain >= gate.min_improvement,
                        f"gain {gain:+.4f} >= {gate.min_improvement}",
                    )
                )
    return checks


def _undefined(name: str, row) -> GateCheck:
    """An undefined metric: a failure overall (nothing to judge the model on), not judged on a slice."""
    if row.slice_feature == OVERALL:
        return GateCheck(name, OVERALL, False, f"metric undefined on the evaluation set (n={row.n})")
    return GateCheck(
        name, _scope(row), True, f"undefined on this slice (one class?), not judged (n={row.n})", NOT_JUDGED
    )


def _comparison(cfg: PipelineConfig, gate: Gate, row) -> GateCheck:
    """max_regression on one end of the paired interval of the gain, with its Monte Carlo error."""
    gain = (-1.0 if gate.metric in LOWER_IS_BETTER else 1.0) * row.difference
    low_se = getattr(row, "ci_low_mc_se", math.nan)
    high_se = getattr(row, "ci_high_mc_se", math.nan)
    bound, se, end = gain_bound(gate, row.ci_low, row.ci_high, low_se, high_se)
    limit = -gate.max_regression
    name = f"{gate.metric}_{gate.test}"
    if math.isnan(bound):  # no interval: the point gain is the bound
        return GateCheck(
            name, _scope(row), gain >= limit, f"gain {gain:+.4f}, no interval: gain >= {limit} (n={row.n})"
        )
    resamples = int(getattr(row, "resamples", 0) or 0)
    mc = f" ± {cfg.evaluation.mc_z * se:.4f} (Monte Carlo, {resamples} resamples)" if math.isfinite(se) else ""
    detail = f"gain {gain:+.4f}, CI {end} end {bound:+.4f}{mc} >= {limit} (n={row.n})"
    if inconclusive(bound, limit, se, cfg.evaluation.mc_z):
        rule = cfg.promotion.inconclusive
        detail += f": inconclusive, the limit lies within the Monte Carlo error; promotion.inconclusive={rule}"
        return GateCheck(name, _scope(row), rule == "pass", detail, INCONCLUSIVE)
    return GateCheck(name, _scope(row), bound >= limit, detail)


def promotion_allowed(allow_promotion: bool | None, run_type: str) -> tuple[bool, str]:
    """Whether this run may move the champion, and why not: backfills need an explicit `allow_promotion`."""
    if allow_promotion is False:
        return False, "param allow_promotion is false"
    if allow_promotion is None and run_type == "backfill":
        return False, "a backfill run never moves the champion unless its param allow_promotion is true"
    return True, ""


@contextlib.contextmanager
def champion_lock(pipeline: str) -> Iterator[None]:
    """An exclusive lock on the pipeline's champion alias, across the processes of one host."""
    with locks.exclusive(mlops_home() / "locks" / f"{pipeline}.champion.lock"):
        yield


def load_evaluation(run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The slice metrics and comparison that the evaluation logged to the run."""
    registry.client()
    import mlflow.artifacts

    with registry.reachable(f"reading the evaluation of run {run_id}"):
        folder = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation")
    return pd.read_csv(f"{folder}/slice_metrics.csv"), pd.read_csv(f"{folder}/comparison.csv")


def _model_record(ref: registry.VersionRef) -> dict[str, Any]:
    """What the promotion report shows of one version: its run's lineage tags and data per part of the window."""
    run = registry.client().get_run(ref.run_id)
    tags, metrics = run.data.tags, run.data.metrics
    split = json.loads(tags.get("split") or "{}")
    return {
        "version": ref.version,
        "run_id": ref.run_id,
        "threshold": ref.threshold,
        **{k: tags.get(k) for k in ("training_window", "config_digest", "code_digest", "git_commit")},
        "data": {
            part: {
                "window": split.get(part),
                "rows": int(metrics[f"{part}_rows"]) if f"{part}_rows" in metrics else None,
                "label_rate": metrics.get(f"{part}_prevalence"),
                "digest": tags.get(f"lake_digest.{part}"),
            }
            for part in PARTS
        },
    }


def _artifact_paths(run_id: str, folder: str) -> list[str]:
    return [f.path for f in registry.client().list_artifacts(run_id, folder) if not f.is_dir]


def recorded_config(run_id: str) -> dict[str, Any] | None:
    """The config a run was trained with (its `config/pipeline.json`, credentials masked); None if not recorded."""
    import mlflow.artifacts

    if "config/pipeline.json" not in _artifact_paths(run_id, "config"):
        return None
    return mlflow.artifacts.load_dict(f"runs:/{run_id}/config/pipeline.json")


def _evaluation_images(run_id: str) -> list[dict[str, str]]:
    """The evaluation's PNG plots of the run, base64-encoded: [{title, png}]."""
    import mlflow.artifacts

    paths = [p for p in _artifact_paths(run_id, "evaluation/plots") if p.endswith(".png")]
    if not paths:
        return []
    folder = Path(mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="evaluation/plots"))
    return [
        {"title": f"evaluation: {Path(p).stem}", "png": base64.b64encode((folder / Path(p).name).read_bytes()).decode()}
        for p in paths
    ]


def report_data(
    cfg: PipelineConfig, decision: PromotionDecision, metrics: pd.DataFrame, comparison: pd.DataFrame
) -> dict[str, Any]:
    """Everything the promotion report shows, as plain values (see `reporting.promotion.render_promotion_report`).

    The champion shown is the one the evaluation compared against (the run's `evaluation_champion_version`
    tag), else the decision's. Raises RegistryUnavailableError when MLflow cannot be reached.
    """
    challenger = registry.version(cfg.name, decision.challenger_version)
    evaluated = registry.client().get_run(challenger.run_id).data.tags.get("evaluation_champion_version")
    number = evaluated if evaluated and evaluated != "none" else decision.champion_version
    champion = registry.version(cfg.name, number) if number and number != challenger.version else None
    new = recorded_config(challenger.run_id)
    old = recorded_config(champion.run_id) if champion else None
    note = ""
    if new is None or (champion and old is None):
        note = "a config was not recorded on " + ("the challenger's run" if new is None else "the champion's run")
    return {
        "pipeline": cfg.name,
        "decided_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "passed": decision.passed,
        "promoted": decision.promoted,
        "blocked_by": decision.blocked_by,
        "reasons": decision.reasons,
        "checks": [asdict(ch) for ch in decision.checks],
        "challenger": _model_record(challenger),
        "champion": _model_record(champion) if champion else None,
        "config_diff": None if note else config_diff(old, new),
        "config_note": note,
        "slices": slice_deltas(metrics, comparison),
        "images": _evaluation_images(challenger.run_id),
        "feature_audit": read_feature_audit(challenger.run_id),
    }


def log_report(data: dict[str, Any]) -> str:
    """Render the promotion report and log it to the challenger's run as `promotion/report.html`; returns the run id."""
    run_id = data["challenger"]["run_id"]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / Path(REPORT_PATH).name
        path.write_text(render_promotion_report(data))
        registry.client().log_artifact(run_id, str(path), str(Path(REPORT_PATH).parent))
    return run_id


def report_location(pipeline: str, version: str) -> dict[str, str]:
    """Where a version's promotion report is: {experiment_id, run_id, path} (for the Airflow extra link)."""
    ref = registry.version(pipeline, version)
    run = registry.client().get_run(ref.run_id)
    return {"experiment_id": run.info.experiment_id, "run_id": ref.run_id, "path": REPORT_PATH}


def read_report(pipeline: str, version: str) -> str | None:
    """The promotion report (HTML) of a version; None when it has none (never judged, or judged before reports).

    Raises LookupError for an unknown version, RegistryUnavailableError when MLflow cannot be reached.
    """
    ref = registry.version(pipeline, version)
    if REPORT_PATH not in _artifact_paths(ref.run_id, str(Path(REPORT_PATH).parent)):
        return None
    import mlflow.artifacts

    with registry.reachable(f"reading the promotion report of {pipeline} version {version}"):
        return mlflow.artifacts.load_text(f"runs:/{ref.run_id}/{REPORT_PATH}")


def promote(
    cfg: PipelineConfig,
    challenger_version: str,
    allow_promotion: bool = True,
    blocked_reason: str = "",
    evaluated_champion: str | None = None,
    triggered_by: str = "schedule",
    airflow_run_id: str | None = None,
) -> PromotionDecision:
    """Judge the challenger's gates; give it alias `champion` when all pass and promotion is allowed.

    `evaluated_champion` is the champion the evaluation compared against: if the alias moved since,
    the comparison is stale and nothing is promoted.

    Write-ahead: a promotion is recorded (see `complete_move`) before any alias moves, and every step
    after that is idempotent, so a promotion cut short (MLflow going down) is completed by the next
    promote or rollback of the pipeline, this call's retry included. A challenger that already holds
    `champion` by a completed promotion is not promoted again: no second audit line. The same
    decision recorded twice (a retry) gives one audit line too. Raises RegistryUnavailableError when
    MLflow cannot be reached: the task retries.
    """
    c = registry.client()
    challenger = registry.version(cfg.name, challenger_version)
    tags = c.get_model_version(cfg.name, challenger_version).tags
    metrics, comparison = load_evaluation(challenger.run_id)
    with champion_lock(cfg.name):
        complete_pending(cfg.name)
        champion = registry.version_by_alias(cfg.name, registry.CHAMPION)
        checks = [
            GateCheck(
                "training_data_validated",
                OVERALL,
                tags.get("data_validation_status") == "passed",
                f"data_validation_status={tags.get('data_validation_status')}",
            ),
            GateCheck("threshold_set", OVERALL, challenger.threshold is not None, f"threshold={challenger.threshold}"),
            *judge(cfg, metrics, comparison, has_champion=not comparison.empty),
        ]
        passed = all(ch.passed for ch in checks)
        current = champion.version if champion else None
        if current == challenger.version:
            now = c.get_model_version(cfg.name, challenger.version).tags
            if now.get("promotion_decision") == "promoted":  # promoted before (a retry, or the same call twice)
                before = now.get("promotion_previous")
                previous = None if before in (None, "none") else before
                return PromotionDecision(cfg.name, challenger.version, previous, passed, True, checks)
        blocked = None
        if passed and not allow_promotion:
            blocked = blocked_reason or "promotion not allowed for this run"
        elif passed and current != evaluated_champion and current != challenger.version:
            blocked = f"the champion moved from {evaluated_champion} to {current} during this run: re-run it"
        promoted = passed and blocked is None
        decision = PromotionDecision(cfg.name, challenger.version, current, passed, promoted, checks, blocked)
        c.log_dict(challenger.run_id, {**asdict(decision), "reasons": decision.reasons}, "promotion/gate_report.json")
        log_report(report_data(cfg, decision, metrics, comparison))
        trail = {
            "run_id": challenger.run_id,
            "airflow_run_id": airflow_run_id,
            "triggered_by": triggered_by,
            "training_window": tags.get("training_window"),
            "reasons": decision.reasons,
        }
        if promoted:
            move = _move("promoted", challenger.version, current, trail)
            registry.record_pending_move(cfg.name, move)  # the write-ahead record: nothing has moved yet
            complete_move(cfg.name, move)
            return decision
        outcome = "not_promoted" if passed else "rejected"
        registry.set_version_tags(
            cfg.name,
            challenger.version,
            {
                "validation_status": "passed" if passed else "failed",
                "promotion_decision": outcome,
                "promotion_reasons": json.dumps(decision.reasons),
            },
        )
        c.set_tag(challenger.run_id, "promotion_decision", outcome)
        same = json.dumps([outcome, challenger.version, current, trail], sort_keys=True, default=str)
        key = f"{outcome}-{hashlib.sha256(same.encode()).hexdigest()[:16]}"
        audit.record_once(cfg.name, outcome, key, version=challenger.version, previous=current, **trail)
    return decision


def rollback(
    cfg: PipelineConfig,
    to_version: str | None = None,
    triggered_by: str = "cli",
    reason: str = "",
    airflow_run_id: str | None = None,
) -> str:
    """Give `champion` back to `to_version` (default: the `previous_champion`); returns that version.

    Written ahead like a promotion (see `complete_move`); a retry of an Airflow run whose rollback
    completed (`airflow_run_id`) does nothing and returns the version it restored. Raises LookupError
    for an unknown version, ValueError for one without a threshold, RegistryUnavailableError when MLflow
    cannot be reached.
    """
    with champion_lock(cfg.name):
        complete_pending(cfg.name)
        if airflow_run_id:
            done = [
                e
                for e in audit.history(cfg.name)
                if (e["event"], e.get("airflow_run_id")) == ("rollback", airflow_run_id)
            ]
            if done:  # a retry of a run whose rollback completed
                return done[-1]["version"]
        current = registry.version_by_alias(cfg.name, registry.CHAMPION)
        if to_version is None:
            previous = registry.version_by_alias(cfg.name, registry.PREVIOUS_CHAMPION)
            if previous is None:
                raise LookupError(f"model {cfg.name!r} has no previous_champion to roll back to; give a version")
            to_version = previous.version
        target = registry.version(cfg.name, to_version)
        if target.threshold is None:
            raise ValueError(f"version {to_version} of {cfg.name!r} has no threshold tag: it was never recalibrated")
        trail = {
            "revoked": _newer_promoted(cfg.name, target),
            "airflow_run_id": airflow_run_id,
            "triggered_by": triggered_by,
            "reasons": [reason] if reason else [],
        }
        move = _move("rollback", target.version, current.version if current else None, trail)
        registry.record_pending_move(cfg.name, move)
        complete_move(cfg.name, move)
    return target.version


def _move(event: str, version: str, previous: str | None, trail: dict) -> dict:
    return {
        "id": f"{event}-{version}-{uuid.uuid4().hex[:12]}",
        "event": event,
        "version": version,
        "previous": previous,
        "decided_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "trail": trail,
    }


def complete_pending(name: str) -> dict | None:
    """Complete the champion move a crash left half done, if any; returns it. Call under `champion_lock`."""
    move = registry.pending_move(name)
    if move is not None:
        complete_move(name, move)
    return move


def complete_move(name: str, move: dict) -> None:
    """Carry out a champion move recorded by `registry.record_pending_move`, from wherever it stopped.

    Every step is idempotent, so running it again after a crash completes the move. The alias
    `champion` is the commit point: before it moves, `champion_for` and the alias both still give the
    old champion; after it, both give the new one (the version's decision tag says `promoting` until
    the move is complete, and only `promoted` versions count for earlier days). The alias moves under
    the serving lock held exclusively (`locks.serving`), so no run decides a day with the champion
    while it changes; a promoted version's first day is set then (`_commit_promotion`). The audit line
    is written once per move (its id), then the record is cleared.
    """
    c = registry.client()
    version, previous = move["version"], move["previous"]
    trail = move["trail"]
    if move["event"] == "promoted":
        trail = {**trail, **_commit_promotion(name, move)}
        registry.set_version_tags(name, version, {"promotion_decision": "promoted"})
        registry.clear_version_tag(name, version, "revoked")
        c.set_tag(trail["run_id"], "promotion_decision", "promoted")
    else:
        with locks.serving(name, exclusive=True):  # a run reads the champions before or after, not between
            for newer in trail["revoked"]:
                c.set_model_version_tag(name, newer, "revoked", "true")
            registry.clear_version_tag(name, version, "revoked")
            c.set_registered_model_alias(name, registry.CHAMPION, version)
        if previous is not None and previous != version:
            c.set_registered_model_alias(name, registry.PREVIOUS_CHAMPION, previous)
        registry.set_version_tags(name, version, {"restored_by_rollback_from": previous or "none"})
    audit.record_once(name, move["event"], move["id"], version=version, previous=previous, **trail)
    registry.clear_pending_move(name, move["id"])


def _commit_promotion(name: str, move: dict) -> dict[str, str]:
    """Move `champion` to the promoted version, with its first day; returns {"serves_from": day} if it has one.

    Under the serving lock held exclusively (`locks.serving`): no run is deciding a day with a
    champion meanwhile, so the first day follows every day decided so far (core.serving,
    `datasets.latest_served_day`) and every later decision sees the new champion. A version promoted
    before keeps the start of its first service (the days it scored then); a commit already done is
    not redone.
    """
    c = registry.client()
    version, previous = move["version"], move["previous"]
    with locks.serving(name, exclusive=True):
        tags = c.get_model_version(name, version).tags
        holder = registry.version_by_alias(name, registry.CHAMPION)
        if holder is None or holder.version != version:  # not committed yet
            new = {
                "validation_status": "passed",
                "promotion_decision": "promoting",
                "promotion_reasons": json.dumps(move["trail"]["reasons"]),
                "promotion_id": move["id"],
                "promotion_previous": previous or "none",
            }
            if registry.SERVES_FROM not in tags:
                start = first_served_day(registry.window_end(tags), latest_served_day(name))
                if start is not None:
                    new[registry.SERVES_FROM] = start.isoformat()
            registry.set_version_tags(name, version, new)
            tags = {**tags, **new}
            if previous is not None and previous != version:
                c.set_registered_model_alias(name, registry.PREVIOUS_CHAMPION, previous)
            c.set_registered_model_alias(name, registry.CHAMPION, version)
    return {"serves_from": tags[registry.SERVES_FROM]} if registry.SERVES_FROM in tags else {}


def _newer_promoted(name: str, target: registry.VersionRef) -> list[str]:
    """Every promoted version trained after `target`: a rollback revokes them, so champion_for undoes them too.

    "After" orders by (training window end, version): a later retrain of the same window counts.
    """
    c = registry.client()
    target_end = c.get_model_version(name, target.version).tags.get("training_window", "").split("..")[-1]
    target_key = (target_end, int(target.version))
    newer = []
    for mv in c.search_model_versions(f"name = '{name}'"):
        end = mv.tags.get("training_window", "").split("..")[-1]
        if mv.tags.get("promotion_decision") == "promoted" and (end, int(mv.version)) > target_key:
            newer.append(str(mv.version))
    return sorted(newer, key=int)
