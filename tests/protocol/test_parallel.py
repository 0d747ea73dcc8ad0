"""Splitting work over the caller's executor: results in order, errors after every part, and no
deadlock when the executor has no free worker."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.protocol.parallel import Workers, run_all


def test_results_in_order_with_and_without_workers():
    calls = [(pow, i, 2) for i in range(7)]
    assert run_all(None, calls) == [i * i for i in range(7)]
    with ThreadPoolExecutor(3) as pool:
        assert Workers(pool, 3).run_all(calls) == [i * i for i in range(7)]


def test_first_error_raised_after_all_parts_ran():
    ran = []

    def part(i: int) -> int:
        ran.append(i)
        if i in (1, 3):
            raise ValueError(f"part {i}")
        return i

    with ThreadPoolExecutor(2) as pool, pytest.raises(ValueError, match="part [13]"):
        run_all(Workers(pool, 2), [(part, i) for i in range(5)])
    assert sorted(ran) == [0, 1, 2, 3, 4]


def test_busy_executor_runs_parts_inline():
    """The only worker is blocked until the split finishes: every part runs on the caller."""
    release = threading.Event()
    threads = []
    with ThreadPoolExecutor(1) as pool:
        blocker = pool.submit(release.wait)
        try:
            results = run_all(Workers(pool, 4), [(lambda i=i: threads.append(threading.get_ident()) or i,) for i in range(4)])
        finally:
            release.set()
        blocker.result()
    assert results == [0, 1, 2, 3]
    assert set(threads) == {threading.get_ident()}


def test_bad_worker_count():
    with ThreadPoolExecutor(1) as pool:
        for count in (0, -1, True, 1.5):
            with pytest.raises(ValueError, match="worker count"):
                Workers(pool, count)
