"""The HMAC challenge: both proofs check, a wrong key fails both ways, a reflected or replayed
proof fails, a tampered hello fails."""

from __future__ import annotations

import pytest

from services.p2p import HandshakeError
from services.p2p.handshake import (
    CLIENT_HELLO_SIZE,
    SERVER_HELLO_SIZE,
    client_hello,
    new_nonce,
    parse_server_hello,
    server_hello,
    server_proof,
    verify_client_hello,
    verify_server_proof,
)

KEY = b"k" * 32


def _hello(max_in_flight: int = 64) -> tuple[bytes, object]:
    raw = server_hello(new_nonce(), max_in_flight, 1 << 20)
    assert len(raw) == SERVER_HELLO_SIZE
    return raw, parse_server_hello(raw)


def test_mutual_proof():
    raw, hello = _hello()
    nonce = new_nonce()
    message = client_hello(KEY, hello, nonce)
    assert len(message) == CLIENT_HELLO_SIZE
    assert verify_client_hello(KEY, raw, message) == nonce
    verify_server_proof(KEY, hello, nonce, server_proof(KEY, raw, nonce))


def test_wrong_key_fails_both_directions():
    raw, hello = _hello()
    nonce = new_nonce()
    with pytest.raises(HandshakeError, match="client did not prove"):
        verify_client_hello(KEY, raw, client_hello(b"other", hello, nonce))
    with pytest.raises(HandshakeError, match="server did not prove"):
        verify_server_proof(KEY, hello, nonce, server_proof(b"other", raw, nonce))


def test_empty_key_is_not_a_wildcard():
    raw, hello = _hello()
    nonce = new_nonce()
    with pytest.raises(HandshakeError):
        verify_client_hello(KEY, raw, client_hello(b"", hello, nonce))


def test_client_proof_cannot_be_reflected_as_server_proof():
    raw, hello = _hello()
    nonce = new_nonce()
    client_mac = client_hello(KEY, hello, nonce)[-32:]
    with pytest.raises(HandshakeError):
        verify_server_proof(KEY, hello, nonce, client_mac)


def test_replayed_client_hello_fails_for_a_new_server_nonce():
    raw, hello = _hello()
    message = client_hello(KEY, hello, new_nonce())
    raw2, _ = _hello()
    with pytest.raises(HandshakeError):
        verify_client_hello(KEY, raw2, message)


def test_tampered_limits_break_the_proof():
    raw, hello = _hello(max_in_flight=64)
    nonce = new_nonce()
    forged = parse_server_hello(raw[:40] + (1000).to_bytes(4, "little") + raw[44:])
    with pytest.raises(HandshakeError):
        verify_client_hello(KEY, raw, client_hello(KEY, forged, nonce))


@pytest.mark.parametrize("data", [b"GET / HTTP/1.1\r\n" + b"x" * 32, b"AUTP2P\x02\x00" + b"\x00" * 40])
def test_bad_magic_or_version(data):
    with pytest.raises(HandshakeError):
        parse_server_hello(data[:SERVER_HELLO_SIZE])
