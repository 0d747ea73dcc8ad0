"""Solution SCALE and serde JSON forms (spec 04 section 4) against the reference.

SCALE of every reference Solution (``sector_ref.json``, ``sector_history_ref.json``) and the
exact ``serde_json`` text of the history-size-64 ones and of ``json_forms_ref.json``; parsing
accepts what serde accepts (either hex case) and rejects the rest with the field named.
"""

from __future__ import annotations

import json

import pytest
from reference_vectors import load_json, reference_sector, solution_from_vector

from services.protocol.scale import ScaleError
from services.protocol.solution import SOLUTION_SIZE, RewardSignature, Solution


def _forms(type_name: str) -> list[dict]:
    return [form for form in load_json("json_forms_ref.json")["forms"] if form["type"] == type_name]


def _reference_solutions() -> list[tuple[dict, str | None]]:
    """Every reference Solution (field form) with its serde JSON where the vectors give one."""
    out = []
    for name in ("p4", "p8", "p6"):
        for vector in reference_sector(name).vector["solutions"]:
            out.append((vector["solution"], vector.get("extra", {}).get("serde_json")))
    return out


def _solution() -> Solution:
    return solution_from_vector(reference_sector("p6").vector["solutions"][0]["solution"])


def test_scale_of_every_reference_solution() -> None:
    solutions = _reference_solutions()
    assert len(solutions) == 13
    for vector, _ in solutions:
        solution = solution_from_vector(vector)
        encoded = solution.to_scale()
        assert encoded.hex() == vector["scale"] and len(encoded) == SOLUTION_SIZE == 412
        assert Solution.from_scale(encoded) == solution


def test_serde_json_text_of_the_reference_solutions() -> None:
    texts = [(vector, text) for vector, text in _reference_solutions() if text is not None]
    (form,) = _forms("Solution<PublicKey>")
    assert form["value"].startswith("SCALE ")
    texts.append((Solution.from_scale(bytes.fromhex(form["value"][6:])), form["json"]))
    assert len(texts) == 6
    for vector, text in texts:
        solution = vector if isinstance(vector, Solution) else solution_from_vector(vector)
        assert json.dumps(solution.to_json(), separators=(",", ":")) == text
        assert Solution.from_json(json.loads(text)) == solution


def test_reward_signature_json_text() -> None:
    (form,) = _forms("RewardSignature")
    signature = RewardSignature.from_json(json.loads(form["json"]))
    assert json.dumps(signature.to_json()) == form["json"]
    assert signature.to_scale() == bytes.fromhex(json.loads(form["json"]))


def test_scale_rejects_truncated_trailing_and_zero_history() -> None:
    encoded = _solution().to_scale()
    with pytest.raises(ScaleError, match="truncated"):
        Solution.from_scale(encoded[:-1])
    with pytest.raises(ScaleError, match="trailing"):
        Solution.from_scale(encoded + b"\x00")
    zero_history = encoded[:66] + bytes(8) + encoded[74:]
    with pytest.raises(ScaleError, match="history size must be non-zero"):
        Solution.from_scale(zero_history)


def test_json_accepts_uppercase_hex_and_rejects_bad_input() -> None:
    value = _solution().to_json()
    assert Solution.from_json({**value, "publicKey": "AB" * 32}).public_key == bytes([0xAB]) * 32
    with pytest.raises(ValueError, match="0x"):
        Solution.from_json({**value, "publicKey": "0x" + "01" * 31})
    with pytest.raises(ValueError, match="chunk must be a JSON array"):
        Solution.from_json({**value, "chunk": "00" * 32})
    with pytest.raises(ValueError, match=r"chunk\[3\]"):
        Solution.from_json({**value, "chunk": [0, 1, 2, 256] + [0] * 28})
    with pytest.raises(ValueError, match="proofOfSpace must be 160 bytes"):
        Solution.from_json({**value, "proofOfSpace": "00" * 159})
    missing = dict(value)
    del missing["chunkWitness"]
    with pytest.raises(ValueError, match="chunkWitness"):
        Solution.from_json(missing)
    with pytest.raises(ValueError, match="sectorIndex"):
        Solution.from_json({**value, "sectorIndex": 65536})


def test_constructor_validates_sizes() -> None:
    with pytest.raises(ValueError, match="chunk must be 32 bytes"):
        Solution(**{**_solution().__dict__, "chunk": bytes(31)})
    with pytest.raises(ValueError, match="history_size must be non-zero"):
        Solution(**{**_solution().__dict__, "history_size": 0})


def test_reward_signature() -> None:
    signature = RewardSignature(bytes(range(64)))
    assert RewardSignature.from_json(signature.to_json()) == signature
    with pytest.raises(ValueError, match="64 bytes"):
        RewardSignature(bytes(63))
