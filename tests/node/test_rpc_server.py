"""The JSON-RPC server's unsafe gate as the reference node answers it over a safe connection:
an unsafe method gets Substrate's ``-32601 "RPC call is unsafe to be called externally"``, an
unsafe subscription jsonrpsee's ``-32603 "Internal error"`` (the reference handler drops the
pending subscription; seen from the official ``subspace-farmer``), and nothing is ever sent on
a refused subscription. Over an unsafe connection both work."""

from __future__ import annotations

import asyncio
import json

import websockets

from services.node.rpc_server import RpcServer


async def _server(unsafe_allowed: bool) -> RpcServer:
    server = RpcServer("127.0.0.1", 0, unsafe_allowed)

    async def echo(params, conn):  # noqa: ANN001, ANN202
        return params

    server.method("test_unsafeMethod", echo, unsafe=True)
    server.method("test_safeMethod", echo)
    server.subscription("test_subscribeUnsafe", "test_unsubscribeUnsafe", "test_unsafe_notification", unsafe=True)
    server.subscription("test_subscribeSafe", "test_unsubscribeSafe", "test_safe_notification")
    await server.start()
    return server


async def _request(ws, request_id: int, method: str, params: list | None = None) -> dict:
    await ws.send(json.dumps({"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or []}))
    return json.loads(await asyncio.wait_for(ws.recv(), 10))


async def test_unsafe_subscription_over_a_safe_connection_is_an_internal_error() -> None:
    server = await _server(unsafe_allowed=False)
    try:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}") as ws:
            reply = await _request(ws, 1, "test_subscribeUnsafe")
            assert reply == {"jsonrpc": "2.0", "id": 1, "error": {"code": -32603, "message": "Internal error"}}
            # extra params change nothing: the reference returns before looking at them
            reply = await _request(ws, 2, "test_subscribeUnsafe", [1])
            assert reply["error"] == {"code": -32603, "message": "Internal error"}
            reply = await _request(ws, 3, "test_unsafeMethod", [1])
            assert reply == {"jsonrpc": "2.0", "id": 3,
                             "error": {"code": -32601, "message": "RPC call is unsafe to be called externally"}}
            assert server.live("test_unsafe_notification") == []
            assert await server.broadcast("test_unsafe_notification", {"x": 1}) == 0
            safe_id = (await _request(ws, 4, "test_subscribeSafe"))["result"]
            assert isinstance(safe_id, str) and len(safe_id) == 16
            assert await server.broadcast("test_safe_notification", 7) == 1
            note = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert note == {"jsonrpc": "2.0", "method": "test_safe_notification",
                            "params": {"subscription": safe_id, "result": 7}}
            # the refused subscription never produced a notification: the next frame is a reply
            assert (await _request(ws, 5, "test_safeMethod", ["ok"])) == {"jsonrpc": "2.0", "id": 5, "result": ["ok"]}
    finally:
        await server.stop()


async def test_unsafe_subscription_and_method_over_an_unsafe_connection() -> None:
    server = await _server(unsafe_allowed=True)
    try:
        async with websockets.connect(f"ws://127.0.0.1:{server.port}") as ws:
            sub_id = (await _request(ws, 1, "test_subscribeUnsafe"))["result"]
            assert isinstance(sub_id, str) and len(sub_id) == 16
            assert (await _request(ws, 2, "test_unsafeMethod", [3]))["result"] == [3]
            assert await server.broadcast("test_unsafe_notification", "n") == 1
            note = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert note["params"] == {"subscription": sub_id, "result": "n"}
            assert (await _request(ws, 3, "test_unsubscribeUnsafe", [sub_id]))["result"] is True
            assert (await _request(ws, 4, "test_unsubscribeUnsafe", [sub_id]))["result"] is False
    finally:
        await server.stop()
