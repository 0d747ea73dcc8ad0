"""The quickstart as a new user runs it: ``python -m services quickstart --exit-after-blocks 1`` as
a real process farms a block on the dev node from the cluster's own plot (real K=20 PoS, dev
KZG setup), exits 0, and leaves nothing running. The authored block is then checked without the
node: its solution is verified again from the dev node's data directory with the protocol's
``verify_solution`` (and a tampered copy is refused), its reward signature with sr25519, and
its global challenge against the dev chain's slot challenge."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from quickstart_processes import processes_mentioning, start_quickstart

from services.node import dev_history
from services.node.config import DevNodeConfig
from services.node.dev_chain import DevChain
from services.node.dev_crypto import load_erasure, load_kzg
from services.node.dev_verify import SolutionVerifier
from services.node.rpc_types import SlotInfo
from services.protocol.constants import REWARD_SIGNING_CONTEXT
from services.protocol.solution import Solution
from services.protocol.sr25519.schnorrkel import verify as sr25519_verify

pytestmark = [pytest.mark.integration, pytest.mark.slow]
# generous: a cold numba cache compiles for minutes on a loaded 2-core machine
TIMEOUT_S = 1500


def _verify_block_offline(node_dir: Path, block: dict, quickstart_config: dict) -> None:
    chain_file = json.loads((node_dir / "chain.json").read_text())
    params = {key: chain_file[key] for key in ("maxPiecesInSector", "kzg")}
    kzg = load_kzg(None if params["kzg"] == "dev" else params["kzg"])
    chain = DevChain(node_dir, chain_file["historySeed"], kzg, load_erasure(), params)
    config = DevNodeConfig(data_dir=str(node_dir), pieces_in_sector=quickstart_config["pieces_in_sector"],
                           block_authoring_delay_slots=quickstart_config["block_authoring_delay"])
    slot = SlotInfo(block["slotNumber"], bytes.fromhex(block["globalChallenge"]), block["solutionRange"],
                    block["votingSolutionRange"])
    assert slot.global_challenge == dev_history.slot_challenge(chain.genesis_hash, slot.slot_number)
    solution = Solution.from_json(block["solution"])
    assert SolutionVerifier(kzg, chain, config).verify(solution, slot) == block["distance"]
    tampered = dataclasses.replace(solution, chunk=bytes([solution.chunk[0] ^ 1]) + solution.chunk[1:])
    with pytest.raises(ValueError):
        SolutionVerifier(kzg, chain, config).verify(tampered, slot)
    assert sr25519_verify(REWARD_SIGNING_CONTEXT, bytes.fromhex(block["hash"]), bytes.fromhex(block["rewardSignature"]),
                          solution.public_key)


def test_quickstart_farms_a_block_that_verifies_and_stops_cleanly(tmp_path):
    data = tmp_path / "data"
    proc = start_quickstart(data, "--exit-after-blocks", "1", "--timeout", str(TIMEOUT_S), "--progress-interval", "10")
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S + 300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
    assert "1 blocks authored in this run (wanted 1); stopping" in out
    assert "stopped (supervisord exit status 0)" in out
    for milestone in ("segment 0 archived", "numba kernels compiled", "block 1 authored", "first block of this run"):
        assert milestone in out, f"{milestone!r} was not shown:\n{out}"
    assert processes_mentioning(str(data)) == []

    blocks = [json.loads(line) for line in (data / "node" / "blocks.jsonl").read_text().splitlines() if line.strip()]
    assert blocks and blocks[0]["number"] == 1
    config = json.loads((data / "quickstart.json").read_text())["config"]
    farm_info = json.loads((data / "farms" / "farm-0" / "single_disk_farm.json").read_text())
    solution = Solution.from_json(blocks[0]["solution"])
    assert solution.public_key.hex() == farm_info["v0"]["publicKey"]  # our farm's own solution
    _verify_block_offline(data / "node", blocks[0], config)
