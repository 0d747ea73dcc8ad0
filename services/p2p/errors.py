"""Data-plane exceptions, one per thing a caller does differently.

All derive from :class:`PeerError` (a :class:`services.daemon.DaemonError`), so a role that lets
one escape exits with one readable line. A caller fetching pieces treats :class:`PeerUnreachable`,
:class:`PeerTimeout`, :class:`PeerClosed`, :class:`HandshakeError` and :class:`ProtocolError` as
"this source failed, try another"; :class:`RemoteError` means the peer answered with an error
(unknown method, bad request, busy, its handler failed).
"""

from __future__ import annotations

from services.daemon import DaemonError


class PeerError(DaemonError):
    """Any failure of the TCP data plane."""


class P2PConfigError(PeerError):
    """A listener or client was set up in a way the cluster forbids (e.g. a non-loopback listener
    without a cluster secret, a malformed ``tcp://HOST:PORT`` endpoint)."""


class PeerUnreachable(PeerError):
    """The TCP connection could not be made (refused, no route, name not resolved)."""


class PeerTimeout(PeerError):
    """Connect, handshake or request made no progress within its timeout."""


class PeerClosed(PeerError):
    """The connection closed before the call finished (the peer went away, or this side closed it
    after a protocol violation). ``before_reply`` is True when nothing of the reply had arrived."""

    def __init__(self, message: str, before_reply: bool = False) -> None:
        super().__init__(message)
        self.before_reply = before_reply


class HandshakeError(PeerError):
    """The peer did not prove the cluster secret (or is not speaking this protocol)."""


class ProtocolError(PeerError):
    """The peer broke the wire protocol: a bad frame, an oversized length, an unexpected key or
    size in a bulk stream, an undecodable response."""


class RemoteError(PeerError):
    """The peer answered with an error frame; ``code`` is one of ``services.p2p.frames.ERROR_CODES``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}" if message else code)
        self.code = code
        self.remote_message = message
