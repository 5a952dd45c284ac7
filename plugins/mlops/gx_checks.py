"""Great Expectations (GX Core 1.x): build the suite a pipeline's config declares and run it on a frame."""

from __future__ import annotations

import functools
import logging
import os
from typing import Any

import pandas as pd

from mlops.config import PipelineConfig

NUMERIC_TYPES = ["int64", "float64", "Int64", "Float64", "int32", "float32"]


@functools.cache
def _context():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (
        context.data_sources.add_pandas("mlops")
        .add_dataframe_asset("partition")
        .add_batch_definition_whole_dataframe("all")
    )
    return gx, batch_definition


def build_suite(cfg: PipelineConfig, n_days: int = 1):
    """The expectation suite declared by `cfg.validation`; row-count bounds scale with the days."""
    gx, _ = _context()
    E = gx.expectations
    v = cfg.validation
    suite = gx.ExpectationSuite(name=f"{cfg.name}_partition")
    required = sorted({"row_key", cfg.source.date_column, cfg.target.column, *cfg.features.all, *cfg.slice_columns})
    suite.add_expectation(E.ExpectTableColumnsToMatchSet(column_set=required, exact_match=False))
    suite.add_expectation(
        E.ExpectTableRowCountToBeBetween(min_value=v.min_rows * n_days, max_value=v.max_rows * n_days)
    )
    suite.add_expectation(E.ExpectColumnValuesToBeUnique(column="row_key"))
    suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=cfg.target.column, mostly=v.label_completeness))
    for col in cfg.features.categorical:
        suite.add_expectation(E.ExpectColumnValuesToBeOfType(column=col, type_="str"))
    for col in cfg.features.numeric:
        suite.add_expectation(E.ExpectColumnValuesToBeInTypeList(column=col, type_list=NUMERIC_TYPES))
    for col in v.not_null:
        suite.add_expectation(E.ExpectColumnValuesToNotBeNull(column=col))
    for col, (low, high) in v.ranges.items():
        suite.add_expectation(E.ExpectColumnValuesToBeBetween(column=col, min_value=low, max_value=high))
    for col, values in v.categories.items():
        suite.add_expectation(E.ExpectColumnValuesToBeInSet(column=col, value_set=values))
    return suite


def run_suite(suite, df: pd.DataFrame) -> list[dict[str, Any]]:
    """Validate `df`; one plain dict per expectation: name, column, success, observed, expected."""
    _, batch_definition = _context()
    result = batch_definition.get_batch(batch_parameters={"dataframe": df}).validate(suite)
    checks = []
    for r in result.results:
        kwargs = {k: v for k, v in r.expectation_config.kwargs.items() if k not in ("batch_id", "column")}
        res = r.result or {}
        observed = res.get("observed_value")
        if observed is None and "unexpected_percent" in res:
            examples = [str(x) for x in (res.get("partial_unexpected_list") or [])[:5] if x == x]  # drop NaN
            observed = {"unexpected_percent": round(float(res["unexpected_percent"] or 0.0), 3)}
            if examples:
                observed["examples"] = examples
        error = _exception_message(r.exception_info) if not r.success else None
        checks.append(
            {
                "check": r.expectation_config.type,
                "column": r.expectation_config.kwargs.get("column"),
                "success": bool(r.success),
                "observed": _plain(observed) if error is None else error,
                "expected": _plain(kwargs),
            }
        )
    return checks


def _exception_message(info: dict | None) -> str | None:
    """GX's error message, found flat or nested under a metric id."""
    if not info:
        return None
    if info.get("raised_exception") and info.get("exception_message"):
        return str(info["exception_message"])
    for nested in info.values():
        if isinstance(nested, dict) and nested.get("exception_message"):
            return str(nested["exception_message"])
    return None


def _plain(value: Any) -> Any:
    """JSON-friendly copy (numpy scalars and sets become Python values)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [_plain(v) for v in value]
    if hasattr(value, "item"):
        return value.item()
    return value
