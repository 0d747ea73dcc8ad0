"""Frame header: round trip, and every malformed header is refused before its body is read."""

from __future__ import annotations

import pytest

from services.p2p import ProtocolError
from services.p2p.frames import (
    CLIENT_TO_SERVER,
    HEADER,
    HEADER_SIZE,
    ITEM_HEADER_SIZE,
    SERVER_TO_CLIENT,
    Kind,
    pack_header,
    pack_item_header,
    unpack_header,
)


def test_header_round_trip():
    data = pack_header(Kind.REQUEST, 7, 1234)
    assert len(data) == HEADER_SIZE == 12
    assert unpack_header(data, CLIENT_TO_SERVER) == (Kind.REQUEST, 7, 1234)


def test_item_header_layout():
    digest = bytes(range(32))
    data = pack_item_header(9, 2**64 - 1, digest, 100)
    assert unpack_header(data[:HEADER_SIZE], SERVER_TO_CLIENT) == (Kind.ITEM, 9, ITEM_HEADER_SIZE + 100)
    assert data[HEADER_SIZE:HEADER_SIZE + 8] == b"\xff" * 8 and data[HEADER_SIZE + 8:] == digest


@pytest.mark.parametrize("kind", [0, 8, 255])
def test_unknown_kind_refused(kind):
    with pytest.raises(ProtocolError, match="kind"):
        unpack_header(HEADER.pack(kind, 0, 0, 1, 0), CLIENT_TO_SERVER | SERVER_TO_CLIENT)


def test_direction_enforced():
    with pytest.raises(ProtocolError):
        unpack_header(pack_header(Kind.ITEM, 1, 40), CLIENT_TO_SERVER)
    with pytest.raises(ProtocolError):
        unpack_header(pack_header(Kind.REQUEST, 1, 10), SERVER_TO_CLIENT)


def test_flags_and_reserved_must_be_zero():
    with pytest.raises(ProtocolError, match="flags"):
        unpack_header(HEADER.pack(Kind.REQUEST, 1, 0, 1, 5), CLIENT_TO_SERVER)
    with pytest.raises(ProtocolError, match="flags"):
        unpack_header(HEADER.pack(Kind.REQUEST, 0, 2, 1, 5), CLIENT_TO_SERVER)


def test_empty_kinds_have_no_body():
    with pytest.raises(ProtocolError, match="CANCEL"):
        unpack_header(pack_header(Kind.CANCEL, 1, 3), CLIENT_TO_SERVER)
    with pytest.raises(ProtocolError, match="END"):
        unpack_header(pack_header(Kind.END, 1, 1), SERVER_TO_CLIENT)
