"""The environment of the local stack's processes (`mlops up`, `mlops replay`): bytecode is cached."""

from __future__ import annotations

import subprocess
import sys

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
