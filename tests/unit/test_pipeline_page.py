"""The pipeline page inside the Airflow UI: the mlops plugin's FastAPI app, mounted by Airflow's own code,
served on loopback and loaded in headless Chromium.

A short real run prepares `$MLOPS_HOME` once for the module: real flights days ingested and validated
(shift scores against the previous day and against a reference day), predictions stored for four days
(scores informative of the real labels, as tests/unit/test_outcomes.py makes them), the outcomes of
those days computed from the real labels, and champion decisions written to the audit trail.
"""

from __future__ import annotations

import datetime as dt
import re
import threading
import time
import urllib.request

import pytest

from mlops.airflow import pipeline_page
from mlops.core.config import Evaluation
from mlops.core.drift import profile
from mlops.core.interval import Interval
from mlops.io import audit, lake
from mlops.io.paths import raw_dir
from mlops.local.ports import free_port
from mlops.reporting import pipeline_page as pipeline_page_core
from mlops.stages.ingest import ingest
from mlops.stages.outcomes import day_outcomes
from mlops.stages.validate import DRIFT, SKEW, Reference, previous_partition, validate
from tests.fixtures.chromium import load_page
from tests.unit.test_outcomes import write_predictions

REFERENCE_DAY = dt.date(2013, 2, 28)
DAYS = [dt.date(2013, 3, d) for d in range(1, 5)]
EVENTS = [  # (at, event, version, previous, triggered_by, reasons)
    ("2013-02-01T06:00:00+00:00", "promoted", "1", None, "scheduled", ["pass all 4 checks"]),
    ("2013-02-08T06:00:00+00:00", "rejected", "2", "1", "scheduled", ["FAIL roc_auc_min_value [overall]: 0.55"]),
    ("2013-02-15T06:00:00+00:00", "promoted", "3", "1", "manual", ["pass all 4 checks"]),
    ("2013-03-02T06:00:00+00:00", "rollback", "1", "3", "cli", ["realized AUC fell"]),
]
WINDOWS = {  # training window of the versions decided on: the decision's data day is its end
    "1": "2013-01-04..2013-01-25",
    "2": "2013-01-11..2013-02-01",
    "3": "2013-01-18..2013-02-08",
}
IMAGES = """JSON.stringify([...document.images].map(i => ({alt: i.alt, src: i.src.slice(0, 22), length: i.src.length,
    width: i.naturalWidth, height: i.naturalHeight})))"""


@pytest.fixture(scope="module")
def prepared(module_home, small_cfg):
    cfg = small_cfg.model_copy(update={"evaluation": Evaluation(bootstrap_samples=40, min_slice_size=200)})
    ingest(cfg, Interval(REFERENCE_DAY, DAYS[-1] + dt.timedelta(days=1)))
    reference_rows = lake.read_partition(raw_dir(cfg.name), REFERENCE_DAY.isoformat())
    skew = Reference(
        f"partition {REFERENCE_DAY}", profile(reference_rows, cfg.features.categorical, cfg.features.numeric)
    )
    for i, day in enumerate(DAYS):
        interval = Interval.parse(day.isoformat())
        validate(cfg, interval, {DRIFT: previous_partition(cfg, interval), SKEW: skew})
        raw = lake.read_partition(raw_dir(cfg.name), day.isoformat())
        write_predictions(cfg, day, raw, "1" if i < 2 else "3", seed=i)
        day_outcomes(cfg, day, log_to_mlflow=False)
    for at, event, version, previous, by, reasons in EVENTS:
        window = {"training_window": WINDOWS[version]} if event != "rollback" else {}
        audit.record(
            cfg.name, event, at=at, version=version, previous=previous, triggered_by=by, reasons=reasons, **window
        )
    return cfg


@pytest.fixture(scope="module")
def served(prepared):
    """The api-server's way of mounting plugin apps (airflow.api_fastapi.app.init_plugins) on an empty app,
    served by uvicorn on loopback in a thread; yields the base URL."""
    import uvicorn
    from airflow.api_fastapi.app import init_plugins
    from fastapi import FastAPI

    parent = FastAPI()
    init_plugins(parent)
    mounted = [r.path for r in parent.routes]
    assert pipeline_page.URL_PREFIX in mounted, mounted
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(parent, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}{pipeline_page.URL_PREFIX}"
    server.should_exit = True
    thread.join(timeout=10)


def test_the_plugin_mounts_the_app_and_adds_a_menu_entry():
    from airflow import plugins_manager

    apps, _ = plugins_manager.get_fastapi_plugins()
    assert any(a["url_prefix"] == "/mlops" and a["app"] is pipeline_page.app for a in apps)
    plugin = next(p for p in plugins_manager._get_plugins()[0] if p.name == "mlops")
    view = plugin.external_views[0]
    assert view["href"] == "/mlops/" and view["destination"] == "nav" and view["url_route"] == "mlops-pipelines"


def test_the_index_lists_the_pipelines(served):
    with urllib.request.urlopen(f"{served}/", timeout=60) as response:
        page = response.read().decode()
    assert '<a href="pipelines/flights">flights</a>' in page
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(f"{served}/pipelines/nope", timeout=60)
    assert info.value.code == 404


def test_the_page_renders_in_chromium_with_data_and_no_console_errors(served):
    loaded = load_page(f"{served}/pipelines/flights", IMAGES)
    assert loaded.errors == []
    images = {i["alt"]: i for i in __import__("json").loads(loaded.value)}
    expected = {
        "champion timeline",
        "roc_auc: realized and estimated per slice",
        "precision: realized and estimated per slice",
        "recall: realized and estimated per slice",
        "shift scores per day",
    }
    assert expected <= set(images), sorted(images)
    for alt, image in images.items():
        assert image["src"] == "data:image/png;base64,", alt
        assert image["length"] > 5_000 and image["width"] > 300 and image["height"] > 100, (alt, image)
    with urllib.request.urlopen(f"{served}/pipelines/flights", timeout=60) as response:
        page = response.read().decode()
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page)
    for _, event, version, _, by, reasons in EVENTS:  # the timeline's table: every decision, who, why
        assert f"<td>{event}</td><td>{version}</td>" in page and f"<td>{by}</td>" in page
        assert reasons[0].split(":")[0] in page
    # each decision on its data day (its training window's end), the rollback on the day of the one before
    for day, (at, event, *_) in zip(["2013-01-25", "2013-02-01", "2013-02-08", "2013-02-08"], EVENTS, strict=True):
        assert f"<td>{day}</td><td>{at}</td><td>{event}</td>" in page
    assert "2013-03-01 to 2013-03-04 (4 days)" in page
    assert "Error of the estimates" in page and "median_absolute_error" in page


def test_the_real_api_server_app_serves_the_page(airflow_db, prepared):
    """Airflow's own api-server app (`airflow api-server` serves it) mounts the plugin's app under /mlops."""
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    client = TestClient(create_app("core"))
    assert client.get("/mlops/health").json() == {"status": "ok"}
    index = client.get("/mlops/")
    assert index.status_code == 200 and '<a href="pipelines/flights">flights</a>' in index.text
    page = client.get("/mlops/pipelines/flights")
    assert page.status_code == 200 and "Champion timeline" in page.text


def test_events_take_their_data_day_and_a_rollback_the_day_of_the_event_before():
    events = [
        {"event": "rollback", "version": "1", "at": "2026-11-30T09:00:00+00:00"},
        {"event": "promoted", "version": "1", "training_window": "2013-01-01..2013-02-01", "at": "2026-11-30T10:00"},
        {"event": "degradation_trigger", "day": "2013-02-07", "at": "2026-11-30T10:01:00+00:00"},
        {"event": "triggered_retrain", "day": "2013-02-07", "window": "2013-01-11..2013-02-08"},
        {"event": "rejected", "version": "2", "training_window": "2013-01-11..2013-02-08", "at": "2026-11-30T10:05"},
        {"event": "rollback", "version": "1", "at": "2026-11-30T11:00:00+00:00"},
        {
            "event": "promoted",
            "version": "3",
            "training_window": "2013-02-10",
            "at": "2026-11-30T12:00",
        },  # a one-day window
    ]
    assert pipeline_page_core.event_days(events) == [
        None,
        "2013-02-01",
        "2013-02-07",
        "2013-02-07",
        "2013-02-08",
        "2013-02-08",
        "2013-02-11",
    ]
    # decided on a data day: the plot's x axis is data time; one decision without: wall-clock time
    assert pipeline_page_core.timeline_plot(events[1:]) and pipeline_page_core.timeline_plot(events)
