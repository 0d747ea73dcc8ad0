"""The plot-client's plotting component across restarts, with real processes (nats-server, dev
node, controller, plot-server, plot-client):

* a job queued before the plot-client is SIGKILLed is recovered from its journal by the next
  plot-client process: no second copy is queued, and the sector is written once;
* a sector whose write a crash interrupted (journal entry left, no commit) is found on start,
  planned again (reason "interrupted") and written, and reads back piece for piece.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plot_server"))
from plot_cluster import (  # noqa: E402
    TEMPLATE_FLAGS,
    RoleProcess,
    archived_template,
    call,
    start_controller,
    start_dev_node,
    start_plot_server,
    stop_all,
)

from services.bus import Bus  # noqa: E402
from services.bus.jobs import WorkQueue  # noqa: E402
from services.farm import Farm  # noqa: E402
from services.plot_server.messages import SECTOR_JOB_QUEUE, PlotSectorJob  # noqa: E402
from services.protocol.constants import NUM_PIECES, PIECE_SIZE  # noqa: E402
from services.protocol.erasure import ErasureCoding  # noqa: E402
from services.protocol.plotting import chia_proofs_for_seed, sector_piece_indexes  # noqa: E402
from services.protocol.reading import read_piece  # noqa: E402
from services.protocol.sector import FarmerProtocolInfo  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
TIMEOUT_S = 300


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from services.bus.server import NatsServer

    base = tmp_path_factory.mktemp("plotting-restart")
    template = archived_template(tmp_path_factory.getbasetemp(), *TEMPLATE_FLAGS)
    nats = NatsServer().start()
    node = start_dev_node(template, base / "node")
    processes: list = [node]
    try:
        node_url = node.wait_ready()
        processes.append(start_controller(nats.url, node_url, base))
        yield nats, node, base
    finally:
        stop_all(processes)
        nats.stop()


def plot_client(nats_url: str, farm: Path, log: Path) -> RoleProcess:
    return RoleProcess(log.stem, nats_url, ["plot-client", "--reward-address", ALICE, "--kzg-params", "dev",
                                            "--instance", "pc-restart", f"path={farm},sectors=1"], log)


async def queue_depth(nats_url: str) -> tuple[int, int]:
    bus = await Bus.connect([nats_url], name="test-depth")
    try:
        return await (await WorkQueue.open(bus, PlotSectorJob, SECTOR_JOB_QUEUE)).depth()
    finally:
        await bus.close()


def archived_piece(node, index: int) -> bytes:  # noqa: ANN001
    segment, position = divmod(index, NUM_PIECES)
    data = (node.data_dir / "segments" / f"{segment:08d}.pieces").read_bytes()
    return data[position * PIECE_SIZE:(position + 1) * PIECE_SIZE]


def test_restarts_recover_jobs_and_replot_half_written_sectors(chain, tmp_path):
    nats, node, _ = chain
    farm = tmp_path / "farm"
    genesis = bytes.fromhex(asyncio.run(call(node.url, "dev_status"))["genesisHash"])
    first = plot_client(nats.url, farm, tmp_path / "pc-1.log")
    processes = [first]
    try:
        queued = first.wait_for_event("sector job queued", TIMEOUT_S)
        assert queued["reason"] == "missing" and queued["sector"] == 0
        assert asyncio.run(queue_depth(nats.url)) == (1, 0)  # no plot-server yet: it waits
        first.kill()

        second = plot_client(nats.url, farm, tmp_path / "pc-2.log")
        processes.append(second)
        recovered = second.wait_for_event("sector job recovered", TIMEOUT_S)
        assert recovered["job_id"] == queued["job_id"]
        second.wait_for_event("plot-client started", TIMEOUT_S)
        assert asyncio.run(queue_depth(nats.url)) == (1, 0)  # the same job, not a second copy
        assert not second.events("sector job queued")
        server = start_plot_server(nats.url, tmp_path / "ps", tmp_path, "ps-restart")
        processes.append(server)
        written = second.wait_for_event("sector written", TIMEOUT_S)
        assert written["job_id"] == queued["job_id"] and written["plot_server"] == "ps-restart"
        assert second.terminate() == 0
        assert asyncio.run(queue_depth(nats.url)) == (0, 0)

        # a crash in the middle of rewriting sector 0: its journal entry stays, nothing committed
        crashed = Farm.open(farm, sectors=1, genesis_hash=genesis, max_pieces_in_sector=1, create=False)
        writer = crashed.begin_sector_write(0)
        writer.write(0, b"\xff" * 4096)
        crashed.close()  # no commit, no abort: what a SIGKILL leaves

        third = plot_client(nats.url, farm, tmp_path / "pc-3.log")
        processes.append(third)
        assert third.wait_for_event("farm opened", TIMEOUT_S)["interrupted"] == [0]
        replanned = third.wait_for_event("sector job queued", TIMEOUT_S)
        assert replanned["reason"] == "interrupted" and replanned["job_id"] == queued["job_id"]
        rewritten = third.wait_for_event("sector written", TIMEOUT_S)
        assert rewritten["sector"] == 0 and len(third.events("sector written")) == 1
    except BaseException:
        for process in processes:
            print(process.tail())
        raise
    finally:
        statuses = stop_all([p for p in processes if p is not first])
    assert set(statuses.values()) == {0}, statuses
    with Farm.open(farm, sectors=1, genesis_hash=genesis, max_pieces_in_sector=1, create=False) as reopened:
        metadata = reopened.sector_metadata(0)
        assert metadata is not None and reopened.interrupted_sectors == []
        info = FarmerProtocolInfo(metadata.history_size, 1, 5, (1, 10), 4)
        (index,) = sector_piece_indexes(reopened.public_key, 0, info, 1)
        piece = read_piece(reopened.sector_view(0), metadata, reopened.sector_id(0, metadata.history_size), 0,
                           ErasureCoding(16), chia_proofs_for_seed("cpu"))
        assert bytes(piece) == archived_piece(node, index)
