"""One Great Expectations cost, removed while a suite is validated: expectation configurations rebuilt.

GX 1.x derives an expectation's `configuration` (an ExpectationConfiguration) from the expectation's
pydantic fields each time the property is read, and a validation reads it for every domain, success and
runtime keyword of every expectation, and again for every metric it depends on: about 50 reads per
expectation and run, each a pydantic `dict()` and a new configuration. For the flights suite (85
expectations, a 900-row day) that is 0.3 s of a 0.7 s validation (CPU, quiet machine; measured with
cProfile and `benchmarks/validation_day.py --parts`).

`memoized_configurations()` makes each expectation object build its configuration once while the
block runs (in this thread only) and forgets them all when it ends. An expectation is not changed
while it is being validated (GX builds fresh expectation objects from the suite's configurations for
each run), so the results are the same, which `tests/unit/test_gx_memo.py` checks on real days that
pass and fail. Outside the block the property behaves exactly as GX's own.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

_local = threading.local()


@functools.cache
def install() -> None:
    """Wrap `Expectation.configuration` once per process so that `memoized_configurations` can memoize it."""
    from great_expectations.expectations.expectation import Expectation

    original = Expectation.configuration

    def configuration(self):
        cache = getattr(_local, "cache", None)
        if cache is None:
            return original.fget(self)
        hit = cache.get(id(self))
        if hit is None or hit[0] is not self:  # the object is held in the entry, so its id is not reused
            hit = cache[id(self)] = (self, original.fget(self))
        return hit[1]

    Expectation.configuration = property(configuration, doc=original.__doc__)


@contextlib.contextmanager
def memoized_configurations() -> Iterator[None]:
    """Within the block, each expectation builds its `configuration` once (this thread; nests)."""
    install()
    outer = getattr(_local, "cache", None)
    if outer is None:
        _local.cache = {}
    try:
        yield
    finally:
        if outer is None:
            _local.cache = None
