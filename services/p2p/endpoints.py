"""``tcp://HOST:PORT`` endpoints: what a listener advertises in its membership record
(``services.bus.membership.Member.endpoints``) and what a client connects to, plus the
loopback rule for listeners without a cluster secret.

    endpoint = advertised_endpoint(server.host, server.port, config.advertise_host)
    # listening on 0.0.0.0 -> "tcp://<this machine's address>:PORT"; on 127.0.0.1 -> itself
    host, port = parse_endpoint("tcp://10.0.0.5:9955")

"This machine's address" for a wildcard listener is the source address the kernel picks for a
route off the machine (a UDP ``connect`` sends no packet), falling back to the host name's
address and then loopback. Give ``--advertise-host`` when that guess is wrong (several NICs, NAT).
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from services.p2p.errors import P2PConfigError

SCHEME = "tcp"
_WILDCARDS = ("0.0.0.0", "::", "")
_PROBE_V4 = ("192.0.2.1", 9)  # TEST-NET-1: only used to ask the kernel for a source address
_PROBE_V6 = ("2001:db8::1", 9)


def format_endpoint(host: str, port: int) -> str:
    return f"{SCHEME}://[{host}]:{port}" if ":" in host else f"{SCHEME}://{host}:{port}"


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    """``(host, port)`` of ``tcp://HOST:PORT`` (``[v6]`` allowed); P2PConfigError otherwise."""
    parts = urlsplit(endpoint.strip()) if isinstance(endpoint, str) else None
    try:
        port = parts.port if parts is not None else None
    except ValueError:
        port = None
    if (parts is None or parts.scheme != SCHEME or not parts.hostname or not port
            or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username):
        raise P2PConfigError(f"invalid data-plane endpoint {endpoint!r}: expected tcp://HOST:PORT")
    return parts.hostname, port


def is_loopback_host(host: str) -> bool:
    """True for loopback IP literals and ``localhost``; names are not resolved."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard_host(host: str) -> bool:
    return host.strip("[]") in _WILDCARDS


def detect_host_address(ipv6: bool = False) -> str:
    """This machine's address for other machines (see the module docstring)."""
    family, probe = (socket.AF_INET6, _PROBE_V6) if ipv6 else (socket.AF_INET, _PROBE_V4)
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect(probe)  # UDP connect: route lookup only, nothing is sent
            address = sock.getsockname()[0]
        if not ipaddress.ip_address(address).is_unspecified:
            return address
    except OSError:
        pass
    try:
        address = socket.gethostbyname(socket.gethostname())
        if not ipv6 and not ipaddress.ip_address(address).is_loopback:
            return address
    except OSError:
        pass
    return "::1" if ipv6 else "127.0.0.1"


def advertised_endpoint(listen_host: str, port: int, advertise_host: str | None = None) -> str:
    """The ``tcp://HOST:PORT`` peers should dial for a listener on ``listen_host:port``:
    ``advertise_host`` when given, the detected address for a wildcard listener, else the
    listen host itself."""
    if advertise_host:
        host = advertise_host.strip("[]")
    elif is_wildcard_host(listen_host):
        host = detect_host_address(ipv6=listen_host.strip("[]") == "::")
    else:
        host = listen_host.strip("[]")
    return format_endpoint(host, port)


def check_listen_host(host: str, secret_set: bool) -> None:
    """A listener off loopback needs a cluster secret (anyone on the network could connect)."""
    if not secret_set and not is_loopback_host(host):
        raise P2PConfigError(
            f"refusing to listen on {host!r} without a cluster secret: give --cluster-secret-file PATH "
            "(or --cluster-secret / AUTONOMYS_CLUSTER_SECRET) or listen on 127.0.0.1")
