"""Multiaddr string <-> bytes (FarmerAppInfo SCALE form carries multiaddr bytes)."""

from __future__ import annotations

import pytest

from services.node.multiaddr import multiaddr_from_bytes, multiaddr_to_bytes

PEER = "12D3KooWEyoppNCUx8Yx66oV9fJnriXwCcXwDDUA2kj6vnc6iDEp"


def test_known_encoding() -> None:
    # /ip4/1.2.3.4/tcp/30533 per the multiaddr table: 0x04 ip4, 0x06 tcp (u16 BE), p2p = 421 varint a503
    data = multiaddr_to_bytes(f"/ip4/1.2.3.4/tcp/30533/p2p/{PEER}")
    assert data[:8].hex() == "0401020304067745"
    assert data[8:10].hex() == "a503"
    assert data[10] == len(data) - 11  # varint length of the multihash


@pytest.mark.parametrize(
    "addr",
    [
        f"/ip4/10.0.0.1/tcp/30533/p2p/{PEER}",
        "/ip6/::1/udp/30533/quic-v1",
        f"/dns/bootstrap-0.mainnet.autonomys.xyz/tcp/30533/p2p/{PEER}",
        "/dns4/example.com/tcp/443/wss",
    ],
)
def test_round_trip(addr: str) -> None:
    assert multiaddr_from_bytes(multiaddr_to_bytes(addr)) == addr


def test_errors_name_the_problem() -> None:
    with pytest.raises(ValueError, match="unsupported multiaddr protocol 'onion3'"):
        multiaddr_to_bytes("/onion3/abc:80")
    with pytest.raises(ValueError, match="must start with"):
        multiaddr_to_bytes("ip4/1.2.3.4")
    with pytest.raises(ValueError, match="truncated"):
        multiaddr_from_bytes(bytes([4, 1, 2]))
