"""The environment of the local stack's processes (`mlops up`, `mlops replay`): bytecode is cached,
the task supervisor notices a task's exit within a second, MLflow sends no telemetry, idle threads
of OpenMP and OpenBLAS sleep."""

from __future__ import annotations

import os
import subprocess
import sys
from unittest import mock

import pytest

from mlops.airflow.environment import stack_environment


def _env(tmp_path):
    return stack_environment(
        home=tmp_path / "stack",
        database_url="postgresql+psycopg2://u@127.0.0.1:1/airflow",
        scores_url="postgresql+psycopg2://u@127.0.0.1:1/scores",
        api_host="127.0.0.1",
        api_port=1,
        mlflow_url="http://127.0.0.1:2",
        smtp="smtp://127.0.0.1:3",
    )


def test_the_stack_writes_bytecode_under_its_home_even_when_the_caller_does_not(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    monkeypatch.delenv("PYTHONPYCACHEPREFIX", raising=False)
    env = _env(tmp_path)
    assert "PYTHONDONTWRITEBYTECODE" not in env
    prefix = tmp_path / "stack" / "cache" / "pycache"
    assert env["PYTHONPYCACHEPREFIX"] == str(prefix)
    # a process with that environment writes the bytecode of what it imports there, and only there
    module = tmp_path / "src" / "cached_module.py"
    module.parent.mkdir()
    module.write_text("VALUE = 1\n")
    code = "import sys; sys.path.insert(0, sys.argv[1]); import cached_module"
    subprocess.run([sys.executable, "-c", code, str(module.parent)], env=env, check=True)
    assert list(prefix.rglob("cached_module.*.pyc")), list(prefix.rglob("*"))
    assert not (module.parent / "__pycache__").exists()


def test_a_cache_the_caller_chose_is_kept(tmp_path, monkeypatch):
    monkeypatch.setenv("PYTHONPYCACHEPREFIX", str(tmp_path / "mine"))
    assert _env(tmp_path)["PYTHONPYCACHEPREFIX"] == str(tmp_path / "mine")


def test_airflow_and_mlflow_read_the_stack_settings_as_meant(tmp_path):
    """Read back by Airflow's and MLflow's own code in a process with the stack's environment (a misspelt
    variable would be ignored silently): the supervisor's wait for a task's exit, and MLflow's telemetry."""
    code = (
        "from airflow.configuration import conf; from mlflow.telemetry.utils import is_telemetry_disabled; "
        "print('read:', conf.getint('workers', 'min_heartbeat_interval'), is_telemetry_disabled())"
    )
    out = subprocess.run([sys.executable, "-c", code], env=_env(tmp_path), capture_output=True, text=True, check=True)
    [line] = [line for line in out.stdout.splitlines() if line.startswith("read:")]
    assert line.split() == ["read:", "1", "True"], out


def test_the_demo_environment_turns_mlflow_telemetry_off(tmp_path, monkeypatch):
    from mlops.airflow.environment import configure

    monkeypatch.setenv("MLOPS_HOME", str(tmp_path))
    monkeypatch.delenv("MLFLOW_DISABLE_TELEMETRY", raising=False)
    with mock.patch.dict(os.environ):  # configure() sets Airflow's variables too: all restored after
        assert configure()["MLFLOW_DISABLE_TELEMETRY"] == "true"


def test_the_jwt_secret_is_long_enough_for_airflows_hs512_tokens(tmp_path):
    """Airflow signs the task SDK's and the UI's tokens with HMAC-SHA512; PyJWT warns (in the api-server's
    log, on every token) when the key is shorter than 64 bytes, as `token_urlsafe(32)` (43 bytes) was."""
    import secrets
    import warnings

    import jwt

    def warned(key: str) -> list[str]:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            jwt.decode(jwt.encode({"sub": "task"}, key, algorithm="HS512"), key, algorithms=["HS512"])
        return [str(w.message) for w in caught]

    assert any("64 bytes" in m for m in warned(secrets.token_urlsafe(32)))  # the guard sees the old key
    assert warned(_env(tmp_path)["AIRFLOW__API_AUTH__JWT_SECRET"]) == []


def test_idle_threads_of_the_stack_sleep_instead_of_spinning(tmp_path):
    """The feature audit runs beside recalibrate -> evaluate, its budget in CPU seconds. With libgomp's
    default (spin at a barrier before sleeping) its HistGradientBoosting fits burnt CPU waiting for a
    thread the other task held: in a 4-week replay LOFO's first fit took 2.7-3.9 CPU s instead of
    1.1-1.3, and LOFO tested a median of 0 candidates (docs/benchmarks.md). OpenBLAS spins too."""
    env = _env(tmp_path)
    assert env["OMP_WAIT_POLICY"] == "PASSIVE" and env["OPENBLAS_THREAD_TIMEOUT"] == "4"


def test_a_process_that_imports_mlops_first_has_no_spinning_threads():
    """`mlops demo`, the benchmarks and the tests run without the stack's environment: importing the
    package sets both policies before numpy and scikit-learn load their thread pools. Measured in a
    fresh interpreter: the CPU seconds of a 0.5 s sleep after a few fits (LogisticRegression: OpenBLAS
    and OpenMP; HistGradientBoosting: OpenMP), without and with `import mlops` first."""
    if (os.cpu_count() or 1) < 2:  # the pools start one thread per CPU
        pytest.skip("one CPU on this machine: no thread is left to spin")
    code = (
        "import time; import mlops; import numpy as np; "
        "from sklearn.ensemble import HistGradientBoostingClassifier as H; "
        "from sklearn.linear_model import LogisticRegression as L; "
        "rng = np.random.default_rng(0); X = rng.normal(size=(20000, 8)); y = (X[:, 0] > 0).astype(int); "
        "H(max_iter=30).fit(X, y); [L().fit(X[:3000], y[:3000]) for _ in range(3)]; "
        "t = time.process_time(); time.sleep(0.5); print('idle', time.process_time() - t)"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OPENBLAS_THREAD_TIMEOUT")}
    idle = {}
    for name, source in (("spun", code.replace("import mlops; ", "")), ("calm", code)):
        out = subprocess.run([sys.executable, "-c", source], env=env, capture_output=True, text=True, check=True)
        idle[name] = float(out.stdout.split()[-1])
    # the threads do spin here without it, so the test can tell; on a loaded machine they get less CPU
    # (0.04 s of a 0.3 s sleep while a year replay ran, against 0.11 s on a quiet one)
    assert idle["spun"] > max(0.02, 20 * idle["calm"]), idle
    assert idle["calm"] < 0.02, idle
