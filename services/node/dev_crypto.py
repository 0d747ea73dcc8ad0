"""KZG and erasure-coding instances for the dev node.

``--kzg-params PATH`` loads a real trusted setup (e.g. the mainnet ``eth-public-parameters.bin``);
without it the node uses the INSECURE known-tau dev setup (fine for a dev chain: it only has to
agree with the farmers that use the same setup). Erasure coding uses the reference's scale-16
instance shared by archiving and plotting (spec 01 §8).
"""

from __future__ import annotations

from services.protocol.erasure import ErasureCoding
from services.protocol.kzg import Kzg

ERASURE_SCALE = 16


def load_kzg(kzg_params: str | None) -> Kzg:
    return Kzg.dev() if kzg_params is None else Kzg.from_file(kzg_params)


def load_erasure() -> ErasureCoding:
    return ErasureCoding(ERASURE_SCALE)
