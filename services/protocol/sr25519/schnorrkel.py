"""sr25519 (schnorrkel) signatures with a caller-chosen signing context.

Subspace reward signatures are schnorrkel signatures under the signing context
``b"subspace_reward"`` (spec 05 §3, spec 01 §6). The ``sr25519`` binding on PyPI only signs and
verifies under the fixed ``b"substrate"`` context, so signing and verification are implemented
here over :mod:`services.protocol.sr25519.merlin` and :mod:`services.protocol.sr25519.ristretto255`. Keys are
interchangeable with that binding: public key = 32-byte ristretto255 point, secret key =
32-byte little-endian scalar ‖ 32-byte nonce (what ``sr25519.pair_from_seed`` returns).
"""

from __future__ import annotations

import hashlib
import os

from services.protocol.sr25519 import ristretto255 as rist
from services.protocol.sr25519.merlin import Transcript
from services.protocol.validation import check_bytes

SIGNATURE_SIZE = 64
PUBLIC_KEY_SIZE = 32
SECRET_KEY_SIZE = 64


def _signing_transcript(context: bytes, message: bytes) -> Transcript:
    t = Transcript(b"SigningContext")
    t.append_message(b"", context)
    t.append_message(b"sign-bytes", message)
    t.append_message(b"proto-name", b"Schnorr-sig")
    return t


def public_key_from_secret(secret_key: bytes) -> bytes:
    secret_key = check_bytes(secret_key, SECRET_KEY_SIZE, "sr25519 secret key")
    key = int.from_bytes(secret_key[:32], "little")
    return rist.encode(rist.scalar_mult(key, rist.BASEPOINT))


def sign(context: bytes, message: bytes, public_key: bytes, secret_key: bytes) -> bytes:
    """A 64-byte schnorrkel signature ``R ‖ s`` (high bit of byte 63 set) of ``message``."""
    public_key = check_bytes(public_key, PUBLIC_KEY_SIZE, "sr25519 public key")
    secret_key = check_bytes(secret_key, SECRET_KEY_SIZE, "sr25519 secret key")
    key = int.from_bytes(secret_key[:32], "little") % rist.L
    nonce_seed = secret_key[32:]
    t = _signing_transcript(context, message)
    t.append_message(b"sign:pk", public_key)
    # Witness scalar: schnorrkel mixes the secret nonce, the transcript and fresh randomness;
    # any uniformly random r gives a valid signature.
    r = int.from_bytes(hashlib.sha512(nonce_seed + message + os.urandom(32)).digest(), "little") % rist.L
    big_r = rist.encode(rist.scalar_mult(r, rist.BASEPOINT))
    t.append_message(b"sign:R", big_r)
    k = int.from_bytes(t.challenge_bytes(b"sign:c", 64), "little") % rist.L
    s = (k * key + r) % rist.L
    sig = bytearray(big_r + s.to_bytes(32, "little"))
    sig[63] |= 0x80
    return bytes(sig)


def verify(context: bytes, message: bytes, signature: bytes, public_key: bytes) -> bool:
    """True iff ``signature`` is a valid schnorrkel signature of ``message`` under ``context``.

    Malformed inputs (wrong lengths, missing schnorrkel marker bit, non-canonical scalar or
    points) verify as False.
    """
    if len(signature) != SIGNATURE_SIZE or len(public_key) != PUBLIC_KEY_SIZE:
        return False
    if not signature[63] & 0x80:
        return False
    s_bytes = bytearray(signature[32:])
    s_bytes[31] &= 0x7F
    s = int.from_bytes(s_bytes, "little")
    if s >= rist.L:
        return False
    try:
        a = rist.decode(bytes(public_key))
        rist.decode(bytes(signature[:32]))
    except ValueError:
        return False
    t = _signing_transcript(context, message)
    t.append_message(b"sign:pk", bytes(public_key))
    t.append_message(b"sign:R", bytes(signature[:32]))
    k = int.from_bytes(t.challenge_bytes(b"sign:c", 64), "little") % rist.L
    expected_r = rist.add(rist.scalar_mult(s, rist.BASEPOINT), rist.negate(rist.scalar_mult(k, a)))
    return rist.encode(expected_r) == bytes(signature[:32])
