"""Benchmark: a validated day's Great Expectations cost (checkpoint, stored result, Data Docs) against
the number of results already stored.

`--setup DIR` ingests 2013 and validates 1 January to 22 December with Data Docs, as the daily task does
but without drift and skew (no model needed): a store as a year of operation leaves it (about 3 min).
Then `--store DIR` copies DIR to a temporary folder and, in this process, validates 23-31 December
(new results, after a first call) with `validate_frame(..., data_docs=True)`, timing the whole call and
its GX parts (the validator, storing the result, the Data Docs update); prints the medians.
`--before PLUGINS` (the `plugins` folder of a checkout to compare with) runs `--pairs` interleaved pairs
(before, after, ...), each side a fresh process of this script on its own copy.

Run: uv run python benchmarks/data_docs_year.py --setup /tmp/docs-year   (once)
     uv run python benchmarks/data_docs_year.py --store /tmp/docs-year [--before <checkout>/plugins --pairs 2]
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from validation_day import RESULT, interleaved

FIRST, TIMED = dt.date(2013, 1, 1), dt.date(2013, 12, 23)


def setup(store: Path) -> None:
    """Ingest 2013 and validate every day before TIMED with Data Docs (no drift or skew references)."""
    os.environ["MLOPS_HOME"] = str(store)
    from mlops.core.config import load_pipeline
    from mlops.core.interval import Interval
    from mlops.stages.ingest import ingest
    from mlops.stages.validate import validate

    cfg = load_pipeline("flights")
    ingest(cfg, Interval(FIRST, dt.date(2014, 1, 1)))
    day = FIRST
    while day < TIMED:
        validate(cfg, Interval(day, day + dt.timedelta(days=1)), references={}, data_docs=True)
        day += dt.timedelta(days=1)
    print(f"store ready in {store}: {(TIMED - FIRST).days} validation results")


def run(store: Path) -> None:
    """Validate TIMED..31 December on a copy of `store`; print the medians (after a first call) as a RESULT line."""
    home = Path(tempfile.mkdtemp(prefix="mlops-docs-"))
    shutil.copytree(store, home, dirs_exist_ok=True)
    os.environ["MLOPS_HOME"] = str(home)
    _neutral_site(home / "gx" / "gx" / "great_expectations.yml")
    import great_expectations.checkpoint.checkpoint as checkpoint
    import great_expectations.data_context.store.validation_results_store as results_store
    import great_expectations.validator.v1_validator as validator

    from mlops.core.config import load_pipeline
    from mlops.io import lake
    from mlops.io.paths import raw_dir
    from mlops.stages.validate import validate_frame

    cpu: dict[str, list[float]] = collections.defaultdict(list)

    def timed(owner, name: str, label: str) -> None:
        own = getattr(owner, name)

        def wrapper(*args, **kwargs):
            t = time.process_time()
            try:
                return own(*args, **kwargs)
            finally:
                cpu[label].append(time.process_time() - t)

        setattr(owner, name, wrapper)

    timed(validator.Validator, "validate_expectation_suite", "validator")
    timed(results_store.ValidationResultsStore, "store_validation_results", "stored result")
    timed(checkpoint.Checkpoint, "_run_actions", "Data Docs update")
    cfg = load_pipeline("flights")
    walls = []
    day = TIMED
    while day <= dt.date(2013, 12, 31):
        df = lake.read_partition(raw_dir(cfg.name), day.isoformat())
        t = time.perf_counter(), time.process_time()
        validate_frame(cfg, df, day.isoformat(), 1, {}, data_docs=True)
        walls.append((time.perf_counter() - t[0], time.process_time() - t[1]))
        day += dt.timedelta(days=1)
    shutil.rmtree(home, ignore_errors=True)
    figures = {label: statistics.median(values[1:]) for label, values in cpu.items()}
    figures |= {"wall": statistics.median(w for w, _ in walls[1:]), "cpu": statistics.median(c for _, c in walls[1:])}
    for label, value in figures.items():
        print(f"{label}: {value:.3f} s")
    print(RESULT + json.dumps(figures))


def _neutral_site(config: Path) -> None:
    """GX's default site and index builder classes and sections in the copy's config: each side's code
    then configures the site its own way (`gx_checks._configure_sites`) when it opens the store."""
    import yaml

    data = yaml.safe_load(config.read_text())
    for site in data.get("data_docs_sites", {}).values():
        site.pop("module_name", None)
        site["class_name"] = "SiteBuilder"
        index = site.get("site_index_builder", {})
        index.pop("module_name", None)
        index["class_name"] = "DefaultSiteIndexBuilder"
        site.get("site_section_builders", {}).pop("profiling", None)
    config.write_text(yaml.safe_dump(data, sort_keys=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--setup", type=Path, help="build the store in this folder and stop")
    parser.add_argument("--store", type=Path, help="a store built with --setup")
    parser.add_argument("--before", help="the plugins folder of the code to compare with (interleaved runs)")
    parser.add_argument("--pairs", type=int, default=2)
    args = parser.parse_args()
    if args.setup:
        setup(args.setup)
    elif args.before:
        sides = interleaved([sys.executable, __file__, "--store", str(args.store)], args.before, args.pairs)
        for side, runs in sides.items():
            cells = [", ".join(f"{k} {v:.3f}" for k, v in r.items()) for r in runs]
            print(f"{side} (medians, s; wall and CPU of the whole call): " + " | ".join(cells))
    else:
        run(args.store)


if __name__ == "__main__":
    main()
