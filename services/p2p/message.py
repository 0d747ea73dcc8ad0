"""Typed data-plane requests: a request type is a ``msgspec.Struct`` that declares, once, the
method name that routes it and what comes back, so neither handlers nor callers touch bytes.

    class PieceStats(Request):                  # unary: the handler returns a PieceStatsReply
        method = "cache.piece-stats"
        response = PieceStatsReply
        cache_id: str

    class FetchPieces(Request):                 # bulk: the handler yields BulkItem / Missing
        method = "cache.fetch-pieces"
        bulk = True
        piece_indices: list[int]

        def expected_keys(self):                # optional: lets the client refuse keys it did
            return self.piece_indices           # not ask for and report unanswered ones

A bulk handler is an (async) iterable of :class:`BulkItem` (key: u64, payload: any buffer, the
piece bytes) and :class:`Missing` (keys it does not have), in any order and grouping. Each
payload is sent as is (no copy); it must stay unchanged until the stream ends. ``digest`` may
carry a stored ``blake3(payload)`` so the server does not hash it again; it is sent unchecked,
so a wrong stored digest shows up at the client as a corrupt item.

This mirrors :mod:`services.bus.message`: roles declare their data-plane requests in their own
``messages.py`` beside their bus messages.
"""

from __future__ import annotations

from typing import Any, ClassVar, Iterable

import msgspec

from services.p2p.frames import MAX_KEY


class Request(msgspec.Struct):
    """Base of every data-plane request; see the module docstring for the class variables."""

    method: ClassVar[str] = ""
    response: ClassVar[Any] = None
    bulk: ClassVar[bool] = False

    def expected_keys(self) -> Iterable[int] | None:
        """Keys a bulk request asks for (None: any key is accepted)."""
        return None


def check_request_type(request_type: type) -> type[Request]:
    """``request_type`` unless it cannot be routed (raises TypeError / ValueError)."""
    if not (isinstance(request_type, type) and issubclass(request_type, Request)):
        raise TypeError(f"{request_type!r} is not a services.p2p.Request subclass")
    if not request_type.method:
        raise ValueError(f"request type {request_type.__name__} has no method name")
    if request_type.bulk and request_type.response is not None:
        raise ValueError(f"bulk request type {request_type.__name__} must not declare a response type")
    if not request_type.bulk and request_type.response is None:
        raise ValueError(f"request type {request_type.__name__} declares neither a response type nor bulk = True")
    return request_type


class BulkItem:
    """One item of a bulk stream: ``key`` (u64) and ``payload`` (bytes, memoryview, mmap slice,
    numpy array: anything with the buffer protocol), optionally its stored BLAKE3 ``digest``."""

    __slots__ = ("key", "payload", "digest")

    def __init__(self, key: int, payload: Any, digest: bytes | None = None) -> None:
        if not 0 <= key <= MAX_KEY:
            raise ValueError(f"bulk item key {key} is not a u64")
        if digest is not None and len(digest) != 32:
            raise ValueError("bulk item digest must be 32 bytes (BLAKE3)")
        self.key = key
        self.payload = payload
        self.digest = digest

    def __repr__(self) -> str:
        return f"BulkItem(key={self.key}, {memoryview(self.payload).nbytes} bytes)"


class Missing:
    """Keys of a bulk request the server does not have."""

    __slots__ = ("keys",)

    def __init__(self, keys: Iterable[int]) -> None:
        self.keys = list(keys)

    def __repr__(self) -> str:
        return f"Missing({self.keys})"
