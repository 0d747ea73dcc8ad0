"""Splitting one protocol computation over the caller's threads.

Why: the protocol core owns no thread pool (the daemons decide how many cores a job gets), yet
single large computations (an NTT of 2^16 scalars, a 2^15-point MSM, a record's PoS tables)
get faster when split over threads, because the numba kernels and arkworks release the GIL.
The caller passes a :class:`Workers` (its ``concurrent.futures`` executor and how many parts to
split into); ``None`` everywhere means "run on the calling thread".

Splitting never deadlocks, even when the executor is busy or is the one running the caller:
:meth:`Workers.run_all` runs the first part itself and, for every other part that no worker has
started yet, takes it back (``Future.cancel``) and runs it inline as well.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Workers:
    """The caller's executor and the number of parts a large computation is split into."""

    executor: Executor
    count: int

    def __post_init__(self) -> None:
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise ValueError(f"worker count must be a positive int, got {self.count!r}")

    def run_all(self, calls: Sequence[tuple[Callable[..., Any], ...]]) -> list[Any]:
        """Run ``(function, *args)`` calls, in parallel where workers are free; their results in
        order. The first exception raised by a call is re-raised after all calls finished."""
        return run_all(self, calls)


def worker_count(workers: Workers | None) -> int:
    return 1 if workers is None else workers.count


def run_all(workers: Workers | None, calls: Sequence[tuple[Callable[..., Any], ...]]) -> list[Any]:
    """See :meth:`Workers.run_all`; with ``workers=None`` (or one call) everything runs inline."""
    if workers is None or workers.count == 1 or len(calls) <= 1:
        return [call[0](*call[1:]) for call in calls]
    futures = [workers.executor.submit(*call) for call in calls[1:]]
    results: list[Any] = [None] * len(calls)
    error: BaseException | None = None
    try:
        results[0] = calls[0][0](*calls[0][1:])
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after the other parts
        error = exc
    for i, (future, call) in enumerate(zip(futures, calls[1:]), start=1):
        try:
            # a part no worker has picked up yet runs here: no waiting on a saturated executor
            results[i] = call[0](*call[1:]) if future.cancel() else future.result()
        except BaseException as exc:  # noqa: BLE001
            error = error or exc
    if error is not None:
        raise error
    return results
