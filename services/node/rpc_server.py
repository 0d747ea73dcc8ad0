"""A small JSON-RPC 2.0 server over WebSockets with jsonrpsee-style subscriptions.

The dev node exposes the node's farmer RPC (spec 05) through this server. It reproduces what a
farmer can observe of Substrate's jsonrpsee server: positional params, subscription ids as
random 16-character strings, notifications ``{"jsonrpc":"2.0","method":<notification>,
"params":{"subscription":<id>,"result":<value>}}``, unsubscribe returning ``true``/``false``,
and the unsafe gate: an unsafe *method* over a safe connection is answered with Substrate's
``-32601 "RPC call is unsafe to be called externally"``; an unsafe *subscription* is answered
with ``-32603 "Internal error"``, which is what the reference node sends (its handler returns
without accepting the pending subscription, and jsonrpsee answers a dropped pending
subscription with the JSON-RPC internal-error object; observed with the official
``subspace-farmer`` over a safe connection).
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import string
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import structlog
import websockets
from websockets.asyncio.server import ServerConnection, serve

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
UNSAFE_RPC_MESSAGE = "RPC call is unsafe to be called externally"
INTERNAL_ERROR_MESSAGE = "Internal error"

_ID_ALPHABET = string.ascii_letters + string.digits
# websockets logs every connection at INFO; farmers reconnecting would flood the node's log.
logging.getLogger("websockets").setLevel(logging.WARNING)
MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # a piece is ~2 MiB as hex


class RpcServerError(Exception):
    """Raised by a handler to answer with a JSON-RPC error object."""

    def __init__(self, code: int, message: str, data: object = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.data = data


class InvalidParams(RpcServerError):
    def __init__(self, message: str) -> None:
        super().__init__(INVALID_PARAMS, f"Invalid params: {message}")


def positional(params: object, count: int, method: str) -> list:
    """Check ``params`` is a positional array of exactly ``count`` items."""
    if params is None:
        params = []
    if not isinstance(params, list):
        raise InvalidParams(f"{method} takes a positional array of {count} params")
    if len(params) != count:
        raise InvalidParams(f"{method} takes {count} params, got {len(params)}")
    return params


class Connection:
    """One client connection: its unsafe permission and its live subscriptions."""

    def __init__(self, ws: ServerConnection, unsafe_allowed: bool) -> None:
        self.ws = ws
        self.unsafe_allowed = unsafe_allowed
        self.subscriptions: dict[str, Subscription] = {}
        self._send_lock = asyncio.Lock()

    async def send_json(self, obj: object) -> None:
        text = json.dumps(obj, separators=(",", ":"))
        async with self._send_lock:
            await self.ws.send(text)


@dataclass(eq=False)
class Subscription:
    """An accepted subscription; ``send`` delivers one notification (False once closed)."""

    id: str
    notification: str
    connection: Connection
    closed: bool = False

    async def send(self, result: object) -> bool:
        if self.closed:
            return False
        try:
            await self.connection.send_json(
                {"jsonrpc": "2.0", "method": self.notification, "params": {"subscription": self.id, "result": result}}
            )
            return True
        except websockets.ConnectionClosed:
            self.closed = True
            return False


Handler = Callable[[list, Connection], Awaitable[Any]]


@dataclass
class _Method:
    handler: Handler
    unsafe: bool


@dataclass
class _SubscriptionKind:
    notification: str
    unsafe: bool
    on_unsubscribe: Callable[[Subscription], None] | None


class RpcServer:
    def __init__(self, host: str, port: int, unsafe_allowed: bool) -> None:
        self.host = host
        self.port = port
        self.unsafe_allowed = unsafe_allowed
        self.log = structlog.get_logger("rpc-server")
        self._methods: dict[str, _Method] = {}
        self._subscribe: dict[str, _SubscriptionKind] = {}
        self._unsubscribe: dict[str, str] = {}
        self.subscribers: dict[str, set[Subscription]] = {}
        self._server: Any = None

    # ---- registration

    def method(self, name: str, handler: Handler, unsafe: bool = False) -> None:
        self._methods[name] = _Method(handler, unsafe)

    def subscription(
        self,
        subscribe: str,
        unsubscribe: str,
        notification: str,
        unsafe: bool = False,
        on_unsubscribe: Callable[[Subscription], None] | None = None,
    ) -> None:
        """Register a subscription kind (named by its notification method).

        An ``unsafe`` subscription over a safe connection is not accepted: like the reference
        node's dropped pending subscription, the call is answered ``-32603 "Internal error"``
        and no notification ever follows.
        """
        self._subscribe[subscribe] = _SubscriptionKind(notification, unsafe, on_unsubscribe)
        self._unsubscribe[unsubscribe] = notification
        self.subscribers.setdefault(notification, set())

    def live(self, notification: str) -> list[Subscription]:
        subs = self.subscribers.get(notification, set())
        return [s for s in subs if not s.closed]

    async def broadcast(self, notification: str, result: object) -> int:
        """Send ``result`` to every subscriber of ``notification``; returns how many got it."""
        subs = self.live(notification)
        sent = await asyncio.gather(*(s.send(result) for s in subs))
        return sum(sent)

    # ---- lifecycle

    async def start(self) -> None:
        self._server = await serve(self._serve_connection, self.host, self.port, max_size=MAX_MESSAGE_BYTES)
        sock = next(iter(self._server.sockets))
        self.port = sock.getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            try:
                await asyncio.wait_for(self._server.wait_closed(), 5)
            except asyncio.TimeoutError:  # pragma: no cover
                self.log.warning("rpc server close timed out")
            self._server = None

    # ---- protocol

    async def _serve_connection(self, ws: ServerConnection) -> None:
        conn = Connection(ws, self.unsafe_allowed)
        tasks: set[asyncio.Task] = set()
        try:
            async for message in ws:
                task = asyncio.ensure_future(self._handle_message(conn, message))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except websockets.ConnectionClosed:
            pass
        finally:
            for task in tasks:
                task.cancel()
            for sub in list(conn.subscriptions.values()):
                self._drop_subscription(sub)

    async def _handle_message(self, conn: Connection, message: str | bytes) -> None:
        try:
            request = json.loads(message)
        except (ValueError, UnicodeDecodeError):
            await self._send(conn, {"jsonrpc": "2.0", "id": None, "error": {"code": PARSE_ERROR, "message": "Parse error"}})
            return
        if isinstance(request, list):
            if not request:
                await self._send(conn, _error(None, INVALID_REQUEST, "Invalid request"))
                return
            outcomes = await asyncio.gather(*(self._dispatch(conn, item) for item in request))
            batch = [r for r in outcomes if r is not None]
            if batch:
                await self._send(conn, batch)
            return
        response = await self._dispatch(conn, request)
        if response is not None:
            await self._send(conn, response)

    async def _send(self, conn: Connection, obj: object) -> None:
        try:
            await conn.send_json(obj)
        except websockets.ConnectionClosed:
            pass

    async def _dispatch(self, conn: Connection, request: object) -> dict | None:
        if not isinstance(request, dict) or request.get("jsonrpc") != "2.0" or not isinstance(request.get("method"), str):
            req_id = request.get("id") if isinstance(request, dict) else None
            return _error(req_id, INVALID_REQUEST, "Invalid request")
        req_id = request.get("id")
        is_notification = "id" not in request
        name = request["method"]
        params = request.get("params", [])
        try:
            if name in self._methods:
                method = self._methods[name]
                if method.unsafe and not conn.unsafe_allowed:
                    raise RpcServerError(METHOD_NOT_FOUND, UNSAFE_RPC_MESSAGE)
                result = await method.handler(params, conn)
            elif name in self._subscribe:
                result = self._do_subscribe(conn, self._subscribe[name], params, name)
            elif name in self._unsubscribe:
                result = self._do_unsubscribe(conn, self._unsubscribe[name], params, name)
            else:
                raise RpcServerError(METHOD_NOT_FOUND, "Method not found")
        except RpcServerError as exc:
            if is_notification:
                return None
            err = {"code": exc.code, "message": exc.message}
            if exc.data is not None:
                err["data"] = exc.data
            return {"jsonrpc": "2.0", "id": req_id, "error": err}
        except Exception as exc:  # a handler bug must not kill the connection
            self.log.exception("rpc handler failed", method=name)
            return None if is_notification else _error(req_id, INTERNAL_ERROR, f"Internal error: {exc}")
        if is_notification:
            return None
        return {"jsonrpc": "2.0", "id": req_id, "result": result}

    def _do_subscribe(self, conn: Connection, kind: _SubscriptionKind, params: object, name: str) -> str:
        if kind.unsafe and not conn.unsafe_allowed:
            # checked before the params: the reference handler returns at once, whatever it got
            raise RpcServerError(INTERNAL_ERROR, INTERNAL_ERROR_MESSAGE)
        positional(params, 0, name)
        sub_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
        sub = Subscription(sub_id, kind.notification, conn)
        conn.subscriptions[sub_id] = sub
        self.subscribers[kind.notification].add(sub)
        return sub_id

    def _do_unsubscribe(self, conn: Connection, notification: str, params: object, name: str) -> bool:
        (sub_id,) = positional(params, 1, name)
        sub = conn.subscriptions.get(sub_id) if isinstance(sub_id, str) else None
        if sub is None or sub.notification != notification:
            return False
        self._drop_subscription(sub)
        return True

    def _drop_subscription(self, sub: Subscription) -> None:
        sub.closed = True
        sub.connection.subscriptions.pop(sub.id, None)
        self.subscribers.get(sub.notification, set()).discard(sub)
        for kind in self._subscribe.values():
            if kind.notification == sub.notification and kind.on_unsubscribe is not None:
                kind.on_unsubscribe(sub)


def _error(req_id: object, code: int, message: str) -> dict:
    return {"jsonrpc": "2.0", "id": req_id, "error": {"code": code, "message": message}}
