"""`mlops.io.locks`: exclusive and shared holders across processes and threads, re-entrant within a thread."""

from __future__ import annotations

import multiprocessing
import threading
import time

import pytest

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


def _hold_shared(path, ready, release) -> None:
    with locks.shared(path):
        ready.set()
        release.wait(30)


def test_shared_holders_coexist_across_threads_and_processes_and_an_exclusive_one_waits(tmp_path):
    path = tmp_path / "serving.lock"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    child = ctx.Process(target=_hold_shared, args=(path, ready, release))
    child.start()
    got: list[str] = []

    def take(kind) -> None:
        with getattr(locks, kind)(path):
            got.append(kind)

    try:
        assert ready.wait(60)
        reader = threading.Thread(target=take, args=("shared",))
        reader.start()
        reader.join(10)
        assert got == ["shared"]  # beside the child's shared hold
        with locks.shared(path):  # this thread too
            writer = threading.Thread(target=take, args=("exclusive",))
            writer.start()
            writer.join(0.5)
        assert writer.is_alive() and got == ["shared"]  # the child still holds it shared
        release.set()
        writer.join(30)
        assert got == ["shared", "exclusive"]
    finally:
        release.set()
        child.join(30)


def test_a_shared_hold_inside_an_exclusive_one_nests_and_the_reverse_is_refused(tmp_path):
    path = tmp_path / "serving.lock"
    with locks.exclusive(path), locks.shared(path), locks.exclusive(path):
        pass
    with (
        locks.shared(path),
        locks.shared(path),
        pytest.raises(RuntimeError, match="exclusive hold asked inside a shared one"),
        locks.exclusive(path),
    ):
        pass
    with locks.exclusive(path):  # everything was released
        pass


def test_the_serving_lock_lives_in_the_pipelines_home(mlops_home):
    with locks.serving("flights", exclusive=True):
        assert (mlops_home / "locks" / "flights.serving.lock").exists()
