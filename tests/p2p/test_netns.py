"""Server and client on two machines, as far as one host allows: two network namespaces made by
the test, joined by a veth pair with 10.213.7.0/24 addresses that exist only inside them. The
server listens on 0.0.0.0 with a cluster secret and advertises its veth address; the client in
the other namespace fetches pieces over it; a wrong secret is refused; without a secret the
server will not bind the namespace address."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PEER = str(HERE / "p2p_netns_peer.py")
SERVER_ADDR, CLIENT_ADDR = "10.213.7.1", "10.213.7.2"


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


def _netns_available() -> str | None:
    if shutil.which("ip") is None:
        return "the 'ip' tool (iproute2) is not installed"
    if os.geteuid() != 0:
        return "creating network namespaces needs root"
    probe = f"p2pprobe{os.getpid()}"
    try:
        _ip("netns", "add", probe)
    except (subprocess.CalledProcessError, OSError) as exc:
        return f"'ip netns add' does not work here: {getattr(exc, 'stderr', b'') or exc}"
    _ip("netns", "del", probe)
    return None


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _in_ns(ns: str, *args: str) -> list[str]:
    return ["ip", "netns", "exec", ns, sys.executable, PEER, *args]


def test_fetch_across_network_namespaces(tmp_path):
    reason = _netns_available()
    if reason:
        pytest.skip(f"network namespaces unavailable: {reason}")
    tag = os.getpid() % 100000
    server_ns, client_ns = f"p2ps{tag}", f"p2pc{tag}"
    secret_file = tmp_path / "secret"
    secret_file.write_text(f"netns-secret-{random.Random(tag).getrandbits(64):x}\n")
    secret_file.chmod(0o600)
    wrong_file = tmp_path / "wrong"
    wrong_file.write_text("a-different-secret-0123456789\n")
    wrong_file.chmod(0o600)
    seed = 4242
    server = None
    try:
        _ip("netns", "add", server_ns)
        _ip("netns", "add", client_ns)
        _ip("link", "add", f"p2pa{tag}", "type", "veth", "peer", "name", f"p2pb{tag}")
        _ip("link", "set", f"p2pa{tag}", "netns", server_ns)
        _ip("link", "set", f"p2pb{tag}", "netns", client_ns)
        for ns, dev, addr in ((server_ns, f"p2pa{tag}", SERVER_ADDR), (client_ns, f"p2pb{tag}", CLIENT_ADDR)):
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("-n", server_ns, "route", "add", "default", "via", CLIENT_ADDR)  # lets it find its own address

        refused = subprocess.run(_in_ns(server_ns, "serve", "--host", SERVER_ADDR, "--no-secret"),
                                 input="", capture_output=True, text=True, cwd=REPO, env=_env(), timeout=60)
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines()[-1].startswith("error: P2PConfigError: refusing to listen on")

        server = subprocess.Popen(_in_ns(server_ns, "serve", "--host", "0.0.0.0", "--secret-file", str(secret_file),
                                         "--pieces", "16", "--seed", str(seed)),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO, env=_env())
        endpoint = server.stdout.readline().strip()  # type: ignore[union-attr]
        assert endpoint.startswith(f"tcp://{SERVER_ADDR}:"), endpoint  # advertised: the veth address

        fetched = subprocess.run(_in_ns(client_ns, "fetch", "--endpoint", endpoint, "--secret-file", str(secret_file),
                                        "--pieces", "16", "--seed", str(seed)),
                                 capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120)
        assert fetched.returncode == 0, fetched.stderr
        summary = json.loads(fetched.stdout)
        assert summary == {"received": 16, "intact": 16, "missing": [1 << 50], "corrupt": []}

        wrong = subprocess.run(_in_ns(client_ns, "fetch", "--endpoint", endpoint, "--secret-file", str(wrong_file),
                                      "--pieces", "16", "--seed", str(seed)),
                               capture_output=True, text=True, cwd=REPO, env=_env(), timeout=120)
        assert wrong.returncode == 1
        assert wrong.stderr.strip().splitlines()[-1].startswith("error: HandshakeError:")
    finally:
        if server is not None:
            server.stdin.close()  # type: ignore[union-attr]
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        for ns in (server_ns, client_ns):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
