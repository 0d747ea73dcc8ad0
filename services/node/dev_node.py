"""``autonomys-farmer dev-node``: an embedded node that farmers (and the controller) can farm
against on one machine, serving the node's farmer JSON-RPC exactly as spec 05 describes.

It archives deterministic synthetic history with the real archiver (in a child process, so the
slot loop never stalls), emits one ``SlotInfo`` per
slot with a protocol-correct global challenge, accepts solutions, verifies them fully with the
protocol core, "authors" a block for the first valid solution of a slot after obtaining and
checking the farmer's reward signature (sr25519, context ``subspace_reward``), and records every
authored block in ``blocks.jsonl`` and through ``dev_status`` / ``dev_blocks`` so anyone can
audit what it accepted.

RPC beyond spec 05 (all prefixed ``dev_``): ``dev_status``, ``dev_blocks`` and
``dev_historyBlock`` (safe; the synthetic history block ``n`` exactly as the archiver consumed
it, for ``autonomys-export-piece``; the dev chain has no Substrate ``chain_getBlock``),
``dev_archiveSegment`` (unsafe: archive the next synthetic segment now and announce it) and
``dev_piece`` (unsafe: any archived piece; ``subspace_piece`` keeps the node's narrow
availability window).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from services.daemon import Daemon, DaemonError
from services.node import dev_history
from services.node.config import DevNodeConfig
from services.node.dev_chain import ChainStateError, DevChain
from services.node.dev_verify import SolutionVerifier
from services.node.rpc_server import InvalidParams, RpcServer, RpcServerError, Subscription, positional
from services.node.rpc_types import (
    MAX_SEGMENT_HEADERS_PER_REQUEST,
    NODE_ERROR_CODE,
    FarmerAppInfo,
    FarmerProtocolInfo,
    RewardSignatureResponse,
    RewardSigningInfo,
    SlotInfo,
    SolutionResponse,
)
from services.protocol.sr25519.schnorrkel import verify as sr25519_verify
from services.protocol.constants import NUM_PIECES, REWARD_SIGNING_CONTEXT
from services.protocol.hashes import blake3_hash_list
from services.protocol.validation import U32_MAX, U64_MAX, check_uint
from services.protocol.segments import SegmentHeader

SOLUTION_CHANNEL_CAPACITY = 10  # futures-mpsc buffer 9 + the sender's own slot (spec 05 §3)
REWARD_SIGNING_TIMEOUT_S = 0.5
ACKNOWLEDGEMENT_TIMEOUT_S = 120.0
RPC_URL_FILE = "rpc-url"

SLOT_INFO = "subspace_slot_info"
REWARD_SIGNING = "subspace_reward_signing"
ARCHIVED_SEGMENT_HEADER = "subspace_archived_segment_header"


@dataclass
class _SlotState:
    info: SlotInfo
    submitted: int = 0
    block_authored: bool = False
    authoring: bool = False


class _PendingAcks:
    """Acknowledgement senders of the latest archived segment (spec 05 §3)."""

    def __init__(self, segment_index: int, subscribers: list[Subscription]) -> None:
        self.segment_index = segment_index
        self.waiting: set[Subscription] = set(subscribers)
        self.done = asyncio.Event()
        if not self.waiting:
            self.done.set()

    def release_one(self) -> None:
        if self.waiting:
            self.waiting.pop()
        if not self.waiting:
            self.done.set()

    def drop(self, sub: Subscription) -> None:
        self.waiting.discard(sub)
        if not self.waiting:
            self.done.set()


def node_error(message: str) -> RpcServerError:
    return RpcServerError(NODE_ERROR_CODE, message)


def _param(parse, *args):  # noqa: ANN001, ANN202
    """``parse(*args)``, a ValueError becoming the JSON-RPC invalid-params error."""
    try:
        return parse(*args)
    except ValueError as exc:
        raise InvalidParams(str(exc)) from None


class DevNode(Daemon):
    name = "dev-node"

    def __init__(self, config: DevNodeConfig) -> None:
        super().__init__()
        self.config = config
        self.log = self.log.bind(data_dir=config.data_dir)
        self.rpc = RpcServer(config.rpc_host, config.rpc_port, config.unsafe_rpc_allowed)
        self.chain: DevChain | None = None
        self.verifier: SolutionVerifier | None = None
        self._slots: collections.OrderedDict[int, _SlotState] = collections.OrderedDict()
        self._last_slot: int | None = None
        self._archive_lock = asyncio.Lock()
        self._ready = asyncio.Event()  # pre-archived history in place
        self._held_segment: int | None = None  # segment subspace_piece serves (spec 05 §1)
        self._pending_acks: _PendingAcks | None = None
        self._reward_waiters: dict[bytes, asyncio.Future] = {}
        self.stats = collections.Counter()
        self._archive_proc: asyncio.subprocess.Process | None = None
        self.metrics.dev_node(self._metric_values)

    # ---- lifecycle

    async def start(self) -> None:
        from services.node.dev_crypto import load_erasure, load_kzg

        cfg = self.config
        try:
            kzg = await asyncio.to_thread(load_kzg, cfg.kzg_params)
            erasure = await asyncio.to_thread(load_erasure)
            self.chain = await asyncio.to_thread(
                DevChain,
                cfg.data_dir,
                cfg.history_seed,
                kzg,
                erasure,
                self._chain_params(),
            )
        except (ChainStateError, OSError, ValueError) as exc:  # ValueError: corrupt archiver state / bad KZG file
            raise DaemonError(f"dev node state in {cfg.data_dir}: {exc}") from exc
        self.verifier = SolutionVerifier(kzg, self.chain, cfg)
        self._register_methods()
        try:
            await self.rpc.start()
        except OSError as exc:
            raise DaemonError(f"cannot listen on {cfg.rpc_listen_on}: {exc.strerror or exc}") from exc
        url = f"ws://{'127.0.0.1' if cfg.rpc_host in ('0.0.0.0', '::') else cfg.rpc_host}:{self.rpc.port}"
        self.rpc_url = url
        (Path(cfg.data_dir) / RPC_URL_FILE).write_text(url + "\n")
        self.log.info(
            "dev node rpc listening",
            url=url,
            unsafe_rpc=self.rpc.unsafe_allowed,
            genesis=self.chain.genesis_hash.hex(),
            segments=self.chain.segments_archived,
            blocks=self.chain.height,
        )

    async def run(self) -> None:
        try:
            await self._pre_archive()
        except (ChainStateError, OSError, ValueError) as exc:
            raise DaemonError(f"dev node could not archive its initial history: {exc!r}") from exc
        await self._slot_loop()

    async def stop(self) -> None:
        proc = self._archive_proc
        if proc is not None and proc.returncode is None:
            proc.kill()  # an interrupted segment is archived again on the next start
            await proc.wait()
        await self.cancel_tasks()
        await self.rpc.stop()

    # ---- archiving

    async def _pre_archive(self) -> None:
        assert self.chain is not None
        target = max(1, self.config.pre_archived_segments)
        while self.chain.segments_archived < target:
            await self.archive_segment()
        self._ready.set()

    async def archive_segment(self) -> dict:
        """Archive the next synthetic segment in a child process, then announce it."""
        assert self.chain is not None
        async with self._archive_lock:
            if self._pending_acks is not None:
                # The reference archiver stalls until the previous segment is acknowledged.
                try:
                    await asyncio.wait_for(self._pending_acks.done.wait(), ACKNOWLEDGEMENT_TIMEOUT_S)
                except asyncio.TimeoutError:
                    pass
            started = time.monotonic()
            index = self.chain.segments_archived
            self.log.info("archiving segment", segment_index=index)
            header = await self._archive_in_child()
            self.chain.record_archived_segment(header)
            self.stats["segments_archived"] += 1
            self.log.info(
                "segment archived",
                segment_index=header.segment_index,
                seconds=round(time.monotonic() - started, 1),
                commitment=header.segment_commitment.hex()[:16],
            )
            await self._announce_segment(header.segment_index)
            return header.to_json()

    async def _archive_in_child(self) -> SegmentHeader:
        """Run :mod:`services.node.dev_archive_worker`; killed if the node stops meanwhile."""
        cfg = self.config
        cmd = [
            sys.executable, "-m", "services.node.dev_archive_worker",
            "--data-dir", cfg.data_dir,
            "--history-seed", cfg.history_seed,
            "--chain-params", json.dumps(self._chain_params()),
        ]
        if cfg.kzg_params is not None:
            cmd += ["--kzg-params", cfg.kzg_params]
        env = dict(os.environ)
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        proc = await asyncio.create_subprocess_exec(
            *cmd, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env
        )
        self._archive_proc = proc

        async def forward_progress() -> list[str]:
            lines: list[str] = []
            assert proc.stderr is not None
            async for raw in proc.stderr:
                line = raw.decode(errors="replace").rstrip()
                lines.append(line)
                self.log.info("archiving progress", detail=line)
            return lines

        try:
            stdout, stderr_lines = await asyncio.gather(proc.stdout.read(), forward_progress())  # type: ignore[union-attr]
            code = await proc.wait()
        except asyncio.CancelledError:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            raise
        finally:
            self._archive_proc = None
        if code != 0:
            raise ChainStateError(f"archive worker exited with {code}: {' | '.join(stderr_lines[-5:])}")
        return SegmentHeader.from_json(json.loads(stdout.decode().strip().splitlines()[-1]))

    def _chain_params(self) -> dict:
        return {"maxPiecesInSector": self.config.pieces_in_sector, "kzg": self.config.kzg_params or "dev"}

    async def _announce_segment(self, segment_index: int) -> None:
        assert self.chain is not None
        header = self.chain.segment_header(segment_index)
        assert header is not None
        subs = self.rpc.live(ARCHIVED_SEGMENT_HEADER)
        # With unsafe RPC the node registers one acknowledgement sender per subscription; the
        # pending set of the previous index is discarded.
        waiting = [s for s in subs if s.connection.unsafe_allowed]
        self._pending_acks = _PendingAcks(segment_index, waiting)
        self._held_segment = segment_index
        await asyncio.gather(*(s.send(header.to_json()) for s in subs))
        if waiting:
            self.spawn(self._release_when_acknowledged(self._pending_acks))
        else:
            self._held_segment = None

    async def _release_when_acknowledged(self, pending: _PendingAcks) -> None:
        try:
            await asyncio.wait_for(pending.done.wait(), ACKNOWLEDGEMENT_TIMEOUT_S)
        except asyncio.TimeoutError:
            self.log.warning("segment acknowledgements timed out", segment_index=pending.segment_index)
        if self._pending_acks is pending and self._held_segment == pending.segment_index:
            self._held_segment = None

    # ---- slots

    def slot_info(self, slot: int) -> SlotInfo:
        assert self.chain is not None
        challenge = dev_history.slot_challenge(self.chain.genesis_hash, slot)
        # Solution-range adjustment is disabled (spec 04 §5): voting range = block range.
        return SlotInfo(slot, challenge, self.config.solution_range, self.config.solution_range)

    async def _slot_loop(self) -> None:
        await self._ready.wait()
        slot_ms = self.config.slot_duration_ms
        keep = max(1, self.config.block_authoring_delay_slots)
        while not self.stop_event.is_set():
            slot = int(time.time() * 1000) // slot_ms
            if self._last_slot is None or slot > self._last_slot:
                self._last_slot = slot
                info = self.slot_info(slot)
                self._slots[slot] = _SlotState(info)
                while len(self._slots) > keep:
                    self._slots.popitem(last=False)
                self.stats["slots"] += 1
                await self.rpc.broadcast(SLOT_INFO, info.to_json())
            next_at = (slot + 1) * slot_ms / 1000
            await asyncio.sleep(max(0.0, next_at - time.time()))

    # ---- solutions and blocks

    async def _submit_solution(self, response: SolutionResponse) -> None:
        state = self._slots.get(response.slot_number)
        if state is None or state.submitted >= SOLUTION_CHANNEL_CAPACITY:
            self.stats["solutions_ignored"] += 1
            raise node_error("Solution was ignored")
        state.submitted += 1
        self.stats["solutions_received"] += 1
        self.spawn(self._process_solution(state, response))

    async def _process_solution(self, state: _SlotState, response: SolutionResponse) -> None:
        assert self.verifier is not None and self.chain is not None
        solution = response.solution
        try:
            distance = await asyncio.to_thread(self.verifier.verify, solution, state.info)
        except ValueError as exc:
            self.stats["solutions_rejected"] += 1
            self.log.warning("solution rejected", slot=state.info.slot_number, reason=str(exc))
            return
        if distance > state.info.solution_range // 2:
            self.stats["votes"] += 1
            self.log.info("solution is a vote only", slot=state.info.slot_number, distance=distance)
            return
        if state.block_authored or state.authoring:
            self.stats["votes"] += 1
            self.log.info("slot already has a block; solution counted as vote", slot=state.info.slot_number)
            return
        state.authoring = True
        try:
            await self._author_block(state, response, distance)
        finally:
            state.authoring = False

    async def _author_block(self, state: _SlotState, response: SolutionResponse, distance: int) -> None:
        assert self.chain is not None
        solution = response.solution
        number = self.chain.height + 1
        parent = self.chain.best_hash
        pre_hash = blake3_hash_list(
            [parent, number.to_bytes(4, "little"), state.info.slot_number.to_bytes(8, "little"), solution.to_scale()]
        )
        signing_started = time.monotonic()
        signature = await self._request_reward_signature(pre_hash, solution.public_key)
        signing_ms = round((time.monotonic() - signing_started) * 1000, 1)
        if signature is None:
            self.stats["reward_signing_failures"] += 1
            self.log.warning("block not authored: no valid reward signature within 500 ms", slot=state.info.slot_number)
            return
        state.block_authored = True
        record = {
            "number": number,
            "hash": pre_hash.hex(),
            "parentHash": parent.hex(),
            "slotNumber": state.info.slot_number,
            "globalChallenge": state.info.global_challenge.hex(),
            "solutionRange": state.info.solution_range,
            "votingSolutionRange": state.info.voting_solution_range,
            "distance": distance,
            "historySize": self.chain.history_size,
            "solution": solution.to_json(),
            "rewardSignature": signature.hex(),
            "authoredAt": time.time(),
        }
        await asyncio.to_thread(self.chain.append_block, record)
        self.stats["blocks_authored"] += 1
        self.log.info(
            "block authored",
            number=number,
            slot=state.info.slot_number,
            public_key=solution.public_key.hex()[:16],
            sector_index=solution.sector_index,
            piece_offset=solution.piece_offset,
            reward_signature_ms=signing_ms,
        )

    async def _request_reward_signature(self, pre_hash: bytes, public_key: bytes) -> bytes | None:
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        # The server keeps senders for the most recent hash only (spec 05 §3).
        for old in self._reward_waiters.values():
            if not old.done():
                old.cancel()
        self._reward_waiters = {pre_hash: fut}
        info = RewardSigningInfo(pre_hash, public_key)
        deadline = time.monotonic() + REWARD_SIGNING_TIMEOUT_S
        await self.rpc.broadcast(REWARD_SIGNING, info.to_json())
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                signature = await asyncio.wait_for(asyncio.shield(fut), remaining)
                if sr25519_verify(REWARD_SIGNING_CONTEXT, pre_hash, signature, public_key):
                    return signature
                self.stats["bad_reward_signatures"] += 1
                self.log.warning("invalid reward signature", hash=pre_hash.hex()[:16])
                fut = asyncio.get_running_loop().create_future()
                self._reward_waiters[pre_hash] = fut
        except (asyncio.TimeoutError, asyncio.CancelledError):
            return None
        finally:
            self._reward_waiters.pop(pre_hash, None)

    def _receive_reward_signature(self, response: RewardSignatureResponse) -> None:
        fut = self._reward_waiters.get(response.hash)
        if fut is None or response.signature is None or fut.done():
            return  # an older hash, or a null signature: accepted and ignored
        fut.set_result(response.signature)

    # ---- RPC methods

    def _register_methods(self) -> None:
        rpc = self.rpc
        rpc.method("subspace_getFarmerAppInfo", self._rpc_farmer_app_info)
        rpc.subscription(
            "subspace_subscribeSlotInfo", "subspace_unsubscribeSlotInfo", SLOT_INFO
        )
        rpc.method("subspace_submitSolutionResponse", self._rpc_submit_solution, unsafe=True)
        rpc.subscription(
            "subspace_subscribeRewardSigning", "subspace_unsubscribeRewardSigning", REWARD_SIGNING, unsafe=True
        )
        rpc.method("subspace_submitRewardSignature", self._rpc_submit_reward_signature, unsafe=True)
        rpc.subscription(
            "subspace_subscribeArchivedSegmentHeader",
            "subspace_unsubscribeArchivedSegmentHeader",
            ARCHIVED_SEGMENT_HEADER,
            on_unsubscribe=self._archived_segment_unsubscribed,
        )
        rpc.method("subspace_acknowledgeArchivedSegmentHeader", self._rpc_acknowledge, unsafe=True)
        rpc.method("subspace_segmentHeaders", self._rpc_segment_headers)
        rpc.method("subspace_lastSegmentHeaders", self._rpc_last_segment_headers)
        rpc.method("subspace_piece", self._rpc_piece, unsafe=True)
        rpc.method("dev_status", self._rpc_status)
        rpc.method("dev_blocks", self._rpc_blocks)
        rpc.method("dev_historyBlock", self._rpc_history_block)
        rpc.method("dev_archiveSegment", self._rpc_archive_segment, unsafe=True)
        rpc.method("dev_piece", self._rpc_dev_piece, unsafe=True)

    def farmer_app_info(self) -> FarmerAppInfo:
        assert self.chain is not None
        cfg = self.config
        return FarmerAppInfo(
            genesis_hash=self.chain.genesis_hash,
            dsn_bootstrap_nodes=(),
            syncing=not self._ready.is_set(),
            farming_timeout_ms=cfg.slot_duration_ms * max(1, cfg.block_authoring_delay_slots),
            protocol_info=FarmerProtocolInfo(
                history_size=self.chain.history_size,
                max_pieces_in_sector=cfg.pieces_in_sector,
                recent_segments=cfg.recent_segments,
                recent_history_fraction=tuple(cfg.recent_history_fraction),
                min_sector_lifetime=cfg.min_sector_lifetime,
            ),
        )

    async def _rpc_farmer_app_info(self, params: list, conn) -> dict:  # noqa: ANN001
        positional(params, 0, "subspace_getFarmerAppInfo")
        return self.farmer_app_info().to_json()

    async def _rpc_submit_solution(self, params: list, conn) -> None:  # noqa: ANN001
        (raw,) = positional(params, 1, "subspace_submitSolutionResponse")
        await self._submit_solution(_param(SolutionResponse.from_json, raw))
        return None

    async def _rpc_submit_reward_signature(self, params: list, conn) -> None:  # noqa: ANN001
        (raw,) = positional(params, 1, "subspace_submitRewardSignature")
        self._receive_reward_signature(_param(RewardSignatureResponse.from_json, raw))
        return None

    def _archived_segment_unsubscribed(self, sub: Subscription) -> None:
        if self._pending_acks is not None:
            self._pending_acks.drop(sub)  # a dropped sender releases the archiver too

    async def _rpc_acknowledge(self, params: list, conn) -> None:  # noqa: ANN001
        (raw,) = positional(params, 1, "subspace_acknowledgeArchivedSegmentHeader")
        index = _param(check_uint, raw, U64_MAX, "segment index")
        pending = self._pending_acks
        if pending is not None and pending.segment_index == index:
            pending.release_one()
        return None

    async def _rpc_segment_headers(self, params: list, conn) -> list:  # noqa: ANN001
        assert self.chain is not None
        (raw,) = positional(params, 1, "subspace_segmentHeaders")
        if not isinstance(raw, list):
            raise InvalidParams("expected an array of segment indices")
        if len(raw) > MAX_SEGMENT_HEADERS_PER_REQUEST:
            raise node_error(
                f"segment_indexes length exceed the limit: {len(raw)}, max: {MAX_SEGMENT_HEADERS_PER_REQUEST}"
            )
        indices = [_param(check_uint, i, U64_MAX, "segment index") for i in raw]
        out = []
        for index in indices:
            header = self.chain.segment_header(index)
            out.append(None if header is None else header.to_json())
        return out

    async def _rpc_last_segment_headers(self, params: list, conn) -> list:  # noqa: ANN001
        assert self.chain is not None
        (raw,) = positional(params, 1, "subspace_lastSegmentHeaders")
        limit = _param(check_uint, raw, U32_MAX, "limit")
        if limit > MAX_SEGMENT_HEADERS_PER_REQUEST:
            raise node_error(
                f"segment_indexes length exceed the limit: {limit}, max: {MAX_SEGMENT_HEADERS_PER_REQUEST}"
            )
        count = self.chain.segments_archived
        if count == 0:
            return []
        last = count - 1
        first = max(0, last + 1 - limit)
        return [self.chain.segment_header(i).to_json() for i in range(first, last + 1)]  # type: ignore[union-attr]

    async def _rpc_piece(self, params: list, conn) -> str | None:  # noqa: ANN001
        return await self._serve_piece(params, "subspace_piece", available_only=True)

    async def _rpc_dev_piece(self, params: list, conn) -> str | None:  # noqa: ANN001
        return await self._serve_piece(params, "dev_piece", available_only=False)

    async def _serve_piece(self, params: list, method: str, available_only: bool) -> str | None:
        """A piece as hex; ``available_only``: within the node's availability window (spec 05 §1)."""
        assert self.chain is not None
        (raw,) = positional(params, 1, method)
        piece_index = _param(check_uint, raw, U64_MAX, "piece index")
        if available_only:
            segment_index = piece_index // NUM_PIECES
            held = self._held_segment
            if held is not None:
                if segment_index != held:
                    return None
            elif segment_index != 0:
                return None  # nothing held: only the genesis segment is re-created on demand
        piece = await asyncio.to_thread(self.chain.read_piece, piece_index)
        return None if piece is None else piece.to_json()

    def status(self) -> dict:
        assert self.chain is not None
        return {
            "genesisHash": self.chain.genesis_hash.hex(),
            "ready": self._ready.is_set(),
            "chainHeight": self.chain.height,
            "bestHash": self.chain.best_hash.hex(),
            "lastSlot": self._last_slot,
            "segmentsArchived": self.chain.segments_archived,
            "historySize": self.chain.history_size,
            "heldSegment": self._held_segment,
            "pendingAcknowledgements": 0 if self._pending_acks is None else len(self._pending_acks.waiting),
            "blocksAuthored": self.chain.height,
            "solutionsReceived": self.stats["solutions_received"],
            "solutionsIgnored": self.stats["solutions_ignored"],
            "solutionsRejected": self.stats["solutions_rejected"],
            "votes": self.stats["votes"],
            "rewardSigningFailures": self.stats["reward_signing_failures"],
            "unsafeRpc": self.rpc.unsafe_allowed,
        }

    def _metric_values(self) -> dict:
        """Counters and ``dev_status`` values for services.metrics.node.DevNodeMetrics (scrape time)."""
        values: dict = dict(self.stats)
        if self.chain is not None:
            values.update(self.status())
        return values

    async def _rpc_status(self, params: list, conn) -> dict:  # noqa: ANN001
        return self.status()

    async def _rpc_blocks(self, params: list, conn) -> list:  # noqa: ANN001
        """``dev_blocks([from_number?, limit?])``: authored block records, oldest first."""
        assert self.chain is not None
        if params is None:
            params = []
        if not isinstance(params, list) or len(params) > 2:
            raise InvalidParams("dev_blocks takes [from_number?, limit?]")
        start = _param(check_uint, params[0], U64_MAX, "from_number") if len(params) > 0 else 1
        limit = _param(check_uint, params[1], 10_000, "limit") if len(params) > 1 else 1000
        first = max(0, start - 1)
        return self.chain.blocks[first : first + limit]

    async def _rpc_history_block(self, params: list, conn) -> dict | None:  # noqa: ANN001
        """``dev_historyBlock([number])``: ``{"number", "block": hex}`` for a block that is part of
        archived history (up to the last archived segment's last block), else null."""
        assert self.chain is not None
        (raw,) = positional(params, 1, "dev_historyBlock")
        number = _param(check_uint, raw, U32_MAX, "block number")
        headers = self.chain.segment_headers
        if not headers or number > headers[-1].last_archived_block.number:
            return None
        block = await asyncio.to_thread(dev_history.history_block, self.chain.history_seed, number)
        return {"number": number, "block": block.hex()}

    async def _rpc_archive_segment(self, params: list, conn) -> dict:  # noqa: ANN001
        positional(params, 0, "dev_archiveSegment")
        await self._ready.wait()
        return await self.archive_segment()
