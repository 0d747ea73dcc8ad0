"""sr25519 with a custom signing context, cross-checked against the ``sr25519`` binding
(schnorrkel itself, fixed to the ``substrate`` context) and the Merlin / SHA-3 references."""

from __future__ import annotations

import hashlib

import pytest
import sr25519

from services.protocol.sr25519 import schnorrkel
from services.protocol.sr25519.merlin import Transcript, keccak_f1600
from services.protocol.constants import REWARD_SIGNING_CONTEXT

SEEDS = [bytes([i]) * 32 for i in (0, 1, 7, 255)]


def _sha3_256(message: bytes) -> bytes:
    """SHA3-256 built on our Keccak-f[1600] (rate 136, padding 0x06 ... 0x80)."""
    rate = 136
    padded = bytearray(message + b"\x06" + bytes((-len(message) - 1) % rate))
    padded[-1] |= 0x80
    state = bytearray(200)
    for off in range(0, len(padded), rate):
        for i in range(rate):
            state[i] ^= padded[off + i]
        keccak_f1600(state)
    return bytes(state[:32])


@pytest.mark.parametrize("message", [b"", b"abc", bytes(range(200)), b"x" * 500])
def test_keccak_matches_hashlib_sha3(message: bytes) -> None:
    assert _sha3_256(message) == hashlib.sha3_256(message).digest()


def test_merlin_reference_vector() -> None:
    # merlin crate's own conformance test (``equivalence_simple``).
    t = Transcript(b"test protocol")
    t.append_message(b"some label", b"some data")
    assert t.challenge_bytes(b"challenge", 32).hex() == "d5a21972d0d5fe320c0d263fac7fffb8145aa640af6e9bca177c03c7efcf0615"


@pytest.mark.parametrize("seed", SEEDS)
def test_public_key_matches_binding(seed: bytes) -> None:
    public, secret = sr25519.pair_from_seed(seed)
    assert schnorrkel.public_key_from_secret(secret) == public


@pytest.mark.parametrize("seed", SEEDS)
def test_binding_signatures_verify_with_our_code(seed: bytes) -> None:
    public, secret = sr25519.pair_from_seed(seed)
    for message in (b"", b"hello", bytes(32)):
        sig = sr25519.sign((public, secret), message)
        assert schnorrkel.verify(b"substrate", message, sig, public)
        assert not schnorrkel.verify(REWARD_SIGNING_CONTEXT, message, sig, public)
        assert not schnorrkel.verify(b"substrate", message + b"!", sig, public)


@pytest.mark.parametrize("seed", SEEDS)
def test_our_signatures_verify_with_binding(seed: bytes) -> None:
    public, secret = sr25519.pair_from_seed(seed)
    sig = schnorrkel.sign(b"substrate", b"block hash", public, secret)
    assert len(sig) == 64 and sig[63] & 0x80
    assert sr25519.verify(sig, b"block hash", public)
    reward_sig = schnorrkel.sign(REWARD_SIGNING_CONTEXT, b"block hash", public, secret)
    assert schnorrkel.verify(REWARD_SIGNING_CONTEXT, b"block hash", reward_sig, public)
    # the binding's fixed "substrate" context must not accept a reward signature
    assert not sr25519.verify(reward_sig, b"block hash", public)


def test_wrong_key_or_tampered_signature_is_rejected() -> None:
    public, secret = sr25519.pair_from_seed(SEEDS[1])
    other, _ = sr25519.pair_from_seed(SEEDS[2])
    sig = schnorrkel.sign(REWARD_SIGNING_CONTEXT, b"m", public, secret)
    assert not schnorrkel.verify(REWARD_SIGNING_CONTEXT, b"m", sig, other)
    tampered = bytearray(sig)
    tampered[5] ^= 1
    assert not schnorrkel.verify(REWARD_SIGNING_CONTEXT, b"m", bytes(tampered), public)
    unmarked = bytearray(sig)
    unmarked[63] &= 0x7F
    assert not schnorrkel.verify(REWARD_SIGNING_CONTEXT, b"m", bytes(unmarked), public)
    assert not schnorrkel.verify(REWARD_SIGNING_CONTEXT, b"m", sig[:63], public)
    assert not schnorrkel.verify(REWARD_SIGNING_CONTEXT, b"m", sig, b"\xff" * 32)


def test_bad_key_sizes_raise() -> None:
    public, secret = sr25519.pair_from_seed(SEEDS[0])
    with pytest.raises(ValueError, match="public key must be 32 bytes"):
        schnorrkel.sign(REWARD_SIGNING_CONTEXT, b"m", public[:31], secret)
    with pytest.raises(ValueError, match="secret key must be 64 bytes"):
        schnorrkel.sign(REWARD_SIGNING_CONTEXT, b"m", public, secret[:32])
