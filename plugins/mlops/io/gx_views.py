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

`LatestSiteBuilder` and `LatestResultsIndexBuilder` keep an update's cost independent of the results
stored. GX's index builder lists every stored validation result and every page on each update (two
walks of a folder tree that grows by a result a day), then reads each listed result back through its
schema (marshmallow) for two fields; GX's site builder copies its 20 static files again on each update.
Here an update's index starts from the list it kept last time (`LATEST`, in the site's folder, with
each result's index fields) and adds the update's new results; when a listed result or page is gone,
GX lists the stores instead, that once (an older result may take its place). The static files are
copied when one is missing or differs in size. A full rebuild (no resources given) is GX's own, and
writes the list again. The index page is GX's (same renderer, view and entries:
`tests/unit/test_gx_store.py` compares it with the one GX's own builders render from scratch).

Within a checkpoint's run (`checkpoint_run`), the Data Docs update uses what the run holds already: the
site builder that built the pages answers their URLs (GX constructs a second one for that), and the
page renderer gets the run's suite instead of reading the store for its meta.

This module imports Great Expectations at its top: GX imports it when it builds Data Docs, and the
preload (`plugins/preload.py`, which imports GX anyway).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

from great_expectations.data_context.types.resource_identifiers import (
    ExpectationSuiteIdentifier,
    ValidationResultIdentifier,
)
from great_expectations.data_context.util import file_relative_path
from great_expectations.render.renderer import site_builder as gx_site_builder
from great_expectations.render.renderer.site_builder import (
    DefaultSiteIndexBuilder,
    DefaultSiteSectionBuilder,
    SiteBuilder,
)
from great_expectations.render.util import resource_key_passes_run_name_filter
from great_expectations.render.view import DefaultJinjaIndexPageView, DefaultJinjaPageView
from jinja2 import FileSystemBytecodeCache
from jinja2.bccache import Bucket

from mlops.io import locks
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


_run = threading.local()  # within `checkpoint_run()` (this thread): `sites` and `suites`, see there


@contextlib.contextmanager
def checkpoint_run(suites: list) -> Iterator[None]:
    """Within the block (this thread), a checkpoint run's Data Docs update uses what the run holds already.

    - The site builder that builds the Data Docs also answers their URLs (`share_site_builders`).
    - `context.suites.get` of one of `suites` returns it (`serve_run_suites`): GX's validation page
      renderer reads the stored suite for its meta alone. The caller must have read `suites` from the
      store under its lock, and compared them with its own (`gx_checks._stored_checkpoint`).

    The run's results are still read back from the store to be rendered: GX's renderers take the
    JSON types a stored result reads back as, not the numpy values a result holds in memory (its
    `num_to_str` refuses a numpy float). The pages are GX's own, byte for byte (`tests/unit/test_gx_store.py`).
    """
    outer = getattr(_run, "sites", None), getattr(_run, "suites", None)
    _run.sites, _run.suites = {}, {suite.name: suite for suite in suites}
    try:
        yield
    finally:
        _run.sites, _run.suites = outer


def share_site_builders(context) -> None:
    """Make a GX context construct each Data Docs site builder once per `checkpoint_run`, not twice.

    GX 1.24's `UpdateDataDocsAction` builds the site with one builder
    (`_init_site_builder_for_data_docs_site_creation`), then constructs a second from the same site config
    (`get_docs_sites_urls` -> `_load_site_builder_from_site_config`) only to ask it the URL of the run's
    page, which depends on the site's store alone. Constructing one (its stores, section builders,
    renderers and Jinja views) is 0.015-0.03 s of a validated day. Replaces both methods on this one
    context object; outside the block they are GX's own.
    """
    build = context._init_site_builder_for_data_docs_site_creation
    load = context._load_site_builder_from_site_config

    def for_build(site_name: str, site_config: dict):
        builder = build(site_name=site_name, site_config=site_config)
        sites = getattr(_run, "sites", None)
        if sites is not None:
            sites[_site_key(site_config)] = builder
        return builder

    def for_urls(site_config: dict):
        sites = getattr(_run, "sites", None)
        builder = None if sites is None else sites.get(_site_key(site_config))
        return builder if builder is not None else load(site_config)

    context._init_site_builder_for_data_docs_site_creation = for_build
    context._load_site_builder_from_site_config = for_urls


def _site_key(site_config: dict) -> str:
    return json.dumps(site_config, sort_keys=True, default=str)


def serve_run_suites(context) -> None:
    """Make `context.suites.get` return, within `checkpoint_run`, the run's own suite of that name (read
    from the store under its lock) instead of reading the store again. Replaces `get` on this one factory."""
    factory = context.suites
    original = factory.get

    def get(name: str):
        suites = getattr(_run, "suites", None)
        suite = None if suites is None else suites.get(name)
        return suite if suite is not None else original(name)

    factory.get = get


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


# The list of the results the index shows, with their index fields, in the site's folder.
LATEST = ".mlops-latest-validations.json"


class LatestSiteBuilder(SiteBuilder):
    """GX's site builder, handing an update's resources to the index builder, copying static files only when needed.

    What `SiteBuilder.build` does (GX 1.24), in the same order: each section's pages, the static files,
    the index; under the GX store's lock (`locks.gx_store`), which the validation itself does not hold.
    """

    def build(self, resource_identifiers=None, build_index: bool = True):
        with locks.gx_store(Path(self.data_context.root_directory).parent):
            return self._build(resource_identifiers, build_index)

    def _build(self, resource_identifiers, build_index: bool):
        for section in self.site_section_builders.values():
            section.build(resource_identifiers=resource_identifiers)
        if resource_identifiers is None or not _static_files_current(self.target_store):
            self.target_store.copy_static_assets()
        index = self.site_index_builder
        if isinstance(index, LatestResultsIndexBuilder):
            index.new_results = (
                None
                if resource_identifiers is None
                else [k for k in resource_identifiers if isinstance(k, ValidationResultIdentifier)]
            )
        _, links = index.build(build_index=build_index)
        return self.get_resource_url(only_if_exists=False), links


def _static_files_current(target_store) -> bool:
    """Whether the site holds each of GX's static files, with the size of GX's copy (a missing or
    partly written file, or another GX version's, is copied again)."""
    backend = target_store.store_backends.get("static_assets")
    base = getattr(backend, "full_base_directory", None)
    if base is None:
        return False
    source = Path(file_relative_path(gx_site_builder.__file__, os.path.join("..", "view", "static")))
    if not source.is_dir():
        return False
    for path in source.rglob("*"):
        if path.is_file() and path.name != ".DS_Store":
            copy = Path(base) / "static" / path.relative_to(source)
            try:
                if copy.stat().st_size != path.stat().st_size:
                    return False
            except FileNotFoundError:
                return False
    return True


class LatestResultsIndexBuilder(DefaultSiteIndexBuilder):
    """GX's index builder; an update (`new_results` set by LatestSiteBuilder) lists no store and reads
    no result through GX's schema (see the module's docstring). Without `new_results`, or without a
    kept list, GX's own listing."""

    new_results: list | None = None
    _summaries: dict = {}  # noqa: RUF012 (replaced per build) key tuple -> index fields of the listed results

    def _build_validation_and_profiling_result_site_keys(self, skip_and_clean_missing: bool) -> list:
        new, self.new_results = self.new_results, None
        kept = None if new is None else self._read_latest()
        summaries = {tuple(e["key"]): e for e in kept or ()}
        keys = [ValidationResultIdentifier.from_tuple(k) for k in summaries]
        if kept is None or not all(self._page_and_result_exist(k) for k in keys):
            # a full rebuild, no kept list, or a listed result or page gone (an older one may take its
            # place): GX lists both stores, and drops pages whose result is gone
            keys = super()._build_validation_and_profiling_result_site_keys(skip_and_clean_missing)
        else:
            keys += [k for k in new if k.to_tuple() not in summaries]
        latest = self._latest(keys)
        self._summaries = {k.to_tuple(): summaries.get(k.to_tuple()) or self._summary(k) for k in latest}
        self._write_latest(latest)
        return latest

    def _latest(self, keys: list) -> list:
        """The keys the index lists: GX's filter, newest first, at most `validation_results_limit`."""
        config = self.site_section_builders_config.get("validations", "None")
        if not config or config in gx_site_builder.FALSEY_YAML_STRINGS:
            return []
        keys = [k for k in keys if resource_key_passes_run_name_filter(k, config["run_name_filter"])]
        keys = sorted(keys, key=lambda k: k.run_id.run_time, reverse=True)
        return keys[: self.validation_results_limit] if self.validation_results_limit else keys

    def _add_validations_to_index_links(self, index_links_dict, keys: list) -> None:
        """GX's entries for `keys` (newest first), their fields read from the kept list or the stored JSON."""
        for key in keys:
            summary = self._summaries.get(key.to_tuple())
            if summary is None:
                log.warning("Validation result not found: %s - skipping", key.to_tuple())
                continue
            self.add_resource_info_to_index_links_dict(
                index_links_dict=index_links_dict,
                expectation_suite_name=key.expectation_suite_identifier.name,
                section_name="validations",
                batch_identifier=key.batch_identifier,
                run_id=key.run_id,
                validation_success=summary["success"],
                run_time=key.run_id.run_time,
                run_name=key.run_id.run_name,
                asset_name=summary["asset_name"],
                batch_kwargs=summary["batch_kwargs"],
                batch_spec=summary["batch_spec"],
            )

    def _source_backend(self):
        name = (self.source_stores or {}).get("validations") or self.data_context.validation_results_store_name
        return self.data_context.stores[name].store_backend

    def _page_and_result_exist(self, key) -> bool:
        page = self.target_store.store_backends[ValidationResultIdentifier]
        return page.has_key(key.to_tuple()) and self._source_backend().has_key(key.to_tuple())

    def _summary(self, key) -> dict | None:
        """What the index shows of a stored result (`success`, asset name, batch kwargs and spec), read as JSON."""
        path = _file(self._source_backend(), key.to_tuple())
        try:
            stored = json.loads(path.read_text()) if path is not None else None
        except (OSError, ValueError) as exc:
            log.warning("Validation result %s unreadable (%s) - skipping", key.to_tuple(), exc)
            return None
        if stored is None:  # not a file store: GX reads it
            result = self.data_context.validation_results_store.get(key)
            stored = {"success": result.success, "meta": result.meta}
        meta = stored.get("meta") or {}
        batch_kwargs, batch_spec = meta.get("batch_kwargs", {}), meta.get("batch_spec", {})
        asset = batch_kwargs.get("data_asset_name") or batch_spec.get("data_asset_name")
        if not asset and "active_batch_definition" in meta:
            asset = meta["active_batch_definition"].get("data_asset_name")
        return {
            "key": list(key.to_tuple()),
            "success": stored.get("success"),
            "asset_name": asset or None,
            "batch_kwargs": batch_kwargs,
            "batch_spec": batch_spec,
        }

    def _latest_path(self) -> Path | None:
        base = getattr(self.target_store.store_backends[ValidationResultIdentifier], "full_base_directory", None)
        return None if base is None else Path(base) / LATEST

    def _read_latest(self) -> list[dict] | None:
        path = self._latest_path()
        try:
            kept = json.loads(path.read_text()) if path is not None else None
        except (OSError, ValueError):
            return None
        return kept if isinstance(kept, list) and all(isinstance(e, dict) and "key" in e for e in kept) else None

    def _write_latest(self, keys: list) -> None:
        path = self._latest_path()
        if path is None:
            return
        entries = [self._summaries[k.to_tuple()] for k in keys if self._summaries.get(k.to_tuple())]
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(entries, default=str))
        os.replace(tmp, path)
