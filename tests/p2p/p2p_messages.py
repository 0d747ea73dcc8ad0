"""Request types and a piece store shared by the data-plane tests and their namespace peers."""

from __future__ import annotations

import random

import msgspec

from services.p2p import BulkItem, Missing, Request

PIECE_SIZE = 1_048_672


class EchoReply(msgspec.Struct):
    text: str
    n: int


class Echo(Request):
    method = "test.echo"
    response = EchoReply
    text: str
    n: int = 0


class Fetch(Request):
    method = "test.fetch"
    bulk = True
    keys: list[int]

    def expected_keys(self) -> list[int]:
        return self.keys


def make_store(rng: random.Random, count: int, size: int, first_key: int = 0) -> dict[int, bytes]:
    return {first_key + i: rng.randbytes(size) for i in range(count)}


def serve_store(store: dict[int, bytes]):
    """Bulk handler: each requested key's piece, Missing for keys it lacks."""

    def handler(request: Fetch):
        for key in request.keys:
            yield BulkItem(key, store[key]) if key in store else Missing([key])

    return handler


def echo(request: Echo) -> EchoReply:
    return EchoReply(request.text, request.n * 2)
