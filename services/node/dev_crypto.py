"""KZG and erasure-coding instances for the dev node.

``--kzg-params PATH|mainnet`` loads a real trusted setup (a file in the reference layout, or the
packaged mainnet one, via :mod:`services.kzg_setup`); without it the node uses the INSECURE
known-tau dev setup (fine for a dev chain: it only has to agree with the farmers that use the
same setup, and its commitments cost one scalar multiplication instead of an MSM). Erasure coding uses the reference's scale-16
instance shared by archiving and plotting (spec 01 §8).
"""

from __future__ import annotations

from services.kzg_setup import DEV, load_kzg as load_setup
from services.protocol.erasure import ErasureCoding
from services.protocol.kzg import Kzg

ERASURE_SCALE = 16


def load_kzg(kzg_params: str | None) -> Kzg:
    return load_setup(DEV if kzg_params is None else kzg_params)


def load_erasure() -> ErasureCoding:
    return ErasureCoding(ERASURE_SCALE)
