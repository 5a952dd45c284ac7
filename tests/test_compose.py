"""docker-compose.yaml: parses, matches the README and constraints.txt, and has no default for a secret."""

from __future__ import annotations

import importlib.metadata
import re

import yaml

from mlops import IDLE_THREADS_SLEEP
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
    assert f"mlflow[auth]=={pins['mlflow']}" in mlflow_file and "FROM python:3.11" in mlflow_file
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
        assert env["MLFLOW_DISABLE_TELEMETRY"] == "true", name  # as in the local stack and the demo
        assert env["AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL"] == "1", name  # as in the local stack
        assert env["OMP_WAIT_POLICY"] == "PASSIVE", name  # as in the local stack
        assert env["OPENBLAS_THREAD_TIMEOUT"] == "4", name
        assert {k: str(env[k]) for k in IDLE_THREADS_SLEEP} == IDLE_THREADS_SLEEP, name  # the package's own
        mounts = {v.split(":")[1] for v in service["volumes"]}
        assert {"/opt/mlops/dags", "/opt/mlops/plugins", "/opt/mlops/config", "/opt/mlops/include"} <= mounts
    assert services["airflow-worker"]["command"][:2] == ["celery", "worker"]


PUBLISH = "${MLOPS_PUBLISH_ADDRESS:-127.0.0.1}"


def _example() -> dict[str, str]:
    lines = (REPO_ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


def test_no_secret_has_a_default():
    text = (REPO_ROOT / "docker-compose.yaml").read_text()
    references = re.findall(r"(?<!\$)\$\{([A-Z_]+)([^}]*)\}", text)  # $${X}: escaped, not ours
    assert references
    for var, rest in references:
        if var == "MLOPS_PUBLISH_ADDRESS":  # not a secret: where ports are published, loopback unless opted in
            assert rest == ":-127.0.0.1", rest
            continue
        assert rest == f":?set {var} in .env", f"${{{var}{rest}}} must be required, with no default"
    example = _example()
    assert {var for var, _ in references} - {"MLOPS_PUBLISH_ADDRESS"} <= set(example)
    for service in SERVICES.values():
        env = service.get("environment", {})
        for key, value in env.items() if isinstance(env, dict) else []:
            if any(word in key for word in ("PASSWORD", "SECRET", "FERNET", "AUTH")) and not key.endswith("_PATH"):
                assert "${" in str(value), f"{key} is set in the compose file itself"


def test_the_example_secrets_are_refused():
    """`${X:?...}` refuses an empty value: the example's secrets are empty, so a copied .env cannot start."""
    example = _example()
    secrets = [v for v in example if any(word in v for word in ("PASSWORD", "SECRET", "KEY"))]
    assert {"POSTGRES_PASSWORD", "MLFLOW_ADMIN_PASSWORD", "MLFLOW_SECRET_KEY", "AIRFLOW_FERNET_KEY"} <= set(secrets)
    for var in secrets:
        assert example[var] == "", f"{var} in .env.example must be empty (compose then refuses it)"
    text = (REPO_ROOT / "docker-compose.yaml").read_text()
    for var in secrets:
        assert f"${{{var}:?set {var} in .env}}" in text, var


def test_ports_are_published_on_loopback_unless_opted_in():
    published = {name: s["ports"] for name, s in SERVICES.items() if "ports" in s}
    assert set(published) == {"mlflow", "mailpit", "airflow-apiserver"}
    for name, ports in published.items():
        for port in ports:
            assert str(port).startswith(f"{PUBLISH}:"), f"{name} publishes {port} on every interface"
    assert "MLOPS_PUBLISH_ADDRESS" in (REPO_ROOT / ".env.example").read_text()  # the opt-in is documented


def test_mlflow_runs_its_basic_auth_app_with_credentials_from_env():
    mlflow = SERVICES["mlflow"]
    command = mlflow["command"]
    assert command[command.index("--app-name") + 1] == "basic-auth"
    env = mlflow["environment"]
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "${MLFLOW_ADMIN_USERNAME:?set MLFLOW_ADMIN_USERNAME in .env}"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == "${MLFLOW_ADMIN_PASSWORD:?set MLFLOW_ADMIN_PASSWORD in .env}"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "${MLFLOW_SECRET_KEY:?set MLFLOW_SECRET_KEY in .env}"
    ini_mount = next(v for v in mlflow["volumes"] if v.endswith(":ro") and "mlflow-auth.ini" in v)
    assert env["MLFLOW_AUTH_CONFIG_PATH"] == ini_mount.split(":")[1]
    assert any(v.startswith("mlflow-auth:") for v in mlflow["volumes"]) and "mlflow-auth" in COMPOSE["volumes"]
    ini = (REPO_ROOT / "config/docker/mlflow-auth.ini").read_text()
    assert "admin_password" not in ini and "database_uri = sqlite:////mlflow/auth/" in ini
    for name, service in _airflow_services().items():  # the tasks log in as that user
        assert service["environment"]["MLFLOW_TRACKING_USERNAME"] == env["MLFLOW_AUTH_ADMIN_USERNAME"], name
        assert service["environment"]["MLFLOW_TRACKING_PASSWORD"] == env["MLFLOW_AUTH_ADMIN_PASSWORD"], name


def test_the_mlflow_image_has_the_auth_app_pinned():
    dockerfile = (REPO_ROOT / "config/docker/mlflow.Dockerfile").read_text()
    assert f'"mlflow[auth]=={_pins()["mlflow"]}"' in dockerfile
    # Flask-WTF is not in constraints.txt (the project does not need it): pinned here, to what the tests run
    assert f"flask-wtf=={importlib.metadata.version('flask-wtf')}" in dockerfile
