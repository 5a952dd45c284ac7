"""Two Great Expectations costs removed while a suite is validated: work redone per expectation, freshness re-read.

1. Work done again per expectation. GX 1.x derives an expectation's `configuration` (an
ExpectationConfiguration) from the expectation's pydantic fields each time the property is read, and a
validation reads it for every domain, success and runtime keyword of every expectation, and again for
every metric it depends on: about 50 reads per expectation and run, each a pydantic `dict()` and a new
configuration. For the flights suite (85 expectations, a 900-row day) that is 0.3 s of a 0.7 s
validation (CPU, quiet machine; measured with cProfile and `benchmarks/validation_day.py --parts`).

`memoized_configurations()` makes each expectation object build its configuration once while the
block runs (in this thread only) and forgets them all when it ends. Within it, a configuration that
the memo built turns back into the expectation it was built from: GX's `get_metric_kwargs` calls
`configuration.to_domain_obj()` for every metric of every expectation (another pydantic object, whose
configuration is built again) only to read its keyword arguments. Any other configuration turns into
one expectation however often it is asked: `Validator.graph_validate` makes each evaluated
configuration into an expectation to collect its metrics, then again to check them (GX 1.24 changes
no configuration in between: its one change, the batch id, comes before the first). Configurations of
equal content (type, keyword arguments, meta, notes, ids...: all `to_domain_obj` reads) turn into the
same expectation: the Data Docs update, inside the checkpoint's run, reads the run's result back from
the store and turns each configuration into an expectation again to choose its renderers. Each
expectation's validation dependencies are computed once: GX asks for them to build the metric graph
and again to check the metrics, and each type expectation resolves the table's column types to answer
(37 of the suite's 85; only the outermost call per class counts, see `_memoized_dependencies`). And
each metric configuration's id (`IDDict.to_id`, an MD5 of GX's JSON conversion of its keyword
arguments, recursive Python over every value of a value set or type list) is computed once per
distinct arguments: GX builds about 1,400 metric configurations per run of this suite, most of them
alike. The memo's key is the arguments as canonical JSON, taken only when they are plain JSON values,
more than one and none ignored (GX's id is then the MD5 of their JSON, so equal keys give equal ids);
anything else goes to GX. An expectation is not changed while it is being validated (GX builds fresh
expectation objects from the suite's configurations for each run), so the results are the same, which
`tests/unit/test_gx_memo.py` checks on real days that pass and fail. Outside the block everything
behaves exactly as GX's own.

2. Freshness re-read from the store. Before a checkpoint runs, GX checks that the checkpoint, its
validation definitions and their suites equal what the store holds (`is_fresh`), and it does so five
times per run: `Checkpoint.run` checks the checkpoint, which checks its definition and compares itself
with the stored checkpoint (serialising both, each serialisation checking the definition again), and
`ValidationDefinition.run` checks the definition once more. Each definition check reads the suite and
the definition back from the store and deserialises them (85-140 expectations through marshmallow and
pydantic): 0.15-0.2 s of a 0.85 s daily validation (cProfile; CPU, quiet machine).
`trusted_fresh(checkpoint)` answers these checks as fresh for that checkpoint object and its definition
objects while the block runs, and only for them. The caller must have read or written all three from
the store under the store's lock and compared the stored suite with its own (`gx_checks._stored_checkpoint`
does), so they are what the store held then; the run validates with these objects even if another
process stores a newer suite meanwhile (the lock is not held while validating; that process validates
with its own). The block changes none of them. Any other object (another checkpoint, a copy read
before the lock) is checked by GX as before; `tests/unit/test_gx_memo.py` checks that a stale
definition is still refused inside the block.
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
from collections.abc import Iterator

_local = threading.local()


@functools.cache
def install() -> None:
    """Wrap `Expectation.configuration`, `ExpectationConfiguration.to_domain_obj`, `IDDict.to_id` and each
    expectation class's `get_validation_dependencies` once per process for `memoized_configurations`."""
    from great_expectations.core.id_dict import IDDict
    from great_expectations.expectations.expectation import Expectation
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    original = Expectation.configuration
    original_domain_obj = ExpectationConfiguration.to_domain_obj

    def configuration(self):
        cache = getattr(_local, "cache", None)
        if cache is None:
            return original.fget(self)
        hit = cache.get(id(self))
        if hit is None or hit[0] is not self:  # the object is held in the entry, so its id is not reused
            hit = cache[id(self)] = (self, original.fget(self))
            _local.origins[id(hit[1])] = (hit[1], self)
        return hit[1]

    def to_domain_obj(self):
        origins = getattr(_local, "origins", None)
        if origins is None:
            return original_domain_obj(self)
        hit = origins.get(id(self))
        if hit is None or hit[0] is not self:  # the configuration is held in the entry, so its id is not reused
            key = _content_key(self)
            expectation = None if key is None else _local.contents.get(key)
            if expectation is None:
                expectation = original_domain_obj(self)
                if key is not None:
                    _local.contents[key] = expectation
            hit = origins[id(self)] = (self, expectation)
        return hit[1]

    Expectation.configuration = property(configuration, doc=original.__doc__)
    ExpectationConfiguration.to_domain_obj = functools.wraps(original_domain_obj)(to_domain_obj)
    IDDict.to_id = _memoized_id(IDDict.to_id)
    for cls in _subclasses(Expectation):
        if "get_validation_dependencies" in vars(cls):
            cls.get_validation_dependencies = _memoized_dependencies(cls.get_validation_dependencies)


def _content_key(configuration) -> str | None:
    """What `ExpectationConfiguration.to_domain_obj` builds an expectation from, as canonical JSON; None
    when a value is not plain JSON."""
    try:
        return json.dumps(
            [
                configuration.type,
                configuration.id,
                configuration.meta,
                configuration.notes,
                configuration.rendered_content,
                configuration.severity,
                configuration.description,
                configuration.kwargs,
            ],
            sort_keys=True,
        )
    except (TypeError, ValueError):
        return None


def _subclasses(cls: type) -> list[type]:
    """`cls` and every class derived from it, that is imported now."""
    out = [cls]
    for sub in cls.__subclasses__():
        out += _subclasses(sub)
    return out


def _memoized_dependencies(original):
    """`get_validation_dependencies` of one class, computed once per expectation, execution engine and
    runtime configuration while the block runs: `Validator.graph_validate` asks for them to build the
    metric graph, then `metrics_validate` asks again to pick its metrics from the resolved ones.

    Only the call that resolves to this class's method for the expectation's own class is kept: calls
    up the class chain (`super()`, whose results the caller goes on to change) and calls of classes
    imported after `install` are GX's own each time.
    """

    @functools.wraps(original)
    def get_validation_dependencies(self, *args, **kwargs):
        memo = getattr(_local, "dependencies", None)
        if memo is None or args or type(self).get_validation_dependencies is not get_validation_dependencies:
            return original(self, *args, **kwargs)
        engine = kwargs.get("execution_engine")
        try:
            key = (id(self), id(engine), json.dumps(kwargs.get("runtime_configuration"), sort_keys=True))
        except (TypeError, ValueError):
            return original(self, *args, **kwargs)
        hit = memo.get(key)
        if hit is None or hit[0] is not self or hit[1] is not engine:  # both held: their ids are not reused
            hit = memo[key] = (self, engine, original(self, **kwargs))
        return hit[2]

    return get_validation_dependencies


def _memoized_id(original):
    @functools.wraps(original)
    def to_id(self, id_keys=None, id_ignore_keys=None):
        ids = getattr(_local, "ids", None)
        if ids is None or id_keys is not None or id_ignore_keys is not None or self._id_ignore_keys or len(self) < 2:
            # keys chosen or ignored (BatchSpec), or one key (GX's id is then its text, cheap): GX's own
            return original(self, id_keys, id_ignore_keys)
        try:
            key = (type(self), json.dumps(self, sort_keys=True))  # plain JSON values only
        except (TypeError, ValueError):
            return original(self)
        hit = ids.get(key)
        if hit is None:
            hit = ids[key] = original(self)
        return hit

    return to_id


@functools.cache
def _install_freshness() -> None:
    """Wrap `Checkpoint.is_fresh` and `ValidationDefinition.is_fresh` once per process for `trusted_fresh`."""
    from great_expectations.checkpoint.checkpoint import Checkpoint
    from great_expectations.core.freshness_diagnostics import (
        CheckpointFreshnessDiagnostics,
        ValidationDefinitionFreshnessDiagnostics,
    )
    from great_expectations.core.validation_definition import ValidationDefinition

    for cls, diagnostics in (
        (Checkpoint, CheckpointFreshnessDiagnostics),
        (ValidationDefinition, ValidationDefinitionFreshnessDiagnostics),
    ):
        cls.is_fresh = _trusting(cls.is_fresh, diagnostics)


def _trusting(original, diagnostics):
    @functools.wraps(original)
    def is_fresh(self):
        trusted = getattr(_local, "trusted", None)
        if trusted and any(obj is self for obj in trusted):
            return diagnostics(errors=[])
        return original(self)

    return is_fresh


@contextlib.contextmanager
def trusted_fresh(checkpoint) -> Iterator[None]:
    """Within the block, `checkpoint` and its validation definitions count as fresh (this thread).

    Only for these objects (by identity), and only when the caller has read or written them from the
    store under the GX store's lock; see the module's docstring.
    """
    _install_freshness()
    outer = getattr(_local, "trusted", None)
    _local.trusted = (checkpoint, *checkpoint.validation_definitions, *(outer or ()))
    try:
        yield
    finally:
        _local.trusted = outer


@contextlib.contextmanager
def memoized_configurations() -> Iterator[None]:
    """Within the block, each expectation builds its `configuration` once, that configuration turns back
    into the same expectation, its validation dependencies are computed once, and metric ids once per
    distinct arguments (this thread; nests)."""
    install()
    outer = getattr(_local, "cache", None)
    if outer is None:
        _local.cache, _local.origins, _local.contents, _local.ids, _local.dependencies = {}, {}, {}, {}, {}
    try:
        yield
    finally:
        if outer is None:
            _local.cache = _local.origins = _local.contents = _local.ids = _local.dependencies = None
