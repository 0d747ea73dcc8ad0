"""Migration without replotting, end to end on loopback with real processes.

A copy of the farm the official farmer wrote (``vectors/official_farm/farm``) is farmed by our
plot-client as it is: real nats-server, a dev node started as the vector's README says (mainnet
trusted setup, unsafe RPC, a long block authoring delay) whose segment 0 is the farm's, the
controller, optionally a proof-server, and ``plot-client path=<copy>,sectors=2``. The dev node
must author a block from our solution; the test re-verifies that solution offline against the
farm's segment header, checks the reward signature with the farm's key and finds the official
farmer's log line. Without a proof-server the plot-client must prove locally.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from cluster_processes import ClusterProcess, official_chain_flags, wait_for_our_block
from dev_node_process import DevNodeProcess, call, clone_data_dir
from official_farm import copy_farm, genesis_hash, params, vector_dir

from services.node import dev_history
from services.protocol.constants import REWARD_SIGNING_CONTEXT
from services.kzg_setup import load_kzg
from services.protocol.segments import SegmentHeader
from services.protocol.solution import Solution
from services.protocol.sr25519 import schnorrkel
from services.protocol.verification import PieceCheckParams, VerifySolutionParams, verify_solution
from shared_paths import require_mainnet_kzg

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ALICE = "5GrwvaEF5zXb26Fz9rcQpDWS57CtERHpNehXCPcNoHGKutQY"
CONTROLLER = "ctl-migration"
BLOCK_TIMEOUT_S = 420  # first proofs after a cold start include KZG loading and numba caches


def _check_block(block: dict, node_dir: Path) -> None:
    solution = Solution.from_json(block["solution"])
    assert solution.public_key.hex() == params()["publicKey"]
    assert solution.reward_address.hex() == params()["rewardAddressHex"]
    assert solution.history_size == 1 and solution.sector_index in (0, 1)
    # the solution verifies against the farm's own segment header, not only in the dev node
    header = SegmentHeader.from_json(json.loads((vector_dir() / "segment_headers.json").read_text())[0])
    protocol = params()["protocolInfo"]
    check = PieceCheckParams(
        max_pieces_in_sector=protocol["maxPiecesInSector"], segment_commitment=header.segment_commitment,
        recent_segments=protocol["recentSegments"], recent_history_fraction=tuple(protocol["recentHistoryFraction"]),
        min_sector_lifetime=protocol["minSectorLifetime"], current_history_size=1,
    )  # fmt: skip
    pot = dev_history.pot_output(genesis_hash(), block["slotNumber"])
    distance = verify_solution(solution, block["slotNumber"], VerifySolutionParams(pot, block["votingSolutionRange"], check),
                               load_kzg(str(require_mainnet_kzg())))
    assert distance == block["distance"]
    signature = bytes.fromhex(block["rewardSignature"])
    assert schnorrkel.verify(REWARD_SIGNING_CONTEXT, bytes.fromhex(block["hash"]), signature, solution.public_key)
    on_disk = [json.loads(line) for line in (node_dir / "blocks.jsonl").read_text().splitlines()]
    assert block in on_disk


def _farm_official_copy(tmp_path: Path, template: Path, nats_url: str, with_proof_server: bool) -> tuple[dict, dict]:
    farm = copy_farm(tmp_path / "farm")
    kzg = str(require_mainnet_kzg())
    node = DevNodeProcess(clone_data_dir(template, tmp_path / "node"), *official_chain_flags(),
                          "--block-authoring-delay", "30")
    processes: list[ClusterProcess] = []
    statuses = {}
    try:
        node_url = node.wait_ready()
        status = asyncio.run(call(node_url, "dev_status"))
        assert status["genesisHash"] == params()["genesisHash"]
        processes.append(ClusterProcess("controller", nats_url, ["controller", "--tmp", "--node-rpc-url", node_url,
                                                                 "--instance", CONTROLLER], tmp_path / "controller.log"))
        if with_proof_server:
            processes.append(ClusterProcess("proof-server", nats_url, ["proof-server", "--kzg-params", kzg,
                                                                       "--instance", "ps-migration"],
                                            tmp_path / "proof-server.log"))
            processes[-1].wait_for("proof-server started", 120)
        plot_client = ClusterProcess("plot-client", nats_url,
                                     ["plot-client", "--reward-address", ALICE, "--kzg-params", kzg,
                                      "--instance", "pc-migration", f"path={farm},sectors=2"],
                                     tmp_path / "plot-client.log")
        processes.append(plot_client)
        block = wait_for_our_block(node_url, params()["publicKey"], BLOCK_TIMEOUT_S)
        plot_client.wait_for(f"Successfully signed reward hash 0x{block['hash']}", 30)
    except BaseException:
        for process in processes:
            print(process.tail())
        print(node.log_tail(60))
        raise
    finally:
        for process in reversed(processes):
            statuses[process.name] = process.terminate()
        statuses["dev-node"] = node.terminate()
    assert set(statuses.values()) == {0}, statuses
    _check_block(block, node.data_dir)
    (stats,) = plot_client.events("farming stats")  # logged once per farm at shutdown
    assert stats["farm_id"] == params()["farmId"] and stats["reward_signatures"] >= 1
    assert stats["solutions_submitted"] >= 1 and stats["audits"] >= 1
    return block, stats


def test_official_farm_is_farmed_through_a_proof_server(tmp_path, official_chain_template, nats_server) -> None:
    block, stats = _farm_official_copy(tmp_path, official_chain_template, nats_server.url, with_proof_server=True)
    assert stats["proofs_by_proof_server"] >= 1, stats


def test_official_farm_is_farmed_with_local_proving(tmp_path, official_chain_template, nats_server) -> None:
    block, stats = _farm_official_copy(tmp_path, official_chain_template, nats_server.url, with_proof_server=False)
    assert stats["proofs_by_proof_server"] == 0 and stats["proofs_local"] >= 1, stats
