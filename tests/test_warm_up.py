"""Warming the prepare workers' face finders: a failed build is reported at once, not after a 120 s wait."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from stacks.faces import start_warm_up


def test_a_failed_build_releases_the_others_at_once() -> None:
    calls = {"n": 0}
    lock = threading.Lock()

    def build_one() -> None:
        with lock:
            calls["n"] += 1
            first = calls["n"] == 1
        if first:
            time.sleep(0.2)  # the others are already waiting at the barrier
            raise RuntimeError("graph could not be built")

    start = time.monotonic()
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = start_warm_up("detection", 3, pool.submit, build_one=build_one)
        errors = [f.exception(timeout=30) for f in futures]
    assert time.monotonic() - start < 10
    assert [type(e) for e in errors if e is not None] == [RuntimeError]


def test_every_task_lands_on_a_thread_of_its_own() -> None:
    names: list[str] = []
    with ThreadPoolExecutor(max_workers=3) as pool:
        for f in start_warm_up("detection", 3, pool.submit,
                               build_one=lambda: names.append(threading.current_thread().name)):
            f.result(timeout=30)
    assert len(set(names)) == 3


@pytest.mark.parametrize("workers", [1, 2])
def test_real_finders_are_built(workers: int) -> None:
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for f in start_warm_up("detection", workers, pool.submit):
            assert f.result(timeout=120) is None
