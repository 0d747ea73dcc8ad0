"""NATS bus: typed messages (:mod:`.message`), the connection with request / stream request /
broadcast patterns (:mod:`.client`), JetStream KV membership (:mod:`.membership`) and a
``nats-server`` launcher (:mod:`.server`). See ``docs/ARCHITECTURE.md`` and spec 06."""

from services.bus.client import Bus, Service, Subscription
from services.bus.errors import BusConfigError, BusError, NoResponders, RemoteError, RequestTimeout, StreamError
from services.bus.message import Message, new_ulid

__all__ = [
    "Bus",
    "BusConfigError",
    "BusError",
    "Message",
    "NoResponders",
    "RemoteError",
    "RequestTimeout",
    "Service",
    "StreamError",
    "Subscription",
    "new_ulid",
]
