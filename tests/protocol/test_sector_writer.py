"""The streamed sector layout (spec 03 section 7) against a literal, loop-by-loop rendering of
the spec written here, for records with and without unencoded chunks; bounded windows, random
access and the checksum. (Whole sectors plotted from the reference's pieces are compared with
the reference bytes in ``test_plotting.py``.)"""

from __future__ import annotations

import numpy as np
import pytest
from blake3 import blake3

from services.protocol.constants import PIECE_SIZE
from services.protocol.plotting import SectorBuffer
from services.protocol.sector import FarmerProtocolInfo, SectorContentsMap, derive_evaluation_seed, sector_size
from services.protocol.sector_writer import SectorWriter, SectorWriterError

SEED = 9


class GivenRecords:
    """A record encoder that writes chosen stored chunks and encoded masks (layout tests only)."""

    def __init__(self, sector_id: bytes, records: list[tuple[np.ndarray, np.ndarray]]) -> None:
        self.by_seed = {derive_evaluation_seed(sector_id, p): r for p, r in enumerate(records)}

    def encode_into(self, record, pos_seed, chunks, bitfield) -> int:  # noqa: ANN001
        stored, mask = self.by_seed[pos_seed]
        chunks[:] = stored
        bitfield[:] = np.packbits(mask, bitorder="little")
        return int(mask.sum())


def naive_sector(records: list[tuple[np.ndarray, np.ndarray]], metadata: list[bytes]) -> bytes:
    """Spec 03 section 7 written out with running cursors per record."""
    n = len(records)
    body = b"".join(np.packbits(mask, bitorder="little").tobytes() for _, mask in records)
    out = [body, blake3(body).digest()]
    encoded_counts = [int(mask.sum()) for _, mask in records]
    encoded_cursor = [0] * n
    unencoded_cursor = [0] * n
    masks = [mask.tolist() for _, mask in records]
    chunks = [stored.tobytes() for stored, _ in records]
    for s in range(65536):
        for p in range(n):
            if masks[p][s]:
                k = encoded_cursor[p]
                encoded_cursor[p] += 1
            elif unencoded_cursor[p] < 32768 - encoded_counts[p]:
                k = encoded_counts[p] + unencoded_cursor[p]
                unencoded_cursor[p] += 1
            else:
                continue
            out.append(chunks[p][32 * k : 32 * k + 32])
    out.extend(metadata)
    sector = b"".join(out)
    return sector + blake3(sector).digest()


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(SEED)
    public_key = rng.bytes(32)
    info = FarmerProtocolInfo.test_runtime(1)
    sector = SectorBuffer(public_key, 2, info, 3)
    records = []
    for density in (0.2, 0.5, 0.55):  # E < 32768 for the first, E = 32768 (capped) for the others
        mask = rng.random(65536) < density
        mask[np.flatnonzero(mask)[32768:]] = False
        records.append((rng.integers(0, 256, (32768, 32), dtype=np.uint8), mask))
    pieces = [rng.bytes(PIECE_SIZE) for _ in records]
    encoder = GivenRecords(sector.sector_id, records)
    for p, piece in enumerate(pieces):
        sector.encode_record(p, piece, encoder)
    metadata = [piece[-96:] + blake3(piece).digest() for piece in pieces]
    return sector, naive_sector(records, metadata)


def test_layout_matches_literal_spec(case):
    sector, expected = case
    writer = SectorWriter(sector)
    data = writer.to_bytes()
    assert len(data) == writer.size == sector_size(3)
    assert data == expected, f"seed {SEED}"
    assert writer.checksum() == blake3(data[:-32]).digest()
    contents_map = SectorContentsMap.from_sector(data, 3)
    assert np.array_equal(writer.metadata.s_bucket_sizes, contents_map.s_bucket_sizes())
    assert writer.plotted_sector.sector_id == sector.sector_id
    assert list(writer.plotted_sector.piece_indexes) == list(sector.piece_indexes)


def test_small_windows_stream_the_same_bytes(case, tmp_path):
    sector, expected = case
    writer = SectorWriter(sector, window_size=4096)
    sizes = []
    path = tmp_path / "sector.bin"
    with path.open("wb") as file:
        def sink(view: memoryview) -> None:
            sizes.append(view.nbytes)
            file.write(view)
        checksum = writer.write_to(sink)
    assert path.read_bytes() == expected
    assert checksum == expected[-32:]
    chunk_windows = sizes[2:-2]  # contents map, its checksum | chunk windows | metadata, checksum
    assert len(chunk_windows) > 100 and max(chunk_windows) <= 4096


def test_random_access_reads(case):
    sector, expected = case
    writer = SectorWriter(sector, window_size=8192)
    rng = np.random.default_rng(SEED + 1)
    size = len(expected)
    regions = [0, 3 * 8192, 3 * 8192 + 32, size - 32 - 3 * 128, size - 32]
    offsets = [int(x) for x in rng.integers(0, size, 40)] + regions + [r - 1 for r in regions[1:]]
    for offset in offsets:
        length = int(rng.integers(1, 40000))
        out = bytearray(length)
        written = writer.read_into(offset, out)
        assert written == min(length, size - offset)
        assert bytes(out[:written]) == expected[offset : offset + written], (SEED, offset, length)
    assert writer.read_into(size, bytearray(10)) == 0
    with pytest.raises(SectorWriterError, match="outside sector"):
        writer.read_into(size + 1, bytearray(1))


def test_incomplete_sector_and_tiny_window_refused(case):
    sector, _ = case
    fresh = SectorBuffer(sector.public_key, 2, sector.protocol_info, 3)
    with pytest.raises(SectorWriterError, match=r"records \[0, 1, 2\] are not encoded"):
        SectorWriter(fresh)
    with pytest.raises(SectorWriterError, match="smaller than one s-bucket"):
        SectorWriter(sector, window_size=64)
