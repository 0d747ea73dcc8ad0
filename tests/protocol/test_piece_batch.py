"""Batch piece validity against the reference's own ``is_piece_valid`` verdicts
(``archiver_ref.json``: full pieces of two mainnet-setup segments, all valid), and tampering."""

from __future__ import annotations

import json
import random

import pytest

from services.protocol.constants import NUM_PIECES, PIECE_SIZE, RECORD_SIZE
from services.protocol.field import R
from services.protocol.piece_batch import verify_pieces
from shared_paths import require_mainnet_kzg, require_vectors

SEED = 20261201


@pytest.fixture(scope="module")
def reference():
    from services.kzg_setup import load_kzg_file

    data = json.loads(require_vectors("archiver_ref.json").read_text())
    kzg = load_kzg_file(require_mainnet_kzg())
    commitments, pieces = {}, []
    for segment in data["segments"]:
        header = segment["header"]
        assert segment["reference_is_piece_valid"]["all_valid"]
        commitments[header["segment_index"]] = bytes.fromhex(header["segment_commitment"])
        for position, hex_piece in segment["full_pieces"].items():
            pieces.append((segment["first_piece_index"] + int(position), bytes.fromhex(hex_piece)))
    return kzg, commitments, pieces


def _rng_bytes(seed: int):
    rng = random.Random(seed)
    return lambda n: rng.randbytes(n)


def test_reference_pieces_are_valid(reference) -> None:
    kzg, commitments, pieces = reference
    print(f"seed {SEED}")
    assert len(pieces) == 6 and all(len(p) == PIECE_SIZE for _, p in pieces)
    assert verify_pieces(kzg, pieces, commitments, _rng_bytes(SEED)) == [True] * 6


def _flip(data: bytes, offset: int) -> bytes:
    out = bytearray(data)
    out[offset] ^= 0x01
    return bytes(out)


def test_each_kind_of_bad_piece_is_named(reference) -> None:
    kzg, commitments, pieces = reference
    (i0, p0), (i2, p2), (i3, p3) = pieces[0], pieces[1], pieces[2]
    (j0, q0) = pieces[3]
    non_canonical = bytearray(p2)
    non_canonical[32 * 7: 32 * 8] = (R + 1).to_bytes(32, "big")
    batch = [
        (i0, p0),                                   # valid
        (i2, _flip(p2, 1000)),                      # record byte changed
        (i3, p3[:RECORD_SIZE] + p0[RECORD_SIZE:]),  # someone else's commitment and witness
        (i0 + 1, p0),                               # right piece, wrong position
        (j0, q0),                                   # valid (second segment)
        (i0 + NUM_PIECES, p0),                      # right position, wrong segment
        (i2, bytes(non_canonical)),                 # a chunk >= r
        (i3, _flip(p3, PIECE_SIZE - 1)),            # witness changed
        (i3, p3[:-1]),                              # truncated
        (5 * NUM_PIECES, q0),                       # segment the caller has no commitment for
        (i3, p3),                                   # valid
    ]
    expected = [True, False, False, False, True, False, False, False, False, False, True]
    assert verify_pieces(kzg, batch, commitments, _rng_bytes(SEED)) == expected


def test_forged_commitment_consistent_with_forged_record_fails(reference) -> None:
    # A record and commitment that match each other but not the segment: the witness check fails.
    kzg, commitments, pieces = reference
    (i0, p0), (i2, p2) = pieces[0], pieces[1]
    swapped = p2[:RECORD_SIZE] + p2[RECORD_SIZE:RECORD_SIZE + 48] + p0[RECORD_SIZE + 48:]
    assert verify_pieces(kzg, [(i0, swapped), (i2, p2)], commitments, _rng_bytes(SEED)) == [False, True]
    assert verify_pieces(kzg, [], commitments) == []
