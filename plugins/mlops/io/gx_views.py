"""Great Expectations' Data Docs views (compiled Jinja templates kept on disk) and a section builder
that builds only the pages of the resources it is given.

GX makes a new Jinja environment for each page it renders (`DefaultJinjaView.__init__`), so every
validation parsed and compiled the same templates again (about 50 compilations a run, 0.07-0.19 s
of CPU of a 1.1-1.2 s daily validate task on this machine, depending on the measurement). These
views are GX's own, rendering the same templates into the same pages, with a Jinja bytecode cache
under `$MLOPS_HOME/cache/jinja`: a template is compiled once per machine and Python version, then
loaded from there by every process. Jinja keys each entry by template and checks it against the
template's source (a changed or upgraded template is compiled again), and writes it to a temporary
name renamed into place. `gx_checks` names these classes in the Data Docs site's config
(`site_section_builders`, `site_index_builder`).

`ChangedPagesSectionBuilder` is GX's section builder for one validation's update: GX's lists every key
of its source store to find the given ones (every stored validation result, one more each day), and
renders the suite's page again with each validation although the suite seldom changes. This one looks
the given keys up directly, and renders a suite page only when it is missing or older than the suite's
stored file; the pages it renders are GX's own.

This module imports Great Expectations at its top: GX imports it when it builds Data Docs, and the
preload (`plugins/preload.py`, which imports GX anyway).
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from great_expectations.data_context.types.resource_identifiers import ExpectationSuiteIdentifier
from great_expectations.render.renderer.site_builder import DefaultSiteSectionBuilder
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import FileSystemBytecodeCache
from jinja2.bccache import Bucket

from mlops.io.paths import cache_dir

log = logging.getLogger(__name__)


class _CheckedBytecodeCache(FileSystemBytecodeCache):
    """Jinja's file cache, reading a damaged entry as a miss (Jinja itself raises on some damage)."""

    def load_bytecode(self, bucket: Bucket) -> None:
        try:
            super().load_bytecode(bucket)
        except Exception as exc:  # e.g. a truncated checksum: UnpicklingError; the template is compiled again
            log.warning("Data Docs template cache entry %s unreadable (%s): compiling the template", bucket.key, exc)
            bucket.reset()


@functools.cache
def _bytecode_cache(folder: str) -> FileSystemBytecodeCache:
    Path(folder).mkdir(parents=True, exist_ok=True)
    return _CheckedBytecodeCache(folder)


def _cached(view) -> None:
    view.env.bytecode_cache = _bytecode_cache(str(cache_dir() / "jinja"))


class CachedPageView(DefaultJinjaPageView):
    """GX's page view (validation results, suites), its compiled templates cached on disk."""

    def __init__(self, custom_styles_directory=None, custom_views_directory=None) -> None:
        super().__init__(custom_styles_directory, custom_views_directory)
        _cached(self)


class CachedIndexPageView(DefaultJinjaIndexPageView):
    """GX's index page view, its compiled templates cached on disk."""

    def __init__(self, custom_styles_directory=None, custom_views_directory=None) -> None:
        super().__init__(custom_styles_directory, custom_views_directory)
        _cached(self)


class _OnlyKeys:
    """A GX store that lists only `keys` (those it holds); everything else is the store's own."""

    def __init__(self, store, keys: list) -> None:
        self._store = store
        self._keys = keys

    def list_keys(self) -> list:
        return [key for key in self._keys if self._store.has_key(key)]

    def __getattr__(self, name: str):
        return getattr(self._store, name)


def _file(backend, key: tuple) -> Path | None:
    """The file a filesystem store backend keeps `key` in; None for other backends.

    Uses the backend's own key-to-path rule (`_convert_key_to_filepath`, private in GX 1.24, which we pin);
    `tests/unit/test_gx_store.py` fails if it stops finding the suite's page.
    """
    base = getattr(backend, "full_base_directory", None)
    return None if base is None else Path(base) / backend._convert_key_to_filepath(key)


class ChangedPagesSectionBuilder(DefaultSiteSectionBuilder):
    """GX's section builder; given resources, it builds their pages without listing the source store,
    and a suite's page only when the suite's stored file is newer than the page (see the module's docstring).
    Without resources (a full rebuild, `mlops` never asks for one daily) it is GX's own build."""

    def build(self, resource_identifiers=None) -> None:
        if not resource_identifiers:
            return super().build(resource_identifiers)
        keys = [
            key
            for key in resource_identifiers
            if isinstance(key, self.source_store.key_class) and not self._page_is_current(key)
        ]
        if not keys:
            return None
        source = self.source_store
        self.source_store = _OnlyKeys(source, keys)
        try:
            return super().build(keys)
        finally:
            self.source_store = source

    def _page_is_current(self, key) -> bool:
        """True when `key` is a suite whose page exists and is newer than its stored file."""
        if not isinstance(key, ExpectationSuiteIdentifier):
            return False
        stored = _file(self.source_store.store_backend, key.to_tuple())
        page = _file(self.target_store.store_backends[ExpectationSuiteIdentifier], key.to_tuple())
        try:
            return stored is not None and page is not None and page.stat().st_mtime_ns > stored.stat().st_mtime_ns
        except FileNotFoundError:
            return False
