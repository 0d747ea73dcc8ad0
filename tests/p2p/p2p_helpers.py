"""Helpers of the data-plane tests (import as ``p2p_helpers``): the test secret, a condition wait
(instead of sleeps) and a raw-socket peer that speaks, or breaks, the protocol byte by byte."""

from __future__ import annotations

import asyncio

from services.p2p import frames, handshake

SECRET = b"test-cluster-secret-0123456789ab"


async def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    """Wait for ``predicate()`` to hold (a condition, polled), failing after ``timeout``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.002)


class RawPeer:
    """A hand-driven TCP client: speaks (or breaks) the protocol byte by byte."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def connect(cls, port: int) -> "RawPeer":
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer)

    async def handshake(self, secret: bytes = SECRET) -> None:
        hello = handshake.parse_server_hello(await self.reader.readexactly(handshake.SERVER_HELLO_SIZE))
        nonce = handshake.new_nonce()
        self.send(handshake.client_hello(secret, hello, nonce))
        proof = await self.reader.readexactly(handshake.SERVER_PROOF_SIZE)
        handshake.verify_server_proof(secret, hello, nonce, proof)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def request(self, request, request_id: int = 1) -> tuple[frames.Kind, int, bytes]:
        import msgspec

        body = frames.encode(frames.RequestEnvelope(type(request).method, msgspec.Raw(frames.encode(request))))
        self.send(frames.pack_header(frames.Kind.REQUEST, request_id, len(body)) + body)
        return await self.read_frame()

    async def read_frame(self) -> tuple[frames.Kind, int, bytes]:
        header = await self.reader.readexactly(frames.HEADER_SIZE)
        kind, request_id, length = frames.unpack_header(header, frames.SERVER_TO_CLIENT)
        return kind, request_id, await self.reader.readexactly(length)

    async def closed_by_peer(self, timeout: float = 10.0) -> bool:
        """True once the other side closed (EOF or reset), reading and dropping anything else."""
        try:
            async with asyncio.timeout(timeout):
                while await self.reader.read(65536):
                    pass
        except (ConnectionResetError, BrokenPipeError):
            pass
        return True

    def close(self) -> None:
        self.writer.close()


class FakeServer:
    """The server side by hand (handshake, then ``script(writer, request_id, envelope)`` per
    REQUEST), for behaviour a correct PeerServer never shows: bit flips on the wire, replies
    after a CANCEL, silence instead of a hello."""

    def __init__(self, script, send_hello: bool = True) -> None:
        self.script = script
        self.send_hello = send_hello
        self.cancels: list[int] = []
        self.server: asyncio.Server | None = None
        self.port = 0

    async def start(self) -> "FakeServer":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def endpoint(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if not self.send_hello:
                await reader.read()  # say nothing until the client gives up
                return
            hello = handshake.server_hello(handshake.new_nonce(), 16, 1 << 20)
            writer.write(hello)
            nonce = handshake.verify_client_hello(SECRET, hello, await reader.readexactly(handshake.CLIENT_HELLO_SIZE))
            writer.write(handshake.server_proof(SECRET, hello, nonce))
            while True:
                header = await reader.readexactly(frames.HEADER_SIZE)
                kind, request_id, length = frames.unpack_header(header, frames.CLIENT_TO_SERVER)
                body = await reader.readexactly(length)
                if kind is frames.Kind.CANCEL:
                    self.cancels.append(request_id)
                else:
                    asyncio.ensure_future(self.script(writer, request_id, frames.decode(body, frames.RequestEnvelope)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()


def item_frame(request_id: int, key: int, payload: bytes, digest: bytes | None = None) -> bytes:
    import blake3

    digest = digest or blake3.blake3(payload).digest()
    return frames.pack_item_header(request_id, key, digest, len(payload)) + payload
