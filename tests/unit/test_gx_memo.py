"""mlops.io.gx_memo: expectation configurations built once per validation, freshness read once, same results.

Real Great Expectations on real ingested days, one passing and one broken in every way the suite
checks (nulls, types, ranges, categories, duplicate keys, a missing column): every result format
gives the same results with the memo as without it, through `batch.validate` and through the stored
checkpoint (its stored result and the Data Docs page of it). The checkpoint trusted as fresh gives the
same stored result without reading its suite, definition or itself back from the store, and a stale
copy is still refused while it runs.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator

import numpy as np
import pytest

from mlops.core.columns import ROW_KEY
from mlops.core.interval import Interval
from mlops.io import gx_checks, gx_memo, lake
from mlops.io.paths import raw_dir
from mlops.stages.ingest import ingest

DAY = "2013-02-04"
FORMATS = ["BOOLEAN_ONLY", "BASIC", "SUMMARY", "COMPLETE"]


@pytest.fixture(scope="module")
def frames(module_home):
    import os

    os.environ["MLOPS_HOME"] = str(module_home)
    from mlops.core.config import load_pipeline

    cfg = load_pipeline("flights")
    ingest(cfg, Interval.parse(DAY))
    good = lake.read_partition(raw_dir(cfg.name), DAY)
    bad = good.copy()
    bad.loc[bad.index[:7], "dewp"] = 150.0  # out of range
    bad.loc[bad.index[3:9], "carrier"] = "ZZ"  # not in the set
    bad.loc[bad.index[10:14], "origin"] = None  # missing
    bad["plane_seats"] = bad["plane_seats"].astype(object)
    bad.loc[bad.index[20], "plane_seats"] = "many"  # not numeric
    bad.loc[bad.index[1], ROW_KEY] = bad.loc[bad.index[0], ROW_KEY]  # a duplicate key
    bad.loc[bad.index[30:40], "wind_speed"] = np.nan
    bad = bad.drop(columns=["visib"])
    return cfg, {"good": good, "bad": bad}


def _comparable(result) -> str:
    """A validation result as JSON without what differs between any two runs (times, ids, run names)."""
    data = result.to_json_dict()
    data.pop("meta", None)
    data.pop("id", None)
    for r in data["results"]:
        r["expectation_config"].pop("id", None)
    return json.dumps(data, sort_keys=True, default=str)


@pytest.mark.parametrize("kind", ["good", "bad"])
def test_every_result_format_gives_the_same_results_with_and_without_the_memo(frames, kind):
    cfg, by_kind = frames
    suite = gx_checks.build_suite(cfg)
    _, _, batch_definition = gx_checks._context()
    batch = batch_definition.get_batch(batch_parameters={"dataframe": by_kind[kind]})
    for result_format in FORMATS:
        plain = batch.validate(suite, result_format=result_format)
        with gx_memo.memoized_configurations():
            memoized = batch.validate(suite, result_format=result_format)
        assert _comparable(memoized) == _comparable(plain), result_format
        assert plain.success is (kind == "good"), [r.expectation_config.type for r in plain.results if not r.success]
    if kind == "bad":  # every way of breaking the day is caught
        failed = {
            (r.expectation_config.type, r.expectation_config.kwargs.get("column"))
            for r in plain.results
            if not r.success
        }
        assert {
            ("expect_column_values_to_be_between", "dewp"),
            ("expect_column_values_to_be_in_set", "carrier"),
            ("expect_column_values_to_be_unique", ROW_KEY),
            ("expect_table_columns_to_match_set", None),
        } <= failed, failed


def test_validation_dependencies_are_computed_once_per_expectation_in_the_block(frames, monkeypatch):
    """A type expectation (type list, or one type) resolves the table's column types to find its
    dependencies: GX does it when it builds the metric graph and again when it checks the metrics; in
    the block, once."""
    from great_expectations.execution_engine import PandasExecutionEngine

    cfg, by_kind = frames
    suite = gx_checks.build_suite(cfg)
    kinds = ("expect_column_values_to_be_in_type_list", "expect_column_values_to_be_of_type")
    typed = sum(e.expectation_type in kinds for e in suite.expectations)
    _, _, batch_definition = gx_checks._context()
    resolved = []
    original = PandasExecutionEngine.resolve_metrics

    def counted(self, metrics_to_resolve, *args, **kwargs):
        resolved.extend(m for m in metrics_to_resolve if m.metric_name == "table.column_types")
        return original(self, metrics_to_resolve, *args, **kwargs)

    monkeypatch.setattr(PandasExecutionEngine, "resolve_metrics", counted)
    for kind in ("good", "bad"):  # the bad day has an object column: the type list's other branch
        batch = batch_definition.get_batch(batch_parameters={"dataframe": by_kind[kind]})
        resolved.clear()
        plain = batch.validate(suite, result_format="BASIC")
        without = len(resolved)
        resolved.clear()
        with gx_memo.memoized_configurations():
            memoized = batch.validate(suite, result_format="BASIC")
        assert len(resolved) == without - typed > 0, kind
        assert _comparable(memoized) == _comparable(plain), kind


def test_configurations_of_equal_content_turn_into_one_expectation_in_the_block(frames):
    """A result read back from the store (new configuration objects, equal content) gives the validated
    expectations again; a configuration that differs in anything `to_domain_obj` reads gives its own."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    cfg, _ = frames
    suite = gx_checks.build_suite(cfg)
    configurations = [e.configuration for e in suite.expectations]
    copies = [ExpectationConfiguration(**c.to_json_dict()) for c in configurations]
    with gx_memo.memoized_configurations():
        first = [c.to_domain_obj() for c in configurations]
        assert all(c.to_domain_obj() is e for c, e in zip(copies, first, strict=True))
        changed = copies[5]
        for field, value in (("notes", "a note"), ("meta", {"source": "review"}), ("description", "described")):
            other = ExpectationConfiguration(**{**changed.to_json_dict(), field: value})
            expectation = other.to_domain_obj()
            assert expectation is not first[5] and getattr(expectation, field) == value, field
        kwargs = {**changed.kwargs, "mostly": 0.5}
        assert ExpectationConfiguration(type=changed.type, kwargs=kwargs).to_domain_obj().mostly == 0.5
    assert copies[0].to_domain_obj() is not first[0]  # outside the block: GX's own, a new one each time


def test_the_stored_checkpoint_result_and_its_page_are_the_same_with_and_without_the_memo(frames):
    cfg, by_kind = frames
    suite = gx_checks.build_suite(cfg)
    gx, context, batch_definition = gx_checks._context()
    checkpoint = gx_checks._stored_checkpoint(gx, context, batch_definition, suite)
    from great_expectations.core.run_identifier import RunIdentifier

    outcomes = {}
    for name, memo in (("plain", False), ("memo", True)):
        run_id = RunIdentifier(run_name=f"{name}-run")
        if memo:
            with gx_memo.memoized_configurations():
                outcome = checkpoint.run(batch_parameters={"dataframe": by_kind["bad"]}, run_id=run_id)
        else:
            outcome = checkpoint.run(batch_parameters={"dataframe": by_kind["bad"]}, run_id=run_id)
        [(key, result)] = outcome.run_results.items()
        stored = context.validation_results_store.get(key)
        assert _comparable(stored) == _comparable(result)
        outcomes[name] = _comparable(stored)
        pages = list(gx_checks.data_docs_index().parent.glob(f"validations/**/{name}-run/**/*.html"))
        assert len(pages) == 1 and "dewp" in pages[0].read_text()  # the Data Docs page of the result
    assert outcomes["memo"] == outcomes["plain"]
    assert not next(iter(outcome.run_results.values())).success


def test_the_memo_holds_only_inside_its_block_and_nests():
    gx, _, _ = gx_checks._context()
    gx_memo.install()
    e = gx.expectations.ExpectColumnValuesToNotBeNull(column="origin")
    assert e.configuration is not e.configuration  # GX's own behaviour: a new object per read
    with gx_memo.memoized_configurations():
        first = e.configuration
        with gx_memo.memoized_configurations():
            assert e.configuration is first
        assert e.configuration is first  # the inner block does not end the outer one
        assert first.kwargs["column"] == "origin"
    assert e.configuration is not first


@contextlib.contextmanager
def _store_reads(context) -> Iterator[dict[str, int]]:
    """A counter of `get`s per GX store (suites, definitions, checkpoints), filled inside the block."""
    counts = {"suites": 0, "definitions": 0, "checkpoints": 0}
    stores = {
        "suites": context.expectations_store,
        "definitions": context.validation_definition_store,
        "checkpoints": context.checkpoint_store,
    }
    for name, store in stores.items():
        original = store.get

        def counted(*args, _original=original, _name=name, **kwargs):
            counts[_name] += 1
            return _original(*args, **kwargs)

        store.get = counted
    try:
        yield counts
    finally:
        for store in stores.values():
            del store.get  # the class's method again


def test_a_trusted_checkpoint_runs_without_reading_the_store_back_and_stores_the_same_result(frames):
    cfg, by_kind = frames
    suite = gx_checks.build_suite(cfg)
    gx, context, batch_definition = gx_checks._context()
    checkpoint = gx_checks._stored_checkpoint(gx, context, batch_definition, suite)
    from great_expectations.core.run_identifier import RunIdentifier

    with _store_reads(context) as reads:
        outcomes = {}
        for name, trusted in (("checked", False), ("trusted", True)):
            before = dict(reads)
            with gx_memo.memoized_configurations():
                if trusted:
                    with gx_memo.trusted_fresh(checkpoint):
                        outcome = checkpoint.run(
                            batch_parameters={"dataframe": by_kind["bad"]}, run_id=RunIdentifier(run_name=name)
                        )
                else:
                    outcome = checkpoint.run(
                        batch_parameters={"dataframe": by_kind["bad"]}, run_id=RunIdentifier(run_name=name)
                    )
            [(key, result)] = outcome.run_results.items()
            stored = _comparable(context.validation_results_store.get(key))
            assert stored == _comparable(result)
            outcomes[name] = (stored, {k: reads[k] - before[k] for k in reads})
    assert outcomes["trusted"][0] == outcomes["checked"][0]
    # GX's own checks read each back; trusted, only the Data Docs read the suite (to render its page)
    checked, trusted = outcomes["checked"][1], outcomes["trusted"][1]
    assert min(checked.values()) >= 1, checked
    assert trusted["definitions"] == trusted["checkpoints"] == 0 and trusted["suites"] < checked["suites"], trusted


def test_an_unchanged_store_is_read_once_through_its_checkpoint(frames):
    """Nothing changed: one read of each stored object (the checkpoint brings its definition and suite)."""
    cfg, _ = frames
    suite = gx_checks.build_suite(cfg)
    gx, context, batch_definition = gx_checks._context()
    first = gx_checks._stored_checkpoint(gx, context, batch_definition, suite)
    with _store_reads(context) as reads:
        again = gx_checks._stored_checkpoint(gx, context, batch_definition, gx_checks.build_suite(cfg))
        unchanged = dict(reads)
        v = cfg.validation
        changed_cfg = cfg.model_copy(update={"validation": v.model_copy(update={"max_rows": v.max_rows + 1})})
        changed = gx_checks._stored_checkpoint(gx, context, batch_definition, gx_checks.build_suite(changed_cfg))
        gx_checks._stored_checkpoint(gx, context, batch_definition, suite)  # the committed rules stored again
    assert unchanged == {"suites": 1, "definitions": 1, "checkpoints": 1}, unchanged
    assert again.id == first.id
    assert gx_checks._content(again.validation_definitions[0].suite) == gx_checks._content(suite)
    assert gx_checks._content(changed.validation_definitions[0].suite) != gx_checks._content(suite)
    assert reads["suites"] > unchanged["suites"] + 1  # a changed rule took the full path


def test_suite_content_sees_every_field_of_every_expectation_but_its_id(frames):
    """`_content` decides whether the stored suite is ours: any field GX builds a configuration from counts."""
    cfg, _ = frames
    base = gx_checks._content(gx_checks.build_suite(cfg))
    changes = {
        "notes": "a note",
        "meta": {"source": "review"},
        "description": "described",
        "mostly": 0.5,
        "column": "another_column",
    }
    for field, value in changes.items():
        suite = gx_checks.build_suite(cfg)
        target = next(e for e in suite.expectations if e.expectation_type == "expect_column_values_to_be_between")
        setattr(target, field, value)
        assert gx_checks._content(suite) != base, field
    suite = gx_checks.build_suite(cfg)
    suite.expectations[0].id = "another-id"
    assert gx_checks._content(suite) == base
    suite.expectations.reverse()
    assert gx_checks._content(suite) != base  # order kept: the report lists checks in suite order


def test_trust_covers_only_the_given_objects_inside_the_block_and_a_stale_copy_is_still_refused(frames):
    cfg, _ = frames
    suite = gx_checks.build_suite(cfg)
    gx, context, batch_definition = gx_checks._context()
    checkpoint = gx_checks._stored_checkpoint(gx, context, batch_definition, suite)
    [definition] = checkpoint.validation_definitions
    copy = context.validation_definitions.get(definition.name)  # another object of the same stored definition
    assert checkpoint.is_fresh().success and copy.is_fresh().success
    stored = context.suites.get(suite.name)
    stored.expectations = stored.expectations[:-1]  # another process changes the stored suite
    stored.save()
    try:
        assert not copy.is_fresh().success and not checkpoint.is_fresh().success  # GX's own checks see it
        with gx_memo.trusted_fresh(checkpoint):
            assert checkpoint.is_fresh().success and definition.is_fresh().success  # trusted: not re-read
            assert not copy.is_fresh().success  # any other object is checked by GX as before
            with gx_memo.trusted_fresh(checkpoint):
                pass
            assert definition.is_fresh().success  # the inner block does not end the outer one
        assert not checkpoint.is_fresh().success and not definition.is_fresh().success
    finally:
        gx_checks._stored_checkpoint(gx, context, batch_definition, suite)  # the full suite stored again


def test_domain_objects_and_metric_ids_are_shared_within_the_block_only(frames):
    """A configuration the memo built turns back into its own expectation; metric ids equal GX's own."""
    import copy

    from great_expectations.core.id_dict import IDDict

    cfg, _ = frames
    expectation = gx_checks.build_suite(cfg).expectations[0]
    ids = [
        {"column": "carrier", "value_set": ["AA", "B6"], "batch_id": "x", "mostly": 0.9},
        {"column": "dep_delay", "min_value": -1.5, "max_value": None, "strict": False},
        {"column": "plane_seats", "type_list": ["int64", "float64"], "result_format": {"result_format": "BASIC"}},
        {"column": "tailnum", "value_set": {"N1", "N2"}, "n": np.int64(3)},  # not plain JSON: GX's own path
        {"column": "carrier"},  # one key: GX's own (cheap) id
    ]
    outside = [IDDict(kwargs).to_id() for kwargs in ids]
    with gx_memo.memoized_configurations():
        configuration = expectation.configuration
        assert configuration.to_domain_obj() is expectation
        assert copy.deepcopy(configuration).to_domain_obj() is not expectation  # not built by the memo
        for _ in range(2):
            assert [IDDict(kwargs).to_id() for kwargs in ids] == outside
        assert len(gx_memo._local.ids) == 3  # the plain ones of several keys, each once
        ignoring = type("Ignoring", (IDDict,), {"_id_ignore_keys": {"batch_id"}})  # as GX's BatchSpec
        spec = ignoring({"column": "carrier", "batch_id": "x", "mostly": 0.9})
        assert spec.to_id() == IDDict({"column": "carrier", "mostly": 0.9}).to_id()  # GX's own rule
        assert len(gx_memo._local.ids) == 4  # only the plain IDDict just above was kept
    assert expectation.configuration.to_domain_obj() is not expectation
    assert [IDDict(kwargs).to_id() for kwargs in ids] == outside
