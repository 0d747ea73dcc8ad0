"""Wire format of the data plane: a 12-byte frame header, a closed set of frame kinds, and the
bodies of control frames (msgpack) and bulk items (a 40-byte item header + raw payload).

Why so small and strict: every byte that arrives before authentication or outside a known frame
is an attack surface, and a GPU plot-server pulls ~1 GiB per sector through this format, so the
header must be cheap to parse and the payload must land in the caller's buffer untouched.

Frame = header + body::

    offset size  field
    0      1     kind        (Kind; anything else is a protocol error)
    1      1     flags       (must be 0)
    2      2     reserved    (must be 0)
    4      4     request_id  (u32 LE, chosen by the client, unique among its calls in flight)
    8      4     length      (u32 LE, body bytes; bounded per kind by the receiver's limits)

Bodies:
    REQUEST  client -> server  msgpack ``[method, request]`` (:class:`RequestEnvelope`)
    CANCEL   client -> server  empty; the server cancels the handler, sends nothing more
    RESPONSE server -> client  msgpack of the request type's ``response``
    ERROR    server -> client  msgpack :class:`ErrorBody` (ends the call)
    ITEM     server -> client  ``key u64 LE | blake3(payload) 32 bytes | payload``
    MISSING  server -> client  msgpack ``list[int]``: keys the server does not have
    END      server -> client  empty; the bulk stream is complete

A bulk call is answered by any number of ITEM / MISSING frames then END (or ERROR). Frames of
concurrent calls on one connection may interleave, each frame is contiguous.
"""

from __future__ import annotations

import struct
from enum import IntEnum

import msgspec

from services.p2p.errors import ProtocolError

HEADER = struct.Struct("<BBHII")
HEADER_SIZE = HEADER.size  # 12
ITEM_HEADER = struct.Struct("<Q32s")
ITEM_HEADER_SIZE = ITEM_HEADER.size  # 40
DIGEST_SIZE = 32
MAX_KEY = (1 << 64) - 1
MAX_REQUEST_ID = (1 << 32) - 1


class Kind(IntEnum):
    REQUEST = 1
    CANCEL = 2
    RESPONSE = 3
    ERROR = 4
    ITEM = 5
    MISSING = 6
    END = 7


CLIENT_TO_SERVER = frozenset({Kind.REQUEST, Kind.CANCEL})
SERVER_TO_CLIENT = frozenset({Kind.RESPONSE, Kind.ERROR, Kind.ITEM, Kind.MISSING, Kind.END})
EMPTY_BODY = frozenset({Kind.CANCEL, Kind.END})

# ERROR frame codes
UNKNOWN_METHOD = "unknown-method"
BAD_REQUEST = "bad-request"
BUSY = "busy"
HANDLER_FAILED = "handler-failed"
BAD_RESPONSE = "bad-response"
ERROR_CODES = (UNKNOWN_METHOD, BAD_REQUEST, BUSY, HANDLER_FAILED, BAD_RESPONSE)


class RequestEnvelope(msgspec.Struct, array_like=True):
    """REQUEST body: the method name routes it, ``body`` is decoded as the routed type."""

    method: str
    body: msgspec.Raw


class ErrorBody(msgspec.Struct, array_like=True):
    code: str
    message: str = ""


def pack_header(kind: Kind, request_id: int, length: int) -> bytes:
    return HEADER.pack(kind, 0, 0, request_id, length)


def unpack_header(data: bytes | bytearray | memoryview, accepted: frozenset[Kind]) -> tuple[Kind, int, int]:
    """``(kind, request_id, length)`` of a header; a kind outside ``accepted`` (the direction's
    kinds), nonzero flags/reserved bits or a body on an empty-bodied kind is a ProtocolError."""
    kind, flags, reserved, request_id, length = HEADER.unpack(data)
    if kind not in accepted:
        raise ProtocolError(f"unexpected frame kind {kind}")
    if flags or reserved:
        raise ProtocolError(f"frame kind {kind} with nonzero flags/reserved bits")
    kind = Kind(kind)
    if length and kind in EMPTY_BODY:
        raise ProtocolError(f"{kind.name} frame with a {length}-byte body")
    return kind, request_id, length


def pack_item_header(request_id: int, key: int, digest: bytes, payload_size: int) -> bytes:
    """Frame header + item header of one bulk item (the payload follows on the wire)."""
    return HEADER.pack(Kind.ITEM, 0, 0, request_id, ITEM_HEADER_SIZE + payload_size) + ITEM_HEADER.pack(key, digest)


_encoder = msgspec.msgpack.Encoder()
_decoders: dict[object, msgspec.msgpack.Decoder] = {}


def encode(value: object) -> bytes:
    return _encoder.encode(value)


def decode(data: bytes | bytearray | memoryview, type_: object) -> object:
    """Decode msgpack ``data`` as ``type_`` (raises ``msgspec.DecodeError`` / ``ValidationError``)."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.msgpack.Decoder(type_)
    return decoder.decode(data)
