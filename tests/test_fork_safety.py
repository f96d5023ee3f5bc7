"""Processes forked while face finders are alive survive: os.fork, subprocess with preexec_fn (how Ray starts
its processes) and joblib's loky workers, each finding a face in the child. A crash or a hang fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import pytest

from stacks.faces import BackgroundFinder, make_finder, thread_finder

CHILD_SECONDS = 60


def _wait(pid: int) -> int:
    """The child's exit code; a child that hangs is killed and fails the test."""
    deadline = time.monotonic() + CHILD_SECONDS
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {CHILD_SECONDS} s")


def _faces_in_child(head: np.ndarray) -> int:
    return len(make_finder("detection").find(head))


def test_a_forked_child_survives_the_finders_other_threads_hold_and_finds_faces(head: np.ndarray) -> None:
    searcher = BackgroundFinder("detection")  # a live thread holding a detector in a thread-local
    assert len(searcher.find(head)) == 1
    pid = os.fork()
    if pid == 0:  # the child: its own detector; leave without running anything of pytest's
        code = 3
        try:
            code = 0 if _faces_in_child(head) == 1 else 2
        finally:
            os._exit(code)
    assert _wait(pid) == 0  # -11 would be a segfault, 2 no face found
    assert len(searcher.find(head)) == 1  # the parent's detector still works


@pytest.mark.timeout(CHILD_SECONDS + 30)  # a child stuck before exec holds Popen itself: only this ends it
def test_a_forked_child_builds_its_own_thread_finder(head: np.ndarray) -> None:
    """The forking thread keeps its thread-locals in the child: its cached finder is the parent's, whose
    MediaPipe thread the child does not have. The child must build its own instead of waiting for ever."""
    assert len(thread_finder("detection").find(head)) == 1
    pid = os.fork()
    if pid == 0:
        code = 3
        try:
            code = 0 if len(thread_finder("detection").find(head)) == 1 else 2
        finally:
            os._exit(code)
    assert _wait(pid) == 0
    assert len(thread_finder("detection").find(head)) == 1


@pytest.mark.timeout(CHILD_SECONDS + 30)  # a child stuck before exec holds Popen itself: only this ends it
def test_subprocess_with_preexec_fn_while_finders_are_alive(head: np.ndarray) -> None:
    searcher = BackgroundFinder("detection")
    assert len(searcher.find(head)) == 1
    done = subprocess.run([sys.executable, "-c", "print('started')"], preexec_fn=lambda: None,
                          capture_output=True, text=True, timeout=CHILD_SECONDS)
    assert done.returncode == 0 and done.stdout.strip() == "started"
    assert len(searcher.find(head)) == 1


def test_loky_workers_find_faces_while_the_parent_holds_finders(head: np.ndarray) -> None:
    from joblib import Parallel, delayed

    searcher = BackgroundFinder("detection")
    assert len(searcher.find(head)) == 1
    found = Parallel(n_jobs=2, backend="loky", timeout=CHILD_SECONDS)(delayed(_faces_in_child)(head) for _ in range(4))
    assert found == [1, 1, 1, 1]
