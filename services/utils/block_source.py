"""Where ``autonomys-export-piece`` reads history blocks: the exact bytes a node's archiver fed
into its segments, block by block.

* :class:`SubstrateBlockSource` (a real ``autonomys-node`` with ``--blocks-pruning archive``):
  ``chain_getBlockHash(n)`` then ``chain_getBlock(hash)``, re-encoded as the reference archiver
  encodes a block (``sc-consensus-subspace`` ``encode_block``): the SCALE ``SignedBlock`` =
  header (parent hash, compact number, state root, extrinsics root, digest logs) ‖ extrinsics
  (``Vec`` of their own encodings) ‖ ``Option<Justifications>`` keeping only Subspace
  (``SUB_``) justifications that decode as ``PotCheckpoints`` (the only variant, always
  archived); no justification left means ``None``. The genesis block is encoded whole (no
  filtering) and then extended with ChaCha8 keystream bytes (key = its state root, nonce 0) up to
  ``RecordedHistorySegment::SIZE``, so the first segment is produced at once. This path follows
  the reference source and was exercised against our dev node only, not a live Autonomys node.
* :class:`DevBlockSource` (our dev node): ``dev_historyBlock(n)`` returns the synthetic history
  block exactly as the dev chain archived it.

``open_block_source(client)`` picks the dev source when the node answers ``dev_status``.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from services.node.rpc_client import NodeRpcClient, RpcError
from services.node.rpc_server import METHOD_NOT_FOUND
from services.protocol.constants import RECORDED_HISTORY_SEGMENT_SIZE
from services.protocol.pos.chacha8 import keystream_words
from services.protocol.scale import ScaleReader, encode_compact

SUBSPACE_ENGINE_ID = b"SUB_"
POT_SEED_SIZE = 16
POT_CHECKPOINTS_SIZE = 8 * 16


class BlockSourceError(Exception):
    """The node cannot provide a block the export needs (one line for the operator)."""


class BlockSource(Protocol):
    kind: str

    async def block(self, number: int) -> bytes | None:
        """Archiver input for block ``number`` (None: the node does not have it)."""


def _hex(value: object, what: str) -> bytes:
    if isinstance(value, list):  # serde's Vec<u8> / [u8; N] without a hex serializer
        return bytes(value)
    if not isinstance(value, str):
        raise BlockSourceError(f"{what}: expected a hex string, got {type(value).__name__}")
    text = value[2:] if value.startswith("0x") else value
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise BlockSourceError(f"{what}: not hex") from None


def _number(value: object) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        return int(value, 16) if value.startswith("0x") else int(value)
    raise BlockSourceError(f"block number {value!r} is neither a number nor hex")


def encode_header(header: dict) -> bytes:
    """SCALE of a Substrate header from its JSON (``chain_getBlock``'s ``block.header``)."""
    try:
        logs = [_hex(log, "digest log") for log in header["digest"]["logs"]]
        parts = [
            _hex(header["parentHash"], "parentHash"),
            encode_compact(_number(header["number"])),
            _hex(header["stateRoot"], "stateRoot"),
            _hex(header["extrinsicsRoot"], "extrinsicsRoot"),
            encode_compact(len(logs)),
            *logs,
        ]
    except (KeyError, TypeError) as exc:
        raise BlockSourceError(f"block header JSON lacks {exc}") from None
    return b"".join(parts)


def _is_archived_justification(engine_id: bytes, data: bytes) -> bool:
    """``SubspaceJustification::try_from_justification(..)`` is ``Some(Ok(j))`` (then
    ``must_be_archived`` is true: ``PotCheckpoints`` is the only variant)."""
    if engine_id != SUBSPACE_ENGINE_ID or not data or data[0] != 0:
        return False
    reader = ScaleReader(data[1:])
    try:
        reader.read(POT_SEED_SIZE, "pot seed")
        count = reader.compact("checkpoints length")
        reader.read(count * POT_CHECKPOINTS_SIZE, "checkpoints")
    except ValueError:
        return False
    return True  # trailing bytes are allowed: the reference decodes with `decode`, not `decode_all`


def encode_signed_block(signed_block: dict) -> bytes:
    """The archiver input for a ``chain_getBlock`` result (see the module docstring)."""
    try:
        block = signed_block["block"]
        header = block["header"]
        extrinsics = [_hex(x, "extrinsic") for x in block["extrinsics"]]
    except (KeyError, TypeError) as exc:
        raise BlockSourceError(f"chain_getBlock result lacks {exc}") from None
    number = _number(header.get("number", 0))
    justifications = []
    for item in signed_block.get("justifications") or []:
        engine_id, data = _hex(item[0], "consensus engine id"), _hex(item[1], "justification")
        if number == 0 or _is_archived_justification(engine_id, data):
            justifications.append(engine_id + encode_compact(len(data)) + data)
    encoded = b"".join([
        encode_header(header),
        encode_compact(len(extrinsics)),
        *extrinsics,
        (b"\x01" + encode_compact(len(justifications)) + b"".join(justifications)) if justifications else b"\x00",
    ])
    if number == 0:
        encoded = extend_genesis_block(encoded, _hex(header["stateRoot"], "stateRoot"))
    return encoded


def extend_genesis_block(encoded: bytes, state_root: bytes) -> bytes:
    """``encoded`` followed by ChaCha8 keystream (key = state root) up to a whole segment."""
    if len(state_root) != 32:
        raise BlockSourceError(f"genesis state root must be 32 bytes, got {len(state_root)}")
    missing = RECORDED_HISTORY_SEGMENT_SIZE - len(encoded)
    if missing <= 0:
        return encoded
    words = keystream_words(np.frombuffer(state_root, dtype=np.uint8), -(-missing // 64))
    return encoded + words.view(np.uint8)[:missing].tobytes()


class SubstrateBlockSource:
    kind = "substrate"

    def __init__(self, client: NodeRpcClient) -> None:
        self.client = client

    async def block(self, number: int) -> bytes | None:
        block_hash = await self.client.call("chain_getBlockHash", [number])
        if block_hash is None:
            return None
        signed_block = await self.client.call("chain_getBlock", [block_hash])
        if signed_block is None:
            raise BlockSourceError(f"node has the hash of block {number} but not the block: is it running "
                                   "with --blocks-pruning archive?")
        return encode_signed_block(signed_block)


class DevBlockSource:
    kind = "dev"

    def __init__(self, client: NodeRpcClient) -> None:
        self.client = client

    async def block(self, number: int) -> bytes | None:
        result = await self.client.call("dev_historyBlock", [number])
        if result is None:
            return None
        if not isinstance(result, dict) or result.get("number") != number:
            raise BlockSourceError(f"dev_historyBlock({number}) returned {str(result)[:80]!r}")
        return _hex(result.get("block"), f"dev history block {number}")


async def open_block_source(client: NodeRpcClient) -> BlockSource:
    try:
        await client.call("dev_status")
    except RpcError as exc:
        if exc.code == METHOD_NOT_FOUND:
            return SubstrateBlockSource(client)
        raise
    return DevBlockSource(client)
