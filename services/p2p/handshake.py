"""Cluster-secret handshake: both ends prove they hold the shared secret before any frame.

Never trust a peer: the data plane listens on machine addresses, so a connection is admitted only
after a challenge in both directions (pure functions here; the connections drive them)::

    server -> client  SERVER_HELLO  magic "AUTP2P", version u16, server nonce (32 random bytes),
                                    max_in_flight u32, max_request_size u32        (48 bytes)
    client -> server  CLIENT_HELLO  magic, version, client nonce (32),
                                    HMAC-SHA256(secret, "client" | SERVER_HELLO | client nonce)
                                                                                   (72 bytes)
    server -> client  SERVER_PROOF  HMAC-SHA256(secret, "server" | SERVER_HELLO | client nonce)
                                                                                   (32 bytes)

Each side compares the other's MAC in constant time (``hmac.compare_digest``) and closes the
connection on a mismatch. Fresh nonces on both sides stop replays; the role labels stop a proof
being reflected back; the server's advertised limits are covered by both MACs. Without a secret
the key is empty: the handshake still checks the protocol, and the configuration only allows
loopback listeners then.

What this does not do: encrypt or MAC the frames after the handshake. It decides who may
connect; payload integrity is the per-item BLAKE3 digest (accidents and lying servers), and
protocol data is verified by its users (pieces against segment commitments).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct

import msgspec

from services.p2p.errors import HandshakeError

MAGIC = b"AUTP2P"
VERSION = 1
NONCE_SIZE = 32
MAC_SIZE = 32
SERVER_HELLO = struct.Struct("<6sH32sII")
CLIENT_HELLO = struct.Struct("<6sH32s32s")
SERVER_HELLO_SIZE = SERVER_HELLO.size  # 48
CLIENT_HELLO_SIZE = CLIENT_HELLO.size  # 72
SERVER_PROOF_SIZE = MAC_SIZE


class ServerHello(msgspec.Struct, frozen=True):
    nonce: bytes
    max_in_flight: int
    max_request_size: int
    raw: bytes  # the exact bytes, covered by both MACs


def new_nonce() -> bytes:
    return os.urandom(NONCE_SIZE)


def server_hello(nonce: bytes, max_in_flight: int, max_request_size: int) -> bytes:
    return SERVER_HELLO.pack(MAGIC, VERSION, nonce, max_in_flight, max_request_size)


def _check_preamble(magic: bytes, version: int, what: str) -> None:
    if magic != MAGIC:
        raise HandshakeError(f"{what} is not an autonomys data-plane hello (bad magic)")
    if version != VERSION:
        raise HandshakeError(f"{what} speaks data-plane version {version}, this side {VERSION}")


def parse_server_hello(data: bytes) -> ServerHello:
    magic, version, nonce, max_in_flight, max_request_size = SERVER_HELLO.unpack(data)
    _check_preamble(magic, version, "server hello")
    if max_in_flight < 1 or max_request_size < 1:
        raise HandshakeError("server hello advertises zero limits")
    return ServerHello(nonce=nonce, max_in_flight=max_in_flight, max_request_size=max_request_size, raw=bytes(data))


def _mac(key: bytes, label: bytes, hello: bytes, client_nonce: bytes) -> bytes:
    return hmac.new(key, label + hello + client_nonce, hashlib.sha256).digest()


def client_hello(key: bytes, hello: ServerHello, client_nonce: bytes) -> bytes:
    return CLIENT_HELLO.pack(MAGIC, VERSION, client_nonce, _mac(key, b"client", hello.raw, client_nonce))


def verify_client_hello(key: bytes, hello_raw: bytes, data: bytes) -> bytes:
    """The client's nonce when its MAC proves ``key``; HandshakeError otherwise."""
    magic, version, client_nonce, mac = CLIENT_HELLO.unpack(data)
    _check_preamble(magic, version, "client hello")
    if not hmac.compare_digest(mac, _mac(key, b"client", hello_raw, client_nonce)):
        raise HandshakeError("client did not prove the cluster secret")
    return client_nonce


def server_proof(key: bytes, hello_raw: bytes, client_nonce: bytes) -> bytes:
    return _mac(key, b"server", hello_raw, client_nonce)


def verify_server_proof(key: bytes, hello: ServerHello, client_nonce: bytes, proof: bytes) -> None:
    if not hmac.compare_digest(bytes(proof), server_proof(key, hello.raw, client_nonce)):
        raise HandshakeError("server did not prove the cluster secret")
