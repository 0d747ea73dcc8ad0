"""PieceGetter against real servers: a real nats-server (membership) and real data-plane
listeners in this process: one shard that stalls, one whose address is dead, and a full-piece
cache that serves. Every piece must arrive, each fallback counted; the priority cache is read
first and written back."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from blake3 import blake3

from services.bus.client import Bus
from services.bus.membership import Member, Membership
from services.cache.getter import PieceGetter
from services.cache.messages import CACHE_GROUP_LABEL, FULL_PIECE_CACHE_ROLE, SHARDED_CACHE_ROLE, GetPieces
from services.cache.priority import PriorityCache, recent_piece_indices
from services.p2p.client import PeerClient
from services.p2p.message import BulkItem, Missing
from services.p2p.server import PeerServer
from services.protocol.constants import PIECE_SIZE


def piece(index: int) -> bytes:
    return blake3(index.to_bytes(8, "little")).digest(length=PIECE_SIZE)


def _dead_endpoint() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{sock.getsockname()[1]}"


async def _scenario(nats_url: str, tmp_path: Path) -> None:
    never = asyncio.Event()

    async def stall(request: GetPieces):  # noqa: ANN202 - sends nothing, forever
        await never.wait()
        yield Missing(request.piece_indices)

    def serve(request: GetPieces):  # noqa: ANN202
        for index in request.piece_indices:
            yield BulkItem(index, piece(index)) if index < 1000 else Missing([index])

    stuck, full = PeerServer(None, name="stuck"), PeerServer(None, name="full")
    stuck.route(GetPieces, stall)
    full.route(GetPieces, serve)
    await stuck.start()
    await full.start()
    bus = await Bus.connect([nats_url])
    membership = await Membership.open(bus)
    records = [
        Member(role=SHARDED_CACHE_ROLE, instance="stuck", endpoints=[stuck.endpoint()], capacity={"slots": 100},
               labels={CACHE_GROUP_LABEL: "default"}),
        Member(role=SHARDED_CACHE_ROLE, instance="dead", endpoints=[_dead_endpoint()], capacity={"slots": 100},
               labels={CACHE_GROUP_LABEL: "default"}),
        Member(role=FULL_PIECE_CACHE_ROLE, instance="full", endpoints=[full.endpoint()], capacity={"slots": 100},
               labels={CACHE_GROUP_LABEL: "default"}),
    ]
    registrations = [await membership.register(m) for m in records]
    priority = PriorityCache(tmp_path / "priority", size_bytes=64 * PIECE_SIZE)
    getter = await PieceGetter.connect(bus, PeerClient(None), cache_group="default", priority=priority,
                                       stall_timeout=1.0, use_controller=False, batch_size=8)
    try:
        wanted = list(range(40)) + [5000]
        result = await getter.get_pieces(wanted)
        assert result.missing == [5000]
        assert all(bytes(result.pieces[i]) == piece(i) for i in range(40))
        assert set(result.sources) == {full.endpoint()}
        stats = dict(getter.stats)
        assert stats["stalls"] >= 1 and stats["source_errors"] >= 1 and stats["retries"] >= 40, stats
        assert stats["failures"] == 1
        await asyncio.sleep(0)  # let the write-back start
        await getter.close()  # waits for the write-back
        assert len(priority) == 40
        # a sector with duplicate indices: the repeated offsets are copied; the priority cache serves
        sector, failed = await getter.fetch_sector([3, 7, 3, 39, 1000])
        assert failed == [4]
        assert [bytes(sector[k * PIECE_SIZE:(k + 1) * PIECE_SIZE]) for k in range(4)] == [piece(i) for i in (3, 7, 3, 39)]
        assert recent_piece_indices(10, 5)[:2] == [5 * 256, 5 * 256 + 1] and len(recent_piece_indices(3, 5)) == 768
    finally:
        never.set()
        await getter.close()
        priority.close()
        for registration in registrations:
            await registration.stop()
        await stuck.stop()
        await full.stop()
        await bus.close()


def test_getter_falls_back_counts_and_uses_the_priority_cache(nats_server, tmp_path: Path) -> None:
    asyncio.run(_scenario(nats_server.url, tmp_path))
