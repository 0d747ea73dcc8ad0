"""Minimal libp2p multiaddr string <-> binary conversion.

``FarmerAppInfo.dsnBootstrapNodes`` is a list of multiaddr strings in JSON but multiaddr *bytes*
in its SCALE form (spec 05 §4), which the controller sends over NATS. Only the protocols that
appear in bootstrap addresses are supported; anything else is a ValueError naming it.
"""

from __future__ import annotations

import ipaddress

import base58


# name -> (code, kind); kind: fixed byte size, "str" (length-prefixed utf-8), "p2p", or 0 (no value)
_PROTOCOLS: dict[str, tuple[int, object]] = {
    "ip4": (4, 4),
    "tcp": (6, 2),
    "udp": (273, 2),
    "ip6": (41, 16),
    "dns": (53, "str"),
    "dns4": (54, "str"),
    "dns6": (55, "str"),
    "dnsaddr": (56, "str"),
    "p2p": (421, "p2p"),
    "p2p-circuit": (290, 0),
    "quic": (460, 0),
    "quic-v1": (461, 0),
    "ws": (477, 0),
    "wss": (478, 0),
}
_BY_CODE = {code: (name, kind) for name, (code, kind) in _PROTOCOLS.items()}


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise ValueError("truncated varint in multiaddr bytes")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def multiaddr_to_bytes(addr: str) -> bytes:
    parts = addr.split("/")
    if len(parts) < 2 or parts[0] != "":
        raise ValueError(f"multiaddr {addr!r} must start with '/'")
    out = bytearray()
    i = 1
    while i < len(parts):
        name = parts[i]
        if name not in _PROTOCOLS:
            raise ValueError(f"unsupported multiaddr protocol {name!r} in {addr!r}")
        code, kind = _PROTOCOLS[name]
        out += _varint(code)
        i += 1
        if kind == 0:
            continue
        if i >= len(parts):
            raise ValueError(f"multiaddr {addr!r}: protocol {name!r} needs a value")
        value = parts[i]
        i += 1
        if name == "ip4":
            out += ipaddress.IPv4Address(value).packed
        elif name == "ip6":
            out += ipaddress.IPv6Address(value).packed
        elif kind == 2:
            port = int(value)
            if not 0 <= port <= 65535:
                raise ValueError(f"multiaddr {addr!r}: bad port {value!r}")
            out += port.to_bytes(2, "big")
        elif kind == "str":
            raw = value.encode()
            out += _varint(len(raw)) + raw
        else:  # p2p: base58 multihash
            try:
                raw = base58.b58decode(value)
            except ValueError as exc:
                raise ValueError(f"invalid base58 in peer id {value!r}: {exc}") from None
            out += _varint(len(raw)) + raw
    return bytes(out)


def multiaddr_from_bytes(data: bytes) -> str:
    pos = 0
    parts: list[str] = []
    while pos < len(data):
        code, pos = _read_varint(data, pos)
        if code not in _BY_CODE:
            raise ValueError(f"unsupported multiaddr protocol code {code}")
        name, kind = _BY_CODE[code]
        parts.append(name)
        if kind == 0:
            continue
        if isinstance(kind, int):
            if pos + kind > len(data):
                raise ValueError(f"truncated {name} value in multiaddr bytes")
            raw = data[pos : pos + kind]
            pos += kind
            if name == "ip4":
                parts.append(str(ipaddress.IPv4Address(raw)))
            elif name == "ip6":
                parts.append(str(ipaddress.IPv6Address(raw)))
            else:
                parts.append(str(int.from_bytes(raw, "big")))
        else:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise ValueError(f"truncated {name} value in multiaddr bytes")
            raw = data[pos : pos + length]
            pos += length
            parts.append(raw.decode() if kind == "str" else base58.b58encode(raw).decode())
    return "/" + "/".join(parts)
