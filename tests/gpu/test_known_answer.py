"""The self-test's embedded known answer is the reference's (shared/vectors/pos_k20.json)."""

from __future__ import annotations

from shared_paths import require_vectors

from services.gpu.known_answer import KNOWN_ANSWER, load_known_answer


def test_embedded_answer_matches_the_reference_vectors():
    path = require_vectors("pos_k20.json")
    reference = load_known_answer(str(path))
    assert reference == KNOWN_ANSWER
    assert sum(len(hashes) for hashes in KNOWN_ANSWER.proof_hashes.values()) >= 10  # enough proofs to compare
