"""The self-test's known answer: reference outputs for one K=20 seed.

Values copied from ``shared/vectors/pos_k20.json`` (produced by the reference
``subspace-proof-of-space`` crate at autonomys/subspace 72a5aa6f): seed index 0, the number of
entries kept in tables 1..7, and BLAKE3 of every proof (``PosProof::hash``) found for challenge
indices 0..15, in the reference's order. ``tests/gpu/test_known_answer.py`` checks this constant
against the vector file whenever ``shared/`` is present.
"""

from __future__ import annotations

import msgspec


class KnownAnswer(msgspec.Struct, frozen=True):
    k: int
    seed: str  # hex
    table_counts: tuple[int, ...]  # tables 1..7
    proof_hashes: dict[int, tuple[str, ...]]  # challenge index -> hex BLAKE3 of each proof, in order


KNOWN_ANSWER = KnownAnswer(
    k=20,
    seed="ec2bd03bf86b935fa34d71ad7ebb049f1f10f87d343e521511d8f9e6625620cd",
    table_counts=(1048576, 1049397, 1048820, 1048647, 1050010, 1051013, 1054171),
    proof_hashes={
        0: (),
        1: ("8103a0a2c56a1cefad0b66939405eacc713bf8e1fe732304c881c1f3b5df638b",),
        2: (),
        3: (),
        4: ("df021712651e765d7aa6635b1352061b7b974968314f1730a2ac13a142675c80",),
        5: ("b9a4c870a48d44a87bf9ee58d39a79a4b5462553e6a88cb241437fc291b8ddae",
            "7b91d0dc7e31ef80b00162c7f053956ef6382582b5e7a64824d33666621e379c"),
        6: ("54c71253e4a2cc475919b3a55f423bdeeac58f074d65b7f22e5aa2de82b1531b",),
        7: ("a6b209fe55ca3f0ca6edfa84f4e95ddd7dd3a0915e5c662c2ac8cce9d42e0a91",
            "e1edb2247d0b8f71501eb800ed379293daa59d59d09ea8c95a6818e53510d30f"),
        8: ("afa56e347b01d80953c5d6221e7fe90d3605c36171f597daa70287ba2fcedd7c",
            "e173996cc72aa103b8a446f4153dc6943749c97934091d31cf12efd3840b194c"),
        9: ("9e7844c3a26ebaee13670593808c1d4dedb1bc2582212bc48a14515a5440afd1",),
        10: (),
        11: ("12b90d1a17afc9422d6edf8174eb519c3292e0bb9bb333031372e31bcd2bbfe6",),
        12: (),
        13: ("13200771bfc25e01bd6c53642e067a6c4d4ca2e768ca913fcae5df128fd4053b",),
        14: ("ef84635992a00f208cf3cb08a6c8b331e45b28dca709ca60c7157a0484d0f008",),
        15: ("5b8efa6e68f41f15b25be26f5c26b66ad7b856353d9004fda7cfd77a73201db2",
             "8c8a734bddfe53eec901505d5af78fcf9fef12a93270c98824057ecd4b32b413"),
    },
)


def load_known_answer(path: str) -> KnownAnswer:
    """A known answer from a JSON file (``--known-answer``): either this struct's shape, or a
    reference vector file like ``pos_k20.json`` (its first seed, challenges 0..15)."""
    with open(path, "rb") as handle:
        data = msgspec.json.decode(handle.read())
    if isinstance(data, dict) and "seeds" in data:
        seed = data["seeds"][0]
        return KnownAnswer(
            k=int(data["k"]),
            seed=seed["seed"],
            table_counts=tuple(int(t["count"]) for t in seed["tables"]),
            proof_hashes={int(c["challenge_index"]): tuple(c["proof_hashes"])
                          for c in seed["challenges"] if int(c["challenge_index"]) < 16},
        )
    return msgspec.convert(data, type=KnownAnswer, strict=False)
