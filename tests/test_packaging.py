"""Reproducible installs: constraints.txt agrees with what uv installed, and names no registry."""

from __future__ import annotations

import importlib.metadata
import re
import tomllib

from mlops.core.config import REPO_ROOT

KEY_PACKAGES = ["apache-airflow", "great-expectations", "mlflow", "pandas", "scikit-learn", "sqlalchemy"]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.split(";")[0].strip()
    return pins


def test_constraints_match_the_installed_environment():
    pins = _pins()
    assert len(pins) > 100
    wrong = {}
    for name, version in pins.items():
        try:
            installed = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            installed = None
        if installed != version:
            wrong[name] = (version, installed)
    assert wrong == {}, "constraints.txt (pinned, installed) disagree; regenerate it (see its header)"


def test_key_packages_pinned_exactly_and_resolution_date_fixed():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    deps = {re.split(r"[=<>\[ ]", d, maxsplit=1)[0].lower(): d for d in project["project"]["dependencies"]}
    pins = _pins()
    for name in KEY_PACKAGES:
        assert f"=={pins[name]}" in deps[name], f"{name} is not pinned to {pins[name]} in pyproject.toml"
    assert project["tool"]["uv"]["exclude-newer"].startswith("20")


def test_no_registry_address_is_committed():
    for name in ("constraints.txt", "pyproject.toml"):
        assert "://" not in (REPO_ROOT / name).read_text(), name
    assert "uv.lock" in (REPO_ROOT / ".gitignore").read_text().splitlines()
