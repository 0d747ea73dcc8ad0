"""What both cache roles (sharded-cache, full-piece-sharded-cache) do the same way: connect to
NATS, serve pieces on the TCP data plane, advertise themselves (endpoint, capacity, fill) in the
membership registry, verify everything they store, and answer the cache protocol
(:mod:`services.cache.messages`): contains, verify (``util verify-piece``), reinitialize
(``util reinitialization-cache``) and new archived segments (held -> the controller acknowledges).

A role subclasses :class:`CacheRole` and implements the storage-specific parts: ``open_storage``
/ ``close_storage``, ``holdings``, ``read_piece``, ``capacity_fields``, ``fill`` (runs until
stopped, woken by :meth:`wake_fill`), ``take_segment`` and ``self_check``.
"""

from __future__ import annotations

import asyncio
import time
from typing import AsyncIterator

import numpy as np

from services.bus.client import Bus
from services.bus.errors import BusError
from services.bus.membership import Member, Membership
from services.cache.getter import PieceGetter
from services.cache.messages import (
    CACHE_GROUP_LABEL,
    CacheContainsRequest,
    CacheContainsResult,
    CacheReinitializeBroadcast,
    CacheReinitializeConfirmation,
    CacheVerifyProgress,
    CacheVerifyRequest,
    GetPieces,
    SegmentHeldNotification,
    bitmap,
)
from services.cache.server import get_pieces_handler
from services.cache.verify import PieceVerifier, SegmentCommitments
from services.config import parse_host_port
from services.controller.messages import (
    ArchivedSegmentHeaderBroadcast,
    FarmerAppInfoRequest,
    SegmentHeadersRequest,
)
from services.daemon import Daemon, DaemonError
from services.kzg_setup import load_kzg
from services.p2p.client import PeerClient
from services.p2p.errors import P2PConfigError
from services.p2p.server import PeerServer
from services.protocol.segments import SegmentHeader

CAPACITY_REFRESH_S = 5.0
CONTROLLER_RETRY_S = 2.0


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("autonomys-farmer-py")
    except Exception:  # noqa: BLE001 - source checkout
        return "0.1.0"


class CacheRole(Daemon):
    name = "cache"
    role = ""

    def __init__(self, config) -> None:  # noqa: ANN001 - the role's CacheRoleConfig subclass
        super().__init__()
        self.config = config
        self.instance = config.instance
        self.log = self.log.bind(instance=config.instance)
        self.bus: Bus | None = None
        self.kzg = None
        self.watcher = None
        self.getter: PieceGetter | None = None
        self.verifier: PieceVerifier | None = None
        self.commitments: SegmentCommitments | None = None
        self.server: PeerServer | None = None
        self.client: PeerClient | None = None
        self.endpoint = ""
        self.serve_counters: dict[str, int] = {}
        self._registration = None
        self._services: list = []
        self._subscriptions: list = []
        self._fill_wakeup = asyncio.Event()
        self._served_reported = 0
        self.disk_metrics = None
        self._reinitialize = asyncio.Event()

    # ---- storage hooks (subclasses)

    async def open_storage(self) -> None: ...

    async def close_storage(self) -> None: ...

    def holdings(self, piece_indices: list[int]) -> np.ndarray:
        raise NotImplementedError

    def read_piece(self, piece_index: int, nowait: bool = False) -> tuple[bytearray, bytes] | None:
        raise NotImplementedError

    def capacity_fields(self) -> dict[str, int | float]:
        raise NotImplementedError

    async def fill(self) -> None:
        await self.stop_event.wait()

    async def take_segment(self, header: SegmentHeader) -> tuple[int, bool]:
        """Store this cache's share of a new segment; returns (pieces held of it, complete)."""
        raise NotImplementedError

    def self_check(self, repair: bool) -> AsyncIterator[CacheVerifyProgress]:
        raise NotImplementedError

    async def rebuild(self) -> None:
        """What ``util reinitialization-cache`` asks for (default: re-check and refill)."""
        self.wake_fill()

    # ---- lifecycle

    async def start(self) -> None:
        cfg = self.config
        try:
            self.kzg = await asyncio.to_thread(load_kzg, cfg.kzg_params)
        except ValueError as exc:
            raise DaemonError(f"{self.role}: trusted setup: {exc} (--kzg-params mainnet|dev|PATH)") from None
        await self.open_storage()
        self.bus = bus = await Bus.connect(list(cfg.nats_servers), name=f"{self.role}-{self.instance}",
                                           metrics=self.metrics.bus)
        membership = await Membership.open(bus)
        self.watcher = await membership.watch()
        self.commitments = SegmentCommitments(self._fetch_headers)
        self.verifier = PieceVerifier(self.kzg, self.commitments)
        secret = cfg.cluster_secret
        self.server = PeerServer(secret, name=self.role)
        self.server.route(GetPieces, get_pieces_handler(self, self.serve_counters))
        host, port = parse_host_port(cfg.listen, "--listen-on", allow_zero_port=True)
        try:
            await self.server.start(host, port)
        except (OSError, P2PConfigError) as exc:
            raise DaemonError(f"{self.role}: cannot listen on {cfg.listen}: {exc}") from None
        self.endpoint = self.server.endpoint(cfg.advertise_host)
        self.client = PeerClient(secret, name=self.role)
        self.metrics.tcp.watch("piece", self.server)  # pieces served and fetched (fill), at scrape time
        self.metrics.tcp.watch("piece", self.client)
        self.getter = PieceGetter(bus, self.client, lambda: self.watcher.members.values(),
                                  cache_group=cfg.cache_group, verifier=self.verifier, exclude={self.instance},
                                  batch_size=64, stall_timeout=cfg.stall_timeout_s,
                                  metrics=self.metrics.piece_getter())
        self.disk_metrics = self.metrics.disk_piece_cache(self.instance)
        self._services = [
            await bus.serve(CacheContainsRequest, self._on_contains, instance=self.instance),
            await bus.serve(CacheVerifyRequest, self.self_check_request, instance=self.instance, max_concurrency=1),
        ]
        self._segments = await bus.subscribe(ArchivedSegmentHeaderBroadcast)
        self._reinit = await bus.subscribe(CacheReinitializeBroadcast)
        self._registration = await membership.register(Member(
            role=self.role, instance=self.instance, endpoints=[self.endpoint], capacity=self.capacity_fields(),
            labels={CACHE_GROUP_LABEL: cfg.cache_group}, version=_version()))
        self.log.info(f"{self.role} started", endpoint=self.endpoint, cache_group=cfg.cache_group,
                      **self.capacity_fields())

    async def run(self) -> None:
        self.spawn(self.fill(), fatal=True)
        self.spawn(self._follow_segments(), fatal=True)
        self.spawn(self._follow_reinitialize(), fatal=True)
        self.spawn(self._follow_membership())
        self.spawn(self._refresh_capacity())
        await self.stop_event.wait()

    async def stop(self) -> None:
        await self.cancel_tasks()
        for closable in (self._registration, self.watcher):
            if closable is not None:
                try:
                    await closable.stop()
                except Exception as exc:  # noqa: BLE001 - best effort at shutdown
                    self.log.warning("shutdown step failed", error=str(exc))
        if self.server is not None:
            await self.server.stop()
        if self.client is not None:
            await self.client.close()
        if self.bus is not None:
            await self.bus.close()
        await self.close_storage()

    # ---- helpers for subclasses

    def wake_fill(self) -> None:
        self._fill_wakeup.set()

    @property
    def fill_interrupted(self) -> bool:
        """A wake-up arrived (membership change, dropped piece, rebuild) or the daemon stops:
        a running fill should re-plan."""
        return self._fill_wakeup.is_set() or self.stop_event.is_set()

    def start_planning(self) -> None:
        """Called by ``fill`` before it plans: later wake-ups interrupt that plan."""
        self._fill_wakeup.clear()

    async def wait_for_work(self, timeout: float) -> None:
        """Sleep until :meth:`wake_fill` (or ``timeout``, or stop)."""
        try:
            await asyncio.wait_for(self._fill_wakeup.wait(), timeout)
        except asyncio.TimeoutError:
            pass
        self._fill_wakeup.clear()

    async def _fetch_headers(self, indices: list[int]) -> list[SegmentHeader | None]:
        assert self.bus is not None
        result = await self.bus.request(SegmentHeadersRequest(segment_indices=indices), timeout=30, retries=5)
        return result.decoded()

    async def history_size(self) -> int:
        """The node's history size through the controller (waits for a controller to answer)."""
        assert self.bus is not None
        while True:
            try:
                info = (await self.bus.request(FarmerAppInfoRequest(), timeout=10, retries=0)).unwrap()
                return info.protocol_info.history_size
            except (BusError, RuntimeError) as exc:
                self.log.info("waiting for a controller", error=str(exc))
                await asyncio.sleep(CONTROLLER_RETRY_S)

    def shard_members(self, role: str) -> list[Member]:
        """Live members of ``role`` in this cache's group (this process included)."""
        group = self.config.cache_group
        return sorted((m for m in self.watcher.members.values()
                       if m.role == role and m.labels.get(CACHE_GROUP_LABEL, "default") == group),
                      key=lambda m: m.instance)

    # ---- the cache protocol

    def count_written(self, pieces: int) -> None:
        """Pieces stored (``subspace_farmer_disk_piece_cache_write_piece_Pieces_total``)."""
        if self.disk_metrics is not None and pieces:
            self.disk_metrics.write_piece.inc(pieces)

    def _on_contains(self, msg: CacheContainsRequest) -> CacheContainsResult:
        return CacheContainsResult(held=bitmap([bool(x) for x in self.holdings(list(msg.piece_indices))]))

    async def self_check_request(self, msg: CacheVerifyRequest) -> AsyncIterator[CacheVerifyProgress]:
        async for progress in self.self_check(msg.repair):
            yield progress

    async def _follow_segments(self) -> None:
        last = -1
        async for msg in self._segments:
            header = msg.decoded()
            if header.segment_index <= last:
                continue
            last = header.segment_index
            self.commitments.add(header)
            started = time.monotonic()
            try:
                held, complete = await self.take_segment(header)
            except Exception as exc:  # noqa: BLE001 - report and carry on; the controller times out
                self.log.error("could not take the new segment", segment_index=header.segment_index, error=repr(exc))
                held, complete = 0, False
            await self.bus.publish(SegmentHeldNotification(
                role=self.role, instance=self.instance, cache_group=self.config.cache_group,
                segment_index=header.segment_index, held=held, complete=complete))
            self.log.info("new segment cached", segment_index=header.segment_index, held=held, complete=complete,
                          seconds=round(time.monotonic() - started, 2))
            await self._publish_capacity()

    async def _follow_reinitialize(self) -> None:
        async for msg in self._reinit:
            if msg.cache_group not in (None, self.config.cache_group):
                continue
            await self._confirm(msg, "scheduled", f"rebuilding in {msg.delay_s} s")
            self.spawn(self._reinitialize_later(msg))

    async def _reinitialize_later(self, msg: CacheReinitializeBroadcast) -> None:
        await asyncio.sleep(msg.delay_s)
        self.log.info("reinitializing the cache", request_id=msg.request_id)
        try:
            await self.rebuild()
        except Exception as exc:  # noqa: BLE001 - reported to the operator's command
            await self._confirm(msg, "failed", repr(exc))
            return
        await self._confirm(msg, "done", "rebuilt; filling resumes")

    async def _confirm(self, msg: CacheReinitializeBroadcast, state: str, detail: str) -> None:
        await self.bus.publish(CacheReinitializeConfirmation(
            request_id=msg.request_id, role=self.role, instance=self.instance, state=state, detail=detail),
            instance=msg.request_id)

    async def _follow_membership(self) -> None:
        async for event in self.watcher:
            if event.kind in ("join", "leave") and event.member.role == self.role:
                self.log.info("cache membership changed", change=event.kind, member=event.key)
                self.wake_fill()

    async def _publish_capacity(self) -> None:
        if self._registration is None:
            return
        fields = self.capacity_fields()
        self.disk_metrics.capacity_total.set(fields.get("slots", 0))
        self.disk_metrics.capacity_used.set(fields.get("pieces", 0))
        self.disk_metrics.read_piece.inc(self.serve_counters.get("served", 0) - self._served_reported)
        self._served_reported = self.serve_counters.get("served", 0)
        if fields != self._registration.member.capacity:
            await self._registration.update(capacity=fields)

    async def _refresh_capacity(self) -> None:
        while True:
            await asyncio.sleep(CAPACITY_REFRESH_S)
            try:
                await self._publish_capacity()
            except Exception as exc:  # noqa: BLE001 - retried next round
                self.log.warning("capacity update failed", error=str(exc))
