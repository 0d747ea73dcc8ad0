"""Batch piece validity: the answer of ``is_piece_valid`` (spec 01 §9.3) for many pieces at the
cost of about one KZG commitment per batch instead of one per piece.

Why: a piece cache must check every piece against its segment commitment before storing it,
and ``is_piece_valid`` costs one 2^15-point multi-scalar multiplication (~0.3 s of CPU) per
piece, i.e. a few pieces per second per core, while a shard fills at 1 Gbit/s (~120 pieces/s).

Both checks of ``is_piece_valid`` are linear, so a random linear combination with independent
128-bit weights ``rho_i`` checks a whole batch at once:

* record commitments: ``commit(poly(sum rho_i record_i)) == sum rho_i C_i`` (interpolation and
  commitment are linear maps). Every chunk must still be a canonical scalar; that is checked per
  chunk while the combination is accumulated (one fused numba pass per record).
* witnesses: ``e(C_seg_i - v_i G1, G2) == e(W_i, [tau]G2 - x_i G2)`` for all i, with
  ``v_i = blake3_254(C_i)``, ``x_i = w_256^position_i``, combined into
  ``e(sum rho_i (C_seg_i - v_i G1 + x_i W_i), G2) == e(sum rho_i W_i, [tau]G2)``: two MSMs over
  the batch and one pairing check.

If any piece is invalid the combined equations hold with probability below ``2^-127`` (Schwartz-
Zippel over the weights); when a combined check fails every piece of the batch is checked alone
with ``is_piece_valid``, so the result is always per piece and a valid piece is never rejected.
Points are decoded with subgroup checks and must be canonically encoded, as ``is_piece_valid``
compares encodings. Pure: bytes in, booleans out; the caller supplies the randomness source
and runs it where it likes (it releases the GIL in numba and arkworks).
"""

from __future__ import annotations

import os
from typing import Callable, Mapping, Sequence

import numba
import numpy as np
from py_arkworks_bls12381 import GT, G1Point, Scalar

from services.protocol import ntt
from services.protocol.archiver import is_piece_valid
from services.protocol.constants import COMMITMENT_SIZE, NUM_PIECES, PIECE_SIZE, RECORD_NUM_CHUNKS, RECORD_SIZE
from services.protocol.field import MONT_R, R, _R_LIMBS64, _add64, _ld, _mont_mul64, _st
from services.protocol.hashes import blake3_254_hash_to_scalar
from services.protocol.pieces import Piece

RHO_BITS = 128
_WITNESS_OFFSET = RECORD_SIZE + COMMITMENT_SIZE


@numba.njit(cache=True, nogil=True, inline="always")
def _be_word(record, offset):
    word = np.uint64(0)
    for b in range(8):
        word = (word << np.uint64(8)) | np.uint64(record[offset + b])
    return word


@numba.njit(cache=True, nogil=True)
def _accumulate_record(record, rho_mont, acc):
    """acc[j] += rho * chunk_j for the 32-byte big-endian chunks of ``record`` (uint8, 1 MiB);
    returns False (acc partly updated) at the first chunk that is not a canonical scalar."""
    rho = _ld(rho_mont, 0)
    for j in range(acc.shape[0]):
        base = j * 32
        w3 = _be_word(record, base)
        w2 = _be_word(record, base + 8)
        w1 = _be_word(record, base + 16)
        w0 = _be_word(record, base + 24)
        if w3 != _R_LIMBS64[3]:
            canonical = w3 < _R_LIMBS64[3]
        elif w2 != _R_LIMBS64[2]:
            canonical = w2 < _R_LIMBS64[2]
        elif w1 != _R_LIMBS64[1]:
            canonical = w1 < _R_LIMBS64[1]
        else:
            canonical = w0 < _R_LIMBS64[0]
        if not canonical:
            return False
        _st(acc, j, _add64(_ld(acc, j), _mont_mul64((w0, w1, w2, w3), rho)))
    return True


def _montgomery(value: int) -> np.ndarray:
    return np.frombuffer((value * MONT_R % R).to_bytes(32, "little"), dtype=np.uint64).reshape(1, 4).copy()


def _canonical_point(data: bytes) -> G1Point | None:
    try:
        point = G1Point.from_compressed_bytes(data)
    except ValueError:
        return None
    return point if point.to_compressed_bytes() == data else None


def verify_pieces(kzg, pieces: Sequence[tuple[int, bytes | bytearray | memoryview]],  # noqa: ANN001
                  segment_commitments: Mapping[int, bytes],
                  random_bytes: Callable[[int], bytes] = os.urandom) -> list[bool]:
    """``is_piece_valid`` of each ``(piece_index, piece)``; ``segment_commitments`` maps segment
    index to its commitment (a piece of a segment not in it is invalid)."""
    ok = [False] * len(pieces)
    acc = np.zeros((RECORD_NUM_CHUNKS, 4), dtype=np.uint64)
    members: list[int] = []
    commitments: list[G1Point] = []
    witnesses: list[G1Point] = []
    rhos: list[int] = []
    seg_weight: dict[int, int] = {}
    value_sum = 0
    xw_scalars: list[int] = []
    omega = ntt.root_of_unity(8)
    for n, (piece_index, data) in enumerate(pieces):
        view = memoryview(data).cast("B")
        segment_index, position = divmod(int(piece_index), NUM_PIECES)
        segment_commitment = segment_commitments.get(segment_index)
        if len(view) != PIECE_SIZE or segment_commitment is None or _canonical_point(bytes(segment_commitment)) is None:
            continue
        commitment_bytes = bytes(view[RECORD_SIZE:_WITNESS_OFFSET])
        commitment = _canonical_point(commitment_bytes)
        witness = _canonical_point(bytes(view[_WITNESS_OFFSET:]))
        if commitment is None or witness is None:
            continue
        rho = int.from_bytes(random_bytes(RHO_BITS // 8), "little") | 1
        record = np.frombuffer(view, dtype=np.uint8, count=RECORD_SIZE)
        if not _accumulate_record(record, _montgomery(rho), acc):
            # a non-canonical chunk: invalid; undo its partial contribution by recomputing later
            acc = _recompute(members, pieces, rhos)
            continue
        value = int.from_bytes(blake3_254_hash_to_scalar(commitment_bytes), "big")
        members.append(n)
        commitments.append(commitment)
        witnesses.append(witness)
        rhos.append(rho)
        seg_weight[segment_index] = (seg_weight.get(segment_index, 0) + rho) % R
        value_sum = (value_sum + rho * value) % R
        xw_scalars.append(rho * pow(omega, position, R) % R)
    if not members:
        return ok
    if _batch_holds(kzg, acc, commitments, witnesses, rhos, seg_weight, segment_commitments, value_sum, xw_scalars):
        for n in members:
            ok[n] = True
        return ok
    for n in members:
        piece_index, data = pieces[n]
        segment_index, position = divmod(int(piece_index), NUM_PIECES)
        ok[n] = is_piece_valid(kzg, Piece(bytes(data)), segment_commitments[segment_index], position)
    return ok


def _recompute(members: list[int], pieces: Sequence, rhos: list[int]) -> np.ndarray:
    acc = np.zeros((RECORD_NUM_CHUNKS, 4), dtype=np.uint64)
    for n, rho in zip(members, rhos):
        record = np.frombuffer(memoryview(pieces[n][1]).cast("B"), dtype=np.uint8, count=RECORD_SIZE)
        _accumulate_record(record, _montgomery(rho), acc)
    return acc


def _batch_holds(kzg, acc, commitments, witnesses, rhos, seg_weight, segment_commitments,  # noqa: ANN001
                 value_sum, xw_scalars) -> bool:
    scalars = [Scalar(rho) for rho in rhos]
    combined_commitment = G1Point.multiexp_unchecked(commitments, scalars)
    if kzg.commit(kzg.poly_from_limbs(acc)) != combined_commitment.to_compressed_bytes():
        return False
    segment_points = [G1Point.from_compressed_bytes(bytes(segment_commitments[s])) for s in seg_weight]
    lhs_points = [*segment_points, *witnesses, G1Point()]
    lhs_scalars = [*(Scalar(w) for w in seg_weight.values()), *(Scalar(x) for x in xw_scalars),
                   Scalar((R - value_sum) % R)]
    lhs = G1Point.multiexp_unchecked(lhs_points, lhs_scalars)
    rhs = G1Point.multiexp_unchecked(witnesses, scalars)
    return GT.pairing_check([lhs, -rhs], [kzg._g2_gen, kzg._tau_g2])
