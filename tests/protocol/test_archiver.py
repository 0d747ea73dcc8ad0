"""Archiver (spec 01 section 9): block packing, segment -> pieces, piece validity, reconstruction.

Packing tests drive :class:`SegmentPacker` directly (no KZG, cheap).  The KZG tests archive two
real full segments once per module with the insecure dev setup (same arithmetic as mainnet) and
check them against the spec: piece layout, erasure relation between source and parity chunks,
record commitments, witnesses against the segment commitment, header chaining.  A record of
random bytes costs a 2^15-point MSM (~0.5 s); the test history is mostly zero blocks so that
only ~10 records per segment do.
"""

from __future__ import annotations

import numpy as np
import pytest

from services.protocol.archiver import (
    INITIAL_LAST_ARCHIVED_BLOCK,
    ITEM_BLOCK,
    ITEM_BLOCK_CONTINUATION,
    ITEM_BLOCK_START,
    ITEM_PARENT_SEGMENT_HEADER,
    Archiver,
    ArchiverError,
    SegmentItem,
    SegmentPacker,
    archive_segment_bytes,
    decode_segment,
    encode_segment,
    is_piece_valid,
    reconstruct_piece,
    reconstruct_segment,
)
from services.protocol.constants import (
    NUM_PIECES,
    RAW_RECORD_SIZE,
    RECORD_NUM_CHUNKS,
    RECORD_SIZE,
    RECORDED_HISTORY_SEGMENT_SIZE,
    SCALAR_FULL_BYTES,
)
from services.protocol.hashes import blake3_254_hash_to_scalar
from services.protocol.pieces import Piece, raw_record_from_source
from services.protocol.scale import ScaleError
from services.protocol.segments import ArchivedBlockProgress, LastArchivedBlock, SegmentHeader

SIZE = RECORDED_HISTORY_SEGMENT_SIZE


def _blocks(seed: int, sizes: list[int]) -> list[bytes]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size, dtype=np.uint8).tobytes() for size in sizes]


def _dummy_header(index: int, last: LastArchivedBlock) -> SegmentHeader:
    # Packing treats the parent header as opaque bytes; any commitment value will do here.
    return SegmentHeader(index, bytes([index + 1]) * 48, bytes(32), last)


def _block_payloads(items: list[SegmentItem]) -> list[tuple[int, bytes]]:
    return [(item.kind, bytes(item.payload)) for item in items if item.kind != ITEM_PARENT_SEGMENT_HEADER]


# ============================================================================================
# Segment items and packing (no KZG)


def test_segment_item_encoding() -> None:
    header = _dummy_header(3, LastArchivedBlock(9, ArchivedBlockProgress.partial(5)))
    block = SegmentItem(ITEM_BLOCK, b"abc")
    assert block.encode() == b"\x01\x0cabc" and block.encoded_size() == 5
    parent = SegmentItem(ITEM_PARENT_SEGMENT_HEADER, header)
    assert parent.encode() == b"\x04" + header.to_scale() and parent.encoded_size() == 99
    big = SegmentItem(ITEM_BLOCK_START, bytes(70_000))
    assert big.encode()[:5] == b"\x02" + ((70_000 << 2) | 2).to_bytes(4, "little")
    segment = encode_segment([parent, block, big])
    assert len(segment) == SIZE and segment[0] == 0
    assert segment[1:100] == parent.encode()
    assert not any(segment[1 + 99 + 5 + 70_005 :])  # zero padding
    assert decode_segment(segment) == [parent, block, SegmentItem(ITEM_BLOCK_START, bytes(70_000))]
    with pytest.raises(ScaleError, match="unknown SegmentItem variant index 7"):
        decode_segment(b"\x00\x07")


def test_packer_needs_a_full_segment() -> None:
    packer = SegmentPacker()
    packer.add_block(bytes(1000))
    assert packer.produce_segment() is None
    assert packer.buffered_size() == 1 + 2 + 1000
    with pytest.raises(ArchiverError, match="expected block number 1, got 5"):
        packer.add_block(b"x", block_number=5)


def test_packer_cuts_blocks_and_tracks_progress() -> None:
    # Blocks of 40 MB: segment 0 holds blocks 0..2 and the start of block 3.
    blocks = _blocks(1, [40_000_000] * 4 + [60_000_000] * 3)
    packer = SegmentPacker()
    produced: list[tuple[list[SegmentItem], LastArchivedBlock]] = []
    for number, block in enumerate(blocks):
        packer.add_block(block, number)
        while (items := packer.produce_segment()) is not None:
            produced.append((items, packer.last_archived_block))
            packer.push_parent_header(_dummy_header(len(produced) - 1, packer.last_archived_block))
    assert len(produced) == 2
    (items0, last0), (items1, last1) = produced

    assert [item.kind for item in items0] == [ITEM_BLOCK] * 3 + [ITEM_BLOCK_START]
    start_len = len(items0[3].payload)
    # 1 (segment) + 3 * (1 + 4 + 40M) + 1 + 4 + start = SIZE exactly (no compact shrink here).
    assert 1 + 3 * (5 + 40_000_000) + 5 + start_len == SIZE
    assert last0 == LastArchivedBlock(3, ArchivedBlockProgress.partial(start_len))

    assert items1[0].kind == ITEM_PARENT_SEGMENT_HEADER
    assert items1[0].payload == _dummy_header(0, last0)
    assert items1[1].kind == ITEM_BLOCK_CONTINUATION
    assert bytes(items0[3].payload) + bytes(items1[1].payload) == blocks[3]
    assert [item.kind for item in items1[2:]] == [ITEM_BLOCK, ITEM_BLOCK_START]
    assert last1.number == 5 and last1.archived_progress.partial_bytes == len(items1[3].payload)
    for items in (items0, items1):
        assert sum(item.encoded_size() for item in items) + 1 <= SIZE
        assert len(encode_segment(items)) == SIZE
    assert packer.next_block_number == 7


def test_packer_block_spanning_segments() -> None:
    big = _blocks(2, [2 * SIZE + 12345])[0]
    packer = SegmentPacker()
    packer.add_block(big, 0)
    items0 = packer.produce_segment()
    assert items0 is not None and [i.kind for i in items0] == [ITEM_BLOCK_START]
    first = len(items0[0].payload)
    assert packer.last_archived_block == LastArchivedBlock(0, ArchivedBlockProgress.partial(first))
    packer.push_parent_header(_dummy_header(0, packer.last_archived_block))
    items1 = packer.produce_segment()
    assert items1 is not None and [i.kind for i in items1] == [ITEM_PARENT_SEGMENT_HEADER, ITEM_BLOCK_CONTINUATION]
    second = len(items1[1].payload)
    # The continuation is cut too, and the progress counts both parts.
    assert packer.last_archived_block == LastArchivedBlock(0, ArchivedBlockProgress.partial(first + second))
    assert 1 + 99 + 1 + 4 + second == SIZE
    packer.push_parent_header(_dummy_header(1, packer.last_archived_block))
    assert packer.produce_segment() is None
    rest = packer.buffer[1].payload
    assert bytes(items0[0].payload) + bytes(items1[1].payload) + bytes(rest) == big
    # The next block completes the rest of block 0 and becomes block 1.
    packer.add_block(bytes(SIZE), 1)
    items2 = packer.produce_segment()
    assert [i.kind for i in items2] == [ITEM_PARENT_SEGMENT_HEADER, ITEM_BLOCK_CONTINUATION, ITEM_BLOCK_START]
    assert packer.last_archived_block.number == 1


def _packer_filled_to(size_before: int) -> SegmentPacker:
    """A packer whose first block makes the segment exactly ``size_before`` bytes long."""
    packer = SegmentPacker()
    block_len = size_before - 1 - 1 - 4  # segment byte, item index, 4-byte compact length
    packer.add_block(bytes(block_len), 0)
    return packer


def test_packer_pushes_back_item_when_compact_prefix_overflows() -> None:
    # At SIZE - 3 bytes a 20 000-byte block (4-byte length prefix) overflows by more than its
    # own length: it moves whole to the next segment (reference corner case).
    packer = _packer_filled_to(SIZE - 3)
    packer.add_block(bytes(20_000), 1)
    items = packer.produce_segment()
    assert [i.kind for i in items] == [ITEM_BLOCK]
    assert packer.last_archived_block == LastArchivedBlock(0, ArchivedBlockProgress.complete())
    assert packer.buffer[0].kind == ITEM_BLOCK and len(packer.buffer[0].payload) == 20_000


def test_packer_empty_block_start_corner_case() -> None:
    # At SIZE - 3 bytes a 100-byte block (2-byte prefix) overflows by exactly its length: the
    # reference still cuts it, leaving an empty BlockStart and the whole block as continuation.
    packer = _packer_filled_to(SIZE - 3)
    packer.add_block(bytes(100), 1)
    items = packer.produce_segment()
    assert [(i.kind, len(i.payload)) for i in items[1:]] == [(ITEM_BLOCK_START, 0)]
    assert packer.last_archived_block == LastArchivedBlock(1, ArchivedBlockProgress.partial(0))
    assert packer.buffer[0].kind == ITEM_BLOCK_CONTINUATION and len(packer.buffer[0].payload) == 100


def test_state_round_trip_and_with_initial_state() -> None:
    blocks = _blocks(3, [50_000_000] * 3 + [7_000])
    original = Archiver(None, None)  # no segment is completed, so KZG is never touched
    for number, block in enumerate(blocks[:2]):
        assert original.add_block(block, number) == []
    restored = Archiver.from_state(None, None, original.to_state())
    assert restored.to_state() == original.to_state()
    assert restored.next_block_number == 2 and restored.buffered_size() == original.buffered_size()
    assert restored.last_archived_block_number() is None

    corrupted = bytearray(original.to_state())
    corrupted[20] ^= 1
    with pytest.raises(ScaleError, match="checksum mismatch"):
        Archiver.from_state(None, None, bytes(corrupted))

    # with_initial_state: resume after a header whose last block was partially archived.
    packer = SegmentPacker()
    for block in blocks[:3]:
        packer.add_block(block)
    items0 = packer.produce_segment()
    header0 = _dummy_header(0, packer.last_archived_block)
    packer.push_parent_header(header0)
    assert items0[-1].kind == ITEM_BLOCK_START
    resumed = Archiver.with_initial_state(None, None, header0, blocks[2])
    assert resumed.segment_index == 1 and resumed.prev_segment_header_hash == header0.hash()
    assert resumed.next_block_number == 3 and resumed.last_archived_block_number() == 2
    assert list(resumed._packer.buffer) == list(packer.buffer)
    with pytest.raises(ArchiverError, match="smaller than"):
        Archiver.with_initial_state(None, None, header0, blocks[2][:100])
    with pytest.raises(ArchiverError, match="exactly its archived part"):
        Archiver.with_initial_state(None, None, header0, blocks[2][: len(items0[-1].payload)])


# ============================================================================================
# Full segments with KZG (dev setup)


@pytest.fixture(scope="module")
def kzg():
    from services.protocol.kzg import Kzg

    return Kzg.dev()


@pytest.fixture(scope="module")
def erasure():
    from services.protocol.erasure import ErasureCoding

    return ErasureCoding(16)


def _mostly_zero_blocks(count: int) -> list[bytes]:
    """Large all-zero blocks interleaved with small random ones (and a 2 MB random one).

    A record whose chunks are all zero commits in ~40 ms instead of ~0.5 s, so only the ~10
    records per segment that hold random bytes (or a parent header) pay for a full MSM.
    """
    rng = np.random.default_rng(4)
    sizes = [9_000_000, 500, 31_000_000, 70, 2_000_000]
    blocks = []
    for number in range(count):
        size = sizes[number % len(sizes)]
        random_content = number % len(sizes) in (1, 3, 4) and (number % 10 != 9)
        blocks.append(rng.integers(0, 256, size, dtype=np.uint8).tobytes() if random_content else bytes(size))
    return blocks


@pytest.fixture(scope="module")
def archived(kzg, erasure):
    """Two full segments from blocks of varied sizes, plus the blocks and the final archiver."""
    blocks = _mostly_zero_blocks(40)
    archiver = Archiver(kzg, erasure)
    segments = []
    for number, block in enumerate(blocks):
        segments += archiver.add_block(block, number)
        if len(segments) == 2:
            return blocks[: number + 1], segments, archiver
    raise AssertionError("blocks did not fill two segments")


def _segment_stream(pieces: list[Piece]) -> bytes:
    """Segment bytes recovered from the source pieces (even positions), spec 01 section 9.2."""
    return b"".join(raw_record_from_source(pieces[j].record) for j in range(0, NUM_PIECES, 2))


def test_headers_chain(archived) -> None:
    blocks, (seg0, seg1), archiver = archived
    assert len(seg0.pieces) == len(seg1.pieces) == NUM_PIECES
    assert seg0.header.segment_index == 0 and seg1.header.segment_index == 1
    assert seg0.header.prev_segment_header_hash == bytes(32)
    assert seg1.header.prev_segment_header_hash == seg0.header.hash()
    assert archiver.prev_segment_header_hash == seg1.header.hash() and archiver.segment_index == 2
    assert seg0.header.segment_commitment != seg1.header.segment_commitment
    assert seg1.header.last_archived_block.number == len(blocks) - 1
    assert seg0.header.last_archived_block != INITIAL_LAST_ARCHIVED_BLOCK


def test_pieces_hold_the_segment_stream(archived) -> None:
    blocks, (seg0, seg1), _ = archived
    items0 = decode_segment(_segment_stream(seg0.pieces))
    items1 = decode_segment(_segment_stream(seg1.pieces))
    assert items1[0] == SegmentItem(ITEM_PARENT_SEGMENT_HEADER, seg0.header)
    # Reassemble the blocks from Block / BlockStart + BlockContinuation items.
    rebuilt: list[bytes] = []
    for kind, payload in _block_payloads(items0 + items1):
        if kind == ITEM_BLOCK_CONTINUATION:
            rebuilt[-1] += payload
        else:
            rebuilt.append(payload)
    last = seg1.header.last_archived_block
    assert rebuilt[:-1] == blocks[: len(rebuilt) - 1]
    if last.archived_progress.is_complete:
        assert rebuilt[-1] == blocks[last.number]
    else:
        assert rebuilt[-1] == blocks[last.number][: last.archived_progress.partial_bytes]
    # Every source chunk is 0x00 ‖ 31 bytes.
    record = np.frombuffer(seg0.pieces[0].record, dtype=np.uint8).reshape(RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES)
    assert not record[:, 0].any()


def test_parity_chunks_are_the_erasure_extension(archived, erasure) -> None:
    _, (seg0, _), _ = archived
    sources = np.stack([np.frombuffer(seg0.pieces[j].record, dtype=np.uint8) for j in range(0, NUM_PIECES, 2)])
    sources = sources.reshape(NUM_PIECES // 2, RECORD_NUM_CHUNKS, SCALAR_FULL_BYTES)
    busy = np.flatnonzero(sources.any(axis=2).sum(axis=0) >= 2)  # columns with 2+ non-zero chunks
    assert busy.size >= 3
    for chunk in (0, int(busy[0]), int(busy[busy.size // 2]), int(busy[-1]), RECORD_NUM_CHUNKS - 1):
        offset = chunk * SCALAR_FULL_BYTES
        column = [bytes(seg0.pieces[j].record[offset : offset + SCALAR_FULL_BYTES]) for j in range(NUM_PIECES)]
        assert erasure.extend(column[0::2]) == column[1::2]


def test_record_commitments_match_records(archived, kzg) -> None:
    _, (seg0, _), _ = archived
    for position in (0, 1, 255):  # the parity commitments come from extend_commitments
        record = np.frombuffer(seg0.pieces[position].record, dtype=np.uint8).reshape(-1, SCALAR_FULL_BYTES)
        assert kzg.commit(kzg.poly(record)) == seg0.pieces[position].commitment


def test_all_witnesses_open_the_segment_commitment(archived, kzg) -> None:
    _, segments, _ = archived
    for segment in segments:
        commitment = segment.header.segment_commitment
        for position, piece in enumerate(segment.pieces):
            value = blake3_254_hash_to_scalar(piece.commitment)
            assert kzg.verify(commitment, NUM_PIECES, position, value, piece.witness), position


def test_is_piece_valid_accepts_archived_pieces(archived, kzg) -> None:
    _, (seg0, seg1), _ = archived
    assert is_piece_valid(kzg, seg0.pieces[0], seg0.header.segment_commitment, 0)
    assert is_piece_valid(kzg, seg0.pieces[129], seg0.header.segment_commitment, 129)
    assert is_piece_valid(kzg, seg1.pieces[254], seg1.header.segment_commitment, 254)


def _flip(piece: Piece, index: int) -> Piece:
    data = bytearray(bytes(piece))
    data[index] ^= 0x01
    return Piece(data)


def test_is_piece_valid_rejects_tampering(archived, kzg) -> None:
    _, (seg0, seg1), _ = archived
    piece, commitment = seg0.pieces[6], seg0.header.segment_commitment
    assert not is_piece_valid(kzg, _flip(piece, 1000), commitment, 6)  # record byte
    assert not is_piece_valid(kzg, _flip(piece, RECORD_SIZE - 1), commitment, 6)  # last record byte
    assert not is_piece_valid(kzg, _flip(piece, 1_048_576 + 10), commitment, 6)  # commitment
    assert not is_piece_valid(kzg, _flip(piece, 1_048_624 + 47), commitment, 6)  # witness
    assert not is_piece_valid(kzg, piece, commitment, 7)  # wrong position
    assert not is_piece_valid(kzg, piece, seg1.header.segment_commitment, 6)  # wrong segment
    assert not is_piece_valid(kzg, piece, bytes(47), 6)
    garbage_witness = Piece.from_parts(piece.record, piece.commitment, b"\x01" * 48)
    assert not is_piece_valid(kzg, garbage_witness, commitment, 6)
    non_canonical = bytearray(bytes(piece))
    non_canonical[0:32] = b"\xff" * 32
    assert not is_piece_valid(kzg, Piece(non_canonical), commitment, 6)
    with pytest.raises(ValueError, match="position must be in 0..255"):
        is_piece_valid(kzg, piece, commitment, 256)


def test_reconstruct_segment_and_piece(archived, kzg, erasure) -> None:
    _, (seg0, _), _ = archived
    # 128 present: all sources except 4, plus 4 parity pieces (4 record commitments to redo).
    missing_sources = {10, 64, 130, 254}
    present = {j for j in range(0, NUM_PIECES, 2) if j not in missing_sources} | {1, 3, 201, 255}
    partial = [seg0.pieces[j] if j in present else None for j in range(NUM_PIECES)]
    assert reconstruct_segment(kzg, erasure, partial) == seg0.pieces
    too_few = list(partial)
    too_few[0] = None
    with pytest.raises(ArchiverError, match="too few pieces to reconstruct: 127 present"):
        reconstruct_segment(kzg, erasure, too_few)
    with pytest.raises(ArchiverError, match="position must be in"):
        reconstruct_piece(kzg, erasure, partial, 256)


def test_reconstruct_piece_from_sources_only(archived, kzg, erasure) -> None:
    _, (seg0, _), _ = archived
    # Only the source pieces: a parity piece needs no record commitment to be recomputed.
    sources_only = [piece if j % 2 == 0 else None for j, piece in enumerate(seg0.pieces)]
    assert reconstruct_piece(kzg, erasure, sources_only, 77) == seg0.pieces[77]


def test_reconstruct_rejects_inconsistent_pieces(archived, kzg, erasure) -> None:
    _, (seg0, _), _ = archived
    tampered = list(seg0.pieces)  # all 256 present, one record chunk changed
    tampered[5] = _flip(tampered[5], 33)
    with pytest.raises(ArchiverError, match="reconstruction failed"):
        reconstruct_segment(kzg, erasure, tampered)


def test_archive_segment_bytes_rejects_wrong_size(kzg, erasure) -> None:
    with pytest.raises(ArchiverError, match=f"a segment is {SIZE} bytes"):
        archive_segment_bytes(kzg, erasure, bytes(100))


@pytest.mark.slow
def test_mainnet_params_pieces_valid(erasure) -> None:
    from shared_paths import require_mainnet_kzg
    from services.protocol.kzg import Kzg

    kzg = Kzg.from_bytes(require_mainnet_kzg().read_bytes())
    # Three records of random bytes, the rest zero (zero records commit fast).
    segment = bytearray(SIZE)
    segment[: 3 * RAW_RECORD_SIZE] = np.random.default_rng(5).integers(0, 256, 3 * RAW_RECORD_SIZE, dtype=np.uint8).tobytes()
    pieces, segment_commitment = archive_segment_bytes(kzg, erasure, segment)
    for position in (0, 4, 77, 200, 255):
        assert is_piece_valid(kzg, pieces[position], segment_commitment, position)
    assert not is_piece_valid(kzg, _flip(pieces[77], 5), segment_commitment, 77)
    assert not is_piece_valid(kzg, pieces[77], segment_commitment, 76)
