"""NodeRpcClient against a real WebSocket JSON-RPC server (our RpcServer, in process):
calls, errors, subscriptions as async iterators, reconnect with re-subscription."""

from __future__ import annotations

import asyncio

import pytest

from services.node.rpc_client import NodeRpcClient, RpcConnectionError, RpcError
from services.node.rpc_server import RpcServer, RpcServerError, positional
from services.node.rpc_types import SlotInfo


async def _start_server(port: int = 0, unsafe: bool = True) -> RpcServer:
    server = RpcServer("127.0.0.1", port, unsafe)

    async def echo(params, conn):
        return params

    async def fail(params, conn):
        raise RpcServerError(9001, "Solution was ignored")

    async def unsafe_method(params, conn):
        positional(params, 0, "unsafe_method")
        return "ok"

    server.method("echo", echo)
    server.method("fail", fail)
    server.method("unsafe_method", unsafe_method, unsafe=True)
    server.subscription("subspace_subscribeSlotInfo", "subspace_unsubscribeSlotInfo", "subspace_slot_info")
    await server.start()
    return server


def _slot(n: int) -> dict:
    return SlotInfo(n, bytes([n % 256]) * 32, 1 << 63, (1 << 64) - 1).to_json()


async def _wait_subscribers(server: RpcServer, count: int) -> None:
    for _ in range(200):
        if len(server.live("subspace_slot_info")) >= count:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("subscriber did not appear")


async def test_calls_errors_and_unsafe_gate() -> None:
    server = await _start_server(unsafe=False)
    client = await NodeRpcClient(f"ws://127.0.0.1:{server.port}", request_timeout_s=5).connect()
    try:
        assert await client.call("echo", [1, "x", [2]]) == [1, "x", [2]]
        big = (1 << 64) - 1
        assert await client.call("echo", [big]) == [big]
        with pytest.raises(RpcError) as err:
            await client.call("fail")
        assert err.value.code == 9001 and err.value.message == "Solution was ignored"
        with pytest.raises(RpcError) as err:
            await client.call("unsafe_method")
        assert err.value.code == -32601 and err.value.message == "RPC call is unsafe to be called externally"
        with pytest.raises(RpcError) as err:
            await client.call("no_such_method")
        assert err.value.code == -32601 and err.value.message == "Method not found"
    finally:
        await client.close()
        await server.stop()


async def test_subscription_iterates_and_unsubscribes() -> None:
    server = await _start_server()
    client = await NodeRpcClient(f"ws://127.0.0.1:{server.port}", request_timeout_s=5).connect()
    try:
        sub = await client.subscribe_slot_info()
        assert isinstance(sub.id, str) and len(sub.id) == 16
        await _wait_subscribers(server, 1)
        for n in (5, 6, 7):
            assert await server.broadcast("subspace_slot_info", _slot(n)) == 1
        got = [await sub.next(timeout=5) for _ in range(3)]
        assert [s.slot_number for s in got] == [5, 6, 7]
        assert got[0] == SlotInfo.from_json(_slot(5))
        await sub.close()
        assert server.live("subspace_slot_info") == []
        with pytest.raises(StopAsyncIteration):
            await sub.__anext__()
    finally:
        await client.close()
        await server.stop()


async def test_reconnects_and_resubscribes() -> None:
    server = await _start_server()
    port = server.port
    client = await NodeRpcClient(
        f"ws://127.0.0.1:{port}", request_timeout_s=5, reconnect_initial_delay_s=0.05, reconnect_max_delay_s=0.2
    ).connect()
    try:
        sub = await client.subscribe_slot_info()
        await _wait_subscribers(server, 1)
        await server.broadcast("subspace_slot_info", _slot(1))
        assert (await sub.next(timeout=5)).slot_number == 1
        first_id = sub.id
        await server.stop()
        for _ in range(100):
            if not client.connected:
                break
            await asyncio.sleep(0.02)
        with pytest.raises(RpcConnectionError):
            await client.call("echo", [1])
        server = await _start_server(port)
        await client.wait_connected(timeout=10)
        await _wait_subscribers(server, 1)
        assert client.reconnects == 1 and sub.id != first_id
        await server.broadcast("subspace_slot_info", _slot(2))
        assert (await sub.next(timeout=5)).slot_number == 2
        assert await client.call("echo", [3]) == [3]
    finally:
        await client.close()
        await server.stop()


async def test_connect_failure_is_clear() -> None:
    server = await _start_server()
    port = server.port
    await server.stop()
    with pytest.raises(RpcConnectionError, match=f"cannot connect to node RPC ws://127.0.0.1:{port}"):
        await NodeRpcClient(f"ws://127.0.0.1:{port}", request_timeout_s=2).connect()


async def test_typed_argument_checks() -> None:
    server = await _start_server()
    client = await NodeRpcClient(f"ws://127.0.0.1:{server.port}", request_timeout_s=5).connect()
    try:
        with pytest.raises(ValueError, match="at most 1000 segment indices"):
            await client.segment_headers(list(range(1001)))
        with pytest.raises(ValueError, match="segment index out of range"):
            await client.segment_headers([-1])
        with pytest.raises(ValueError, match="piece index must be an integer"):
            await client.piece("7")  # type: ignore[arg-type]
    finally:
        await client.close()
        await server.stop()
