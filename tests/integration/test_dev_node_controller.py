"""End to end on loopback: real nats-server, real dev node process, real controller process.

The test plays the farmer with the protocol core (the plot-client role does not exist yet): it
gets farmer app info, segment headers and pieces through the controller over NATS, plots a
one-piece sector with the real K=20 proof of space, audits and proves on a slot broadcast by
the controller, submits the solution to the controller's instance subject, signs the reward
signing request with sr25519 (context ``subspace_reward``) and checks that the dev node authored
a block with exactly that solution and a valid reward signature (``dev_blocks`` and
``blocks.jsonl``). Both daemons must exit 0 on SIGTERM and leave no process behind.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sr25519

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from dev_node_process import (  # noqa: E402
    REPO_ROOT,
    TEMPLATE_FLAGS,
    DevNodeProcess,
    archived_template,
    call,
    clone_data_dir,
)

from services.bus.client import Bus  # noqa: E402
from services.controller.messages import (  # noqa: E402
    ArchivedSegmentHeaderBroadcast,
    FarmerAppInfoRequest,
    PieceRequest,
    PiecesRequest,
    RewardSignatureNotification,
    RewardSigningBroadcast,
    SegmentHeadersRequest,
    SlotInfoBroadcast,
    SolutionNotification,
)
from services.protocol.sr25519 import schnorrkel  # noqa: E402
from services.node.rpc_types import RewardSignatureResponse, SolutionResponse  # noqa: E402
from services.protocol.archiver import is_piece_valid  # noqa: E402
from services.protocol.auditing import audit_location, audit_sector  # noqa: E402
from services.protocol.constants import PIECE_SIZE, REWARD_SIGNING_CONTEXT  # noqa: E402
from services.protocol.erasure import ErasureCoding  # noqa: E402
from services.protocol.kzg import Kzg  # noqa: E402
from services.pos_backend import pos_backend  # noqa: E402
from services.protocol.plotting import CpuRecordEncoder, chia_proofs_for_seed, plot_sector, sector_piece_indexes  # noqa: E402
from services.protocol.proving import prove_audit_result  # noqa: E402
from services.protocol.sector import FarmerProtocolInfo  # noqa: E402
from services.protocol.solution import Solution  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CONTROLLER_INSTANCE = "ctl-itest"
FARMER_SEED = bytes([42]) * 32


def _start_controller(nats_url: str, node_url: str, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")
    cmd = [
        sys.executable, "-m", "services", "cluster", "--nats-server", nats_url,
        "controller", "--tmp", "--node-rpc-url", node_url, "--instance", CONTROLLER_INSTANCE,
    ]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)


def _terminate(proc: subprocess.Popen, timeout: float = 30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"pid {proc.pid} ignored SIGTERM for {timeout} s")
    return proc.returncode


def _children_of(pid: int) -> list[int]:
    try:
        out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    except FileNotFoundError:  # pragma: no cover
        return []
    return [int(x) for x in out.split()]


class _Farmer:
    """Plot one sector, then answer slots and reward signing requests like a plot client."""

    def __init__(self, bus: Bus) -> None:
        self.bus = bus
        self.public_key, self.secret_key = sr25519.pair_from_seed(FARMER_SEED)
        self.kzg = Kzg.dev()
        self.erasure = ErasureCoding(16)
        chia = chia_proofs_for_seed(pos_backend())
        cache: dict[bytes, object] = {}

        def proofs_for_seed(seed: bytes):  # plotting and proving use the same seed: build once
            if seed not in cache:
                cache[seed] = chia(seed)
            return cache[seed]

        self.proofs_for_seed = proofs_for_seed
        self.submitted: list[SolutionResponse] = []
        self.signed: list[bytes] = []

    async def plot(self, app_info, pieces_in_sector: int) -> None:
        info = app_info.protocol_info
        self.protocol_info = FarmerProtocolInfo(
            info.history_size, info.max_pieces_in_sector, info.recent_segments,
            tuple(info.recent_history_fraction), info.min_sector_lifetime,
        )
        indexes = sector_piece_indexes(self.public_key, 0, self.protocol_info, pieces_in_sector)
        headers = (await self.bus.request(SegmentHeadersRequest(segment_indices=sorted({i // 256 for i in indexes})), timeout=30)).decoded()
        commitments = {h.segment_index: h.segment_commitment for h in headers}
        pieces = {}
        for index in set(indexes):
            piece = (await self.bus.request(PieceRequest(piece_index=index), timeout=60)).decoded()
            assert piece is not None, f"controller could not provide piece {index}"
            assert is_piece_valid(self.kzg, piece, commitments[index // 256], index % 256)
            pieces[index] = bytes(piece)
        result = await asyncio.to_thread(
            plot_sector, self.public_key, 0, self.protocol_info, pieces_in_sector, pieces,
            CpuRecordEncoder(self.erasure, self.proofs_for_seed),
        )
        self.sector = result.sector
        self.metadata = result.metadata

    def prove(self, slot_info) -> Solution | None:
        sector_id = self.metadata.sector_id(self.public_key)
        _, offset, size = audit_location(sector_id, slot_info.global_challenge, self.metadata.s_bucket_sizes,
                                         self.metadata.pieces_in_sector)
        audit = audit_sector(0, sector_id, slot_info.global_challenge, slot_info.voting_solution_range,
                             self.sector[offset: offset + size])
        if audit is None:
            return None
        solutions = prove_audit_result(self.sector, self.metadata, self.public_key, self.public_key, audit,
                                       self.kzg, self.erasure, self.proofs_for_seed, max_solutions=1)
        return solutions[0] if solutions else None

    async def answer_reward_signing(self) -> None:
        async with await self.bus.subscribe(RewardSigningBroadcast) as sub:
            async for msg in sub:
                info = msg.decoded()
                if info.public_key != self.public_key:
                    continue
                signature = schnorrkel.sign(REWARD_SIGNING_CONTEXT, info.hash, self.public_key, self.secret_key)
                self.signed.append(info.hash)
                await self.bus.publish(RewardSignatureNotification.build(RewardSignatureResponse(info.hash, signature)))

    async def farm(self, slots) -> None:  # noqa: ANN001
        async for msg in slots:
            slot_info = msg.decoded()
            assert msg.instance == CONTROLLER_INSTANCE
            solution = await asyncio.to_thread(self.prove, slot_info)
            if solution is None:
                continue
            response = SolutionResponse(slot_info.slot_number, solution)
            self.submitted.append(response)
            await self.bus.publish(SolutionNotification.build(response), instance=msg.instance)
            return


async def _wait_for_block(url: str, timeout: float) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        blocks = await call(url, "dev_blocks")
        if blocks:
            return blocks
        await asyncio.sleep(0.5)
    raise AssertionError(f"no block authored within {timeout} s; status {await call(url, 'dev_status')}")


def test_farm_a_block_through_the_controller(tmp_path: Path, tmp_path_factory, nats_server) -> None:
    pieces_in_sector = 1
    chain_flags = TEMPLATE_FLAGS  # same chain as the dev node tests' template (shared archive)
    assert chain_flags == ("--pieces-in-sector", str(pieces_in_sector))
    template = archived_template(tmp_path_factory.getbasetemp(), *chain_flags)
    node = DevNodeProcess(
        clone_data_dir(template, tmp_path / "node"),
        *chain_flags,
        "--slot-duration-ms", "1000",
        "--block-authoring-delay", "30",  # CPU proving takes seconds; keep slots open long enough
    )
    controller = None
    try:
        node_url = node.wait_ready()
        controller = _start_controller(nats_server.url, node_url, tmp_path / "controller.log")
        asyncio.run(_farm(nats_server.url, node, pieces_in_sector))
    finally:
        statuses = {}
        children = []
        if controller is not None:
            children += _children_of(controller.pid)
            statuses["controller"] = _terminate(controller)
        children += _children_of(node.proc.pid)
        statuses["dev-node"] = node.terminate()
        print(node.log_tail(60))
        if controller is not None:
            print((tmp_path / "controller.log").read_text()[-4000:])
    assert statuses == {"controller": 0, "dev-node": 0}
    time.sleep(0.5)
    assert [pid for pid in children if Path(f"/proc/{pid}").exists()] == [], "processes left behind"

    # A restarted dev node continues the same chain from its data dir (no re-archiving).
    restarted = DevNodeProcess(node.data_dir, *chain_flags, log_path=tmp_path / "node-restart.log")
    try:
        status = asyncio.run(call(restarted.wait_ready(120), "dev_status"))
        blocks = asyncio.run(call(restarted.url, "dev_blocks"))
    finally:
        assert restarted.terminate() == 0
    assert status["chainHeight"] == 1 and status["segmentsArchived"] == 2
    assert blocks[0]["hash"] == status["bestHash"]
    assert "archiving segment" not in (tmp_path / "node-restart.log").read_text()


async def _farm(nats_url: str, node: DevNodeProcess, pieces_in_sector: int) -> None:
    bus = await Bus.connect([nats_url], name="itest-farmer")
    try:
        status = await call(node.url, "dev_status")
        # Slot info flows from the node through the controller (wait for the controller to come up).
        slots = await bus.subscribe(SlotInfoBroadcast)
        first = await slots.next(timeout=90)
        assert first.instance == CONTROLLER_INSTANCE
        assert first.decoded().solution_range == (1 << 64) - 1

        app_info = (await bus.request(FarmerAppInfoRequest(), timeout=30)).unwrap()
        assert app_info.genesis_hash.hex() == status["genesisHash"]
        assert app_info.protocol_info.history_size == status["historySize"] == 1
        assert app_info.protocol_info.max_pieces_in_sector == pieces_in_sector

        headers = (await bus.request(SegmentHeadersRequest(segment_indices=[0, 1]), timeout=30)).decoded()
        node_headers = await call(node.url, "subspace_segmentHeaders", [[0, 1]])
        assert headers[1] is None and node_headers[1] is None
        assert headers[0].to_json() == node_headers[0]

        streamed = [item async for item in bus.stream_request(PiecesRequest(piece_indices=[2, 1 << 40, 3]), timeout=60)]
        assert [item.piece_index for item in streamed] == [2, 3]
        assert all(len(item.piece) == PIECE_SIZE for item in streamed)

        farmer = _Farmer(bus)
        await farmer.plot(app_info, pieces_in_sector)
        # Slots queued while plotting are stale: farm on a fresh subscription.
        await slots.unsubscribe()
        slots = await bus.subscribe(SlotInfoBroadcast)
        signer = asyncio.ensure_future(farmer.answer_reward_signing())
        await asyncio.sleep(0.2)
        try:
            await asyncio.wait_for(farmer.farm(slots), 240)
            blocks = await _wait_for_block(node.url, 60)
        finally:
            signer.cancel()
            await slots.unsubscribe()
        assert len(blocks) == 1
        block = blocks[0]
        submitted = farmer.submitted[0]
        assert block["slotNumber"] == submitted.slot_number
        assert block["solution"] == submitted.solution.to_json()
        assert bytes.fromhex(block["hash"]) in farmer.signed
        signature = bytes.fromhex(block["rewardSignature"])
        assert schnorrkel.verify(REWARD_SIGNING_CONTEXT, bytes.fromhex(block["hash"]), signature, farmer.public_key)
        on_disk = [json.loads(line) for line in (node.data_dir / "blocks.jsonl").read_text().splitlines()]
        assert on_disk == blocks
        final = await call(node.url, "dev_status")
        assert final["blocksAuthored"] == 1 and final["solutionsRejected"] == 0

        # A new archived segment: node -> controller -> NATS broadcast; the controller acknowledges.
        segments = await bus.subscribe(ArchivedSegmentHeaderBroadcast)
        archived = await call(node.url, "dev_archiveSegment")
        broadcast = await segments.next(timeout=60)
        await segments.unsubscribe()
        assert broadcast.decoded().to_json() == archived and broadcast.msg_id() == "archived-segment-1"
        for _ in range(100):
            status = await call(node.url, "dev_status")
            if status["pendingAcknowledgements"] == 0:
                break
            await asyncio.sleep(0.1)
        assert status["pendingAcknowledgements"] == 0 and status["heldSegment"] is None
        app_info = (await bus.request(FarmerAppInfoRequest(), timeout=30)).unwrap()
        assert app_info.protocol_info.history_size == 2
        headers = (await bus.request(SegmentHeadersRequest(segment_indices=[1]), timeout=30)).decoded()
        assert headers[0].to_json() == archived
    finally:
        await bus.close()
