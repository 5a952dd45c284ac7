"""The Great Expectations file store under concurrent runs, as the daily DAG makes them with
`max_active_runs` > 1 under LocalExecutor: one process per task, all writing to `$MLOPS_HOME/gx`."""

from __future__ import annotations

import json
import multiprocessing
import os
import re
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import yaml

from mlops.core.interval import Interval
from mlops.io import gx_checks, gx_views
from mlops.stages.ingest import ingest
from mlops.stages.validate import validate

DAYS = [f"2013-02-{d:02d}" for d in range(1, 5)]


def _validate_day(day: str) -> tuple[str, int, bool]:
    """In a fresh process (spawn), as a task runs: validate one day with Data Docs."""
    import traceback

    from mlops.core.config import load_pipeline

    try:
        report = validate(load_pipeline("flights"), Interval.parse(day), references={}, data_docs=True)
    except Exception as exc:  # the child's traceback, which the pool would otherwise drop
        raise RuntimeError(f"validating {day} failed:\n{traceback.format_exc()}") from exc
    return day, len(report.checks), report.success


def _providers_then_validate(day: str) -> tuple[list[str], tuple[str, int, bool]]:
    """In a fresh process: the GX context's configuration providers, then a day validated."""
    _, context, _ = gx_checks._context()
    return [type(p).__name__ for p in context.config_provider._providers.values()], _validate_day(day)


def test_four_processes_validating_at_once_leave_a_whole_store_and_site(mlops_home, flights_cfg):
    ingest(flights_cfg, Interval.parse(f"{DAYS[0]}..2013-02-05"))
    os.environ["MLOPS_HOME"] = str(mlops_home)  # (monkeypatched by the fixture) the children inherit it
    with ProcessPoolExecutor(4, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = sorted(pool.map(_validate_day, DAYS))
    assert [d for d, _, _ in done] == DAYS
    assert len({n for _, n, _ in done}) == 1 and done[0][1] > 20  # every run ran the whole suite

    root = mlops_home / "gx" / "gx"
    # one stored suite for the daily partitions, not one per day; valid JSON after concurrent writes
    suites = sorted(p.name for p in (root / "expectations").glob("*.json"))
    assert suites == ["flights_partition.json"], suites
    assert json.loads((root / "expectations" / "flights_partition.json").read_text())["expectations"]
    # every run's result is stored, whole
    results = list((root / "uncommitted" / "validations").rglob("*.json"))
    names = sorted(json.loads(p.read_text())["meta"]["run_id"]["run_name"] for p in results)
    assert names == DAYS
    # the site: every run listed on the index, one page per result, the index bounded
    index = gx_checks.data_docs_index().read_text()
    assert all(day in index for day in DAYS)
    pages = list((gx_checks.data_docs_index().parent / "validations").rglob("*.html"))
    assert len(pages) == len(DAYS)
    config = yaml.safe_load((root / "great_expectations.yml").read_text())
    [site] = config["data_docs_sites"].values()
    assert site["site_index_builder"]["validation_results_limit"] == gx_checks.DATA_DOCS_INDEX_LIMIT
    assert config["config_variables_file_path"] is None  # dropped once: no YAML parse per substitution
    # a process that opens the store now reads no config variables file, and still validates
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        providers, (_, checks, _) = pool.submit(_providers_then_validate, DAYS[0]).result()
    assert "_ConfigurationVariablesConfigurationProvider" not in providers, providers
    assert "_EnvironmentConfigurationProvider" in providers and checks == done[0][1]


def _lock_is_held_here(project_root: Path) -> bool:
    """Whether this process holds the GX store's lock: another open file cannot lock it then."""
    import fcntl

    with (project_root / "store.lock").open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(fh, fcntl.LOCK_UN)
        return False


def test_a_day_is_validated_outside_the_store_lock_and_its_data_docs_built_under_it(
    mlops_home, flights_cfg, monkeypatch
):
    """Runs of several days at once validate side by side: the lock covers reading the checkpoint and
    the Data Docs update, not GX's validator; the result is written whole, under a name GX never lists."""
    from great_expectations.validator.v1_validator import Validator

    from mlops.io import gx_views

    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-03"))
    validate(flights_cfg, Interval.parse("2013-02-01"), references={}, data_docs=True)  # the store exists
    root = mlops_home / "gx"
    seen: dict[str, list[bool]] = {"validator": [], "data_docs": []}
    validate_suite, build = Validator.validate_expectation_suite, gx_views.LatestSiteBuilder._build

    def watched_validate(self, *args, **kwargs):
        seen["validator"].append(_lock_is_held_here(root))
        return validate_suite(self, *args, **kwargs)

    def watched_build(self, *args, **kwargs):
        seen["data_docs"].append(_lock_is_held_here(root))
        return build(self, *args, **kwargs)

    monkeypatch.setattr(Validator, "validate_expectation_suite", watched_validate)
    monkeypatch.setattr(gx_views.LatestSiteBuilder, "_build", watched_build)
    report = validate(flights_cfg, Interval.parse("2013-02-02"), references={}, data_docs=True)
    assert report.checks and seen == {"validator": [False], "data_docs": [True]}
    assert not _lock_is_held_here(root)  # released after the update
    assert "2013-02-02" in gx_checks.data_docs_index().read_text()

    _, context, _ = gx_checks._context()
    backend = context.validation_results_store.store_backend
    assert backend.filepath_suffix == ".json"  # so a temporary `.<name>.<pid>.tmp` is never a key
    stored = list((root / "gx" / "uncommitted" / "validations").rglob("*"))
    assert not [p for p in stored if p.name.endswith(".tmp")]
    names = sorted(json.loads(p.read_text())["meta"]["run_id"]["run_name"] for p in stored if p.suffix == ".json")
    assert names == ["2013-02-01", "2013-02-02"] and len(backend.list_keys()) == 2


def test_an_unchanged_suite_is_not_rewritten_and_a_changed_one_is(mlops_home, flights_cfg):
    """The stored suite, definition and checkpoint are written once; a changed rule rewrites the suite."""
    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-03"))
    root = mlops_home / "gx" / "gx"
    stored = [root / "expectations" / "flights_partition.json", root / "checkpoints" / "flights_partition.json"]
    validate(flights_cfg, Interval.parse("2013-02-01"), references={}, data_docs=True)
    written = [(p.stat().st_mtime_ns, p.read_text()) for p in stored]
    validate(flights_cfg, Interval.parse("2013-02-02"), references={}, data_docs=True)
    assert [(p.stat().st_mtime_ns, p.read_text()) for p in stored] == written

    v = flights_cfg.validation
    changed = flights_cfg.model_copy(update={"validation": v.model_copy(update={"max_rows": v.max_rows + 1})})
    report = validate(changed, Interval.parse("2013-02-02"), references={}, data_docs=True)
    bounds = [c["expected"] for c in report.checks if c["check"] == gx_checks.ROW_COUNT]
    assert {"min_value": v.min_rows, "max_value": v.max_rows + 1} in bounds
    suite = json.loads(stored[0].read_text())
    assert v.max_rows + 1 in [e["kwargs"].get("max_value") for e in suite["expectations"]]


def test_stored_results_are_the_text_gx_itself_writes(mlops_home, flights_cfg):
    """`_serialized_once` writes what GX's own `ValidationResultsStore.serialize` writes, byte for byte,
    for a day that passes and one whose row, range and category checks fail (unexpected values listed)."""
    from great_expectations.data_context.store.validation_results_store import ValidationResultsStore

    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-03"))
    v = flights_cfg.validation
    ranges, categories = {**v.ranges, "hour": (6, 12)}, {"origin": ["JFK"]}
    strict = v.model_copy(update={"min_rows": 5, "max_rows": 10, "ranges": ranges, "categories": categories})
    assert validate(flights_cfg, Interval.parse("2013-02-01"), references={}, data_docs=True).success
    strict_cfg = flights_cfg.model_copy(update={"validation": strict})
    failed = validate(strict_cfg, Interval.parse("2013-02-02"), references={}, data_docs=True)
    assert {c["check"] for c in failed.failed} >= {
        gx_checks.ROW_COUNT,
        "expect_column_values_to_be_between",
        "expect_column_values_to_be_in_set",
    }
    _, context, _ = gx_checks._context()
    store = context.validation_results_store
    assert store.serialize is not ValidationResultsStore.serialize.__get__(store)  # ours is in place
    files = sorted((mlops_home / "gx" / "gx" / "uncommitted" / "validations").rglob("*.json"))
    assert len(files) == 2
    for path in files:
        text = path.read_text()
        assert ValidationResultsStore.serialize(store, store.deserialize(text)) == text, path


def test_a_data_docs_update_constructs_one_site_builder_and_links_the_page_gx_links(
    mlops_home, flights_cfg, monkeypatch
):
    """A checkpoint run's Data Docs update constructs one site builder, which also answers the page's
    URL (GX constructs a second one for that): the URL GX's own path gives, of a page that is there."""
    import functools

    from great_expectations.render.renderer import site_builder

    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-03"))
    validate(flights_cfg, Interval.parse("2013-02-01"), references={}, data_docs=True)
    constructed = []
    original = site_builder.HtmlSiteStore.__init__

    @functools.wraps(original)
    def counted(self, *args, **kwargs):
        constructed.append(1)
        original(self, *args, **kwargs)

    monkeypatch.setattr(site_builder.HtmlSiteStore, "__init__", counted)
    validate(flights_cfg, Interval.parse("2013-02-02"), references={}, data_docs=True)
    assert len(constructed) == 1  # GX alone: 2

    _, context, _ = gx_checks._context()
    [key] = [k for k in context.validation_results_store.list_keys() if k.run_id.run_name == "2013-02-02"]
    constructed.clear()
    with gx_views.checkpoint_run([]):
        context.build_data_docs(resource_identifiers=[key])
        ours = context.get_docs_sites_urls(resource_identifier=key)
    assert len(constructed) == 1
    gx_own = context.get_docs_sites_urls(resource_identifier=key)  # outside the block: a builder of its own
    assert len(constructed) == 2
    assert ours == gx_own and len(ours) == 1
    assert Path(ours[0]["site_url"].removeprefix("file://")).is_file()


def test_a_validated_day_reads_its_suite_once_and_its_page_is_gx_own(mlops_home, flights_cfg, monkeypatch):
    """The page renderer reads the suite for its meta: within a checkpoint run it gets the run's suite, read
    under the lock with the checkpoint, not the store again; a full rebuild (GX reading the store) renders
    the same page."""
    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-03"))
    validate(flights_cfg, Interval.parse("2013-02-01"), references={}, data_docs=True)
    _, context, _ = gx_checks._context()
    store = context.expectations_store
    reads = []
    original = store.get
    monkeypatch.setattr(store, "get", lambda *a, **k: reads.append(a) or original(*a, **k))
    validate(flights_cfg, Interval.parse("2013-02-02"), references={}, data_docs=True)
    assert len(reads) == 1, reads  # the checkpoint's suite (GX alone: again for the page)

    suite = gx_checks.build_suite(flights_cfg)
    with gx_views.checkpoint_run([suite]):
        assert context.suites.get(suite.name) is suite
    assert context.suites.get(suite.name) is not suite and len(reads) == 2  # outside the block: the store's

    [page] = (gx_checks.data_docs_index().parent / "validations").rglob("*2013-02-02*/**/*.html")
    rendered = _timeless(page.read_text())
    context.build_data_docs()
    assert _timeless(page.read_text()) == rendered


def test_a_checkpoint_stored_with_other_results_is_replaced_once(mlops_home, flights_cfg):
    """A store written before RESULT_FORMAT (GX's default, SUMMARY) gets its checkpoint replaced, once."""
    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-04"))
    validate(flights_cfg, Interval.parse("2013-02-01"), references={}, data_docs=True)
    gx, context, _ = gx_checks._context()
    name = "flights_partition"
    stored = context.checkpoints.get(name)
    context.checkpoints.delete(name)
    context.checkpoints.add(
        gx.Checkpoint(
            name=name,
            validation_definitions=stored.validation_definitions,
            actions=stored.actions,
            result_format="SUMMARY",
        )
    )
    path = mlops_home / "gx" / "gx" / "checkpoints" / f"{name}.json"
    assert json.loads(path.read_text())["result_format"] == "SUMMARY"

    validate(flights_cfg, Interval.parse("2013-02-02"), references={}, data_docs=True)
    assert json.loads(path.read_text())["result_format"] == gx_checks.RESULT_FORMAT == "BASIC"
    written = path.stat().st_mtime_ns, path.read_text()
    validate(flights_cfg, Interval.parse("2013-02-03"), references={}, data_docs=True)
    assert (path.stat().st_mtime_ns, path.read_text()) == written
    results = {
        json.loads(p.read_text())["meta"]["run_id"]["run_name"]: json.loads(p.read_text())
        for p in (mlops_home / "gx" / "gx" / "uncommitted" / "validations").rglob("*.json")
    }
    # a row check's stored result: BASIC's fields, without SUMMARY's row indices
    nulls = [r["result"] for r in results["2013-02-03"]["results"] if r["expectation_config"]["type"].endswith("null")]
    assert nulls and all("partial_unexpected_list" in r and "partial_unexpected_index_list" not in r for r in nulls)


def _timeless(page: str) -> str:
    """A Data Docs page without what changes from one rendering to the next: times and element ids."""
    page = re.sub(r"\d{8}T\d{6}\.\d{6}Z", "T", page)
    return re.sub(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}", "U", page)


def test_data_docs_templates_are_compiled_once_and_render_gx_own_pages(mlops_home, flights_cfg):
    """`gx_views` renders what GX's default views render, from templates compiled once (`cache/jinja`)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    from mlops.io import gx_views

    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-04"))
    validate(flights_cfg, Interval.parse("2013-02-01"), references={}, data_docs=True)
    entries = {p: p.stat().st_mtime_ns for p in (mlops_home / "cache" / "jinja").glob("__jinja2_*.cache")}
    assert len(entries) > 10  # the page, index and section templates, each compiled once
    validate(flights_cfg, Interval.parse("2013-02-02"), references={}, data_docs=True)
    assert {p: p.stat().st_mtime_ns for p in (mlops_home / "cache" / "jinja").glob("__jinja2_*.cache")} == entries

    _, context, _ = gx_checks._context()
    store = context.validation_results_store
    result = store.get(store.list_keys()[0])
    # (rendering changes the document it is given: one document per view)
    ours = gx_views.CachedPageView().render(ValidationResultsPageRenderer().render(result))
    theirs = DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))
    assert _timeless(ours) == _timeless(theirs) and "values must never be null" in ours

    from jinja2.bccache import bc_magic

    damaged = bc_magic + b"damaged"
    for path in entries:  # Jinja's own cache raises on these (an unreadable source checksum)
        path.write_bytes(damaged)
    validate(flights_cfg, Interval.parse("2013-02-03"), references={}, data_docs=True)  # compiles them again
    context.build_data_docs()  # and the suite page's (a validation renders it only after the suite changed)
    assert all(p.read_bytes() != damaged and p.read_bytes().startswith(bc_magic) for p in entries)


def test_a_validation_builds_only_its_page_and_the_suite_page_only_after_the_suite_changed(mlops_home, flights_cfg):
    """`gx_views.ChangedPagesSectionBuilder`: the pages it builds are GX's own (a full rebuild gives the same)."""
    import time

    import great_expectations as gx

    from mlops.io import lake
    from mlops.io.paths import raw_dir

    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-05"))
    site = gx_checks.data_docs_index().parent
    suite = gx_checks.build_suite(flights_cfg)
    suite_page = site / "expectations" / f"{suite.name}.html"

    def pages() -> dict:
        return {p: p.stat().st_mtime_ns for p in site.glob("**/*.html")}

    validate(flights_cfg, Interval.parse("2013-02-01"), references={}, data_docs=True)
    first = pages()
    assert suite_page in first and len([p for p in first if "validations" in p.parts]) == 1
    time.sleep(0.01)
    validate(flights_cfg, Interval.parse("2013-02-02"), references={}, data_docs=True)
    second = pages()
    new = set(second) - set(first)
    assert len(new) == 1 and "validations" in next(iter(new)).parts  # the day's own page
    assert {p: second[p] for p in first if p.name != "index.html"} == {
        p: t for p, t in first.items() if p.name != "index.html"
    }  # the suite page and the other day's page not rendered again
    assert second[site / "index.html"] > first[site / "index.html"]  # the index lists the new result

    # the suite changes (another version stored): its page is rendered again, with the change
    fewer = gx.ExpectationSuite(
        name=suite.name,
        expectations=[e for e in suite.expectations if e.expectation_type != "expect_column_values_to_be_in_set"],
    )
    before = suite_page.read_text()
    df = lake.read_partition(raw_dir(flights_cfg.name), "2013-02-03")
    gx_checks.run_suite(fewer, df, run_name="fewer", data_docs=True)
    assert pages()[suite_page] > second[suite_page] and suite_page.read_text() != before
    validate(flights_cfg, Interval.parse("2013-02-04"), references={}, data_docs=True)  # the full suite again
    assert _timeless(suite_page.read_text()) == _timeless(before)

    # a full rebuild (GX's own section builder path) renders the same pages
    built = {p: _timeless(p.read_text()) for p in pages() if p.name != "index.html"}
    _, context, _ = gx_checks._context()
    context.build_data_docs()
    assert {p: _timeless(p.read_text()) for p in built} == built


def _gx_own_index(project: Path, copy: Path) -> str:
    """The index page GX's own site and index builders render for a copy of the GX project (full rebuild)."""
    import shutil

    import great_expectations as gx

    shutil.copytree(project, copy)
    context = gx.get_context(mode="file", project_root_dir=str(copy.parent))
    sites = context.variables.data_docs_sites
    for site in sites.values():
        site.pop("module_name", None)
        site["class_name"] = "SiteBuilder"
        index = site["site_index_builder"]
        index.pop("module_name", None)
        index["class_name"] = "DefaultSiteIndexBuilder"
    context.variables.data_docs_sites = sites
    context.build_data_docs()
    return (copy / "uncommitted" / "data_docs" / "local_site" / "index.html").read_text()


def test_an_update_lists_no_store_and_its_index_is_gx_own(mlops_home, flights_cfg, tmp_path, monkeypatch):
    """`gx_views.LatestSiteBuilder` / `LatestResultsIndexBuilder`: a validation's update walks no folder of
    results or pages and rewrites no static file; its index is the one GX's builders render from scratch,
    also after a result is deleted, a day validated again, or the kept list lost."""
    from great_expectations.data_context.store.tuple_store_backend import TupleFilesystemStoreBackend

    from mlops.io import gx_views

    days = [f"2013-02-{d:02d}" for d in range(1, 11)]  # more than the index lists
    ingest(flights_cfg, Interval.parse("2013-02-01..2013-02-11"))
    project = mlops_home / "gx" / "gx"
    site = gx_checks.data_docs_index().parent
    listed: list[str] = []
    own_list_keys = TupleFilesystemStoreBackend.list_keys

    def counting(self, prefix=()):
        listed.append(str(self.full_base_directory) + "/" + "/".join(self.filepath_prefix or ()))
        return own_list_keys(self, prefix)

    monkeypatch.setattr(TupleFilesystemStoreBackend, "list_keys", counting)
    for day in days[:2]:
        validate(flights_cfg, Interval.parse(day), references={}, data_docs=True)
    static = {p: p.stat().st_mtime_ns for p in (site / "static").rglob("*") if p.is_file()}
    assert len(static) > 10
    listed.clear()
    for day in days[2:]:
        validate(flights_cfg, Interval.parse(day), references={}, data_docs=True)
    assert not [p for p in listed if "validations" in p], listed  # only the two suites' folders
    assert {p: p.stat().st_mtime_ns for p in static} == static
    kept = json.loads((site / gx_views.LATEST).read_text())
    assert [e["key"][1] for e in kept] == days[::-1][: gx_checks.DATA_DOCS_INDEX_LIMIT]
    assert all(e["success"] in (True, False) and e["asset_name"] == "partition" for e in kept)
    monkeypatch.setattr(TupleFilesystemStoreBackend, "list_keys", own_list_keys)
    ours = gx_checks.data_docs_index().read_text()
    assert _timeless(ours) == _timeless(_gx_own_index(project, tmp_path / "a" / "gx"))

    # the newest result deleted (its page stays): gone from the next update's index; a day validated again
    # is listed once; a static file lost is copied again
    newest = next(p for p in (project / "uncommitted" / "validations").rglob("*.json") if days[-1] in p.parts)
    newest.unlink()
    (next(iter(static))).unlink()
    validate(flights_cfg, Interval.parse(days[3]), references={}, data_docs=True)
    index = gx_checks.data_docs_index().read_text()
    assert days[-1] not in index and index.count(f"{days[3]}/") == index.count(f"{days[4]}/") > 0
    assert next(iter(static)).exists()
    assert _timeless(index) == _timeless(_gx_own_index(project, tmp_path / "b" / "gx"))

    # the kept list unreadable: the update lists the stores once (GX's way), and keeps the list again
    (site / gx_views.LATEST).write_text("{not json")
    validate(flights_cfg, Interval.parse(days[5]), references={}, data_docs=True)
    assert json.loads((site / gx_views.LATEST).read_text())
    ours = gx_checks.data_docs_index().read_text()
    assert _timeless(ours) == _timeless(_gx_own_index(project, tmp_path / "c" / "gx"))
