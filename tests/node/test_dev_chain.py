"""Dev chain persistence without archiving: chain identity checks, block log, history stand-ins."""

from __future__ import annotations

import json

import pytest

from services.node import dev_history
from services.node.dev_chain import BLOCKS_FILE, ChainStateError, DevChain
from services.protocol.auditing import global_challenge_from_pot_output
from services.protocol.hashes import blake3_hash

PARAMS = {"maxPiecesInSector": 1, "kzg": "dev"}


def test_block_log_persists_and_tolerates_a_torn_last_line(tmp_path) -> None:
    chain = DevChain(tmp_path, "seed-a", None, None, PARAMS)
    assert chain.height == 0 and chain.best_hash == dev_history.genesis_hash("seed-a")
    assert chain.history_size == 1 and chain.segments_archived == 0
    chain.append_block({"number": 1, "hash": "ab" * 32})
    chain.append_block({"number": 2, "hash": "cd" * 32})
    with open(tmp_path / BLOCKS_FILE, "a") as f:
        f.write('{"number": 3, "hash"')  # crash in the middle of a write
    again = DevChain(tmp_path, "seed-a", None, None, PARAMS)
    assert again.height == 2 and again.best_hash == bytes.fromhex("cd" * 32)
    assert again.read_piece(0) is None  # nothing archived


def test_corrupt_block_log_in_the_middle_is_refused(tmp_path) -> None:
    DevChain(tmp_path, "seed-a", None, None, PARAMS)
    (tmp_path / BLOCKS_FILE).write_text('{"number": 1}\nnot json\n{"number": 2}\n')
    with pytest.raises(ChainStateError, match="line 2 is not valid JSON"):
        DevChain(tmp_path, "seed-a", None, None, PARAMS)


def test_other_chain_or_parameters_are_refused(tmp_path) -> None:
    DevChain(tmp_path, "seed-a", None, None, PARAMS)
    stored = json.loads((tmp_path / "chain.json").read_text())
    assert stored["genesisHash"] == dev_history.genesis_hash("seed-a").hex()
    with pytest.raises(ChainStateError, match="not the chain of seed 'seed-b'"):
        DevChain(tmp_path, "seed-b", None, None, PARAMS)
    with pytest.raises(ChainStateError, match="maxPiecesInSector=1, now 4"):
        DevChain(tmp_path, "seed-a", None, None, {**PARAMS, "maxPiecesInSector": 4})


def test_history_blocks_are_deterministic_and_sized() -> None:
    a = dev_history.history_block("s", 5)
    assert a == dev_history.history_block("s", 5)
    assert a != dev_history.history_block("s", 6) and a != dev_history.history_block("t", 5)
    assert 768 * 1024 <= len(a) < 1280 * 1024 and a[:4] == (5).to_bytes(4, "little")


def test_global_challenge_follows_spec_01_section_6() -> None:
    genesis = dev_history.genesis_hash("s")
    pot = dev_history.pot_output(genesis, 99)
    assert len(pot) == 16
    expected = blake3_hash(blake3_hash(pot) + (99).to_bytes(8, "little"))
    assert dev_history.slot_challenge(genesis, 99) == expected
    assert global_challenge_from_pot_output(pot, 99) == expected

