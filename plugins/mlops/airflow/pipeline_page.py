"""The pipeline page as a FastAPI app, mounted in Airflow's api-server by the mlops plugin.

Routes (under the mount prefix, `/mlops` in the plugin):
- `GET /` the list of pipelines (HTML),
- `GET /pipelines/{name}` a pipeline's page (HTML, plots inline: see `mlops.reporting.pipeline_page`),
  404 for a pipeline that has no valid config,
- `GET /pipelines/{name}/versions/{version}/promotion` the promotion report of a version (HTML, read
  from its MLflow run), 404 when the version or its report does not exist, 503 when MLflow is unreachable,
- `GET /health` `{"status": "ok"}`.

Importing this module costs nothing heavy: Airflow imports the plugin in every process (scheduler,
DAG processor, workers), so FastAPI, pandas and matplotlib are imported on the first request, by
`LazyApp`, in the api-server only.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Awaitable, Callable
from typing import Any

URL_PREFIX = "/mlops"


class LazyApp:
    """An ASGI app that builds the real one (`module:function`, called without arguments) on its first call."""

    def __init__(self, factory: str) -> None:
        self.factory = factory
        self._app: Callable[..., Awaitable[None]] | None = None
        self._lock = threading.Lock()

    def _build(self) -> Callable[..., Awaitable[None]]:
        with self._lock:
            if self._app is None:
                module, _, name = self.factory.partition(":")
                self._app = getattr(importlib.import_module(module), name)()
        return self._app

    async def __call__(self, scope: dict[str, Any], receive: Callable, send: Callable) -> None:
        app = self._app or self._build()
        await app(scope, receive, send)

    def __repr__(self) -> str:  # how Airflow's plugin listing shows it
        return f"LazyApp({self.factory})"


def create_app():
    """The FastAPI app of the pipeline page. Pages are rendered one at a time (matplotlib's pyplot is not
    thread-safe) in FastAPI's thread pool."""
    from fastapi import FastAPI, HTTPException
    from fastapi.responses import HTMLResponse

    from mlops.core.config import load_each
    from mlops.reporting.pipeline_page import page_data, render_index, render_page

    app = FastAPI(title="MLOps pipelines", docs_url=None, redoc_url=None, openapi_url=None)
    render_lock = threading.Lock()

    @app.get("/", response_class=HTMLResponse)
    def index() -> str:
        configs, errors = load_each()
        names = sorted(cfg.name for cfg in configs.values())
        return render_index(names, {path.name: str(error) for path, error in errors.items()})

    @app.get("/pipelines/{name}", response_class=HTMLResponse)
    def pipeline(name: str) -> str:
        configs, _ = load_each()
        if name not in {cfg.name for cfg in configs.values()}:
            raise HTTPException(status_code=404, detail=f"no valid pipeline config named {name!r}")
        data = page_data(name)
        with render_lock:
            return render_page(data)

    @app.get("/pipelines/{name}/versions/{version}/promotion", response_class=HTMLResponse)
    def promotion_report(name: str, version: str) -> str:
        from mlops.io.registry import RegistryUnavailableError
        from mlops.stages.promote import read_report

        configs, _ = load_each()
        if name not in {cfg.name for cfg in configs.values()} or not version.isdigit():
            raise HTTPException(status_code=404, detail=f"no pipeline {name!r} or no version {version!r}")
        try:
            page = read_report(name, version)
        except LookupError as exc:
            raise HTTPException(status_code=404, detail=str(exc)) from None
        except RegistryUnavailableError as exc:
            raise HTTPException(status_code=503, detail=str(exc)) from None
        if page is None:
            raise HTTPException(status_code=404, detail=f"{name} version {version} has no promotion report")
        return page

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


app = LazyApp(f"{__name__}:create_app")
