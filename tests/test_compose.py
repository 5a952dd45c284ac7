"""docker-compose.yaml: parses, matches the README and constraints.txt, and has no default for a secret."""

from __future__ import annotations

import re

import yaml

from mlops.core.config import REPO_ROOT
from tests.system.airflow_stack import CELERY_SETTINGS

COMPOSE = yaml.safe_load((REPO_ROOT / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_DOCKERFILE = "config/docker/airflow.Dockerfile"


def _pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def _airflow_services() -> dict[str, dict]:
    return {n: s for n, s in SERVICES.items() if s.get("build", {}).get("dockerfile") == AIRFLOW_DOCKERFILE}


def test_every_service_the_readme_names_exists():
    section = (REPO_ROOT / "README.md").read_text().split("## docker compose")[1].split("\n## ")[0]
    line = next(line for line in section.splitlines() if line.startswith("Services:"))
    named = set(re.findall(r"`([a-z0-9-]+)`", line))
    assert named, line
    assert named == set(SERVICES), named ^ set(SERVICES)


def test_images_agree_with_constraints():
    pins = _pins()
    airflow_from = (REPO_ROOT / AIRFLOW_DOCKERFILE).read_text()
    assert f"FROM apache/airflow:{pins['apache-airflow']}-python3.11" in airflow_from
    assert "pip install --no-cache-dir -c /opt/mlops/src/constraints.txt /opt/mlops/src" in airflow_from
    mlflow_file = (REPO_ROOT / "config/docker/mlflow.Dockerfile").read_text()
    assert f"mlflow=={pins['mlflow']}" in mlflow_file and "FROM python:3.11" in mlflow_file
    assert SERVICES["mlflow"]["image"] == f"mlops-mlflow:{pins['mlflow']}"
    assert SERVICES["mlflow"]["build"]["dockerfile"] == "config/docker/mlflow.Dockerfile"
    for name, service in _airflow_services().items():
        assert service["image"] == f"mlops-airflow:{pins['apache-airflow']}-python3.11", name
    assert "apache-airflow-providers-celery" in pins


def test_airflow_services_share_the_celery_settings_of_the_system_test():
    services = _airflow_services()
    expected = {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor"}
    assert expected | {"airflow-triggerer", "airflow-worker"} <= set(services)
    for name, service in services.items():
        env = service["environment"]
        for key, value in CELERY_SETTINGS.items():
            assert env.get(key) == value, (name, key)
        assert env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/mlops/dags"
        mounts = {v.split(":")[1] for v in service["volumes"]}
        assert {"/opt/mlops/dags", "/opt/mlops/plugins", "/opt/mlops/config", "/opt/mlops/include"} <= mounts
    assert services["airflow-worker"]["command"][:2] == ["celery", "worker"]


def test_no_secret_has_a_default():
    text = (REPO_ROOT / "docker-compose.yaml").read_text()
    references = re.findall(r"(?<!\$)\$\{([A-Z_]+)([^}]*)\}", text)  # $${X}: escaped, not ours
    assert references
    for var, rest in references:
        assert rest == f":?set {var} in .env", f"${{{var}{rest}}} must be required, with no default"
    example = dict(line.split("=", 1) for line in (REPO_ROOT / ".env.example").read_text().splitlines() if "=" in line)
    assert {var for var, _ in references} <= set(example)
    for var, value in example.items():
        if any(word in var for word in ("PASSWORD", "SECRET", "KEY")):
            assert value == "change-me", f"{var} in .env.example must be a placeholder"
    for service in SERVICES.values():
        env = service.get("environment", {})
        for key, value in env.items() if isinstance(env, dict) else []:
            if any(word in key for word in ("PASSWORD", "SECRET", "FERNET", "AUTH")):
                assert "${" in str(value), f"{key} is set in the compose file itself"
