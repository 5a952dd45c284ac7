"""Registered versions' artifacts, downloaded from MLflow once and kept under `$MLOPS_HOME/cache/`.

An Airflow task is a process of its own: the daily monitor task downloaded the same evaluation
scores of the same version from MLflow every day, and before that paid for MLflow's client (imports
and store set-up: 3.7 s on this machine, without precompiled bytecode). A version's artifacts are
written by its training and evaluation and then stay as they are, so the first task keeps a copy and
the next ones read it without asking MLflow, or importing it. (A retraining that reuses a version,
its data, config and code unchanged, evaluates it again: normally on the same rows, so with the same
`challenger_score`; the champion's column of `evaluation/eval_predictions.parquet` may differ, and the
kept copy keeps the first.)

Layout: `cache/mlflow-artifacts/<key>/<sha256><suffix>`, `key` a hash of (tracking URI, model name,
version, artifact path): the URI is in it, so another MLflow server does not share copies, and only
its hash is written (a URI may hold a password). The file's name is the SHA-256 of its content, so a
damaged copy (truncated, changed) is found on every read, removed and downloaded again. A copy is
written to a temporary name and renamed (`lake.staged`): a reader sees a whole file or none, and
tasks that download at once write the same name with the same content (with different content, the
folder holds both and the newest is read). An artifact the version does not have yet is not
remembered: the next call asks MLflow again. A kept copy is never compared with MLflow again.

A version's model (the MLflow model folder: `MLmodel`, the pickle, environment files) is kept the
same way as a folder, `cache/mlflow-artifacts/<key>/<sha256>/`, its name the SHA-256 of the
`MANIFEST.json` inside it, which lists each file's SHA-256 (`fetch_model`): a folder is renamed into
place whole, and a damaged one is found on every read and removed.

Assumes a version number is never given to another model version on the same tracking server: MLflow
numbers versions on from the highest ever registered, unless the registered model is deleted and
created again (nothing here deletes one). Deleting `cache/` is always safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from mlops.io import lake
from mlops.io.paths import cache_dir, mlflow_tracking_uri

FOLDER = "mlflow-artifacts"
MODEL = "model"  # the artifact path under which fetch_model keeps a version's MLflow model folder
MANIFEST = "MANIFEST.json"
_CHUNK = 1 << 20
_DIGEST = re.compile(r"[0-9a-f]{64}")
STALE_DOWNLOAD_SECONDS = 3600.0  # a model download folder older than this was left by a killed task


def folder(name: str, version: str | int, artifact_path: str) -> Path:
    """The cache folder of one version's artifact (it holds at most one valid copy)."""
    key = json.dumps([mlflow_tracking_uri(), name, str(version), artifact_path])
    return cache_dir() / FOLDER / hashlib.sha256(key.encode()).hexdigest()[:32]


def cached(name: str, version: str | int, artifact_path: str) -> Path | None:
    """The kept copy of the artifact when there is a whole one, else None; damaged copies are removed.

    A copy is whole when the SHA-256 of its bytes is its file name (reads the file once). Never asks MLflow.
    """
    where = folder(name, version, artifact_path)
    if not where.is_dir():
        return None
    pattern = re.compile(rf"[0-9a-f]{{64}}{re.escape(Path(artifact_path).suffix)}")
    copies = sorted(
        (p for p in where.iterdir() if pattern.fullmatch(p.name)), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for path in copies:
        try:
            whole = _sha256(path) == path.name[:64]
        except FileNotFoundError:  # removed meanwhile by another reader that found it damaged
            continue
        if whole:
            return path
        path.unlink(missing_ok=True)
    return None


def fetch(name: str, version: str | int, artifact_path: str) -> Path | None:
    """A local copy of `artifact_path` of registered version `version` of model `name`, downloaded once.

    Returns the kept copy (see `cached`), else downloads the artifact from the version's run, keeps it
    and returns the copy; None when the run has no such artifact (e.g. the version was never
    evaluated), which is not remembered. Treat the file as read-only. Raises LookupError for a missing
    version and registry.RegistryUnavailableError when MLflow cannot be asked ("could not ask" is
    not "no artifact").
    """
    path = cached(name, version, artifact_path)
    if path is not None:
        return path
    from mlflow.exceptions import MlflowException

    from mlops.io import registry

    ref = registry.version(name, version)
    import mlflow.artifacts

    with tempfile.TemporaryDirectory() as tmp:
        try:
            downloaded = Path(
                mlflow.artifacts.download_artifacts(run_id=ref.run_id, artifact_path=artifact_path, dst_path=tmp)
            )
        except (MlflowException, OSError) as exc:
            if registry.unreachable(exc):
                raise registry.RegistryUnavailableError(
                    f"MLflow is unreachable reading {artifact_path} of {name} v{version}: {exc}"
                ) from exc
            return None
        return _keep(downloaded, folder(name, version, artifact_path), Path(artifact_path).suffix)


def _keep(downloaded: Path, where: Path, suffix: str) -> Path:
    """Copy `downloaded` into `where` under the SHA-256 of its content, atomically; the copy's path.

    Another copy already there is left alone (a reader may hold it); `cached` takes the newest.
    """
    target = where / f"{_sha256(downloaded)}{suffix}"
    with lake.staged(target) as tmp:
        shutil.copyfile(downloaded, tmp)
    return target


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_model(name: str, version: str | int) -> Path:
    """A local copy of the MLflow model folder of registered version `version` of model `name`, downloaded once.

    Returns the kept folder (`cached_model`), else downloads `models:/<name>/<version>` and keeps it.
    Pass the folder to the flavour's `load_model`; treat it as read-only. Raises LookupError for a
    missing version, registry.RegistryUnavailableError when MLflow cannot be asked.
    """
    path = cached_model(name, version)
    if path is not None:
        return path
    from mlops.io import registry

    ref = registry.version(name, version)  # LookupError for a missing version, before any download
    import mlflow.artifacts

    where = folder(name, version, MODEL)
    where.mkdir(parents=True, exist_ok=True)
    _remove_stale_downloads(where)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=where))
    try:
        with registry.reachable(f"downloading {ref.uri}"):
            downloaded = Path(mlflow.artifacts.download_artifacts(artifact_uri=ref.uri, dst_path=str(tmp)))
        manifest = json.dumps({str(p.relative_to(downloaded)): _sha256(p) for p in _files(downloaded)}, sort_keys=True)
        (downloaded / MANIFEST).write_text(manifest)
        target = where / hashlib.sha256(manifest.encode()).hexdigest()
        try:
            os.rename(downloaded, target)  # whole or not at all; fails when another task kept it first
        except OSError:
            if not target.is_dir():
                raise
        return target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def cached_model(name: str, version: str | int) -> Path | None:
    """The kept model folder of the version when a whole one is there, else None; damaged ones are removed.

    Whole: the SHA-256 of its `MANIFEST.json` is the folder's name, and every file the manifest lists
    has the SHA-256 it states (reads every file once). Never asks MLflow.
    """
    where = folder(name, version, MODEL)
    if not where.is_dir():
        return None
    copies = sorted(
        (p for p in where.iterdir() if _DIGEST.fullmatch(p.name)), key=lambda p: p.stat().st_mtime, reverse=True
    )
    for path in copies:
        try:
            text = (path / MANIFEST).read_bytes()
            listed = json.loads(text)
            whole = hashlib.sha256(text).hexdigest() == path.name and all(
                _sha256(path / rel) == digest for rel, digest in listed.items()
            )
        except (OSError, ValueError, AttributeError):  # missing or unreadable file, bad manifest
            whole = False
        if whole:
            return path
        shutil.rmtree(path, ignore_errors=True)
    return None


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _remove_stale_downloads(where: Path) -> None:
    """Remove download folders that killed tasks left (older than STALE_DOWNLOAD_SECONDS)."""
    cutoff = time.time() - STALE_DOWNLOAD_SECONDS
    for p in where.glob(".download-*"):
        try:
            if p.stat().st_mtime < cutoff:
                shutil.rmtree(p, ignore_errors=True)
        except FileNotFoundError:
            pass
