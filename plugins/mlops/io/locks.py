"""Locks across the processes of one host (`fcntl.flock` on a lock file): exclusive, or shared."""

from __future__ import annotations

import contextlib
import fcntl
import threading
from collections.abc import Iterator
from pathlib import Path

from mlops.io.paths import mlops_home

_held = threading.local()  # path -> [blocks of this thread holding it, whether the first took it exclusively]


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created, with its folder, if missing) for the block.

    Blocks until no other holder, exclusive or shared, is left; the kernel releases a lock whose holder
    dies. Re-entrant within a thread (a block inside another on the same path holds it already);
    another thread of the process waits, as another process does. Raises RuntimeError inside a
    `shared` block of the same thread on the same path (an upgrade would wait for itself).
    """
    with _flock(Path(path), exclusive=True):
        yield


@contextlib.contextmanager
def shared(path: Path) -> Iterator[None]:
    """Hold a shared lock on the file `path` for the block: shared holders coexist, an exclusive one waits.

    Re-entrant within a thread, also inside an `exclusive` block on the same path (which covers it).
    """
    with _flock(Path(path), exclusive=False):
        yield


@contextlib.contextmanager
def _flock(path: Path, exclusive: bool) -> Iterator[None]:
    key = str(path.resolve())
    held = getattr(_held, "held", None)
    if held is None:
        held = _held.held = {}
    if key in held:
        if exclusive and not held[key][1]:
            raise RuntimeError(f"lock {path}: an exclusive hold asked inside a shared one of the same thread")
        held[key][0] += 1
        try:
            yield
        finally:
            held[key][0] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        held[key] = [1, exclusive]
        try:
            yield
        finally:
            del held[key]
            fcntl.flock(fh, fcntl.LOCK_UN)


def gx_store(project_root: Path):
    """The lock of the Great Expectations file store of `project_root` (the folder of its `gx` project).

    Every write to the suites, validation definitions, checkpoints and Data Docs happens under it, and
    every read of what another process may be writing. Validation results are written outside it, each
    to a new file, whole (`gx_checks._whole_file_writes`).
    """
    return exclusive(Path(project_root) / "store.lock")


def serving(pipeline: str, exclusive: bool = False):
    """The lock of which model version serves which day of `pipeline` (`$MLOPS_HOME/locks/<pipeline>.serving.lock`).

    Shared by the runs deciding a day with a champion (validation against its training data, scoring),
    from reading the registry until their outputs are stored; held exclusively to commit a promotion
    (its first day follows from the days decided so far, `datasets.latest_served_day`) or a re-score's
    move of a champion's start. So a day is never decided by one version and served by another.
    """
    path = mlops_home() / "locks" / f"{pipeline}.serving.lock"
    return _flock(path, exclusive=exclusive)
