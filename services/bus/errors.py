"""Bus exceptions. All derive from :class:`services.daemon.DaemonError`, so a role that fails on
the bus exits with one readable line instead of a traceback."""

from __future__ import annotations

from services.daemon import DaemonError


class BusError(DaemonError):
    """Any failure of the NATS bus layer."""


class BusConfigError(BusError):
    """The NATS server is unusable for the cluster (no JetStream, max_payload too small,
    unreachable): refused at connect time."""


class NoResponders(BusError):
    """Nobody is subscribed to the subject (after all retries)."""


class RequestTimeout(BusError):
    """No response within the timeout (after all retries)."""


class RemoteError(BusError):
    """The responder's handler failed; the message is the responder's error text."""


class StreamError(BusError):
    """A stream response was malformed, out of order, or stopped arriving."""
