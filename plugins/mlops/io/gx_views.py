"""Great Expectations' Data Docs views, with their compiled Jinja templates kept on disk.

GX makes a new Jinja environment for each page it renders (`DefaultJinjaView.__init__`), so every
validation parsed and compiled the same templates again (about 50 compilations a run, 0.07-0.19 s
of CPU of a 1.1-1.2 s daily validate task on this machine, depending on the measurement). These
views are GX's own, rendering the same templates into the same pages, with a Jinja bytecode cache
under `$MLOPS_HOME/cache/jinja`: a template is compiled once per machine and Python version, then
loaded from there by every process. Jinja keys each entry by template and checks it against the
template's source (a changed or upgraded template is compiled again), and writes it to a temporary
name renamed into place. `gx_checks` names these classes in the Data Docs site's config
(`site_section_builders`, `site_index_builder`).

This module imports Great Expectations at its top: only GX imports it, when it builds Data Docs.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

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
