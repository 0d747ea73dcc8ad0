"""The cache cluster with real processes on loopback: nats-server, a dev node, the controller, a
full-piece cache loaded from an exported history, and sharded-cache shards as separate processes.

Checked here: shards fill their rendezvous share (from the full-piece cache over TCP) and serve
byte-identical pieces; the controller's piece lookups name the owners; a shard killed with
SIGKILL keeps every piece it stored and, while it is down, downloads fall back to other sources
instead of failing; a piece corrupted on disk is never served and is refetched; forged and
truncated pieces from a lying cache are never stored; malformed frames close the connection and
the daemon keeps serving; a new archived segment is acknowledged to the node only after the
caches report holding it; the verify-piece, reinitialization-cache and benchmark utilities work
against the live cluster. Randomness is seeded (printed).
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cache"))
from cache_processes import (  # noqa: E402
    REPO_ROOT,
    RoleProcess,
    export_from_dev_chain,
    filled,
    start_cache,
    start_controller,
    wait_member,
)
from dev_node_process import TEMPLATE_FLAGS, DevNodeProcess, archived_template, call, clone_data_dir  # noqa: E402

from services.bus.client import Bus  # noqa: E402
from services.bus.membership import Member, Membership  # noqa: E402
from services.cache.getter import PieceGetter  # noqa: E402
from services.cache.messages import (  # noqa: E402
    CACHE_GROUP_LABEL,
    FULL_PIECE_CACHE_ROLE,
    SHARDED_CACHE_ROLE,
    CacheContainsRequest,
    CacheContainsResult,
    GetPieces,
    SegmentHeldNotification,
    bitmap,
)
from services.cache.placement import Rendezvous  # noqa: E402
from services.cache.store import KIND_PUT, LOG_HEADER, RECORD_SIZE  # noqa: E402
from services.controller.messages import FindPiecesInCacheRequest  # noqa: E402
from services.p2p import handshake  # noqa: E402
from services.p2p.client import PeerClient  # noqa: E402
from services.p2p.message import BulkItem  # noqa: E402
from services.p2p.server import PeerServer  # noqa: E402
from services.p2p.sinks import KeyedBuffers  # noqa: E402
from services.protocol.constants import NUM_PIECES, PIECE_SIZE  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SEED = 8
FILL_TIMEOUT = 240.0


class Cluster:
    def __init__(self, base: Path, nats_url: str, node: DevNodeProcess) -> None:
        self.base = base
        self.nats_url = nats_url
        self.node = node
        self.procs: dict[str, RoleProcess] = {}
        self.segment0 = (node.data_dir / "segments" / "00000000.pieces").read_bytes()

    def piece(self, index: int) -> bytes:
        segment, position = divmod(index, NUM_PIECES)
        data = self.segment0 if segment == 0 else (self.node.data_dir / "segments" / f"{segment:08d}.pieces").read_bytes()
        return data[position * PIECE_SIZE:(position + 1) * PIECE_SIZE]

    def shard(self, instance: str, *extra: str, size: str = "1GiB", group: str = "default") -> RoleProcess:
        proc = start_cache("sharded-cache", self.nats_url, f"path={self.base / instance},size={size}", instance,
                           self.base / f"{instance}.log", "--cache-group", group, *extra)
        self.procs[instance] = proc
        return proc

    def alive(self) -> tuple[RoleProcess, ...]:
        return tuple(p for p in self.procs.values() if p.alive())


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    from services.bus.server import NatsServer, NatsServerConfig

    print(f"seed {SEED}")
    base = tmp_path_factory.mktemp("cache-cluster")
    template = archived_template(tmp_path_factory.getbasetemp(), *TEMPLATE_FLAGS)
    nats = NatsServer(NatsServerConfig()).start()
    node = DevNodeProcess(clone_data_dir(template, base / "node"), *TEMPLATE_FLAGS)
    state = Cluster(base, nats.url, node)
    try:
        node_url = node.wait_ready()
        state.procs["controller"] = start_controller(nats.url, node_url, base / "controller.log")
        assert export_from_dev_chain(node.data_dir, base / "export") == 1
        state.procs["full-a"] = start_cache("full-piece-sharded-cache", nats.url, f"path={base / 'export'}", "full-a",
                                            base / "full-a.log")
        yield state
    finally:
        statuses = {name: proc.terminate() for name, proc in state.procs.items()}
        node.terminate()
        nats.stop()
        for name, proc in state.procs.items():
            print(f"--- {name} (exit {statuses[name]})\n{proc.tail(15)}")
    assert all(code == 0 for name, code in statuses.items() if name != "shard-a-killed"), statuses


def run(coro):  # noqa: ANN001, ANN201
    return asyncio.run(coro)


async def _holds(bus: Bus, instance: str, indices: list[int]) -> list[bool]:
    result = await bus.request(CacheContainsRequest(piece_indices=indices), instance=instance, timeout=10, retries=2)
    return result.flags(len(indices))


def test_shards_fill_their_share_and_serve_identical_pieces(cluster: Cluster) -> None:
    async def body() -> None:
        bus = await Bus.connect([cluster.nats_url])
        try:
            await wait_member(bus, f"{FULL_PIECE_CACHE_ROLE}.full-a", filled, FILL_TIMEOUT, "verified", cluster.alive())
            cluster.shard("shard-a")
            cluster.shard("shard-b")
            members = [await wait_member(bus, f"{SHARDED_CACHE_ROLE}.{s}", filled, FILL_TIMEOUT, "filled", cluster.alive())
                       for s in ("shard-a", "shard-b")]
            placement = Rendezvous({m.instance: m.capacity["slots"] for m in members})
            everything = list(range(NUM_PIECES))
            owners = [placement.owner(i) for i in everything]
            assert 60 < owners.count("shard-a") < 196  # both own a share
            held = {s: await _holds(bus, s, everything) for s in ("shard-a", "shard-b")}
            assert all(held[owners[i]][i] for i in everything), "an owner lacks a piece it owns"
            for member in members:
                assert member.endpoints[0].startswith("tcp://127.0.0.1:")
                assert member.capacity["owned"] == owners.count(member.instance)

            getter = await PieceGetter.connect(bus, PeerClient(None), use_controller=False)
            try:
                result = await getter.get_pieces(everything)
            finally:
                await getter.close()
            assert result.missing == []
            shard_endpoints = {m.endpoints[0] for m in members}
            assert set(result.sources) == shard_endpoints, result.sources
            assert all(bytes(result.pieces[i]) == cluster.piece(i) for i in everything)

            locations = [loc async for loc in bus.stream_request(
                FindPiecesInCacheRequest(piece_indices=list(range(8)) + [10**9]), instance="default", timeout=30)]
            assert [loc.piece_index for loc in locations] == list(range(8))
            assert [loc.instance for loc in locations] == owners[:8]
        finally:
            await bus.close()

    run(body())


def test_sigkilled_shard_loses_nothing_and_downloads_fall_back(cluster: Cluster) -> None:
    async def body() -> None:
        bus = await Bus.connect([cluster.nats_url])
        try:
            everything = list(range(NUM_PIECES))
            before = [i for i, h in zip(everything, await _holds(bus, "shard-a", everything)) if h]
            assert before
            cluster.procs["shard-a"].kill()
            cluster.procs["shard-a-killed"] = cluster.procs.pop("shard-a")
            getter = await PieceGetter.connect(bus, PeerClient(None), stall_timeout=3)
            try:
                result = await getter.get_pieces(everything)
            finally:
                await getter.close()
            assert result.missing == [] and getter.stats["source_errors"] >= 1, dict(getter.stats)
            assert all(bytes(result.pieces[i]) == cluster.piece(i) for i in before)

            restart_time = time.time()
            restarted = cluster.shard("shard-a")
            await wait_member(bus, f"{SHARDED_CACHE_ROLE}.shard-a", lambda m: m.started_at >= restart_time
                              and m.capacity.get("pieces", 0) >= len(before), 60, "back", cluster.alive())
            opened = json.loads([line for line in restarted.log_text().splitlines() if "piece store opened" in line][-1])
            assert opened["pieces"] == len(before) and opened["bad_index_records"] == 0, opened
            held = await _holds(bus, "shard-a", before)
            assert all(held)
        finally:
            await bus.close()

    run(body())


def _slot_of(store_dir: Path, piece_index: int) -> int:
    data = (store_dir / "index.log").read_bytes()
    assert data.startswith(LOG_HEADER)
    slot = -1
    for start in range(len(LOG_HEADER), len(data) - RECORD_SIZE + 1, RECORD_SIZE):
        kind, record_slot, index = struct.unpack_from("<B3xIQ", data, start)
        if index == piece_index:
            slot = record_slot if kind == KIND_PUT else -1
    return slot


def test_corrupt_piece_is_never_served_and_is_refetched(cluster: Cluster) -> None:
    async def body() -> None:
        bus = await Bus.connect([cluster.nats_url])
        client = PeerClient(None)
        try:
            members = await (await Membership.open(bus)).members()
            shard_b = members[f"{SHARDED_CACHE_ROLE}.shard-b"]
            shards = {k.split(".", 1)[1]: m for k, m in members.items() if m.role == SHARDED_CACHE_ROLE
                      and m.labels.get(CACHE_GROUP_LABEL) == "default"}
            placement = Rendezvous({i: m.capacity["slots"] for i, m in shards.items()})
            everything = list(range(NUM_PIECES))
            index = next(i for i, h in zip(everything, await _holds(bus, "shard-b", everything))
                         if h and placement.owner(i) == "shard-b")
            slot = _slot_of(cluster.base / "shard-b", index)
            with open(cluster.base / "shard-b" / "pieces.dat", "r+b") as f:
                f.seek(slot * PIECE_SIZE + 777)
                original = f.read(1)
                f.seek(slot * PIECE_SIZE + 777)
                f.write(bytes([original[0] ^ 0xFF]))
            buffer = bytearray(PIECE_SIZE)
            result = await client.fetch(shard_b.endpoints[0], GetPieces(piece_indices=[index]),
                                        KeyedBuffers({index: memoryview(buffer)}))
            assert result.missing == [index] and not result.received  # detected, not served
            deadline = time.monotonic() + FILL_TIMEOUT
            while time.monotonic() < deadline:  # the shard refetches it from another source
                result = await client.fetch(shard_b.endpoints[0], GetPieces(piece_indices=[index]),
                                            KeyedBuffers({index: memoryview(buffer)}))
                if result.received:
                    break
                await asyncio.sleep(0.5)
            assert bytes(buffer) == cluster.piece(index)
        finally:
            await client.close()
            await bus.close()

    run(body())


def test_forged_and_truncated_pieces_are_never_stored(cluster: Cluster) -> None:
    """A lying "full-piece cache" in group ``forge`` is the only other cache a new shard there
    sees: it sends pieces with a changed record byte (their digests match what is sent, so only
    the segment-commitment check catches them) and one truncated piece."""
    truncated_index = NUM_PIECES - 16  # the shard (16 slots) fills the newest 16 pieces, newest first

    def forged_stream(request: GetPieces):  # noqa: ANN202
        for index in request.piece_indices:
            real = bytearray(cluster.piece(index))
            if index == truncated_index:
                yield BulkItem(index, bytes(real[:-1]))
            else:
                real[4096 + index] ^= 0x01
                yield BulkItem(index, bytes(real))

    async def body() -> None:
        bus = await Bus.connect([cluster.nats_url])
        rogue = PeerServer(None, name="rogue")
        rogue.route(GetPieces, forged_stream)
        await rogue.start("127.0.0.1", 0)
        contains = await bus.serve(CacheContainsRequest,
                                   lambda msg: CacheContainsResult(held=bitmap([True] * len(msg.piece_indices))),
                                   instance="rogue")
        registration = await (await Membership.open(bus)).register(Member(
            role=FULL_PIECE_CACHE_ROLE, instance="rogue", endpoints=[rogue.endpoint()],
            capacity={"slots": NUM_PIECES}, labels={CACHE_GROUP_LABEL: "forge"}))
        try:
            shard = cluster.shard("shard-forge", size=f"{16 * PIECE_SIZE}", group="forge")
            await wait_member(bus, f"{SHARDED_CACHE_ROLE}.shard-forge", lambda m: m.capacity.get("pieces", 0) >= 16,
                              FILL_TIMEOUT, "filled", cluster.alive())
            members = await (await Membership.open(bus)).members()
            endpoint = members[f"{SHARDED_CACHE_ROLE}.shard-forge"].endpoints[0]
            newest = list(range(NUM_PIECES - 16, NUM_PIECES))
            buffers = {i: memoryview(bytearray(PIECE_SIZE)) for i in newest}
            client = PeerClient(None)
            try:
                result = await client.fetch(endpoint, GetPieces(piece_indices=newest), KeyedBuffers(buffers))
            finally:
                await client.close()
            assert sorted(result.received) == newest
            assert all(bytes(buffers[i]) == cluster.piece(i) for i in newest), "a forged piece was stored"
            log = shard.log_text()
            assert "pieces failed the segment-commitment check" in log
            assert "cache source failed" in log  # the truncated item broke the rogue's stream
        finally:
            await registration.stop()
            await contains.stop()
            await rogue.stop()
            await bus.close()

    run(body())


def test_malformed_frames_close_the_connection_and_the_shard_keeps_serving(cluster: Cluster) -> None:
    async def endpoint_of(instance: str) -> str:
        bus = await Bus.connect([cluster.nats_url])
        try:
            return (await (await Membership.open(bus)).members())[f"{SHARDED_CACHE_ROLE}.{instance}"].endpoints[0]
        finally:
            await bus.close()

    host, port = run(endpoint_of("shard-b"))[len("tcp://"):].rsplit(":", 1)

    def closed_after(payload: bytes, do_handshake: bool) -> bool:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            hello = sock.recv(handshake.SERVER_HELLO_SIZE, socket.MSG_WAITALL)
            if do_handshake:
                parsed = handshake.parse_server_hello(hello)
                nonce = handshake.new_nonce()
                sock.sendall(handshake.client_hello(b"", parsed, nonce))
                proof = sock.recv(handshake.SERVER_PROOF_SIZE, socket.MSG_WAITALL)
                handshake.verify_server_proof(b"", parsed, nonce, proof)
            sock.sendall(payload)
            try:
                return sock.recv(1 << 16) == b""
            except ConnectionResetError:
                return True

    assert closed_after(b"GET / HTTP/1.1\r\n\r\n" + bytes(100), do_handshake=False)  # not a client hello
    assert closed_after(struct.pack("<BBHII", 99, 0, 0, 1, 4) + b"abcd", do_handshake=True)  # unknown kind
    assert closed_after(struct.pack("<BBHII", 1, 0, 0, 1, 1 << 30), do_handshake=True)  # oversized request
    assert closed_after(struct.pack("<BBHII", 1, 0, 0, 1, 5) + b"\xc1\xc1\xc1\xc1\xc1", do_handshake=True)  # bad body
    assert cluster.procs["shard-b"].alive()

    async def still_serves() -> None:
        bus = await Bus.connect([cluster.nats_url])
        getter = await PieceGetter.connect(bus, PeerClient(None), use_controller=False)
        try:
            result = await getter.get_pieces(range(8))
            assert result.missing == [] and all(bytes(result.pieces[i]) == cluster.piece(i) for i in range(8))
        finally:
            await getter.close()
            await bus.close()

    run(still_serves())


async def _holds_now(nats_url: str, instance: str) -> list[int]:
    bus = await Bus.connect([nats_url])
    try:
        everything = list(range(NUM_PIECES))
        return [i for i, h in zip(everything, await _holds(bus, instance, everything)) if h]
    finally:
        await bus.close()


def test_utilities_against_the_live_cluster(cluster: Cluster) -> None:
    def util(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services", "util", *args, "--nats-servers", cluster.nats_url],
                              cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)

    # a piece damaged on shard-a's disk: found (exit 1, named), then repaired with --repair
    held = run(_holds_now(cluster.nats_url, "shard-a"))
    index = held[len(held) // 2]
    slot = _slot_of(cluster.base / "shard-a", index)
    with open(cluster.base / "shard-a" / "pieces.dat", "r+b") as f:
        f.seek(slot * PIECE_SIZE + PIECE_SIZE - 100)  # inside the witness
        byte = f.read(1)
        f.seek(slot * PIECE_SIZE + PIECE_SIZE - 100)
        f.write(bytes([byte[0] ^ 0x40]))
    found = util("verify-piece", "--cache-group", "default")
    assert found.returncode == 1 and f"bad: [{index}]" in found.stdout, found.stdout + found.stderr
    verify = util("verify-piece", "--cache-group", "default", "--repair")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "sharded-cache.shard-b" in verify.stdout and "full-piece-sharded-cache.full-a" in verify.stdout
    assert util("verify-piece", "--cache-group", "default").returncode == 0
    reinit = util("reinitialization-cache", "--delay", "0", "--cache-group", "default")
    assert reinit.returncode == 0, reinit.stdout + reinit.stderr
    assert reinit.stdout.count(" done ") == 3, reinit.stdout  # shard-a, shard-b, full-a
    bench = util("sharded-cache-benchmark", "--sectors", "4", "--epoch", "2", "--cache-item-type", "piece",
                 "--seed", str(SEED), "--json")
    assert bench.returncode == 0, bench.stdout + bench.stderr
    summary = json.loads(bench.stdout.strip().splitlines()[-1])
    assert {"sectors", "pieces", "pieces_per_s", "mib_per_s", "p50_ms", "p99_ms", "failures"} <= set(summary)
    assert summary["sectors"] == 8 and summary["failures"] == 0 and summary["pieces"] == 8


def test_new_segment_is_acknowledged_after_the_caches_hold_it(cluster: Cluster) -> None:
    async def body() -> None:
        bus = await Bus.connect([cluster.nats_url])
        try:
            held_at: dict[str, float] = {}
            notes = await bus.subscribe(SegmentHeldNotification)

            async def collect() -> None:
                async for note in notes:
                    if note.segment_index == 1 and note.cache_group == "default":
                        held_at[note.instance] = time.monotonic()

            collector = asyncio.ensure_future(collect())
            archiving = asyncio.ensure_future(call(cluster.node.url, "dev_archiveSegment"))
            acknowledged_at = None
            deadline = time.monotonic() + 900
            while time.monotonic() < deadline:
                status = await call(cluster.node.url, "dev_status")
                if status["segmentsArchived"] == 2 and status["pendingAcknowledgements"] == 0 and archiving.done():
                    acknowledged_at = time.monotonic()
                    break
                await asyncio.sleep(0.1)
            await archiving
            collector.cancel()
            await notes.unsubscribe()
            assert acknowledged_at is not None, "segment 1 never acknowledged"
            assert set(held_at) == {"shard-a", "shard-b", "full-a"}, held_at
            assert max(held_at.values()) <= acknowledged_at
            log = cluster.procs["controller"].log_text()
            assert log.index("caches hold the segment") < log.rindex("archived segment announced")
            everything = list(range(NUM_PIECES, 2 * NUM_PIECES))
            members = await (await Membership.open(bus)).members()
            shards = {k.split(".", 1)[1]: m for k, m in members.items()
                      if m.role == SHARDED_CACHE_ROLE and m.labels.get(CACHE_GROUP_LABEL) == "default"}
            placement = Rendezvous({i: m.capacity["slots"] for i, m in shards.items()})
            for instance in shards:
                held = await _holds(bus, instance, everything)
                assert all(h for i, h in zip(everything, held) if placement.owner(i) == instance)
            assert all(await _holds(bus, "full-a", everything))
        finally:
            await bus.close()

    run(body())
