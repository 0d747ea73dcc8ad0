"""Typed bus messages: one ``msgspec.Struct`` per message kind, carrying its NATS subject and
response type, so callers never build subjects or encode bytes by hand.

Declaring a message::

    class SegmentHeaders(Message):             # a request: response is the reply type
        subject = "subspace.controller.segment-headers"
        response = SegmentHeadersResponse       # any msgspec-encodable type (Struct preferred)
        queue_group = "subspace.controller"     # default queue group for serve()
        segment_indices: list[int]

    class SlotInfoBroadcast(Message):          # broadcast / notification: response = None
        subject = "subspace.controller.slot-info"
        slot_number: int

    class FindPieces(Message):                 # stream request: stream = True, response = item
        subject = "subspace.controller.*.find-pieces-in-cache"
        response = PieceLocation
        stream = True
        piece_indices: list[int]

``subject`` may contain ``*`` where an instance / group id goes; the sender passes ``instance=``
and the bus substitutes it; a subscriber without an instance subscribes to the literal subject,
so ``*`` then matches any instance (spec 06 §2). Subject names follow spec 06 where they apply.

Codec: msgpack via msgspec (our cluster only talks to itself, so SCALE wire compatibility with the
reference farmer is not a goal of the bus; protocol types keep their SCALE codecs in
``services.protocol``). ``bytes`` fields travel as msgpack bin without copies into base64.
"""

from __future__ import annotations

import os
import time
from typing import Any, ClassVar

import msgspec

WILDCARD = "*"


class Message(msgspec.Struct):
    """Base of every bus message; see the module docstring for the class variables."""

    subject: ClassVar[str] = ""
    response: ClassVar[Any] = None
    stream: ClassVar[bool] = False
    queue_group: ClassVar[str | None] = None

    @classmethod
    def subject_for(cls, instance: str | None = None) -> str:
        """Subject to publish / request on: ``*`` replaced by ``instance``."""
        return subject_for(cls, instance, publishing=True)

    @classmethod
    def subscription_subject(cls, instance: str | None = None) -> str:
        """Subject to subscribe to: with no instance the literal subject (``*`` = any instance)."""
        return subject_for(cls, instance, publishing=False)


def subject_for(msg_type: type[Message], instance: str | None, *, publishing: bool) -> str:
    subject = msg_type.subject
    if not subject:
        raise ValueError(f"message type {msg_type.__name__} has no subject")
    if WILDCARD in subject.split("."):
        if instance is None:
            if publishing:
                raise ValueError(
                    f"subject {subject!r} of {msg_type.__name__} needs an instance id to publish"
                )
            return subject
        check_token(instance)
        return ".".join(instance if tok == WILDCARD else tok for tok in subject.split("."))
    if instance is not None:
        raise ValueError(f"subject {subject!r} of {msg_type.__name__} has no '*' for instance {instance!r}")
    return subject


def check_token(token: str) -> str:
    """A subject token must be non-empty and free of NATS separators/wildcards/whitespace."""
    if not isinstance(token, str) or not token or any(c in token for c in ".*> \t\r\n"):
        raise ValueError(f"invalid NATS subject token {token!r} (non-empty, no '.', '*', '>' or spaces)")
    return token


_encoder = msgspec.msgpack.Encoder()
_decoders: dict[Any, msgspec.msgpack.Decoder] = {}


def encode(value: Any) -> bytes:
    """msgpack bytes of a message, response or stream item."""
    return _encoder.encode(value)


_scratch = bytearray()


def encoded_size(value: Any) -> int:
    """Length of ``encode(value)`` without keeping a copy (encodes into a reused buffer)."""
    _encoder.encode_into(value, _scratch)
    size = len(_scratch)
    if size > 4 * 1024 * 1024:  # do not pin a huge buffer for the process lifetime
        _scratch.clear()
    return size


def decode(data: bytes | memoryview, type_: Any) -> Any:
    """Decode ``data`` as ``type_`` (raises ``msgspec.DecodeError`` / ``ValidationError``)."""
    decoder = _decoders.get(type_)
    if decoder is None:
        decoder = _decoders[type_] = msgspec.msgpack.Decoder(type_)
    return decoder.decode(data)


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_ulid() -> str:
    """A fresh ULID (48-bit ms timestamp + 80 random bits) as 26 Crockford base32 characters,
    the id form spec 06 uses in subjects."""
    value = (int(time.time() * 1000) & ((1 << 48) - 1)) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))
