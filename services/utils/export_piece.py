"""``autonomys-export-piece``: rebuild every history piece from an archival node's blocks.

``subspace_piece`` only serves the newest segment (spec 05 §3), so a complete copy of history
(what the full-piece cache serves) is rebuilt locally: blocks are read in order from the node
(:mod:`services.utils.block_source`), fed to our archiver (spec 01 §9), and each produced
segment is accepted only if its header is byte-identical to the node's
(``subspace_segmentHeaders``) and its 256 pieces pass the segment-commitment check; a mismatch
stops the export with one line and nothing of that segment is written.

Output (``full-cache-tmp/`` by default, :class:`services.cache.history_store.HistoryStore`):
one file per segment, the headers, the verified-piece log, and ``archiver.state`` after every
segment, so a restart continues where it stopped (``--first-segment N`` re-exports from N).
Progress: pieces, MiB/s, ETA on stderr; a summary line on stdout at the end.

The trusted setup: ``--kzg-params`` if given, else the dev setup for a dev node and the mainnet
parameters for a real node (a wrong choice fails at the first segment's commitment check).
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass

from services.cache.history_store import ARCHIVER_STATE_FILE, HistoryStore
from services.cache.store import StoreError, atomic_write
from services.kzg_setup import DEV, KzgSetupError, load_kzg
from services.node.rpc_client import NodeRpcClient, RpcConnectionError, RpcError
from services.protocol.archiver import Archiver, ArchivedSegment
from services.protocol.constants import NUM_PIECES, PIECE_SIZE, RECORDED_HISTORY_SEGMENT_SIZE
from services.protocol.kzg import KzgError
from services.protocol.piece_batch import verify_pieces
from services.protocol.segments import SegmentHeader
from services.utils.block_source import BlockSource, BlockSourceError, open_block_source
from services.utils.config import ExportPieceConfig
from services.utils.progress import Progress

PREFETCH_BLOCKS = 8
NODE_TIMEOUT_S = 120.0


class ExportError(Exception):
    """The export cannot continue (one line for the operator; what was written stays valid)."""


@dataclass
class ExportSummary:
    output_dir: str
    segments_total: int
    segments_exported: int
    resumed_from: int
    blocks_read: int
    seconds: float
    source: str

    def line(self) -> str:
        pieces = self.segments_exported * NUM_PIECES
        mib = pieces * PIECE_SIZE / 2**20
        rate = mib / self.seconds if self.seconds > 0 else 0.0
        return (f"exported {self.segments_exported} segments ({pieces} pieces, {mib / 1024:.2f} GiB) from a "
                f"{self.source} node in {self.seconds:.1f} s ({rate:.1f} MiB/s, {self.blocks_read} blocks read); "
                f"{self.output_dir} now holds segments 0..{self.segments_total - 1}"
                + (f" (resumed at segment {self.resumed_from})" if self.resumed_from else ""))


async def _node_headers(client: NodeRpcClient, indices: list[int]) -> list[SegmentHeader | None]:
    return await client.segment_headers(indices)


async def _newest_segment(client: NodeRpcClient) -> int:
    headers = [h for h in await client.last_segment_headers(1) if h is not None]
    if not headers:
        raise ExportError("the node has not archived any segment yet")
    return headers[-1].segment_index


async def _archiver_after(store: HistoryStore, count: int, source: BlockSource, kzg, erasure) -> Archiver:  # noqa: ANN001
    """An archiver positioned right after the first ``count`` exported segments."""
    if count == 0:
        return Archiver(kzg, erasure)
    header = store.headers[count - 1]
    number = header.last_archived_block.number
    block = await source.block(number)
    if block is None:
        raise ExportError(f"the node does not have block {number} (the last block of segment {count - 1}); "
                          "an archival node (--blocks-pruning archive) is needed")
    return Archiver.with_initial_state(kzg, erasure, header, block)


async def _resume(config: ExportPieceConfig, store: HistoryStore, source: BlockSource, kzg, erasure) -> Archiver:  # noqa: ANN001
    state_path = store.path / ARCHIVER_STATE_FILE
    if config.first_segment is not None and config.first_segment < store.segments:
        store.truncate_headers(config.first_segment)
        state_path.unlink(missing_ok=True)
    if config.first_segment is not None and config.first_segment > store.segments:
        raise ExportError(f"--first-segment {config.first_segment}: the export holds only segments before "
                          f"{store.segments}; it must start from there")
    if state_path.exists():
        try:
            archiver = Archiver.from_state(kzg, erasure, state_path.read_bytes())
        except ValueError as exc:
            archiver = None
            print(f"warning: {state_path} is unusable ({exc}); rebuilding it from the last segment", file=sys.stderr)
        if archiver is not None and archiver.segment_index <= store.segments:
            store.truncate_headers(archiver.segment_index)
            return archiver
    return await _archiver_after(store, store.segments, source, kzg, erasure)


async def _prefetch(source: BlockSource, first: int, queue: asyncio.Queue) -> None:
    number = first
    while True:
        block = await source.block(number)
        await queue.put((number, block))
        if block is None:
            return
        number += 1


async def _accept(segment: ArchivedSegment, client: NodeRpcClient, store: HistoryStore, kzg) -> None:  # noqa: ANN001
    index = segment.header.segment_index
    (expected,) = await _node_headers(client, [index])
    if expected is None:
        raise ExportError(f"the node has no header for segment {index} that the blocks produced")
    if expected.to_scale() != segment.header.to_scale():
        raise ExportError(
            f"segment {index} rebuilt from the node's blocks does not match the node's header "
            f"(commitment {segment.header.segment_commitment.hex()[:16]}... vs {expected.segment_commitment.hex()[:16]}...); "
            "wrong --kzg-params, or blocks that are not the archived ones")
    first = index * NUM_PIECES
    items = [(first + k, bytes(piece)) for k, piece in enumerate(segment.pieces)]
    ok: list[bool] = []
    for start in range(0, NUM_PIECES, 64):
        ok += await asyncio.to_thread(verify_pieces, kzg, items[start:start + 64], {index: expected.segment_commitment})
    if not all(ok):
        raise ExportError(f"segment {index}: {ok.count(False)} pieces fail the segment-commitment check")
    await asyncio.to_thread(store.add_segment, expected, [p for _, p in items], True)


async def export(config: ExportPieceConfig) -> ExportSummary:
    from services.protocol.erasure import ErasureCoding

    started = time.monotonic()
    client = NodeRpcClient(config.node_ws_url, request_timeout_s=NODE_TIMEOUT_S)
    try:
        await client.connect()
    except RpcConnectionError as exc:
        raise ExportError(f"cannot reach the node at {config.node_url}: {exc}") from None
    try:
        source = await open_block_source(client)
        kzg_setting = config.kzg_params or (DEV if source.kind == "dev" else None)
        kzg = await asyncio.to_thread(load_kzg, kzg_setting)
        erasure = ErasureCoding(16)
        store = HistoryStore(config.output_dir)
        try:
            newest = await _newest_segment(client)
            target = newest if config.last_segment is None else min(newest, config.last_segment)
            archiver = await _resume(config, store, source, kzg, erasure)
            resumed_from = store.segments
            progress = Progress("export", (target + 1) * NUM_PIECES, done=store.segments * NUM_PIECES,
                                bytes_per_item=PIECE_SIZE)
            blocks = 0
            if store.segments <= target:
                queue: asyncio.Queue = asyncio.Queue(PREFETCH_BLOCKS)
                fetcher = asyncio.ensure_future(_prefetch(source, archiver.next_block_number, queue))
                try:
                    while store.segments <= target:
                        number, block = await queue.get()
                        if block is None:
                            if fetcher.done() and fetcher.exception() is not None:
                                raise fetcher.exception()  # type: ignore[misc]
                            raise ExportError(f"the node has no block {number}, but segment {store.segments} is "
                                              "not complete: is it an archival node (--sync full --blocks-pruning archive)?")
                        blocks += 1
                        segments = await asyncio.to_thread(archiver.add_block, block, number)
                        for segment in segments:
                            if segment.header.segment_index <= target:
                                await _accept(segment, client, store, kzg)
                                progress.update(store.segments * NUM_PIECES)
                        if segments:
                            await asyncio.to_thread(atomic_write, store.path / ARCHIVER_STATE_FILE, archiver.to_state())
                        partial = min(NUM_PIECES - 1, archiver.buffered_size() * NUM_PIECES // RECORDED_HISTORY_SEGMENT_SIZE)
                        progress.update(store.segments * NUM_PIECES + partial)
                        if fetcher.done() and fetcher.exception() is not None:
                            raise fetcher.exception()  # type: ignore[misc]
                finally:
                    fetcher.cancel()
                    await asyncio.gather(fetcher, return_exceptions=True)
            progress.finish()
            return ExportSummary(config.output_dir, store.segments, store.segments - resumed_from, resumed_from,
                                 blocks, time.monotonic() - started, source.kind)
        finally:
            store.close()
    finally:
        await client.close()


def main(config: ExportPieceConfig) -> int:
    from services.daemon import configure_logging

    configure_logging(config.log_level, config.json_logs)
    try:
        summary = asyncio.run(export(config))
    except (KzgError, KzgSetupError) as exc:
        print(f"error: trusted setup: {exc} (pass --kzg-params PATH, or --kzg-params dev for a dev node)",
              file=sys.stderr)
        return 1
    except (ExportError, StoreError, BlockSourceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (RpcError, RpcConnectionError, ValueError) as exc:
        print(f"error: node {config.node_url}: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume", file=sys.stderr)
        return 130
    print(summary.line())
    return 0
