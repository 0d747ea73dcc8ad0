"""Bus instrumentation against a real nats-server: request latency, errors by kind and message
type, handled / failed counts and publishes, in the daemon's registry."""

from __future__ import annotations

import msgspec
import pytest

from services.bus import Bus, Message, NoResponders, RemoteError
from services.metrics import DaemonMetrics

pytestmark = pytest.mark.integration


class Echo(msgspec.Struct):
    value: int


class EchoRequest(Message):
    subject = "test.metrics.echo"
    response = Echo
    value: int


class Items(Message):
    subject = "test.metrics.items"
    response = Echo
    stream = True
    count: int


class Nobody(Message):
    subject = "test.metrics.nobody"
    response = Echo


class Ping(Message):
    subject = "test.metrics.ping"
    n: int


async def test_request_latency_and_errors_by_message_type(nats_server):
    server_metrics, client_metrics = DaemonMetrics("server"), DaemonMetrics("client")
    server = await Bus.connect([nats_server.url], name="metrics-server", metrics=server_metrics.bus)
    client = await Bus.connect([nats_server.url], name="metrics-client", metrics=client_metrics.bus)
    try:
        def echo(msg: EchoRequest) -> Echo:
            if msg.value < 0:
                raise ValueError("negative")
            return Echo(msg.value)

        await server.serve(EchoRequest, echo)
        await server.serve(Items, lambda msg: (Echo(i) for i in range(msg.count)))
        for value in range(5):
            assert (await client.request(EchoRequest(value=value), timeout=5, retries=0)).value == value
        with pytest.raises(RemoteError):
            await client.request(EchoRequest(value=-1), timeout=5, retries=0)
        with pytest.raises(NoResponders):
            await client.request(Nobody(), timeout=2, retries=1, initial_backoff=0.01)
        assert [item.value async for item in client.stream_request(Items(count=3), timeout=5)] == [0, 1, 2]
        await client.publish(Ping(n=1))
        assert client_metrics.registry.get_sample_value("subspace_farmer_bus_connected") == 1
    finally:
        await client.close()
        await server.close()
    client_value, server_value = client_metrics.registry.get_sample_value, server_metrics.registry.get_sample_value
    assert client_value("subspace_farmer_bus_request_time_seconds_count", {"message": "EchoRequest"}) == 5
    assert client_value("subspace_farmer_bus_request_time_seconds_sum", {"message": "EchoRequest"}) > 0
    assert client_value("subspace_farmer_bus_request_errors_total", {"message": "EchoRequest", "error": "remote"}) == 1
    assert client_value("subspace_farmer_bus_request_errors_total",
                        {"message": "Nobody", "error": "no_responders"}) == 1  # one failure after the retry
    assert client_value("subspace_farmer_bus_request_time_seconds_count", {"message": "Items"}) == 1
    assert client_value("subspace_farmer_bus_published_total", {"message": "Ping"}) == 1
    assert server_value("subspace_farmer_bus_handled_total", {"message": "EchoRequest"}) == 5
    assert server_value("subspace_farmer_bus_handler_errors_total", {"message": "EchoRequest"}) == 1
    assert server_value("subspace_farmer_bus_handled_total", {"message": "Items"}) == 1
    assert client_value("subspace_farmer_bus_connected") == 0  # closed
