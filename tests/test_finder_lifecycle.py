"""Face finders across threads and runs: one shared fd-2 silence, one close, a closed cached finder rebuilt."""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

from stacks.faces import DetectionFinder, native_stderr_silenced


def _fd2() -> tuple[int, int]:
    st = os.fstat(2)
    return st.st_dev, st.st_ino


def test_overlapping_silences_give_fd_2_back() -> None:
    """A enters, B enters, A leaves, B leaves: fd 2 is the real one again (not /dev/null)."""
    before = _fd2()
    a_in, b_in, a_out = threading.Event(), threading.Event(), threading.Event()

    def a() -> None:
        with native_stderr_silenced():
            a_in.set()
            b_in.wait(10)
        a_out.set()

    def b() -> None:
        a_in.wait(10)
        with native_stderr_silenced():
            b_in.set()
            a_out.wait(10)
            assert _fd2() != before  # still silenced while B is inside

    with ThreadPoolExecutor(2) as pool:
        for f in [pool.submit(a), pool.submit(b)]:
            f.result(timeout=30)
    assert _fd2() == before


def test_a_finder_closed_from_two_threads_at_once_closes_once(head) -> None:
    """A thread that ends frees its finder while close_finders() closes it: closing MediaPipe's detector
    twice at once crashed the journal server on stop (a segfault, -11)."""
    finder = DetectionFinder()
    assert len(finder.find(head)) == 1
    start = threading.Barrier(4)

    def close() -> None:
        start.wait(10)
        finder.close()

    with ThreadPoolExecutor(4) as pool:
        for f in [pool.submit(close) for _ in range(4)]:
            f.result(timeout=60)
    finder.close()  # and once more, afterwards


def test_a_thread_finder_closed_by_close_finders_is_built_again(head) -> None:
    """cli.main() closes every finder on its way out; the next stage run in the same process (tests, a
    notebook) must get a working finder, not the closed one its thread cached."""
    from stacks.faces import BackgroundFinder, close_finders, quiet_thread_finder, thread_finder

    first = thread_finder("detection")
    background = BackgroundFinder("detection")
    assert len(first.find(head)) == 1 and len(background.find(head)) == 1
    close_finders()
    assert not first.usable
    assert len(thread_finder("detection").find(head)) == 1 and thread_finder("detection") is not first
    assert len(quiet_thread_finder("detection").find(head)) == 1
    assert len(background.find(head)) == 1


def test_a_finished_threads_finder_is_reused_not_closed(head) -> None:
    """Closing prints MediaPipe's line on fd 2; a worker thread that ends hands its finder to the next one."""
    from stacks.faces import thread_finder

    def use() -> object:
        finder = thread_finder("detection")
        assert len(finder.find(head)) == 1
        return finder

    first = threading.Thread(target=lambda: found.append(use()))
    found: list = []
    first.start()
    first.join(30)
    first_finder = found[0]
    assert first_finder.usable  # its thread ended, and it was not closed
    second = threading.Thread(target=lambda: found.append(use()))
    second.start()
    second.join(30)
    assert found[1] is first_finder


def test_a_dropped_finder_is_closed_by_close_finders_not_by_the_collector(head) -> None:
    """MediaPipe's detector hangs when the cyclic garbage collector frees it (its thread pool goes first);
    a finder caught in a reference cycle keeps its detector until close_finders closes it."""
    import gc

    from stacks import faces

    finder = faces.DetectionFinder()
    assert len(finder.find(head)) == 1
    detector = finder._detector
    cycle = [finder]
    cycle.append(cycle)
    del finder, cycle
    gc.collect()  # with the detector in the cycle, this hung before
    assert any(kept is detector for _, kept in faces._detectors)
    faces.close_finders()
    assert not any(kept is detector for _, kept in faces._detectors)
