"""tcp:// endpoints, the advertised address and the loopback rule."""

from __future__ import annotations

import ipaddress

import pytest

from services.p2p import P2PConfigError, advertised_endpoint, check_listen_host, format_endpoint, parse_endpoint
from services.p2p.endpoints import detect_host_address, is_loopback_host


def test_round_trip():
    assert parse_endpoint("tcp://10.0.0.5:9955") == ("10.0.0.5", 9955)
    assert parse_endpoint(format_endpoint("::1", 80)) == ("::1", 80)
    assert format_endpoint("::1", 80) == "tcp://[::1]:80"
    assert parse_endpoint("tcp://cache-1.lan:9955/") == ("cache-1.lan", 9955)


@pytest.mark.parametrize("bad", ["10.0.0.5:9955", "nats://h:1", "tcp://h", "tcp://h:0", "tcp://h:99999",
                                 "tcp://h:1/x", "tcp://u@h:1", "", "tcp://:5"])
def test_bad_endpoints(bad):
    with pytest.raises(P2PConfigError, match="tcp://HOST:PORT"):
        parse_endpoint(bad)


def test_advertised():
    assert advertised_endpoint("127.0.0.1", 9955) == "tcp://127.0.0.1:9955"
    assert advertised_endpoint("0.0.0.0", 9955, "cache-1.lan") == "tcp://cache-1.lan:9955"
    host, port = parse_endpoint(advertised_endpoint("0.0.0.0", 9955))
    assert port == 9955 and not ipaddress.ip_address(host).is_unspecified
    assert host == detect_host_address()


def test_loopback_rule():
    for host in ("127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"):
        assert is_loopback_host(host)
        check_listen_host(host, secret_set=False)
    for host in ("0.0.0.0", "::", "10.0.0.5", "cache-1.lan"):
        assert not is_loopback_host(host)
        with pytest.raises(P2PConfigError, match="without a cluster secret"):
            check_listen_host(host, secret_set=False)
        check_listen_host(host, secret_set=True)
