"""Every bound of the data plane in one place, so nothing a peer sends can grow memory, tasks or
connections without limit, and nothing waits forever.

Defaults suit pieces (1,048,672 bytes) and sector chunks; roles override what their flags set.
Sizes are bytes, times seconds. ``write_buffer_high`` / ``write_buffer_low`` bound what one
connection buffers in user space before the sender stops producing (asyncio write-buffer limits:
past ``high`` the sender waits until the buffer drains below ``low``).
"""

from __future__ import annotations

import msgspec

MiB = 1024 * 1024


class _Limits(msgspec.Struct, frozen=True, kw_only=True):
    def __post_init__(self) -> None:
        for name in self.__struct_fields__:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{type(self).__name__}.{name} must be > 0, got {value}")
        if self.write_buffer_low > self.write_buffer_high:
            raise ValueError(f"{type(self).__name__}: write_buffer_low > write_buffer_high")


class ServerLimits(_Limits, frozen=True, kw_only=True):
    """``max_in_flight`` is per connection (advertised in the handshake; more is answered "busy");
    ``max_connections_per_peer`` counts connections from one IP address, authenticated or not;
    ``idle_timeout`` closes a connection with no call in flight and nothing received;
    ``send_timeout`` drops a connection whose reader takes nothing for that long mid-stream."""

    max_request_size: int = 1 * MiB
    max_response_size: int = 16 * MiB
    max_item_size: int = 64 * MiB
    max_in_flight: int = 64
    max_connections: int = 1024
    max_connections_per_peer: int = 32
    handshake_timeout: float = 10.0
    idle_timeout: float = 300.0
    send_timeout: float = 120.0
    write_buffer_high: int = 4 * MiB
    write_buffer_low: int = 1 * MiB


class ClientLimits(_Limits, frozen=True, kw_only=True):
    """``connections_per_endpoint`` connections are opened on demand and reused;
    ``max_in_flight`` calls share one connection (capped by what the server advertises);
    ``request_timeout`` is the default per call: the longest wait for the reply to start or, in a
    bulk stream, for the next frame (time spent waiting for the caller's free buffers does not
    count); ``idle_timeout`` closes unused pooled connections (keep it below the server's)."""

    connections_per_endpoint: int = 2
    max_in_flight: int = 16
    max_control_size: int = 16 * MiB
    max_item_size: int = 64 * MiB
    connect_timeout: float = 5.0
    handshake_timeout: float = 5.0
    request_timeout: float = 60.0
    idle_timeout: float = 60.0
    write_buffer_high: int = 1 * MiB
    write_buffer_low: int = 256 * 1024
