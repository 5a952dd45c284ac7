"""Test settings: a throwaway MLOPS_HOME and Airflow home, set before anything imports airflow."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

_SESSION_ROOT = Path(tempfile.mkdtemp(prefix="mlops-tests-"))
os.environ["MLOPS_HOME"] = str(_SESSION_ROOT / "home")
for _var in (
    "MLFLOW_TRACKING_URI",
    "MLOPS_ARTIFACT_ROOT",
    "MLOPS_CONFIG_DIR",
    "AIRFLOW_HOME",
    "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
    "AIRFLOW_CONN_SMTP_DEFAULT",
):
    os.environ.pop(_var, None)

from mlops.airflow import environment as airflow_env  # noqa: E402  (must follow the environment above)

airflow_env.configure()

from mlops.core.config import load_pipeline  # noqa: E402
from mlops.core.interval import Interval  # noqa: E402
from mlops.local.mailsink import MailSink  # noqa: E402

pytest_plugins = ["tests.fixtures.postgres", "tests.fixtures.http_server"]


def _untracked() -> set[str] | None:
    """Files of the clone that git neither tracks nor ignores (None outside a git checkout)."""
    import subprocess

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=all"],
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        return None
    return {line[3:] for line in out.stdout.splitlines() if line.startswith("??")}


_UNTRACKED_BEFORE = _untracked()


def pytest_sessionfinish(session, exitstatus):
    shutil.rmtree(_SESSION_ROOT, ignore_errors=True)
    if _UNTRACKED_BEFORE is None or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    left = sorted((_untracked() or set()) - _UNTRACKED_BEFORE)
    if left:  # a test wrote into the clone instead of its own folder (e.g. a relative sqlite:///x.db)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nFAILED: the test session left files in the clone, outside any test folder: {left}", file=sys.stderr)


# The longest test files, longest first (seconds on one worker in the last CI log: the replay ~570, the
# scheduler ~350, `mlops up` ~180, the demo ~140, the DAG runs and the monitor over 100 and 90 in their
# module fixtures alone, the chain benchmark ~50). pytest-xdist's loadfile hands each worker a whole
# file at a time, in this order (`--no-loadscope-reorder` in addopts; its default order, most tests
# first, starts these files last, so one worker ran the replay alone at the end): the longest start
# first and the short files fill the other worker, so the two end together.
LONGEST_FIRST = (
    "tests/system/test_replay.py",
    "tests/system/test_scheduler.py",
    "tests/system/test_up.py",
    "tests/e2e/test_demo.py",
    "tests/e2e/test_dag_runs.py",
    "tests/unit/test_monitor.py",
    "tests/unit/test_chain_benchmark.py",
)


def pytest_collection_modifyitems(config, items):
    """Run the files of LONGEST_FIRST first, in that order; every other file after them, as collected."""
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}

    def key(item) -> int:
        try:
            return rank.get(item.path.relative_to(config.rootpath).as_posix(), len(rank))
        except ValueError:  # outside the repository
            return len(rank)

    items.sort(key=key)  # stable: the tests of a file, and the other files, keep their order


@pytest.fixture(autouse=True)
def _mlflow_uris_restored():
    """MLflow keeps the tracking and registry URIs in module globals (`mlflow.set_tracking_uri`,
    `mlflow.set_registry_uri`, which `registry.client()` calls): a test that points them at its own
    server must not leave them to the next one, whose `MlflowClient(tracking_uri=...)` would otherwise
    resolve the registry to a server that is gone."""
    yield
    if "mlflow" in sys.modules:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = None
        registry_utils._registry_uri = None


@pytest.fixture(scope="session")
def flights_cfg():
    """The real flights pipeline config."""
    return load_pipeline("flights")


@pytest.fixture(scope="session")
def small_cfg(flights_cfg):
    """The flights config with a short training window (21 days: 7 train, 7 calibration, 7 evaluation)."""
    training = flights_cfg.training.model_copy(update={"window_days": 21, "calibration_days": 7, "evaluation_days": 7})
    return flights_cfg.model_copy(update={"training": training})


@pytest.fixture(scope="module")
def one_openmp_thread():
    """HistGradientBoosting's OpenMP threads crawl on a busy machine: one thread is 10x faster there.
    Modules that train use it with `pytestmark = pytest.mark.usefixtures("one_openmp_thread")`."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):
        yield


@pytest.fixture
def mlops_home(tmp_path, monkeypatch) -> Path:
    """A fresh, empty MLOPS_HOME (lake and MLflow store) for one test."""
    home = tmp_path / "mlops-home"
    monkeypatch.setenv("MLOPS_HOME", str(home))
    return home


@pytest.fixture(scope="module")
def module_home(tmp_path_factory) -> Path:
    """An MLOPS_HOME shared by the tests of one module (to train a model once)."""
    home = tmp_path_factory.mktemp("module-home")
    previous = os.environ["MLOPS_HOME"]
    os.environ["MLOPS_HOME"] = str(home)
    yield home
    os.environ["MLOPS_HOME"] = previous


@pytest.fixture
def smtp_sink(monkeypatch):
    """A real SMTP server on loopback, wired in as Airflow's `smtp_default` connection."""
    with MailSink() as sink:
        monkeypatch.setenv("AIRFLOW_CONN_SMTP_DEFAULT", airflow_env.smtp_connection(sink.host, sink.port))
        yield sink


def day(text: str) -> Interval:
    """Interval of one day, e.g. day("2013-02-01")."""
    return Interval.parse(text)


def date(text: str) -> dt.date:
    return dt.date.fromisoformat(text)


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh Airflow metadata database (SQLite), created once per session."""
    from mlops.local import runs

    runs.init_db(reset=True)
