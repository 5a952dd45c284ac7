"""A small client of Airflow's REST API v2 (requests only): trigger runs, backfills, read states."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests

# The states a DAG run ends in (Airflow 3: queued and running are the others).
ENDED_RUN_STATES = ("success", "failed")


class AirflowApi:
    """The REST API v2 at `base`, with a bearer token when the deployment requires a login."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base.rstrip("/")
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    @classmethod
    def connect(cls, base: str, airflow_home: Path, services=()) -> AirflowApi:
        """Log in as `admin` (password from the simple auth manager's generated file) and return a client."""
        from mlops.local.stack import wait_until

        passwords = airflow_home / "simple_auth_manager_passwords.json.generated"
        wait_until(passwords.exists, 60, "the generated admin password", list(services))
        password = json.loads(passwords.read_text())["admin"]
        r = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=30)
        r.raise_for_status()
        return cls(base, r.json()["access_token"])

    def get(self, path: str, **params: Any) -> dict:
        r = self.session.get(f"{self.base}/api/v2{path}", params=params, timeout=60)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict) -> requests.Response:
        return self.session.post(f"{self.base}/api/v2{path}", json=body, timeout=60)

    def put(self, path: str, body: dict | None = None) -> requests.Response:
        return self.session.put(f"{self.base}/api/v2{path}", json=body, timeout=60)

    def patch(self, path: str, body: dict) -> requests.Response:
        return self.session.patch(f"{self.base}/api/v2{path}", json=body, timeout=60)

    def trigger(self, dag_id: str, run_id: str, logical_date: str | None, conf: dict) -> dict:
        r = self.post(f"/dags/{dag_id}/dagRuns", {"dag_run_id": run_id, "logical_date": logical_date, "conf": conf})
        if r.status_code != 200:
            raise RuntimeError(f"trigger {dag_id} {run_id}: HTTP {r.status_code} {r.text}")
        return r.json()

    def wait_run(self, dag_id: str, run_id: str, timeout: float, services=()) -> dict:
        """Poll the run until it is `success` or `failed`; returns the run as the API gives it.

        Raises TimeoutError after `timeout` seconds, or RuntimeError when one of `services` (the stack's
        processes) has died meanwhile (`stack.wait_until`)."""
        from mlops.local.stack import wait_until

        run: dict = {}

        def ended() -> bool:
            run.update(self.get(f"/dags/{dag_id}/dagRuns/{run_id}"))
            return run["state"] in ENDED_RUN_STATES

        wait_until(ended, timeout, f"{dag_id} run {run_id}", list(services))
        return run

    def tasks(self, dag_id: str, run_id: str) -> dict[str, str | None]:
        found = self.get(f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances")["task_instances"]
        return {t["task_id"]: t["state"] for t in found}

    def runs(self, dag_id: str, **params: Any) -> list[dict]:
        """Every run of `dag_id` (paged), oldest logical date first."""
        out, offset = [], 0
        while True:
            page = self.get(f"/dags/{dag_id}/dagRuns", limit=100, offset=offset, order_by="logical_date", **params)
            out += page["dag_runs"]
            offset += len(page["dag_runs"])
            if not page["dag_runs"] or offset >= page["total_entries"]:
                return out
