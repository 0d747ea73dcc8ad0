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

from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


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

    def map(self, function: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``[function(item) for item in items]`` split into ``count`` parts (see :func:`map_all`)."""
        return map_all(self, function, items)


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


def _map_part(function: Callable[[T], R], items: Sequence[T]) -> list[R]:
    return [function(item) for item in items]


def map_all(workers: Workers | None, function: Callable[[T], R], items: Iterable[T]) -> list[R]:
    """``[function(item) for item in items]``, the items split into ``worker_count(workers)``
    contiguous parts of (nearly) equal length run by :func:`run_all` (one task per part, for
    many similar calls such as a segment's 128 record commitments)."""
    items = list(items)
    parts = min(worker_count(workers), len(items))
    if parts <= 1:
        return _map_part(function, items)
    bounds = [len(items) * p // parts for p in range(parts + 1)]
    results = run_all(workers, [(_map_part, function, items[bounds[p] : bounds[p + 1]]) for p in range(parts)])
    return [result for part in results for result in part]
