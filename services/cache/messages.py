"""The cache protocol: bus messages the cache roles serve or publish (NATS), and the request
kinds they answer on the TCP data plane.

Who talks to whom:

* caches -> controller: :class:`SegmentHeldNotification` once a cache holds its share of a newly
  archived segment (the controller acknowledges the segment to the node only after every live
  cache of its groups said so, or the node's 2-minute window is nearly over);
* anyone -> one cache (``instance`` = the cache's membership instance):
  :class:`CacheContainsRequest` (which of these piece indices do you hold),
  :class:`CacheVerifyRequest` (stream: check every piece you hold against its segment
  commitment, optionally repair; used by ``util verify-piece``);
* operator -> every cache: :class:`CacheReinitializeBroadcast` (``util reinitialization-cache``),
  confirmed by each cache with :class:`CacheReinitializeConfirmation`.

Cache membership records (``services.bus.membership``): role ``sharded-cache`` or
``full-piece-sharded-cache``, ``endpoints = ["tcp://HOST:PORT"]`` (the data plane), labels
``{"cache_group": ...}``, and the capacity fields in :data:`CAPACITY_FIELDS`.

Bulk piece bytes never travel over NATS here: pieces are fetched over TCP (:class:`GetPieces`,
:mod:`services.cache.getter`); the controller's ``subspace.controller.pieces`` stream is only
the last resort.
"""

from __future__ import annotations

import msgspec

from services.bus.message import Message
from services.p2p.message import Request

SHARDED_CACHE_ROLE = "sharded-cache"
FULL_PIECE_CACHE_ROLE = "full-piece-sharded-cache"
CACHE_ROLES = (SHARDED_CACHE_ROLE, FULL_PIECE_CACHE_ROLE)
CACHE_GROUP_LABEL = "cache_group"
# Capacity fields of a cache's membership record: slots, pieces held, pieces it should hold
# (owned by rendezvous, or the whole history for a full cache), missing among those, fill %
CAPACITY_FIELDS = ("slots", "pieces", "owned", "missing", "fill_percent")


def bitmap(flags: list[bool]) -> bytes:
    """LSB-first bitmap of ``flags``."""
    out = bytearray((len(flags) + 7) // 8)
    for i, flag in enumerate(flags):
        if flag:
            out[i >> 3] |= 1 << (i & 7)
    return bytes(out)


def unbitmap(data: bytes, count: int) -> list[bool]:
    if len(data) * 8 < count:
        raise ValueError(f"bitmap of {len(data)} bytes cannot hold {count} flags")
    return [bool(data[i >> 3] >> (i & 7) & 1) for i in range(count)]


# ---- caches -> controller


class SegmentHeldNotification(Message):
    """A cache holds every piece of ``segment_index`` it is responsible for (``held`` of them).
    ``complete=False`` reports a cache that gave up (it could not get some pieces)."""

    subject = "subspace.cache.segment-held"
    role: str
    instance: str
    cache_group: str
    segment_index: int
    held: int
    complete: bool = True


# ---- anyone -> one cache


class CacheContainsResult(msgspec.Struct):
    held: bytes  # bitmap over the request's piece_indices

    def flags(self, count: int) -> list[bool]:
        return unbitmap(self.held, count)


class CacheContainsRequest(Message):
    subject = "subspace.cache.*.contains"
    response = CacheContainsResult
    piece_indices: list[int]


class CacheVerifyProgress(msgspec.Struct, kw_only=True):
    """One step of a cache's self-check: totals so far plus the indices found in this step."""

    instance: str
    role: str
    checked: int
    total: int
    bad: list[int] = []
    missing: list[int] = []
    repaired: list[int] = []
    done: bool = False
    error: str | None = None


class CacheVerifyRequest(Message):
    """Stream: re-check every held piece against its segment commitment; report pieces that
    fail (``bad``, dropped from the cache) and pieces the cache should hold but does not
    (``missing``); with ``repair`` fetch both from another source, verified, and store them."""

    subject = "subspace.cache.*.verify"
    response = CacheVerifyProgress
    stream = True
    repair: bool = False


# ---- operator -> every cache


class CacheReinitializeBroadcast(Message):
    """Rebuild the cache ``delay_s`` seconds after receipt: re-read the cluster membership,
    re-check every stored piece and fill what is missing (``cache_group`` None: every group)."""

    subject = "subspace.cache.reinitialize"
    request_id: str
    delay_s: int = 0
    cache_group: str | None = None


class CacheReinitializeConfirmation(Message):
    """A cache's answer to :class:`CacheReinitializeBroadcast` (``instance`` = request id):
    ``scheduled`` on receipt, then ``done`` when the rebuild finished."""

    subject = "subspace.cache.*.reinitialize-confirmation"
    request_id: str
    role: str
    instance: str
    state: str  # "scheduled" | "done" | "failed"
    detail: str = ""


# ---- TCP data plane (services.p2p): what every cache and the plot-server's priority cache serve


class GetPieces(Request):
    """Bulk: the requested pieces the server holds (each checked against its stored digest just
    before sending, sent with that BLAKE3 digest), ``Missing`` for the others."""

    method = "cache.get-pieces"
    bulk = True
    piece_indices: list[int]

    def expected_keys(self) -> list[int]:
        return self.piece_indices


MAX_PIECES_PER_REQUEST = 4096
