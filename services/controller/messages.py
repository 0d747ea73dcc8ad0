"""Messages the controller sends and serves (spec 06 §3 "Controller").

Subjects follow spec 06. Protocol values inside a message (slot info, solution responses, reward
signing, segment headers, farmer app info, pieces) travel as their exact SCALE bytes (spec 05 §4,
spec 01) in ``bytes`` fields, so every role decodes them with the one protocol codec in
``services.node.rpc_types`` / ``services.protocol``; each message has a helper that builds it
from, and decodes it back into, the protocol type.
"""

from __future__ import annotations

import msgspec

from services.bus.message import Message
from services.node.rpc_types import (
    FarmerAppInfo,
    RewardSignatureResponse,
    RewardSigningInfo,
    SlotInfo,
    SolutionResponse,
)
from services.protocol.pieces import Piece
from services.protocol.segments import SegmentHeader

CONTROLLER_QUEUE_GROUP = "subspace.controller"


def slot_info_dedup_id(slot_number: int) -> str:
    """``Nats-Msg-Id`` of the slot-info broadcast for ``slot_number``."""
    return f"slot-info-{slot_number}"


def archived_segment_dedup_id(segment_index: int) -> str:
    """``Nats-Msg-Id`` of the archived-segment-header broadcast for ``segment_index``."""
    return f"archived-segment-{segment_index}"


# ---- broadcasts (controller -> farmers / caches)


class FarmerIdentify(Message):
    """"Identify now" to every farmer (unit payload)."""

    subject = "subspace.controller.farmer-identify"


class CacheIdentify(Message):
    """"Identify now" to the caches of one cache group (``instance`` = the group)."""

    subject = "subspace.controller.*.cache-identify"


class SlotInfoBroadcast(Message):
    """New slot from the node; ``instance`` is the controller whose ``solution`` subject a farmer
    must use for solutions to this slot. Published with ``Nats-Msg-Id: slot-info-<slot>``."""

    subject = "subspace.controller.slot-info"
    slot_info: bytes  # SCALE SlotInfo (56 bytes)
    instance: str

    @classmethod
    def build(cls, info: SlotInfo, instance: str) -> SlotInfoBroadcast:
        return cls(slot_info=info.to_scale(), instance=instance)

    def decoded(self) -> SlotInfo:
        return SlotInfo.from_scale(self.slot_info)

    def msg_id(self) -> str:
        return slot_info_dedup_id(self.decoded().slot_number)


class RewardSigningBroadcast(Message):
    subject = "subspace.controller.reward-signing-info"
    reward_signing_info: bytes  # SCALE RewardSigningInfo (hash 32 ‖ public key 32)

    @classmethod
    def build(cls, info: RewardSigningInfo) -> RewardSigningBroadcast:
        return cls(reward_signing_info=info.to_scale())

    def decoded(self) -> RewardSigningInfo:
        return RewardSigningInfo.from_scale(self.reward_signing_info)


class ArchivedSegmentHeaderBroadcast(Message):
    """Published with ``Nats-Msg-Id: archived-segment-<index>``."""

    subject = "subspace.controller.archived-segment-header"
    archived_segment_header: bytes  # SCALE SegmentHeader

    @classmethod
    def build(cls, header: SegmentHeader) -> ArchivedSegmentHeaderBroadcast:
        return cls(archived_segment_header=header.to_scale())

    def decoded(self) -> SegmentHeader:
        return SegmentHeader.from_scale(self.archived_segment_header)

    def msg_id(self) -> str:
        return archived_segment_dedup_id(self.decoded().segment_index)


# ---- notifications (farmers -> controller)


class SolutionNotification(Message):
    """A farmer's solution, sent to the controller instance named in the slot info it used."""

    subject = "subspace.controller.*.solution"
    solution_response: bytes  # SCALE SolutionResponse (u64 slot ‖ 412-byte Solution)

    @classmethod
    def build(cls, response: SolutionResponse) -> SolutionNotification:
        return cls(solution_response=response.to_scale())

    def decoded(self) -> SolutionResponse:
        return SolutionResponse.from_scale(self.solution_response)


class RewardSignatureNotification(Message):
    subject = "subspace.controller.reward-signature"
    reward_signature: bytes  # SCALE RewardSignatureResponse

    @classmethod
    def build(cls, response: RewardSignatureResponse) -> RewardSignatureNotification:
        return cls(reward_signature=response.to_scale())

    def decoded(self) -> RewardSignatureResponse:
        return RewardSignatureResponse.from_scale(self.reward_signature)


# ---- requests (anyone -> controller, queue group "subspace.controller")


class FarmerAppInfoResult(msgspec.Struct):
    """``Result<FarmerAppInfo, String>``: exactly one of ``ok`` (SCALE) / ``error`` is set."""

    ok: bytes | None = None
    error: str | None = None

    def unwrap(self) -> FarmerAppInfo:
        if self.ok is None:
            raise RuntimeError(f"controller could not get farmer app info: {self.error}")
        return FarmerAppInfo.from_scale(self.ok)


class FarmerAppInfoRequest(Message):
    subject = "subspace.controller.farmer-app-info"
    response = FarmerAppInfoResult
    queue_group = CONTROLLER_QUEUE_GROUP


class SegmentHeadersResult(msgspec.Struct):
    """``Vec<Option<SegmentHeader>>`` in request order (SCALE headers)."""

    headers: list[bytes | None]

    def decoded(self) -> list[SegmentHeader | None]:
        return [None if h is None else SegmentHeader.from_scale(h) for h in self.headers]


class SegmentHeadersRequest(Message):
    subject = "subspace.controller.segment-headers"
    response = SegmentHeadersResult
    queue_group = CONTROLLER_QUEUE_GROUP
    segment_indices: list[int]


class PieceResult(msgspec.Struct):
    """``Option<Piece>``: the raw piece bytes (1 048 672) or None."""

    piece: bytes | None = None

    def decoded(self) -> Piece | None:
        return None if self.piece is None else Piece(self.piece)


class PieceRequest(Message):
    subject = "subspace.controller.piece"
    response = PieceResult
    queue_group = CONTROLLER_QUEUE_GROUP
    piece_index: int


class PieceItem(msgspec.Struct):
    """One found piece of a :class:`PiecesRequest` stream (``(u64, Piece)``)."""

    piece_index: int
    piece: bytes

    def decoded(self) -> Piece:
        return Piece(self.piece)


class PiecesRequest(Message):
    """Stream request: the pieces the controller can get, in request order (missing ones skipped)."""

    subject = "subspace.controller.pieces"
    response = PieceItem
    stream = True
    queue_group = CONTROLLER_QUEUE_GROUP
    piece_indices: list[int]


# ---- piece locations in the caches (spec 06 find-piece(s)-in-cache; ``instance`` = the cache
# group, ``_`` = any group). Our caches serve pieces over TCP, so a location names the cache's
# membership instance and its data-plane endpoint rather than a (cache id, offset) pair.

ANY_CACHE_GROUP = "_"


class PieceLocation(msgspec.Struct):
    piece_index: int
    role: str  # "sharded-cache" | "full-piece-sharded-cache"
    instance: str
    endpoint: str  # tcp://HOST:PORT


class PieceLocationResult(msgspec.Struct):
    location: PieceLocation | None = None


class FindPieceInCacheRequest(Message):
    subject = "subspace.controller.*.find-piece-in-cache"
    response = PieceLocationResult
    queue_group = CONTROLLER_QUEUE_GROUP
    piece_index: int


class FindPiecesInCacheRequest(Message):
    """Stream request: a location for every requested piece some live cache holds (others left
    out), preferring the shard that owns the piece by rendezvous, then other shards, then
    full-piece caches."""

    subject = "subspace.controller.*.find-pieces-in-cache"
    response = PieceLocation
    stream = True
    queue_group = CONTROLLER_QUEUE_GROUP
    piece_indices: list[int]
