"""Plain counters per server and per client, cheap enough for the hot path (attribute
increments), exported later by the metrics module from :meth:`Counters.snapshot`."""

from __future__ import annotations

FIELDS = (
    "connections_opened",     # accepted (server) / dialled (client) TCP connections
    "connections_active",     # open now
    "connections_rejected",   # over a connection limit (server)
    "handshake_failures",     # peer did not prove the secret, bad magic/version, handshake timeout
    "protocol_errors",        # malformed frames, oversized lengths, unexpected keys
    "bytes_sent",
    "bytes_received",
    "requests",               # calls served (server) / started (client)
    "errors",                 # calls that ended in an error of any kind
    "timeouts",               # calls, connects and handshakes that timed out
    "items",                  # bulk items sent (server) / received intact (client)
    "missing",                # keys reported missing
    "integrity_failures",     # items whose BLAKE3 digest did not match (client)
    "write_pauses",           # times a sender waited for its write buffer to drain
    "read_pauses",            # times reading paused for lack of a free receive buffer (client)
    "peak_write_buffer",      # largest user-space write buffer seen on one connection, bytes
)


class Counters:
    __slots__ = FIELDS

    def __init__(self) -> None:
        for name in FIELDS:
            setattr(self, name, 0)

    def snapshot(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in FIELDS}

    def __repr__(self) -> str:
        return f"Counters({self.snapshot()})"
