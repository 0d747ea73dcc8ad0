"""services.plot_server.pipeline: a job's sector, plotted from the reference's own pieces
(vectors/sector_history_ref_pieces.bin), is byte-identical to the reference sector
(sector_history_ref_p6.bin: 6 pieces at history size 64, real K=20 PoS); the abort flag stops it
between records; pieces that never come make the job fail (to be retried elsewhere)."""

from __future__ import annotations

import asyncio
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from services.plot_server.finished import FinishedSectors
from services.plot_server.messages import PlotSectorJob
from services.plot_server.pipeline import PieceResult, PlottingAborted, PlottingFailed, SectorPipeline
from services.protocol.constants import PIECE_SIZE
from services.protocol.hashes import blake3_hash
from services.protocol.plotting import chia_proofs_for_seed
from services.protocol.sector import FarmerProtocolInfo, PlottedSector
from shared_paths import VECTORS_DIR, require_vectors

pytestmark = pytest.mark.slow


class VectorPieces:
    """A piece source holding the reference sector's pieces (``PieceGetter.get_pieces`` shape)."""

    def __init__(self, pieces: dict[int, bytes], withhold: set[int] = frozenset()) -> None:
        self.pieces = pieces
        self.withhold = set(withhold)
        self.requests: list[list[int]] = []

    async def get_pieces(self, indices, into):  # noqa: ANN001, ANN201
        self.requests.append(list(indices))
        got = {}
        for index in indices:
            if index in self.pieces and index not in self.withhold:
                into[index][:] = self.pieces[index]
                got[index] = into[index]
        return PieceResult(got, [i for i in indices if i not in got])


@pytest.fixture(scope="module")
def reference():
    meta = json.loads(require_vectors("sector_history_ref.json").read_text())
    sector = meta["sectors"][0]
    data = (VECTORS_DIR / meta["pieces_bin"]).read_bytes()
    pieces = {index: data[k * PIECE_SIZE:(k + 1) * PIECE_SIZE] for k, index in enumerate(sector["piece_indexes"])}
    expected = (VECTORS_DIR / sector["sector_bin"]).read_bytes()
    assert blake3_hash(expected).hex() == sector["sector_blake3"]
    info = FarmerProtocolInfo.from_scale(bytes.fromhex(meta["farmer_protocol_info"]["scale"]))
    job = PlotSectorJob.build("01J0PIPELINETEST0000000000", bytes.fromhex(meta["public_key"]), meta["sector_index"],
                              info, sector["pieces_in_sector"], "client")
    return job, pieces, expected, sector


def pipeline(tmp_path, pieces, executor, **options) -> SectorPipeline:
    return SectorPipeline(pieces, chia_proofs_for_seed("cpu"), executor, 2, FinishedSectors(tmp_path), "cpu", **options)


async def test_plots_the_reference_sector(reference, tmp_path):
    job, pieces, expected, sector = reference
    source = VectorPieces(pieces)
    stages = []
    with ThreadPoolExecutor(2) as executor:
        plotter = pipeline(tmp_path, source, executor, batch=4)  # two batches: fetching overlaps encoding
        result = await plotter.plot(job, threading.Event(), lambda stage, done, total: stages.append((stage, done, total)))
    assert result.size == len(expected) and result.checksum == expected[-32:]
    assert (tmp_path / f"{job.job_id}.sector").read_bytes() == expected
    assert plotter.store.read(job.job_id, 0, result.size) == expected
    plotted = PlottedSector.from_scale(result.plotted_sector)
    assert list(plotted.piece_indexes) == sector["piece_indexes"]
    assert blake3_hash(result.plotted_sector).hex() == sector["plotted_sector_scale_blake3"]
    assert plotted.sector_metadata.to_checksummed_bytes().hex().startswith(sector["sector_metadata_checksummed"][:64])
    assert [len(r) for r in source.requests] == [4, 2]
    assert stages[0] == ("downloading", 0, 6) and stages[-1] == ("writing", 6, 6)
    assert [done for stage, done, _ in stages if stage == "encoding"] == [1, 2, 3, 4, 5, 6]


async def test_abort_stops_between_records(reference, tmp_path):
    job, pieces, _, _ = reference
    abort = threading.Event()
    encoded = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "encoding":
            encoded.append(done)
            abort.set()  # cancelled while the first records are being encoded

    with ThreadPoolExecutor(1) as executor:  # one thread: records run one after another
        plotter = pipeline(tmp_path, VectorPieces(pieces), executor, batch=2)
        with pytest.raises(PlottingAborted):
            await plotter.plot(job, abort, progress)
    assert encoded and max(encoded) < 6
    assert list(tmp_path.iterdir()) == [] and plotter.store.waiting == 0


async def test_missing_pieces_fail_the_job(reference, tmp_path):
    job, pieces, _, sector = reference
    withheld = sector["piece_indexes"][2]
    source = VectorPieces(pieces, withhold={withheld})
    with ThreadPoolExecutor(2) as executor:
        plotter = pipeline(tmp_path, source, executor, fetch_attempts=3, fetch_backoff=0.01)
        with pytest.raises(PlottingFailed, match=str(withheld)):
            await plotter.plot(job, threading.Event(), lambda *_: None)
    assert source.requests[1:] == [[withheld], [withheld]]  # only what is missing is asked again
    assert list(tmp_path.iterdir()) == []
    # more pieces than the protocol allows per sector is refused before any work
    too_many = PlotSectorJob.build(job.farm_id, job.public_key, 1, FarmerProtocolInfo(64, 4, 5, (1, 10), 4), 5, "c")
    with ThreadPoolExecutor(1) as executor, pytest.raises(PlottingFailed, match="max_pieces_in_sector"):
        await pipeline(tmp_path, source, executor).plot(too_many, threading.Event(), lambda *_: None)
    await asyncio.sleep(0)
