"""Deterministic synthetic history and the dev chain's stand-ins for consensus randomness.

The dev node has no real blocks to archive and no proof-of-time chain, so both are derived from
the ``--history-seed``: the same seed always yields the same genesis hash, the same history
blocks (hence the same segments and commitments) and the same per-slot global challenges. The
global challenge itself is computed exactly as the protocol does (spec 01 §6) from a stand-in
PoT output.
"""

from __future__ import annotations

from blake3 import blake3

from services.protocol.hashes import blake3_hash, blake3_hash_list

# Synthetic history blocks: between 768 KiB and 1.25 MiB (about 125 per segment).
_BLOCK_MIN_SIZE = 768 * 1024
_BLOCK_SIZE_SPREAD = 512 * 1024


def genesis_hash(history_seed: str) -> bytes:
    return blake3_hash(b"autonomys-dev-node/genesis/" + history_seed.encode())


def history_block(history_seed: str, number: int) -> bytes:
    """Content of synthetic history block ``number`` (BLAKE3 XOF stream keyed by the seed)."""
    key = blake3_hash(b"autonomys-dev-node/history/" + history_seed.encode())
    header = number.to_bytes(4, "little")
    size_seed = blake3(header, key=key).digest()
    size = _BLOCK_MIN_SIZE + int.from_bytes(size_seed[:4], "little") % _BLOCK_SIZE_SPREAD
    return header + blake3(b"block" + header, key=key).digest(length=size - len(header))


def pot_output(genesis: bytes, slot: int) -> bytes:
    """Stand-in 16-byte proof-of-time output for ``slot`` (the dev chain has no PoT)."""
    return blake3_hash_list([b"autonomys-dev-node/pot", genesis, slot.to_bytes(8, "little")])[:16]


def global_randomness(pot: bytes) -> bytes:
    """``blake3_hash(pot_output)`` (spec 01 §6)."""
    return blake3_hash(pot)


def global_challenge(randomness: bytes, slot: int) -> bytes:
    """``blake3_hash_list([global_randomness, u64_le(slot)])`` (spec 01 §6, spec 04 §1)."""
    return blake3_hash_list([randomness, slot.to_bytes(8, "little")])


def slot_challenge(genesis: bytes, slot: int) -> bytes:
    return global_challenge(global_randomness(pot_output(genesis, slot)), slot)
