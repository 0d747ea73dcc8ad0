"""The dev node's JSON-RPC checked against spec 05 with a plain websockets client: method names,
JSON shapes, hex lengths, subscription notifications, errors and the unsafe-method gate."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest
import websockets
from dev_node_process import TEMPLATE_FLAGS, DevNodeProcess, call, clone_data_dir

from services.node import dev_history
from services.protocol.archiver import is_piece_valid
from services.protocol.constants import PIECE_SIZE
from services.protocol.kzg import Kzg
from services.protocol.pieces import Piece
from services.protocol.segments import SegmentHeader

pytestmark = pytest.mark.integration

HEX64 = re.compile(r"^[0-9a-f]{64}$")
SLOT_MS = 300


@pytest.fixture(scope="module")
def unsafe_node(dev_node_template, tmp_path_factory):
    data_dir = clone_data_dir(dev_node_template, tmp_path_factory.mktemp("rpc") / "node")
    node = DevNodeProcess(data_dir, *TEMPLATE_FLAGS, "--slot-duration-ms", str(SLOT_MS), "--block-authoring-delay", "3")
    node.wait_ready()
    yield node
    assert node.terminate() == 0


@pytest.fixture(scope="module")
def safe_node(dev_node_template, tmp_path_factory):
    data_dir = clone_data_dir(dev_node_template, tmp_path_factory.mktemp("rpc-safe") / "node")
    node = DevNodeProcess(data_dir, *TEMPLATE_FLAGS, "--rpc-methods", "safe", "--slot-duration-ms", str(SLOT_MS))
    node.wait_ready()
    yield node
    assert node.terminate() == 0


class Conn:
    """A raw JSON-RPC websocket connection that separates replies from notifications."""

    def __init__(self, ws) -> None:
        self.ws = ws
        self.next_id = 0
        self.notifications: list[dict] = []

    async def request(self, method: str, params: list | None = None, timeout: float = 30.0) -> dict:
        self.next_id += 1
        my_id = self.next_id
        await self.ws.send(json.dumps({"jsonrpc": "2.0", "id": my_id, "method": method, "params": params or []}))
        while True:
            msg = json.loads(await asyncio.wait_for(self.ws.recv(), timeout))
            if msg.get("id") == my_id:
                assert msg["jsonrpc"] == "2.0"
                return msg
            self.notifications.append(msg)

    async def result(self, method: str, params: list | None = None, timeout: float = 30.0):
        reply = await self.request(method, params, timeout)
        assert "error" not in reply, reply
        return reply["result"]

    async def notification(self, timeout: float = 10.0) -> dict:
        if self.notifications:
            return self.notifications.pop(0)
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))


async def _connect(url: str) -> Conn:
    return Conn(await websockets.connect(url, max_size=64 << 20))


def _check_header_json(header: dict, index: int) -> None:
    assert list(header) == ["v0"]
    v0 = header["v0"]
    assert set(v0) == {"segmentIndex", "segmentCommitment", "prevSegmentHeaderHash", "lastArchivedBlock"}
    assert v0["segmentIndex"] == index
    assert re.fullmatch(r"[0-9a-f]{96}", v0["segmentCommitment"])
    assert HEX64.match(v0["prevSegmentHeaderHash"])
    if index == 0:
        assert v0["prevSegmentHeaderHash"] == "00" * 32
    assert set(v0["lastArchivedBlock"]) == {"number", "archivedProgress"}
    progress = v0["lastArchivedBlock"]["archivedProgress"]
    assert progress == "complete" or (set(progress) == {"partial"} and isinstance(progress["partial"], int))
    SegmentHeader.from_json(header)


async def test_farmer_app_info_shape(unsafe_node) -> None:
    info = await call(unsafe_node.url, "subspace_getFarmerAppInfo")
    assert set(info) == {"genesisHash", "dsnBootstrapNodes", "syncing", "farmingTimeout", "protocolInfo"}
    assert HEX64.match(info["genesisHash"])
    assert info["genesisHash"] == dev_history.genesis_hash("autonomys-dev").hex()
    assert info["dsnBootstrapNodes"] == [] and info["syncing"] is False
    # farming timeout = slot duration x block authoring delay, as serde Duration
    assert info["farmingTimeout"] == {"secs": 0, "nanos": SLOT_MS * 3 * 1_000_000}
    assert info["protocolInfo"] == {
        "historySize": 1,
        "maxPiecesInSector": 1,
        "recentSegments": 5,
        "recentHistoryFraction": [1, 10],
        "minSectorLifetime": 4,
    }
    # the clone restarted from persisted chain state: nothing was archived again
    assert "archiving segment" not in unsafe_node.log_tail(500)


async def test_slot_info_subscription(unsafe_node) -> None:
    conn = await _connect(unsafe_node.url)
    try:
        sub_id = await conn.result("subspace_subscribeSlotInfo")
        assert isinstance(sub_id, str) and len(sub_id) == 16
        genesis = bytes.fromhex((await call(unsafe_node.url, "dev_status"))["genesisHash"])
        slots = []
        for _ in range(3):
            note = await conn.notification()
            assert note["jsonrpc"] == "2.0" and note["method"] == "subspace_slot_info"
            assert note["params"]["subscription"] == sub_id
            result = note["params"]["result"]
            assert set(result) == {"slotNumber", "globalChallenge", "solutionRange", "votingSolutionRange"}
            assert HEX64.match(result["globalChallenge"])
            # global challenge = blake3(blake3(pot_output) ‖ u64_le(slot)) (spec 01 §6)
            assert result["globalChallenge"] == dev_history.slot_challenge(genesis, result["slotNumber"]).hex()
            assert result["solutionRange"] == result["votingSolutionRange"] == (1 << 64) - 1
            slots.append(result["slotNumber"])
        assert slots == sorted(slots) and len(set(slots)) == 3
        assert await conn.result("subspace_unsubscribeSlotInfo", [sub_id]) is True
        assert await conn.result("subspace_unsubscribeSlotInfo", [sub_id]) is False
    finally:
        await conn.ws.close()


async def test_segment_headers_and_limits(unsafe_node) -> None:
    conn = await _connect(unsafe_node.url)
    try:
        headers = await conn.result("subspace_segmentHeaders", [[0, 7, 0]])
        assert len(headers) == 3 and headers[1] is None and headers[0] == headers[2]
        _check_header_json(headers[0], 0)
        assert await conn.result("subspace_lastSegmentHeaders", [10]) == [headers[0]]
        assert await conn.result("subspace_lastSegmentHeaders", [0]) == []
        for method, params in (("subspace_segmentHeaders", [list(range(1001))]), ("subspace_lastSegmentHeaders", [1001])):
            reply = await conn.request(method, params)
            assert reply["error"]["code"] == 9001, reply
        reply = await conn.request("subspace_segmentHeaders", ["x"])
        assert reply["error"]["code"] == -32602
    finally:
        await conn.ws.close()


async def test_piece_is_served_and_valid(unsafe_node) -> None:
    conn = await _connect(unsafe_node.url)
    try:
        header = SegmentHeader.from_json((await conn.result("subspace_segmentHeaders", [[0]]))[0])
        piece_hex = await conn.result("subspace_piece", [3])
        assert isinstance(piece_hex, str) and len(piece_hex) == 2 * PIECE_SIZE and piece_hex == piece_hex.lower()
        piece = Piece.from_json(piece_hex)
        assert is_piece_valid(Kzg.dev(), piece, header.segment_commitment, 3)
        # nothing is held: only the genesis segment is served
        assert await conn.result("subspace_piece", [256]) is None
    finally:
        await conn.ws.close()


async def test_solution_and_reward_endpoints(unsafe_node) -> None:
    conn = await _connect(unsafe_node.url)
    try:
        reward_id = await conn.result("subspace_subscribeRewardSigning")
        assert isinstance(reward_id, str) and len(reward_id) == 16
        # a reward signature for an unknown hash is accepted and ignored
        assert await conn.result("subspace_submitRewardSignature", [{"hash": "00" * 32, "signature": "11" * 64}]) is None
        assert await conn.result("subspace_submitRewardSignature", [{"hash": "00" * 32, "signature": None}]) is None
        solution = {
            "publicKey": "01" * 32, "rewardAddress": "01" * 32, "sectorIndex": 0, "historySize": 1,
            "pieceOffset": 0, "recordCommitment": "00" * 48, "recordWitness": "00" * 48, "chunk": [0] * 32,
            "chunkWitness": "00" * 48, "proofOfSpace": "00" * 160,
        }
        reply = await conn.request("subspace_submitSolutionResponse", [{"slotNumber": 1, "solution": solution}])
        assert reply["error"] == {"code": 9001, "message": "Solution was ignored"}
        # a current slot accepts the submission; full verification then rejects the garbage
        slot = (await call(unsafe_node.url, "dev_status"))["lastSlot"]
        before = (await call(unsafe_node.url, "dev_status"))["solutionsRejected"]
        assert await conn.result("subspace_submitSolutionResponse", [{"slotNumber": slot, "solution": solution}]) is None
        deadline = time.monotonic() + 120  # a condition, not a timing: verification can queue under load
        while True:
            status = await call(unsafe_node.url, "dev_status")
            if status["solutionsRejected"] > before or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.1)
        assert status["solutionsRejected"] == before + 1 and status["blocksAuthored"] == 0
        bad = await conn.request("subspace_submitSolutionResponse", [{"slotNumber": slot, "solution": {**solution, "chunk": "00"}}])
        assert bad["error"]["code"] == -32602 and "chunk" in bad["error"]["message"]
        assert await conn.result("subspace_acknowledgeArchivedSegmentHeader", [12345]) is None
        assert await conn.result("dev_blocks") == []
        reply = await conn.request("subspace_noSuchMethod")
        assert reply["error"] == {"code": -32601, "message": "Method not found"}
    finally:
        await conn.ws.close()


async def test_unsafe_methods_are_gated_on_a_safe_node(safe_node) -> None:
    conn = await _connect(safe_node.url)
    try:
        info = await conn.result("subspace_getFarmerAppInfo")
        assert info["protocolInfo"]["historySize"] == 1
        assert isinstance(await conn.result("subspace_subscribeSlotInfo"), str)
        assert isinstance(await conn.result("subspace_subscribeArchivedSegmentHeader"), str)
        assert (await conn.result("subspace_segmentHeaders", [[0]]))[0] is not None
        unsafe_calls = [
            ("subspace_submitSolutionResponse", [{}]),
            ("subspace_submitRewardSignature", [{"hash": "00" * 32, "signature": None}]),
            ("subspace_acknowledgeArchivedSegmentHeader", [0]),
            ("subspace_piece", [0]),
            ("subspace_subscribeRewardSigning", []),
            ("dev_archiveSegment", []),
        ]
        for method, params in unsafe_calls:
            reply = await conn.request(method, params)
            assert reply["error"] == {"code": -32601, "message": "RPC call is unsafe to be called externally"}, method
        assert (await call(safe_node.url, "dev_status"))["unsafeRpc"] is False
    finally:
        await conn.ws.close()


@pytest.mark.slow
async def test_archived_segment_notification_acknowledgement_and_piece_window(unsafe_node) -> None:
    """Spec 05 §3: notify every subscriber, hold the new segment for subspace_piece until each
    unsafe subscription's acknowledgement is in (any connection may acknowledge)."""
    a = await _connect(unsafe_node.url)
    b = await _connect(unsafe_node.url)
    try:
        sub_a = await a.result("subspace_subscribeArchivedSegmentHeader")
        await b.result("subspace_subscribeArchivedSegmentHeader")
        archived = await a.result("dev_archiveSegment", timeout=900)  # archives segment 1 (slow), then announces it
        _check_header_json(archived, 1)
        note_a = await a.notification(30)
        note_b = await b.notification(30)
        for note in (note_a, note_b):
            assert note["method"] == "subspace_archived_segment_header"
            assert note["params"]["result"] == archived
        assert note_a["params"]["subscription"] == sub_a
        status = await call(unsafe_node.url, "dev_status")
        assert status["heldSegment"] == 1 and status["pendingAcknowledgements"] == 2
        assert status["segmentsArchived"] == 2
        info = await a.result("subspace_getFarmerAppInfo")
        assert info["protocolInfo"]["historySize"] == 2
        # the held segment is served; the genesis segment is not while something is held
        assert isinstance(await a.result("subspace_piece", [256 + 5]), str)
        assert await a.result("subspace_piece", [5]) is None
        assert await a.result("subspace_acknowledgeArchivedSegmentHeader", [0]) is None  # wrong index: no-op
        assert (await call(unsafe_node.url, "dev_status"))["pendingAcknowledgements"] == 2
        assert await a.result("subspace_acknowledgeArchivedSegmentHeader", [1]) is None
        assert (await call(unsafe_node.url, "dev_status"))["pendingAcknowledgements"] == 1
        assert await a.result("subspace_acknowledgeArchivedSegmentHeader", [1]) is None  # releases b's sender
        status = await call(unsafe_node.url, "dev_status")
        assert status["pendingAcknowledgements"] == 0 and status["heldSegment"] is None
        assert await a.result("subspace_piece", [256 + 5]) is None
        assert isinstance(await a.result("subspace_piece", [5]), str)
        assert (await a.result("subspace_lastSegmentHeaders", [2]))[1] == archived
        dev_piece = await a.result("dev_piece", [256 + 5])
        assert len(dev_piece) == 2 * PIECE_SIZE
    finally:
        await a.ws.close()
        await b.ws.close()
