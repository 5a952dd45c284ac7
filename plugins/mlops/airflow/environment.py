"""Settings for an embedded Airflow (demo, tests, `mlops up`): SQLite under `$MLOPS_HOME/airflow`.

Call :func:`configure` before anything imports airflow; values already in the environment win.
"""

from __future__ import annotations

import json
import os

from mlops.core.config import REPO_ROOT
from mlops.io.paths import mlops_home


def smtp_connection(host: str, port: int, from_email: str = "mlops@localhost") -> str:
    """The `AIRFLOW_CONN_SMTP_DEFAULT` value for a plain SMTP server (no TLS), e.g. a local sink."""
    return json.dumps(
        {
            "conn_type": "smtp",
            "host": host,
            "port": port,
            "extra": {"disable_tls": True, "disable_ssl": True, "from_email": from_email},
        }
    )


def configure(parallelism: int = 4) -> dict[str, str]:
    """Set Airflow's environment for an embedded SQLite deployment; returns what it set."""
    home = mlops_home() / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    wanted = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__PARALLELISM": str(parallelism),
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING",
        "GX_ANALYTICS_ENABLED": "false",
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "MLOPS_HOME": str(mlops_home()),
    }
    set_now = {k: v for k, v in wanted.items() if k not in os.environ}
    os.environ.update(set_now)
    return set_now
