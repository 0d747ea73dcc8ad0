"""Plotting across the cluster, end to end on loopback with real processes only: nats-server, a
dev node (one-piece sectors, the session's archived template), the controller, a sharded
cache, plot-servers, a plot-client and a proof-server.

* A new farm of two sectors is plotted by the cluster (jobs on the work queue, pieces from the
  cache over TCP, sectors downloaded over TCP into the farm), farmed, and the dev node authors a
  block from a solution on one of those sectors (re-verified here offline); every piece of the
  plot reads back identical to the archived piece (``reading.read_piece``). The plot-server's and
  the plot-client's Prometheus endpoints count the sectors: plotter counters and times, piece
  fetches, TCP bytes, bus and self-test gauges; the farm's official sector metrics.
* A plot-server SIGKILLed while plotting leaves its job to a second plot-server (redelivered
  after the queue's ack wait); the sector slot is written exactly once, from the second one.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "plot_server"))
from plot_cluster import (  # noqa: E402
    TEMPLATE_FLAGS,
    RoleProcess,
    archived_template,
    call,
    free_port,
    start_controller,
    start_dev_node,
    start_plot_server,
    stop_all,
)

from services.bus import Bus  # noqa: E402
from services.bus.membership import Membership  # noqa: E402
from services.farm import Farm  # noqa: E402
from services.kzg_setup import load_kzg  # noqa: E402
from services.node import dev_history  # noqa: E402
from services.protocol.constants import NUM_PIECES, PIECE_SIZE  # noqa: E402
from services.protocol.erasure import ErasureCoding  # noqa: E402
from services.protocol.plotting import chia_proofs_for_seed, sector_piece_indexes  # noqa: E402
from services.protocol.reading import read_piece  # noqa: E402
from services.protocol.sector import FarmerProtocolInfo  # noqa: E402
from services.protocol.segments import SegmentHeader  # noqa: E402
from services.protocol.solution import Solution  # noqa: E402
from services.protocol.verification import (  # noqa: E402
    PieceCheckParams,
    VerifySolutionParams,
    solution_piece_index,
    verify_solution,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
PLOT_TIMEOUT_S = 600  # cold numba caches and a busy 2-core machine
BLOCK_TIMEOUT_S = 420


class Chain:
    """nats-server, dev node, controller and one sharded cache shared by this module's tests."""

    def __init__(self, base: Path, nats, node, processes: list) -> None:  # noqa: ANN001
        self.base = base
        self.nats = nats
        self.node = node
        self.processes = processes

    def piece(self, index: int) -> bytes:
        segment, position = divmod(index, NUM_PIECES)
        data = (self.node.data_dir / "segments" / f"{segment:08d}.pieces").read_bytes()
        return data[position * PIECE_SIZE:(position + 1) * PIECE_SIZE]

    def status(self) -> dict:
        return asyncio.run(call(self.node.url, "dev_status"))


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    from services.bus.server import NatsServer

    base = tmp_path_factory.mktemp("cluster-plotting")
    template = archived_template(tmp_path_factory.getbasetemp(), *TEMPLATE_FLAGS)
    nats = NatsServer().start()
    node = start_dev_node(template, base / "node", "--block-authoring-delay", "30")
    processes: list = [node]
    try:
        node_url = node.wait_ready()
        processes.append(start_controller(nats.url, node_url, base))
        shard = RoleProcess("shard-a", nats.url, ["sharded-cache", f"path={base / 'shard-a'},size=512MiB",
                                                 "--instance", "shard-a", "--listen-on", f"127.0.0.1:{free_port()}",
                                                 "--kzg-params", "dev"], base / "shard-a.log")
        processes.append(shard)
        asyncio.run(wait_shard_filled(nats.url, "sharded-cache.shard-a", shard))
        yield Chain(base, nats, node, processes)
    finally:
        statuses = stop_all(processes)
        nats.stop()
    assert set(statuses.values()) == {0}, statuses


async def wait_shard_filled(nats_url: str, key: str, shard: RoleProcess, timeout: float = 300.0) -> None:
    """Until the shard's membership record says it holds every piece it owns."""
    bus = await Bus.connect([nats_url], name="test-wait-shard")
    try:
        membership = await Membership.open(bus)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            member = (await membership.members()).get(key)
            if member is not None and member.capacity.get("owned", 0) > 0 and member.capacity.get("missing", 1) == 0:
                return
            if shard.proc.poll() is not None:
                raise AssertionError(f"shard exited:\n{shard.tail()}")
            await asyncio.sleep(0.5)
        raise AssertionError(f"{key} not filled within {timeout} s:\n{shard.tail()}")
    finally:
        await bus.close()


def start_plot_client(chain: Chain, farm: Path, sectors: int, name: str, *extra: str) -> RoleProcess:
    return RoleProcess(name, chain.nats.url, ["plot-client", "--reward-address", ALICE, "--kzg-params", "dev",
                                              "--instance", name, *extra, f"path={farm},sectors={sectors}"],
                       chain.base / f"{name}.log")


def farm_public_key(plot_client: RoleProcess) -> str:
    return plot_client.wait_for_event("farm opened", 300)["public_key"]


def wait_for_block(url: str, public_key: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ours = [b for b in asyncio.run(call(url, "dev_blocks")) if b["solution"]["publicKey"] == public_key]
        if ours:
            return ours[0]
        time.sleep(1.0)
    raise AssertionError(f"no block from the farm within {timeout} s; {asyncio.run(call(url, 'dev_status'))}")


def check_block_offline(chain: Chain, block: dict) -> Solution:
    """The block's solution verifies here too, against the chain's own segment header."""
    solution = Solution.from_json(block["solution"])
    headers = [SegmentHeader.from_json(json.loads(line))
               for line in (chain.node.data_dir / "segment-headers.jsonl").read_text().splitlines() if line.strip()]
    status = chain.status()
    protocol = FarmerProtocolInfo.test_runtime(solution.history_size)
    piece_index = solution_piece_index(solution, 1, protocol.recent_segments, protocol.recent_history_fraction)
    check = PieceCheckParams(
        max_pieces_in_sector=1, segment_commitment=headers[piece_index // NUM_PIECES].segment_commitment,
        recent_segments=protocol.recent_segments, recent_history_fraction=protocol.recent_history_fraction,
        min_sector_lifetime=protocol.min_sector_lifetime, current_history_size=len(headers),
    )  # fmt: skip
    pot = dev_history.pot_output(bytes.fromhex(status["genesisHash"]), block["slotNumber"])
    distance = verify_solution(solution, block["slotNumber"], VerifySolutionParams(pot, block["votingSolutionRange"], check),
                               load_kzg("dev"))
    assert distance == block["distance"]
    return solution


def read_back(chain: Chain, farm_dir: Path, sectors: int) -> int:
    """Every piece of every plotted sector, read back from plot.bin, equals the archived piece."""
    status = chain.status()
    erasure, proofs_for_seed = ErasureCoding(16), chia_proofs_for_seed("cpu")
    checked = 0
    with Farm.open(farm_dir, sectors=sectors, genesis_hash=bytes.fromhex(status["genesisHash"]),
                   max_pieces_in_sector=1, create=False) as farm:
        assert sorted(farm.plotted_sectors()) == list(range(sectors))
        for index in range(sectors):
            metadata = farm.sector_metadata(index)
            info = FarmerProtocolInfo.test_runtime(metadata.history_size)
            info = FarmerProtocolInfo(metadata.history_size, 1, info.recent_segments, info.recent_history_fraction,
                                      info.min_sector_lifetime)
            sector_id = farm.sector_id(index, metadata.history_size)
            for offset, piece_index in enumerate(sector_piece_indexes(farm.public_key, index, info,
                                                                      metadata.pieces_in_sector)):
                piece = read_piece(farm.sector_view(index), metadata, sector_id, offset, erasure, proofs_for_seed)
                assert bytes(piece) == chain.piece(piece_index), (index, offset, piece_index)
                checked += 1
    return checked


def scrape(port: int) -> dict[str, float]:
    """``/metrics`` of a daemon: each sample's value under ``name{label="value",...}`` (labels
    sorted) and its plain ``name`` summed over all label sets."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}"] = sample.value
            values[sample.name] = values.get(sample.name, 0.0) + sample.value
    return values


def check_plotting_metrics(plot_server: dict[str, float], plot_client: dict[str, float], farm_id: str) -> None:
    plotter = "subspace_farmer_plotter"
    assert plot_server[f"{plotter}_sector_plotted_counter_Sectors_total"] == 2
    assert plot_server[f"{plotter}_sector_plotting_time_seconds_count"] == 2
    assert plot_server[f"{plotter}_sector_plotting_time_seconds_sum"] > 0
    assert plot_server[f"{plotter}_sector_downloading_time_seconds_count"] == 2
    assert plot_server[f"{plotter}_sector_encoding_time_seconds_count"] == 2
    assert plot_server[f"{plotter}_sector_upload_time_seconds_count"] == 2
    assert plot_server[f'{plotter}_jobs_total{{kind="cpu-subspace_proof_of_space::chia::ChiaTable",outcome="done"}}'] == 2
    assert plot_server[f"{plotter}_plotting_capacity_total_Sectors"] == 1
    assert plot_server["subspace_farmer_piece_getter_pieces_total"] >= 2  # one piece per sector
    assert plot_server['subspace_farmer_tcp_sent_bytes_total{kind="sector"}'] > 0  # sectors served
    assert plot_server["subspace_farmer_bus_request_time_seconds_count"] > 0
    assert plot_server['subspace_farmer_gpu_self_test_passed{backend="cpu"}'] == 1
    farm = f'{{farm_id="{farm_id}"}}'
    for name in ("sector_plotted_counter_Sectors_total", "sector_written_counter_Sectors_total",
                 "sector_plotting_time_seconds_count", "sector_downloading_time_seconds_count",
                 "sector_encoding_time_seconds_count", "sector_writing_time_seconds_count"):
        assert plot_client[f"subspace_farmer_farm_{name}{farm}"] == 2, name
    assert plot_client[f"subspace_farmer_farm_sector_plotting_time_seconds_sum{farm}"] > 0
    assert plot_client[f'subspace_farmer_farm_sectors_total_Sectors{{farm_id="{farm_id}",state="Plotted"}}'] == 2
    assert plot_client[f'subspace_farmer_farm_sectors_total_Sectors{{farm_id="{farm_id}",state="NotPlotted"}}'] == 0


def test_cluster_plots_a_farm_that_authors_a_block(chain, tmp_path):
    farm = tmp_path / "farm"
    server_port, client_port = free_port(), free_port()
    processes = [
        start_plot_server(chain.nats.url, tmp_path / "plot-server", chain.base, "ps-main", "--priority-cache",
                          "--prometheus-listen-on", f"127.0.0.1:{server_port}"),
        RoleProcess("proof-server", chain.nats.url, ["proof-server", "--kzg-params", "dev", "--instance", "prs-main"],
                    chain.base / "proof-server.log"),
    ]
    plot_client = start_plot_client(chain, farm, 2, "pc-main", "--plotting-concurrency", "2",
                                    "--prometheus-listen-on", f"127.0.0.1:{client_port}")
    processes.append(plot_client)
    try:
        public_key = farm_public_key(plot_client)
        first = plot_client.wait_for_event("sector written", PLOT_TIMEOUT_S)
        block = wait_for_block(chain.node.url, public_key, BLOCK_TIMEOUT_S)
        plot_client.wait_for_event("sector written", PLOT_TIMEOUT_S, count=2)
        processes[0].wait_for_event("sector delivered", 60, count=2)
        check_plotting_metrics(scrape(server_port), scrape(client_port), first["farm"])
        plot_client.wait_for(f"Successfully signed reward hash 0x{block['hash']}", 60)
    except BaseException:
        for process in processes:
            print(process.tail())
        raise
    finally:
        statuses = stop_all(processes)
    assert set(statuses.values()) == {0}, statuses
    solution = check_block_offline(chain, block)
    assert solution.sector_index in (0, 1) and first["plot_server"] == "ps-main"
    written = plot_client.events("sector written")
    assert sorted(e["sector"] for e in written) == [0, 1]  # each slot written once
    (stats,) = plot_client.events("plotting stats")
    assert stats["written"] == 2 and stats["download_failures"] == 0, stats
    assert read_back(chain, farm, 2) == 2
    plotted = processes[0].events("sector plotted")
    assert len(plotted) == 2 and len(processes[0].events("sector delivered")) == 2
    sources = {source for event in plotted for source in event["piece_sources"]}
    assert sources and sources <= {"priority"} | {s for s in sources if s.startswith("tcp://")}, sources


def test_sigkilled_plot_server_leaves_its_job_to_another(chain, tmp_path):
    farm = tmp_path / "farm"
    doomed = start_plot_server(chain.nats.url, tmp_path / "ps-a", chain.base, "ps-a")
    plot_client = start_plot_client(chain, farm, 1, "pc-kill")
    processes = [doomed, plot_client]
    try:
        claimed = doomed.wait_for_event("plotting sector", PLOT_TIMEOUT_S)
        doomed.kill()  # mid-sector: claimed, pieces being fetched or records encoding
        assert not doomed.events("sector plotted"), "the first plot-server finished before it was killed"
        survivor = start_plot_server(chain.nats.url, tmp_path / "ps-b", chain.base, "ps-b")
        processes.append(survivor)
        written = plot_client.wait_for_event("sector written", PLOT_TIMEOUT_S)
        survivor.wait_for_event("sector delivered", 60)
    except BaseException:
        for process in processes:
            print(process.tail())
        raise
    finally:
        statuses = stop_all([p for p in processes if p is not doomed])
    assert set(statuses.values()) == {0}, statuses
    job_id = claimed["job_id"]
    assert written["job_id"] == job_id and written["plot_server"] == "ps-b"
    assert len(plot_client.events("sector written")) == 1  # the slot was written once
    redelivered = survivor.events("jobs.redelivered", job_id=job_id)
    assert redelivered and redelivered[0]["attempt"] == 2
    claims = [(e["plot_server"], e["attempt"]) for e in plot_client.events("sector job claimed", job_id=job_id)]
    assert claims == [("ps-a", 1), ("ps-b", 2)], claims
    assert plot_client.events("sector job moves to another plot-server (the previous one went silent)")
    assert len(survivor.events("sector plotted")) == 1
    assert read_back(chain, farm, 1) == 1
