"""Controller bus messages: spec 06 subjects and exact SCALE payloads inside."""

from __future__ import annotations

import pytest

from services.bus.message import decode, encode
from services.controller.messages import (
    ArchivedSegmentHeaderBroadcast,
    CacheIdentify,
    FarmerAppInfoRequest,
    FarmerAppInfoResult,
    FarmerIdentify,
    PieceItem,
    PieceRequest,
    PieceResult,
    PiecesRequest,
    RewardSignatureNotification,
    RewardSigningBroadcast,
    SegmentHeadersRequest,
    SegmentHeadersResult,
    SlotInfoBroadcast,
    SolutionNotification,
)
from services.node.rpc_types import (
    FarmerAppInfo,
    FarmerProtocolInfo,
    RewardSignatureResponse,
    RewardSigningInfo,
    SlotInfo,
    SolutionResponse,
)
from services.protocol.segments import ArchivedBlockProgress, LastArchivedBlock, SegmentHeader
from services.protocol.solution import Solution


def test_subjects_follow_spec_06() -> None:
    assert FarmerIdentify.subject_for() == "subspace.controller.farmer-identify"
    assert CacheIdentify.subject_for("default") == "subspace.controller.default.cache-identify"
    assert SlotInfoBroadcast.subject_for() == "subspace.controller.slot-info"
    assert RewardSigningBroadcast.subject_for() == "subspace.controller.reward-signing-info"
    assert ArchivedSegmentHeaderBroadcast.subject_for() == "subspace.controller.archived-segment-header"
    assert SolutionNotification.subject_for("ctl-1") == "subspace.controller.ctl-1.solution"
    assert SolutionNotification.subscription_subject() == "subspace.controller.*.solution"
    assert RewardSignatureNotification.subject_for() == "subspace.controller.reward-signature"
    assert FarmerAppInfoRequest.subject_for() == "subspace.controller.farmer-app-info"
    assert SegmentHeadersRequest.subject_for() == "subspace.controller.segment-headers"
    assert PieceRequest.subject_for() == "subspace.controller.piece"
    assert PiecesRequest.subject_for() == "subspace.controller.pieces"
    assert PiecesRequest.stream and PiecesRequest.response is PieceItem
    for request in (FarmerAppInfoRequest, SegmentHeadersRequest, PieceRequest):
        assert request.queue_group == "subspace.controller"
    for broadcast in (SlotInfoBroadcast, RewardSigningBroadcast, ArchivedSegmentHeaderBroadcast, SolutionNotification):
        assert broadcast.response is None


def test_payloads_carry_exact_scale() -> None:
    info = SlotInfo(77, bytes(range(32)), 10, 20)
    msg = decode(encode(SlotInfoBroadcast.build(info, "ctl-1")), SlotInfoBroadcast)
    assert msg.slot_info == info.to_scale() and msg.decoded() == info and msg.instance == "ctl-1"
    assert msg.msg_id() == "slot-info-77"

    signing = RewardSigningInfo(b"\x01" * 32, b"\x02" * 32)
    assert decode(encode(RewardSigningBroadcast.build(signing)), RewardSigningBroadcast).decoded() == signing

    header = SegmentHeader(3, b"\x05" * 48, b"\x06" * 32, LastArchivedBlock(9, ArchivedBlockProgress.partial(100)))
    seg = decode(encode(ArchivedSegmentHeaderBroadcast.build(header)), ArchivedSegmentHeaderBroadcast)
    assert seg.archived_segment_header == header.to_scale() and seg.decoded() == header
    assert seg.msg_id() == "archived-segment-3"

    solution = Solution(b"\x01" * 32, b"\x02" * 32, 1, 2, 3, b"\x04" * 48, b"\x05" * 48, bytes(32), b"\x06" * 48, b"\x07" * 160)
    response = SolutionResponse(5, solution)
    sol = decode(encode(SolutionNotification.build(response)), SolutionNotification)
    assert len(sol.solution_response) == 420 and sol.decoded() == response

    signature = RewardSignatureResponse(b"\x01" * 32, b"\x09" * 64)
    assert decode(encode(RewardSignatureNotification.build(signature)), RewardSignatureNotification).decoded() == signature


def test_request_results() -> None:
    app = FarmerAppInfo(b"\x01" * 32, (), False, 4000, FarmerProtocolInfo(1, 4, 5, (1, 10), 4))
    ok = decode(encode(FarmerAppInfoResult(ok=app.to_scale())), FarmerAppInfoResult)
    assert ok.unwrap() == app
    with pytest.raises(RuntimeError, match="node down"):
        FarmerAppInfoResult(error="node down").unwrap()

    header = SegmentHeader(0, b"\x05" * 48, bytes(32), LastArchivedBlock(1, ArchivedBlockProgress.complete()))
    result = decode(encode(SegmentHeadersResult(headers=[header.to_scale(), None])), SegmentHeadersResult)
    assert result.decoded() == [header, None]
    assert decode(encode(SegmentHeadersRequest(segment_indices=[0, 1])), SegmentHeadersRequest).segment_indices == [0, 1]
    assert decode(encode(PieceResult()), PieceResult).decoded() is None
