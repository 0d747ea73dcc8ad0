"""Record encoding mechanics: out of order and parallel encoding is byte-identical, pieces are
pulled lazily within the in-flight bound, abort stops between records, a failing record names
its piece, a caller's records buffer is used in place (shim PoS for speed; the sector bytes
themselves are checked against the reference vectors in test_plotting.py)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from blake3 import blake3
from test_plotting import ShimSector, build_shim_sector
from services.protocol.plotting import (
    CpuRecordEncoder,
    PlottingAborted,
    PlottingError,
    SectorBuffer,
    encode_records,
    shim_proofs_for_seed,
)
from services.protocol.erasure import ErasureCoding
from services.protocol.s_bucket_proofs import chia_proofs_for_seed
from services.protocol.sector import FarmerProtocolInfo
from services.protocol.sector_writer import SectorWriter
from shared_paths import require_vectors


def _pieces_of(shim: ShimSector, sector: SectorBuffer, order=None):  # noqa: ANN001, ANN202
    offsets = range(sector.pieces_in_sector) if order is None else order
    return [(p, shim.pieces[sector.piece_indexes[p]]) for p in offsets]


def test_parallel_out_of_order_encoding_is_byte_identical() -> None:
    shim = build_shim_sector(sparse=True)
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3)
    seen = []
    with ThreadPoolExecutor(2) as pool:
        encode_records(sector, _pieces_of(shim, sector, [2, 0, 1]), CpuRecordEncoder(shim.erasure, shim.proofs_for_seed),
                       pool, on_record=seen.append, max_in_flight=2)
    assert sorted(seen) == [0, 1, 2] and sector.complete
    assert SectorWriter(sector).to_bytes() == shim.result.sector


def test_pieces_are_pulled_lazily_within_the_in_flight_bound() -> None:
    shim = build_shim_sector()
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3)
    pulled = []
    done = []

    def pieces():
        for offset, piece in _pieces_of(shim, sector):
            assert len(pulled) == len(done), "a piece pulled while another is still in flight"
            pulled.append(offset)
            yield offset, piece

    with ThreadPoolExecutor(2) as pool:
        encode_records(sector, pieces(), CpuRecordEncoder(shim.erasure, shim_proofs_for_seed), pool,
                       on_record=done.append, max_in_flight=1)
    assert done == [0, 1, 2]


@pytest.mark.parametrize("use_executor", [False, True])
def test_abort_stops_between_records(use_executor: bool) -> None:
    shim = build_shim_sector()
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3)
    abort = threading.Event()
    done = []

    def on_record(offset: int) -> None:
        done.append(offset)
        abort.set()  # the job was cancelled while its first record was encoding

    with ThreadPoolExecutor(1) as pool, pytest.raises(PlottingAborted):
        encode_records(sector, _pieces_of(shim, sector), CpuRecordEncoder(shim.erasure, shim_proofs_for_seed),
                       pool if use_executor else None, abort=abort, on_record=on_record, max_in_flight=1)
    assert done == [0]
    assert sector.missing_offsets() == [1, 2] and not sector.complete


def test_a_failing_record_names_its_piece_and_stops_the_rest() -> None:
    shim = build_shim_sector()
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3)
    pieces = _pieces_of(shim, sector)
    offset, piece = pieces[1]
    pieces[1] = (offset, b"\xff" * 32 + piece[32:])
    with ThreadPoolExecutor(2) as pool, pytest.raises(PlottingError, match=f"piece offset {offset}.*erasure coded"):
        encode_records(sector, pieces, CpuRecordEncoder(shim.erasure, shim_proofs_for_seed), pool)
    assert not sector.complete


def test_caller_supplied_records_buffer_is_used_in_place() -> None:
    shim = build_shim_sector()
    buffer = np.zeros((3, 32768, 32), dtype=np.uint8)
    sector = SectorBuffer(shim.public_key, 0, shim.protocol_info, 3, records=buffer)
    encode_records(sector, _pieces_of(shim, sector), CpuRecordEncoder(shim.erasure, shim_proofs_for_seed))
    assert sector.records is buffer and buffer.any()
    assert SectorWriter(sector).to_bytes() == shim.result.sector
    with pytest.raises(ValueError, match="records buffer"):
        SectorBuffer(shim.public_key, 0, shim.protocol_info, 3, records=np.zeros((2, 32768, 32), np.uint8))



# ---- conformance: the reference's history sector, encoded on two threads


def _reference_sector(name: str, index: int = 0) -> tuple[dict, dict]:
    data = json.loads(require_vectors(name).read_text())
    return data, data["sectors"][index]


def _gpu_missing() -> bool:
    from services.protocol.pos import available_backends

    return "gpu" not in available_backends()


@pytest.mark.slow
@pytest.mark.parametrize("backend", [
    "cpu",
    pytest.param("gpu", marks=[pytest.mark.gpu, pytest.mark.skipif(
        "_gpu_missing()", reason="no CUDA GPU visible to cupy (or cupy not installed): GPU plotting NOT checked")]),
])
def test_history_sector_bytes_equal_the_reference(backend: str) -> None:
    """The reference's 6-piece sector at history size 64 (recent-history branch), plotted from
    its pieces on two threads (PoS tables on the CPU, or on the GPU behind the same encoder):
    byte for byte the reference sector."""
    data, ref = _reference_sector("sector_history_ref.json")
    info = FarmerProtocolInfo.from_scale(bytes.fromhex(data["farmer_protocol_info"]["scale"]))
    public_key = bytes.fromhex(data["public_key"])
    raw = require_vectors(data["pieces_bin"]).read_bytes()
    n = ref["pieces_in_sector"]
    sector = SectorBuffer(public_key, data["sector_index"], info, n)
    assert list(sector.piece_indexes) == ref["piece_indexes"]
    assert sector.sector_id.hex() == ref["sector_id"]
    pieces = [(p, memoryview(raw)[p * 1048672 : (p + 1) * 1048672]) for p in range(n)]
    with ThreadPoolExecutor(2) as pool:
        encode_records(sector, pieces, CpuRecordEncoder(ErasureCoding(16), chia_proofs_for_seed(backend)), pool)
    assert list(sector.encoded_counts) == ref["num_encoded_record_chunks"]
    writer = SectorWriter(sector)
    expected = require_vectors(ref["sector_bin"]).read_bytes()
    assert writer.size == len(expected) == ref["sector_len"]
    assert writer.metadata.to_checksummed_bytes().hex() == ref["sector_metadata_checksummed"]
    assert blake3(writer.plotted_sector.to_scale()).hexdigest() == ref["plotted_sector_scale_blake3"]
    assert writer.to_bytes() == expected

