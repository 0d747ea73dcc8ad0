"""Raw-TCP data plane of the cluster: bulk bytes (pieces, sectors) between machines, typed and
authenticated, received straight into the caller's buffers. Control stays on NATS (services.bus);
this package knows no role.

Why not NATS for the bytes: measured on loopback, NATS with 1 MiB messages moves 0.5-0.8 GB/s
and asyncio streams ~1.5 GB/s, while a ``BufferedProtocol`` reading into preallocated buffers
reaches several GB/s — what a GPU plot-server needs for ~1 GiB of pieces per sector.

Declare requests once (role ``messages.py``)::

    class FetchPieces(Request):
        method = "cache.fetch-pieces"
        bulk = True                       # handler yields BulkItem(key, payload) / Missing(keys)
        piece_indices: list[int]
        def expected_keys(self): return self.piece_indices

    class CacheInfo(Request):
        method = "cache.info"
        response = CacheInfoReply         # handler returns a CacheInfoReply

Serve (``PeerServer``) and call (``PeerClient``, pooled, shared by all tasks)::

    server = PeerServer(config.cluster_secret, name="sharded-cache")
    server.route(FetchPieces, lambda req: ((BulkItem(i, store[i]) if i in store else Missing([i]))
                                           for i in req.piece_indices))
    await server.start("0.0.0.0", 9955)
    endpoint = server.endpoint(config.advertise_host)   # tcp://HOST:PORT for Member.endpoints

    client = PeerClient(config.cluster_secret)
    info = await client.request(endpoint, CacheInfo())
    result = await client.fetch(endpoint, FetchPieces(piece_indices=idx), KeyedBuffers(slots))
    result.received / result.missing / result.corrupt    # corrupt = BLAKE3 mismatch

Modules: ``frames`` (wire format), ``handshake`` (HMAC challenge both ways), ``secret`` (the
cluster secret and its loader), ``message`` (Request, BulkItem, Missing), ``sinks``
(KeyedBuffers, BufferPool, FetchResult), ``server``, ``client``, ``endpoints`` (tcp:// endpoints,
advertised address, the loopback rule), ``limits``, ``stats`` (plain counters: ``.stats``),
``errors``. docs/ARCHITECTURE.md "services.p2p" has the contract in one page.
"""

from services.p2p.client import BulkStream, PeerClient
from services.p2p.endpoints import advertised_endpoint, check_listen_host, format_endpoint, is_loopback_host, parse_endpoint
from services.p2p.errors import (
    HandshakeError,
    P2PConfigError,
    PeerClosed,
    PeerError,
    PeerTimeout,
    PeerUnreachable,
    ProtocolError,
    RemoteError,
)
from services.p2p.limits import ClientLimits, ServerLimits
from services.p2p.message import BulkItem, Missing, Request
from services.p2p.secret import NO_SECRET, ClusterSecret, ClusterSecretError, load_cluster_secret
from services.p2p.server import PeerServer
from services.p2p.sinks import BufferPool, FetchResult, KeyedBuffers

__all__ = [
    "BufferPool",
    "BulkItem",
    "BulkStream",
    "ClientLimits",
    "ClusterSecret",
    "ClusterSecretError",
    "FetchResult",
    "HandshakeError",
    "KeyedBuffers",
    "Missing",
    "NO_SECRET",
    "P2PConfigError",
    "PeerClient",
    "PeerClosed",
    "PeerError",
    "PeerServer",
    "PeerTimeout",
    "PeerUnreachable",
    "ProtocolError",
    "RemoteError",
    "Request",
    "ServerLimits",
    "advertised_endpoint",
    "check_listen_host",
    "format_endpoint",
    "is_loopback_host",
    "load_cluster_secret",
    "parse_endpoint",
]
