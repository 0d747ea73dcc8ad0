"""TCP data plane metrics read the p2p layer's own counters at scrape time: bytes moved both
ways by kind, open connections, handshake failures (a wrong cluster secret) and transfer errors,
over a real PeerServer / PeerClient on loopback."""

from __future__ import annotations

import asyncio
import os

import pytest

from services.metrics import DaemonMetrics
from services.p2p import BulkItem, HandshakeError, KeyedBuffers, PeerClient, PeerError, PeerServer, Request

async def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


SECRET = b"tcp-metrics-test-secret-0123456789"
PAYLOAD = 64 * 1024


class Chunks(Request):
    method = "test.chunks"
    bulk = True
    keys: list[int]

    def expected_keys(self) -> list[int]:
        return self.keys


async def test_bytes_connections_and_failures_by_kind():
    data = {key: os.urandom(PAYLOAD) for key in range(4)}
    server = PeerServer(SECRET, name="sector-server")
    server.route(Chunks, lambda request: (BulkItem(key, data[key]) for key in request.keys))
    await server.start("127.0.0.1", 0)
    client = PeerClient(SECRET, name="sector-client")
    metrics = DaemonMetrics("plot-server")
    metrics.tcp.watch("sector", server)
    metrics.tcp.watch("piece", client)
    value = metrics.registry.get_sample_value
    try:
        endpoint = server.endpoint("127.0.0.1")
        buffers = {key: bytearray(PAYLOAD) for key in data}
        result = await client.fetch(endpoint, Chunks(keys=list(data)), into=KeyedBuffers(buffers), timeout=30)
        assert sorted(result.received) == list(data)
        assert value("subspace_farmer_tcp_sent_bytes_total", {"kind": "sector"}) >= 4 * PAYLOAD
        assert value("subspace_farmer_tcp_received_bytes_total", {"kind": "piece"}) >= 4 * PAYLOAD
        assert value("subspace_farmer_tcp_connections", {"kind": "sector"}) == 1
        assert value("subspace_farmer_tcp_connections", {"kind": "piece"}) == 1
        assert value("subspace_farmer_tcp_handshake_failures_total", {"kind": "sector"}) == 0

        intruder = PeerClient(b"not-the-cluster-secret-0123456789")
        with pytest.raises((HandshakeError, PeerError)):
            await intruder.fetch(endpoint, Chunks(keys=[0]), into=KeyedBuffers({0: bytearray(PAYLOAD)}), timeout=10)
        await intruder.close()
        # the server counts the refused handshake once it has read it
        await wait_until(lambda: value("subspace_farmer_tcp_handshake_failures_total", {"kind": "sector"}) == 1,
                         "the handshake failure counted")
        assert value("subspace_farmer_tcp_transfer_errors_total", {"kind": "sector"}) == 0
    finally:
        await client.close()
        await server.stop()
    await wait_until(lambda: value("subspace_farmer_tcp_connections", {"kind": "sector"}) == 0,
                     "closed connections to leave the gauge")


def test_unknown_kind_is_refused():
    with pytest.raises(ValueError, match="tcp kind 'disk'"):
        DaemonMetrics("x").tcp.watch("disk", object())
