"""`mlops.io.locks.exclusive`: one holder across processes and threads, re-entrant within a thread."""

from __future__ import annotations

import multiprocessing
import threading
import time

from mlops.io import locks


def _hold(path, ready, release) -> None:
    with locks.exclusive(path):
        ready.set()
        release.wait(30)


def test_a_block_inside_another_on_the_same_lock_does_not_wait_for_itself(tmp_path):
    path = tmp_path / "a" / "store.lock"
    with locks.exclusive(path), locks.exclusive(path), locks.exclusive(tmp_path / "a" / ".." / "a" / "store.lock"):
        pass
    with locks.exclusive(path):  # released whole: taken again at once
        pass


def test_another_thread_and_another_process_wait_for_the_holder(tmp_path):
    path = tmp_path / "store.lock"
    got: list[float] = []

    def other_thread() -> None:
        with locks.exclusive(path):
            got.append(time.monotonic())

    with locks.exclusive(path):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not got  # waiting, not re-entering another thread's lock
        released = time.monotonic()
    thread.join(10)
    assert got and got[0] >= released

    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold, args=(path, ready, release))
    child.start()
    try:
        assert ready.wait(60)
        waiter = threading.Thread(target=other_thread)
        waiter.start()
        waiter.join(0.5)
        assert waiter.is_alive() and len(got) == 1  # the child holds it
        release.set()
        waiter.join(30)
        assert len(got) == 2
    finally:
        release.set()
        child.join(30)
