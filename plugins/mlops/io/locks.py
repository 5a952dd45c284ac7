"""Exclusive locks across the processes of one host (`fcntl.flock` on a lock file)."""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

_held = threading.local()  # path -> how many blocks of this thread hold it


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created, with its folder, if missing) for the block.

    Blocks until the lock is free; the kernel releases it if the holder dies. Re-entrant within a
    thread (a block inside another on the same path holds it already); another thread of the process
    waits, as another process does.
    """
    key = str(Path(path).resolve())
    depth = getattr(_held, "depth", None)
    if depth is None:
        depth = _held.depth = {}
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        depth[key] = 1
        try:
            yield
        finally:
            depth[key] = 0
            fcntl.flock(fh, fcntl.LOCK_UN)


def gx_store(project_root: Path):
    """The lock of the Great Expectations file store of `project_root` (the folder of its `gx` project).

    Every write to the suites, validation definitions, checkpoints and Data Docs happens under it, and
    every read of what another process may be writing. Validation results are written outside it, each
    to a new file, whole (`gx_checks._whole_file_writes`).
    """
    return exclusive(Path(project_root) / "store.lock")
