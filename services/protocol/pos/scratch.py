"""Reusable working memory of CPU table builds: one arena per thread, reused seed after seed.

Why: a K=20 table set needs about 40 MiB of short-lived arrays (parent and new ys, metadata,
the table's matches, the order of its sorted entries, radix-sort scratch) for the second it
takes to build. Allocated afresh for every seed, that memory costs page faults on every build
and, freed from worker threads, stays in glibc's per-thread heaps (the process grows by far
more than one build needs). A :class:`TableScratch` is allocated once, sized to the largest
table it has seen plus 1/16 headroom (about 2^K entries: 36 bytes per entry, 40 MiB at K=20),
and reused by every build given it.

Who owns it: the caller. ``create_tables(..., scratch=None)`` uses :func:`thread_scratch`, the
calling thread's arena (threads of a plotting pool each keep one for their lifetime; a thread
that stops plotting may drop it with :func:`release_thread_scratch`). An arena serves one build
at a time: a second build given the same arena meanwhile is refused (RuntimeError).

Buffers (``C`` = capacity entries, all reused for every table of a build):
  ``y_parent`` / ``y_new`` uint32 C each: the sorted parent ys and Fn's new ys (swapped per table);
  ``meta_parent_*`` / ``meta_new_*``: (hi, lo) metadata of the sorted parent and of the new
    entries in creation order (hi uint16 at K <= 20);
  ``pairs``: the table's matches, packed (layout.py); ``order`` uint32: creation index of each
    sorted entry. The keystream and the radix sort borrow buffers that are dead at the time.
"""

from __future__ import annotations

import threading

import numpy as np

from .layout import meta_hi_dtype, pairs_dtype, table_pair_bits
from .params import MAX_BUCKET_SIZE

_FIELDS = ("y_parent", "y_new", "meta_parent_hi", "meta_parent_lo", "meta_new_hi", "meta_new_lo", "pairs", "order")


class TableScratch:
    """Working arrays of one table build at a time (see the module docstring)."""

    HEADROOM_SHIFT = 4  # room for 2^K + 2^K / 16 entries: K=20 tables hold up to ~1.08 * 2^K

    def __init__(self) -> None:
        self.in_use = threading.Lock()  # held by the build working in it
        self.release()

    @staticmethod
    def _dtypes_for(k: int) -> dict[str, np.dtype]:
        hi = meta_hi_dtype(k)
        return {
            "y_parent": np.dtype(np.uint32), "y_new": np.dtype(np.uint32), "order": np.dtype(np.uint32),
            "meta_parent_hi": hi, "meta_new_hi": hi,
            "meta_parent_lo": np.dtype(np.uint64), "meta_new_lo": np.dtype(np.uint64),
            "pairs": pairs_dtype(table_pair_bits(k)),
        }

    @property
    def nbytes(self) -> int:
        return sum(getattr(self, name).nbytes for name in _FIELDS)

    def prepare(self, k: int) -> None:
        """Ready for a build at ``k``: dtypes for ``k`` and room for at least 2^K entries."""
        dtypes = self._dtypes_for(k)
        if dtypes != self._dtypes:
            self._dtypes = dtypes
            self.capacity = 0
            for name in _FIELDS:
                setattr(self, name, np.empty(0, dtypes[name]))
        self._headroom = max((1 << k) >> self.HEADROOM_SHIFT, MAX_BUCKET_SIZE)
        self.grow(1 << k)

    def grow(self, needed: int) -> None:
        """Capacity of at least ``needed`` entries (plus headroom when it must grow); the
        contents of every buffer are kept."""
        if needed <= self.capacity:
            return
        capacity = needed + self._headroom
        for name in _FIELDS:
            old = getattr(self, name)
            new = np.empty(capacity, old.dtype)
            new[: old.shape[0]] = old
            setattr(self, name, new)
        self.capacity = capacity

    def swap_ys(self) -> None:
        self.y_parent, self.y_new = self.y_new, self.y_parent

    def release(self) -> None:
        """Drop every buffer (the next build allocates again)."""
        self.capacity = 0
        self._headroom = 0
        self._dtypes: dict[str, np.dtype] | None = None
        self.y_parent = self.y_new = self.order = np.empty(0, np.uint32)
        self.meta_parent_hi = self.meta_new_hi = np.empty(0, np.uint16)
        self.meta_parent_lo = self.meta_new_lo = np.empty(0, np.uint64)
        self.pairs = np.empty(0, np.uint32)


_local = threading.local()


def thread_scratch() -> TableScratch:
    """The calling thread's arena (created on first use, freed when the thread ends)."""
    scratch = getattr(_local, "scratch", None)
    if scratch is None:
        scratch = _local.scratch = TableScratch()
    return scratch


def release_thread_scratch() -> None:
    """Free the calling thread's arena now (e.g. a pool thread that stops plotting)."""
    _local.__dict__.pop("scratch", None)


__all__ = ["TableScratch", "release_thread_scratch", "thread_scratch"]
