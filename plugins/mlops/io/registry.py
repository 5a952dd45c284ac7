"""MLflow as the system of record: tracking setup, experiments, registered versions and aliases.

An MLflow that cannot be reached (connection refused, timeout, a 5xx answer) raises
RegistryUnavailableError, never a wrong fact such as "no version 2" or "no champion yet": the task retries.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import mlflow
import requests
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from mlops.core.config import mask_secrets
from mlops.io.paths import mlflow_artifact_root, mlflow_tracking_uri

CHAMPION = "champion"
CHALLENGER = "challenger"
PREVIOUS_CHAMPION = "previous_champion"
PENDING_MOVE = "pending_champion_move"  # registered-model tag: a champion move written ahead of the alias
SERVES_FROM = "serves_from"  # model-version tag: the first day the version scores as champion (set at promotion)
FIT_SECONDS = "fit_seconds"  # train run metric: wall seconds of the estimator's fit on the train rows
FIT_CPU_SECONDS = "fit_cpu_seconds"  # train run metric: the same fit in CPU seconds (the feature audit's T)
TRANSIENT_CODES = frozenset({"INTERNAL_ERROR", "TEMPORARILY_UNAVAILABLE", "REQUEST_LIMIT_EXCEEDED"})


class RegistryUnavailableError(ConnectionError):
    """MLflow could not be reached or answered with a server error: transient, so the task retries."""


def unreachable(exc: BaseException) -> bool:
    """Whether an MLflow error means "could not ask" (network, timeout, server error), not "the answer is no"."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, requests.ConnectionError | requests.Timeout | ConnectionError | TimeoutError):
            return True
        if isinstance(current, MlflowException) and current.error_code in TRANSIENT_CODES:
            return True
        current = current.__cause__ or current.__context__
    return False


def missing(exc: MlflowException) -> bool:
    """Whether an MLflow error says that the model, version or alias asked for does not exist."""
    return exc.error_code == "RESOURCE_DOES_NOT_EXIST" or (
        exc.error_code == "INVALID_PARAMETER_VALUE" and "not found" in str(exc)
    )


@contextlib.contextmanager
def reachable(what: str) -> Iterator[None]:
    """Turn an unreachable MLflow into RegistryUnavailableError naming the server and what was asked."""
    try:
        yield
    except (MlflowException, requests.RequestException, OSError) as exc:
        if isinstance(exc, RegistryUnavailableError) or not unreachable(exc):
            raise
        reason = " ".join(str(exc).split())[:300]
        raise RegistryUnavailableError(
            f"MLflow at {mask_secrets(mlflow_tracking_uri())} is unreachable ({what}): {reason}; "
            "retry when it answers again (the task retries by itself)"
        ) from exc


class _Client:
    """An MlflowClient whose every call reports an unreachable server as RegistryUnavailableError."""

    def __init__(self, inner: MlflowClient) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        @functools.wraps(attr)
        def call(*args: Any, **kwargs: Any) -> Any:
            with reachable(f"{name}{_shown(args)}"):
                return attr(*args, **kwargs)

        return call


def _shown(args: tuple) -> str:
    text = ", ".join(repr(a) for a in args if isinstance(a, str | int))
    return f"({text[:120]})"


@dataclass(frozen=True)
class VersionRef:
    """A registered model version and the threshold stored with it."""

    name: str
    version: str
    run_id: str
    threshold: float | None

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def client() -> MlflowClient:
    """A client on the configured tracking store (also sets the fluent API's URIs).

    Its calls raise RegistryUnavailableError when MLflow cannot be reached.
    """
    _quiet()
    uri = mlflow_tracking_uri()
    before = {k: os.environ.get(k) for k in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    for key, value in before.items():  # MLflow exports the URIs; keep MLOPS_HOME in charge of the default
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    return _Client(MlflowClient(uri, uri))  # type: ignore[return-value]


@functools.cache
def _quiet() -> None:
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)


def experiment_id(pipeline: str) -> str:
    """The pipeline's experiment, created with an explicit artifact location on first use."""
    c = client()
    experiment = c.get_experiment_by_name(pipeline)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return c.create_experiment(pipeline, artifact_location=f"{mlflow_artifact_root()}/{pipeline}")
    except MlflowException:  # created concurrently by another task (an unreachable MLflow raised above)
        return c.get_experiment_by_name(pipeline).experiment_id


def version_by_alias(name: str, alias: str) -> VersionRef | None:
    """The version holding `alias`, or None when no version holds it (or no model exists yet).

    Raises RegistryUnavailableError when MLflow cannot be asked: "unknown" is not "none".
    """
    mv = _by_alias(name, alias)
    return _ref(mv) if mv is not None else None


def _by_alias(name: str, alias: str):
    try:
        return client().get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if missing(exc):
            return None
        raise


def version(name: str, number: str | int) -> VersionRef:
    """One registered version; a missing one raises LookupError, an unreachable MLflow RegistryUnavailableError."""
    try:
        return _ref(client().get_model_version(name, str(number)))
    except MlflowException as exc:
        if missing(exc):
            raise LookupError(f"model {name!r} has no version {number}") from exc
        raise


def _ref(mv) -> VersionRef:
    threshold = mv.tags.get("threshold")
    return VersionRef(mv.name, str(mv.version), mv.run_id, float(threshold) if threshold is not None else None)


def set_version_tags(name: str, number: str, tags: dict[str, object]) -> None:
    """Set several tags on a model version."""
    c = client()
    for key, value in tags.items():
        c.set_model_version_tag(name, number, key, str(value))


def log_values(run_id: str, metrics: dict[str, float], tags: dict[str, object] | None = None) -> None:
    """Log metrics (step 0, timestamp now) and tags to a run with `log_batch`: one store transaction per
    1,000 metrics and 100 tags (MLflow's limits per batch) instead of one per value."""
    import time

    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    metric_list = [Metric(key, float(value), now, 0) for key, value in metrics.items()]
    tag_list = [RunTag(key, str(value)) for key, value in (tags or {}).items()]
    c = client()
    while metric_list or tag_list:
        c.log_batch(run_id, metrics=metric_list[:1000], tags=tag_list[:100])
        metric_list, tag_list = metric_list[1000:], tag_list[100:]


def clear_version_tag(name: str, number: str, key: str) -> None:
    """Remove a version tag if it is set."""
    c = client()
    if key in c.get_model_version(name, number).tags:
        c.delete_model_version_tag(name, number, key)


_MODELS: dict[tuple[str, str, str], Any] = {}  # (tracking URI, name, version) -> loaded model, this process
_MAX_MODELS = 4


def load_sklearn(ref: VersionRef):
    """The sklearn model of a registered version; treat it as read-only (it is shared).

    A version's model never changes once registered, so it is loaded once per process (the last
    `_MAX_MODELS` versions are kept) from a folder downloaded once per MLOPS_HOME
    (`artifact_cache.fetch_model`): an evaluation that predicts with the challenger and then audits
    it, or a task after the one that trained it, does not ask MLflow for the model again. Raises
    LookupError for a missing version, RegistryUnavailableError when MLflow cannot be asked.
    """
    key = (mlflow_tracking_uri(), ref.name, str(ref.version))
    model = _MODELS.get(key)
    if model is None:
        from mlops.io import artifact_cache

        path = artifact_cache.fetch_model(ref.name, ref.version)
        import mlflow.sklearn

        model = mlflow.sklearn.load_model(str(path))
        if len(_MODELS) >= _MAX_MODELS:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = model
    return model


def window_end(tags: dict[str, str]) -> dt.date | None:
    """The end of a version's training window (its `training_window` tag), None when it has none."""
    end = tags.get("training_window", "").split("..")[-1]
    return dt.date.fromisoformat(end) if end else None


def serves_from(tags: dict[str, str]) -> dt.date | None:
    """The first data interval a promoted version scores (its `serves_from` tag, set when promoted).

    Versions promoted before that tag existed serve from the end of their training window."""
    day = tags.get(SERVES_FROM)
    return dt.date.fromisoformat(day) if day else window_end(tags)


def serve_from(name: str, number: str, day: dt.date) -> bool:
    """Move the start of version `number`'s service back to `day` (a re-score gave it that day).

    Returns whether the tag changed: a version already serving `day` keeps its start."""
    start = serves_from(client().get_model_version(name, number).tags)
    if start is not None and start <= day:
        return False
    set_version_tags(name, number, {SERVES_FROM: day.isoformat()})
    return True


def champion_for(name: str, day: dt.date) -> VersionRef | None:
    """The champion of a data interval starting on `day`: stable under backfills, one with the alias.

    Each promoted version serves from its `serves_from` day (`serves_from`): the end of its training
    window, or the day after the last day scored when it was promoted, whichever is later, so a day
    scored before a promotion keeps the model that scored it when it is run again. From the current
    champion's start on, that is the `champion` alias itself, so scoring and the alias never
    disagree. Before it, the promoted, not revoked, version with the latest start on or before `day`
    (a re-run of an old day uses the model of that time, not today's). When no version qualifies,
    the current alias.
    """
    return champions(name)(day)


def champions(name: str):
    """`champion_for` of many days from one read of the registry: returns day -> VersionRef | None.

    The alias is read now and the versions at most once, on the first day that needs them (a run
    scoring many days asked MLflow for every version once per day before). The answers are those of
    the registry at the time of the reads: use the function within one run, not across runs.
    """
    current = _by_alias(name, CHAMPION)
    current_start = serves_from(current.tags) if current is not None else None
    promoted: list[tuple[dt.date, int, Any]] | None = None

    def for_day(day: dt.date) -> VersionRef | None:
        nonlocal promoted
        if current is not None and current_start is not None and current_start <= day:
            return _ref(current)
        if promoted is None:
            promoted = []
            for mv in client().search_model_versions(f"name = '{name}'"):
                tags = mv.tags
                if tags.get("promotion_decision") != "promoted" or tags.get("revoked") == "true":
                    continue
                if "threshold" in tags and (start := serves_from(tags)) is not None:
                    promoted.append((start, int(mv.version), mv))
        eligible = [(start, number, mv) for start, number, mv in promoted if start <= day]
        if eligible:
            return _ref(max(eligible, key=lambda item: item[:2])[2])
        return _ref(current) if current is not None else None

    return for_day


def pending_move(name: str) -> dict[str, Any] | None:
    """The champion move recorded ahead of its alias changes and not yet completed, if any."""
    try:
        tags = client().get_registered_model(name).tags
    except MlflowException as exc:
        if missing(exc):
            return None
        raise
    return json.loads(tags[PENDING_MOVE]) if PENDING_MOVE in tags else None


def record_pending_move(name: str, move: dict[str, Any]) -> None:
    """Write a champion move ahead of its alias changes (one registered-model tag: atomic)."""
    client().set_registered_model_tag(name, PENDING_MOVE, json.dumps(move, sort_keys=True))


def clear_pending_move(name: str, move_id: str) -> None:
    """Forget the recorded move `move_id` once it is complete (a newer record is left alone)."""
    current = pending_move(name)
    if current is not None and current.get("id") == move_id:
        client().delete_registered_model_tag(name, PENDING_MOVE)


def mark_orphans(name: str) -> list[str]:
    """Tag `orphan` every version registered without its training tags (its registration was interrupted).

    Such a version has no training window, fingerprint or threshold: it is never reused, evaluated or
    made champion, and the tag says why. Returns the versions marked now.
    """
    c = client()
    try:
        found = c.search_model_versions(f"name = '{name}'")
    except MlflowException as exc:
        if missing(exc):
            return []
        raise
    marked = []
    for mv in found:
        if "training_window" not in mv.tags and mv.tags.get("orphan") != "true":
            set_version_tags(
                name,
                str(mv.version),
                {
                    "orphan": "true",
                    "orphan_reason": f"registered by run {mv.run_id} without its training tags: the training "
                    "stopped before it was tagged (e.g. MLflow went down); never reused, evaluated or promoted",
                },
            )
            marked.append(str(mv.version))
    return sorted(marked, key=int)


REFERENCE_PROFILE = "reference/profile.json"  # the training-data profile a training run logs


def load_reference(name: str, version: str | int) -> dict:
    """The training-data profile logged by the training run of version `version` of model `name` (a fresh dict).

    Read through `artifact_cache`: downloaded from MLflow once, then kept under `$MLOPS_HOME/cache` (a
    run's profile is written once, when it trains), so each validate task, a process of its own, reads
    the local copy instead of asking MLflow again (0.2 s of a cold validate task over HTTP, cProfile).
    Raises LookupError when the version or its profile is missing, RegistryUnavailableError when MLflow
    cannot be reached.
    """
    from mlops.io import artifact_cache

    path = artifact_cache.fetch(name, version, REFERENCE_PROFILE)
    if path is None:
        raise LookupError(f"model {name} v{version} has no {REFERENCE_PROFILE}: its training run did not log one")
    return json.loads(path.read_text())


def evaluation_values(name: str, number: str) -> dict[tuple[str, str, str], float]:
    """A version's own evaluation values: (slice_feature, slice_value, metric) -> value.

    Read from `evaluation/slice_metrics.csv` of its training run (rows of model `challenger`, i.e.
    the version itself). Empty when the version was never evaluated; RegistryUnavailableError when
    MLflow cannot be asked; LookupError for a missing version.
    """
    import tempfile

    import mlflow.artifacts
    import pandas as pd
    from mlflow.exceptions import MlflowException

    ref = version(name, number)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = mlflow.artifacts.download_artifacts(
                run_id=ref.run_id, artifact_path="evaluation/slice_metrics.csv", dst_path=tmp
            )
        except (MlflowException, OSError) as exc:
            if unreachable(exc):
                raise RegistryUnavailableError(
                    f"MLflow is unreachable reading the evaluation of {name} v{number}: {exc}"
                ) from exc
            return {}
        frame = pd.read_csv(path)
    own = frame[frame["model"] == "challenger"]
    return {
        (str(r.slice_feature), str(r.slice_value), str(r.metric)): float(r.value) for r in own.itertuples(index=False)
    }


def pandas_dataset(df, source: str, name: str, digest: str):
    """An MLflow PandasDataset of `df` with our digest and a schema found without reading every value.

    `mlflow.data.from_pandas` computes its digest with `DataFrame.map(type)` over every cell and
    infers the schema from every value of each text column (`_infer_colspec_type(col.to_list())`)
    and its `required` flag value by value: most of the training stage on a year. The schema here
    equals MLflow's own inference (`mlflow.types.utils._infer_schema`) for the frames we log, whose
    text columns have pandas' `str` dtype: MLflow's type of such a column depends only on which
    kinds of value it holds (text, and missing or not), so it is inferred from one present and one
    missing value; `required` is "no missing value", from `isna`. `digest` is the lake's content
    digest, which we compute anyway. `df`: the rows (n, k); `source`: path or URI of the data.
    """
    import pandas as pd
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.pandas_dataset import PandasDataset
    from mlflow.types import ColSpec, Schema
    from mlflow.types.utils import _infer_pandas_column

    specs = []
    for column in df.columns:
        values = df[column]
        missing = values.isna()
        sample = values
        if isinstance(values.dtype, pd.StringDtype):
            sample = pd.concat([values[~missing].head(1), values[missing].head(1)])
        specs.append(ColSpec(type=_infer_pandas_column(sample), name=column, required=not bool(missing.any())))
    dataset = PandasDataset(df=df, source=resolve_dataset_source(source), name=name, digest=digest)
    dataset.__dict__["schema"] = Schema(specs)  # fills the cached_property: MLflow does not infer it again
    return dataset
