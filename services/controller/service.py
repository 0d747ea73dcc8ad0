"""The controller daemon: the cluster's single window onto the node (spec 06 §1, §3).

It holds one RPC connection to the node (real or dev node, spec 05) and one NATS connection, and
proxies between them:

* node slot info      -> ``subspace.controller.slot-info`` broadcast (with this instance's name,
                         so farmers send solutions to ``subspace.controller.<instance>.solution``);
* farmer solutions    -> node ``subspace_submitSolutionResponse``;
* node reward signing -> ``subspace.controller.reward-signing-info`` broadcast; farmer
                         signatures (``subspace.controller.reward-signature``) -> node at once
                         (the node waits only 500 ms);
* node archived segment headers -> ``subspace.controller.archived-segment-header`` broadcast,
                         then acknowledged to the node once the live caches of its groups hold
                         the segment's pieces (at most ``ACK_WAIT_S``, inside the node's 2-minute
                         window; acknowledging is the controller's job in cluster mode);
* ``find-piece(s)-in-cache``: which live cache holds which piece, with its TCP endpoint
  (:mod:`services.controller.caches`);
* requests: farmer app info, segment headers (answered from a local cache of the immutable
  headers, filled from the node) and pieces (the node's ``subspace_piece``; a dev node's
  ``dev_piece`` for older history, as there is no DSN here yet).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time

from services.bus.client import Bus
from services.bus.membership import Member, Membership
from services.bus.message import check_token
from services.controller.caches import CacheDirectory
from services.controller.messages import (
    ANY_CACHE_GROUP,
    ArchivedSegmentHeaderBroadcast,
    FindPieceInCacheRequest,
    FindPiecesInCacheRequest,
    PieceLocationResult,
    FarmerAppInfoRequest,
    FarmerAppInfoResult,
    CacheIdentify,
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
    archived_segment_dedup_id,
    slot_info_dedup_id,
)
from services.controller.config import ControllerConfig
from services.daemon import Daemon, DaemonError, package_version
from services.logs import CONNECTING_TO_NODE
from services.node.rpc_client import NodeRpcClient, RpcConnectionError, RpcError
from services.node.rpc_server import METHOD_NOT_FOUND
from services.node.rpc_types import MAX_SEGMENT_HEADERS_PER_REQUEST
from services.protocol.constants import NUM_PIECES
from services.protocol.pieces import Piece
from services.protocol.segments import SegmentHeader

NODE_CONNECT_TIMEOUT_S = 60.0
STATUS_REFRESH_S = 5.0  # membership capacity follows the counters (autonomys-farmer status)
ACK_WAIT_S = 110.0  # the node's archiver waits 120 s for acknowledgements (spec 05 §3)
PIECE_FETCH_CONCURRENCY = 8  # node piece calls in flight for one pieces stream / segment prefetch
NEWEST_SEGMENT_KEEP_S = 60.0  # the newest segment's pieces stay in memory this long after its ack


class ControllerService(Daemon):
    name = "controller"

    def __init__(self, config: ControllerConfig) -> None:
        super().__init__()
        self.config = config
        self.instance = config.instance
        self.log = self.log.bind(instance=config.instance)
        self.bus: Bus | None = None
        self.node: NodeRpcClient | None = None
        self._services: list = []
        self._headers: dict[int, SegmentHeader] = {}
        self._dev_piece_supported: bool | None = None
        self._tmp_dir: str | None = None
        self._membership = None
        self._caches: CacheDirectory | None = None
        # pieces of the newest archived segment, fetched from the node once (every cache asks for
        # them at the same moment, while the node still holds the segment): index -> future
        self._newest: dict[int, asyncio.Future] = {}
        self.counters = self.metrics.controller  # services.metrics.node.ControllerMetrics
        self._last_slot_at = 0.0

    # ---- lifecycle

    async def start(self) -> None:
        cfg = self.config
        try:
            check_token(self.instance)
        except ValueError as exc:
            raise DaemonError(f"controller instance name {self.instance!r} cannot be used in NATS subjects: {exc}") from None
        if cfg.tmp:
            self._tmp_dir = tempfile.mkdtemp(prefix="autonomys-controller-")
        self.node = NodeRpcClient(cfg.node_rpc_url)
        await self._connect_node()
        self.bus = await Bus.connect(list(cfg.nats_servers), name=f"controller-{self.instance}",
                                     metrics=self.metrics.bus)
        node = self.node
        # Subscribe to the node first so nothing the farmers need is missed once we serve.
        self._slot_sub = await node.subscribe_slot_info()
        self._reward_sub = await node.subscribe_reward_signing()
        self._segment_sub = await node.subscribe_archived_segment_headers()
        bus = self.bus
        self._services = [
            await bus.serve(FarmerAppInfoRequest, self._on_farmer_app_info, max_concurrency=cfg.service_instances),
            await bus.serve(SegmentHeadersRequest, self._on_segment_headers, max_concurrency=cfg.service_instances),
            await bus.serve(PieceRequest, self._on_piece, max_concurrency=cfg.service_instances),
            await bus.serve(PiecesRequest, self._on_pieces, max_concurrency=cfg.service_instances),
            await bus.serve(SolutionNotification, self._on_solution, instance=self.instance, queue_group=self.instance),
            await bus.serve(RewardSignatureNotification, self._on_reward_signature),
        ]
        membership = await self._register_membership()
        self._caches = CacheDirectory(bus, cfg.cache_groups)
        await self._caches.start(membership)
        for group in (*cfg.cache_groups, ANY_CACHE_GROUP):
            self._services += [
                await bus.serve(FindPieceInCacheRequest, self._on_find_piece(group), instance=group,
                                max_concurrency=cfg.service_instances),
                await bus.serve(FindPiecesInCacheRequest, self._on_find_pieces(group), instance=group,
                                max_concurrency=cfg.service_instances),
            ]
        # Ask farmers and caches to identify themselves now (spec 06 §3) rather than in 30 s.
        await bus.broadcast(FarmerIdentify())
        for group in cfg.cache_groups:
            await bus.broadcast(CacheIdentify(), instance=group)
        self.log.info("controller started", node=cfg.node_rpc_url, nats=list(cfg.nats_servers))

    async def _connect_node(self) -> None:
        assert self.node is not None
        deadline = time.monotonic() + NODE_CONNECT_TIMEOUT_S
        delay = 0.5
        while True:
            self.log.info(CONNECTING_TO_NODE, url=self.config.node_rpc_url)  # the official farmer's wording
            try:
                await self.node.connect(timeout=10)
                info = await self.node.farmer_app_info()
                self.counters.node_connected.set(1)
                self.log.info(
                    "connected to node",
                    genesis=info.genesis_hash.hex(),
                    history_size=info.protocol_info.history_size,
                    syncing=info.syncing,
                )
                return
            except (RpcConnectionError, RpcError, ValueError) as exc:
                await self.node.close()
                self.node = NodeRpcClient(self.config.node_rpc_url)
                if time.monotonic() + delay > deadline or self.stop_event.is_set():
                    raise DaemonError(f"cannot reach the node at {self.config.node_rpc_url}: {exc}") from None
                self.log.warning("node not reachable yet; retrying", error=str(exc), retry_in_s=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _register_membership(self) -> Membership:
        assert self.bus is not None
        membership = await Membership.open(self.bus)
        self._membership = await membership.register(
            Member(
                role="controller",
                instance=self.instance,
                endpoints=[self.config.node_rpc_url],
                capacity=self._capacity(),
                version=package_version(),
            )
        )
        return membership

    def _capacity(self) -> dict[str, int | float | str]:
        """The membership record's counters, for ``autonomys-farmer status``."""
        value = self.metrics.registry.get_sample_value

        def count(name: str, labels: dict | None = None) -> int:
            return int(value(f"subspace_farmer_controller_{name}", labels or {}) or 0)

        return {"service_instances": self.config.service_instances, "node_connected": count("node_connected"),
                "last_slot": count("last_slot"), "last_slot_at": round(self._last_slot_at),
                "solutions": count("solutions_total", {"result": "forwarded"}),
                "rejected": count("solutions_total", {"result": "rejected"}),
                "rewards": count("reward_signatures_total"), "segments": count("archived_segments_total")}

    def _observe_cache_fill(self) -> None:
        """The official cluster-wide cache fill gauges from the live caches' records."""
        if self._caches is None:
            return
        caches = self._caches.caches()
        gauges = self.metrics.farmer_cache()
        gauges.piece_cache_capacity_total.set(sum(int(m.capacity.get("slots", 0) or 0) for m in caches))
        gauges.piece_cache_capacity_used.set(sum(int(m.capacity.get("pieces", 0) or 0) for m in caches))

    async def _refresh_membership(self) -> None:
        while True:
            await asyncio.sleep(STATUS_REFRESH_S)
            self._observe_cache_fill()
            capacity = self._capacity()
            if self._membership is not None and capacity != self._membership.member.capacity:
                try:
                    await self._membership.update(capacity=capacity)
                except Exception as exc:  # noqa: BLE001 - the next check carries it
                    self.log.warning("membership update failed", error=str(exc) or type(exc).__name__)

    async def run(self) -> None:
        self.spawn(self._forward_slots(), fatal=True)
        self.spawn(self._forward_reward_signing(), fatal=True)
        self.spawn(self._forward_segment_headers(), fatal=True)
        self.spawn(self._refresh_membership())
        await self.stop_event.wait()

    async def stop(self) -> None:
        await self.cancel_tasks()
        if self._caches is not None:
            await self._caches.stop()
        if self._membership is not None:
            await self._membership.stop()  # best effort: failures are logged there
        if self.bus is not None:
            await self.bus.close()
        if self.node is not None:
            await self.node.close()
            self.counters.node_connected.set(0)
        if self._tmp_dir is not None:
            shutil.rmtree(self._tmp_dir, ignore_errors=True)

    # ---- node -> cluster

    async def _forward_slots(self) -> None:
        assert self.bus is not None
        async for info in self._slot_sub:
            self.counters.slots.inc()
            self.counters.last_slot.set(info.slot_number)
            self._last_slot_at = time.time()
            await self.bus.broadcast(SlotInfoBroadcast.build(info, self.instance), dedup_id=slot_info_dedup_id(info.slot_number))

    async def _forward_reward_signing(self) -> None:
        assert self.bus is not None
        async for info in self._reward_sub:
            self.counters.reward_signing.inc()
            self.log.info("reward signing requested", hash=info.hash.hex()[:16], public_key=info.public_key.hex()[:16])
            await self.bus.broadcast(RewardSigningBroadcast.build(info))

    async def _forward_segment_headers(self) -> None:
        assert self.bus is not None and self.node is not None
        async for header in self._segment_sub:
            self.counters.segments.inc()
            self._headers[header.segment_index] = header
            self._prefetch_segment(header.segment_index)
            await self.bus.broadcast(
                ArchivedSegmentHeaderBroadcast.build(header), dedup_id=archived_segment_dedup_id(header.segment_index)
            )
            await self._wait_for_caches(header.segment_index)
            try:
                await self.node.acknowledge_archived_segment_header(header.segment_index)
            except (RpcError, RpcConnectionError) as exc:
                self.log.warning("segment acknowledgement failed", segment_index=header.segment_index, error=str(exc))
            self.log.info("archived segment announced", segment_index=header.segment_index)
            self.spawn(self._forget_newest_later(header.segment_index))

    def _prefetch_segment(self, segment_index: int) -> None:
        """Start fetching the new segment's 256 pieces from the node (bounded concurrency)."""
        loop = asyncio.get_running_loop()
        first = segment_index * NUM_PIECES
        self._newest = {first + k: loop.create_future() for k in range(NUM_PIECES)}
        futures = self._newest

        async def fetch() -> None:
            limit = asyncio.Semaphore(PIECE_FETCH_CONCURRENCY)

            async def one(index: int) -> None:
                async with limit:
                    try:
                        piece = await self._node_piece(index)
                    except Exception as exc:  # noqa: BLE001 - the requester falls back / retries
                        piece = None
                        self.log.warning("node piece fetch failed", piece_index=index, error=str(exc))
                    if not futures[index].done():
                        futures[index].set_result(piece)

            await asyncio.gather(*(one(i) for i in futures))

        self.spawn(fetch())

    async def _forget_newest_later(self, segment_index: int) -> None:
        await asyncio.sleep(NEWEST_SEGMENT_KEEP_S)
        if segment_index * NUM_PIECES in self._newest:
            self._newest = {}

    async def _wait_for_caches(self, segment_index: int) -> None:
        """Hold the acknowledgement until the caches hold the segment (bounded by ACK_WAIT_S)."""
        assert self._caches is not None
        started = time.monotonic()
        reported, missing = await self._caches.wait_segment_held(segment_index, ACK_WAIT_S)
        waited = round(time.monotonic() - started, 2)
        if missing:
            self.log.warning("acknowledging segment before every cache holds it", segment_index=segment_index,
                             missing=missing, waited_s=waited)
        elif reported:
            self.log.info("caches hold the segment", segment_index=segment_index, caches=reported, waited_s=waited)

    # ---- cluster -> node

    async def _on_solution(self, msg: SolutionNotification) -> None:
        assert self.node is not None
        try:
            response = msg.decoded()
        except ValueError as exc:
            self.counters.solutions.labels("malformed").inc()
            self.log.warning("malformed solution from the cluster", error=str(exc))
            return
        try:
            await self.node.submit_solution_response(response)
            self.counters.solutions.labels("forwarded").inc()
            self.log.info("solution forwarded", slot=response.slot_number, sector_index=response.solution.sector_index)
        except (RpcError, RpcConnectionError) as exc:
            self.counters.solutions.labels("rejected").inc()
            self.log.warning("node refused solution", slot=response.slot_number, error=str(exc))

    async def _on_reward_signature(self, msg: RewardSignatureNotification) -> None:
        assert self.node is not None
        try:
            response = msg.decoded()
        except ValueError as exc:
            self.log.warning("malformed reward signature from the cluster", error=str(exc))
            return
        self.counters.reward_signatures.inc()
        try:
            await self.node.submit_reward_signature(response)
        except (RpcError, RpcConnectionError) as exc:
            self.log.warning("node refused reward signature", error=str(exc))

    # ---- requests

    async def _on_farmer_app_info(self, msg: FarmerAppInfoRequest) -> FarmerAppInfoResult:
        assert self.node is not None
        try:
            info = await self.node.farmer_app_info()
        except (RpcError, RpcConnectionError, ValueError) as exc:
            return FarmerAppInfoResult(error=f"node farmer app info: {exc}")
        return FarmerAppInfoResult(ok=info.to_scale())

    async def _on_segment_headers(self, msg: SegmentHeadersRequest) -> SegmentHeadersResult:
        assert self.node is not None
        indices = list(msg.segment_indices)
        if len(indices) > MAX_SEGMENT_HEADERS_PER_REQUEST:
            raise ValueError(f"at most {MAX_SEGMENT_HEADERS_PER_REQUEST} segment indices per request, got {len(indices)}")
        missing = sorted({i for i in indices if i not in self._headers})
        if missing:
            for header in await self.node.segment_headers(missing):
                if header is not None:
                    self._headers[header.segment_index] = header
        return SegmentHeadersResult(
            headers=[self._headers[i].to_scale() if i in self._headers else None for i in indices]
        )

    async def _on_piece(self, msg: PieceRequest) -> PieceResult:
        piece = await self._get_piece(msg.piece_index)
        self.counters.piece_requests.labels("missing" if piece is None else "found").inc()
        return PieceResult(piece=None if piece is None else bytes(piece))

    async def _on_pieces(self, msg: PiecesRequest):  # noqa: ANN201 - async generator of PieceItem
        indices = list(msg.piece_indices)
        for start in range(0, len(indices), PIECE_FETCH_CONCURRENCY):  # in order, a few in flight
            part = indices[start:start + PIECE_FETCH_CONCURRENCY]
            for index, piece in zip(part, await asyncio.gather(*(self._get_piece(i) for i in part))):
                self.counters.piece_requests.labels("missing" if piece is None else "found").inc()
                if piece is not None:
                    yield PieceItem(piece_index=index, piece=bytes(piece))

    def _count_finds(self, asked: int, found: int) -> None:
        cache = self.metrics.farmer_cache()  # the official subspace_farmer_farmer_cache_* set
        cache.cache_find_hit.inc(found)
        cache.cache_find_miss.inc(asked - found)

    def _on_find_piece(self, group: str):  # noqa: ANN202 - handler for one cache group
        async def handler(msg: FindPieceInCacheRequest) -> PieceLocationResult:
            assert self._caches is not None
            found = await self._caches.locate([msg.piece_index], group)
            self._count_finds(1, len(found))
            return PieceLocationResult(location=found[0] if found else None)

        return handler

    def _on_find_pieces(self, group: str):  # noqa: ANN202 - handler for one cache group
        async def handler(msg: FindPiecesInCacheRequest):  # noqa: ANN202 - async generator
            assert self._caches is not None
            found = await self._caches.locate(list(msg.piece_indices), group)
            self._count_finds(len(msg.piece_indices), len(found))
            for location in found:
                yield location

        return handler

    async def _get_piece(self, piece_index: int) -> Piece | None:
        """The newest segment's prefetched piece, else :meth:`_node_piece`."""
        future = self._newest.get(piece_index)
        if future is not None:
            piece = await asyncio.shield(future)
            if piece is not None:
                return piece
        return await self._node_piece(piece_index)

    async def _node_piece(self, piece_index: int) -> Piece | None:
        """The node's ``subspace_piece``; a dev node's ``dev_piece`` for older history."""
        assert self.node is not None
        piece = await self.node.piece(piece_index)
        if piece is None and self._dev_piece_supported is not False:
            try:
                raw = await self.node.call("dev_piece", [piece_index])
                self._dev_piece_supported = True
                if raw is not None:
                    piece = Piece.from_json(raw)
            except RpcError as exc:
                if exc.code == METHOD_NOT_FOUND:
                    self._dev_piece_supported = False
                else:
                    raise
        return piece
