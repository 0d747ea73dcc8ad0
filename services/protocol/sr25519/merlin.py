"""Merlin transcripts (STROBE-128 over Keccak-f[1600]) as schnorrkel uses them.

sr25519 signatures hash their inputs through a Merlin transcript. The installed sr25519 binding
hard-codes the ``b"substrate"`` signing context, while Subspace reward signatures use
``b"subspace_reward"``, so the transcript is implemented here (only the operations schnorrkel
needs: ``append_message`` and ``challenge_bytes``).
"""

from __future__ import annotations

_MASK64 = (1 << 64) - 1

_ROUND_CONSTANTS = (
    0x0000000000000001, 0x0000000000008082, 0x800000000000808A, 0x8000000080008000,
    0x000000000000808B, 0x0000000080000001, 0x8000000080008081, 0x8000000000008009,
    0x000000000000008A, 0x0000000000000088, 0x0000000080008009, 0x000000008000000A,
    0x000000008000808B, 0x800000000000008B, 0x8000000000008089, 0x8000000000008003,
    0x8000000000008002, 0x8000000000000080, 0x000000000000800A, 0x800000008000000A,
    0x8000000080008081, 0x8000000000008080, 0x0000000080000001, 0x8000000080008008,
)

# Rotation offsets r[x][y] of the rho step.
_RHO = (
    (0, 36, 3, 41, 18),
    (1, 44, 10, 45, 2),
    (62, 6, 43, 15, 61),
    (28, 55, 25, 21, 56),
    (27, 20, 39, 8, 14),
)


def _rotl(v: int, n: int) -> int:
    return ((v << n) | (v >> (64 - n))) & _MASK64 if n else v


def keccak_f1600(state: bytearray) -> None:
    """Permute a 200-byte Keccak state in place (lanes are u64 little-endian, index x + 5y)."""
    lanes = [int.from_bytes(state[8 * i : 8 * i + 8], "little") for i in range(25)]
    for rc in _ROUND_CONSTANTS:
        c = [lanes[x] ^ lanes[x + 5] ^ lanes[x + 10] ^ lanes[x + 15] ^ lanes[x + 20] for x in range(5)]
        d = [c[(x - 1) % 5] ^ _rotl(c[(x + 1) % 5], 1) for x in range(5)]
        for i in range(25):
            lanes[i] ^= d[i % 5]
        b = [0] * 25
        for x in range(5):
            for y in range(5):
                b[y + 5 * ((2 * x + 3 * y) % 5)] = _rotl(lanes[x + 5 * y], _RHO[x][y])
        for y in range(5):
            row = b[5 * y : 5 * y + 5]
            for x in range(5):
                lanes[x + 5 * y] = row[x] ^ ((~row[(x + 1) % 5]) & row[(x + 2) % 5])
        lanes[0] ^= rc
    for i in range(25):
        state[8 * i : 8 * i + 8] = lanes[i].to_bytes(8, "little")


_STROBE_R = 166
_FLAG_I, _FLAG_A, _FLAG_C, _FLAG_T, _FLAG_M, _FLAG_K = 1, 2, 4, 8, 16, 32


class Strobe128:
    """The subset of STROBE-128 (v1.0.2) that Merlin uses: meta-AD, AD and PRF."""

    def __init__(self, protocol_label: bytes) -> None:
        st = bytearray(200)
        st[0:6] = bytes([1, _STROBE_R + 2, 1, 0, 1, 96])
        st[6:18] = b"STROBEv1.0.2"
        keccak_f1600(st)
        self._st = st
        self._pos = 0
        self._pos_begin = 0
        self._cur_flags = 0
        self.meta_ad(protocol_label, False)

    def meta_ad(self, data: bytes, more: bool) -> None:
        self._begin_op(_FLAG_M | _FLAG_A, more)
        self._absorb(data)

    def ad(self, data: bytes, more: bool) -> None:
        self._begin_op(_FLAG_A, more)
        self._absorb(data)

    def prf(self, length: int, more: bool) -> bytes:
        self._begin_op(_FLAG_I | _FLAG_A | _FLAG_C, more)
        return self._squeeze(length)

    def _run_f(self) -> None:
        self._st[self._pos] ^= self._pos_begin
        self._st[self._pos + 1] ^= 0x04
        self._st[_STROBE_R + 1] ^= 0x80
        keccak_f1600(self._st)
        self._pos = 0
        self._pos_begin = 0

    def _absorb(self, data: bytes) -> None:
        for byte in data:
            self._st[self._pos] ^= byte
            self._pos += 1
            if self._pos == _STROBE_R:
                self._run_f()

    def _squeeze(self, length: int) -> bytes:
        out = bytearray(length)
        for i in range(length):
            out[i] = self._st[self._pos]
            self._st[self._pos] = 0
            self._pos += 1
            if self._pos == _STROBE_R:
                self._run_f()
        return bytes(out)

    def _begin_op(self, flags: int, more: bool) -> None:
        if more:
            if self._cur_flags != flags:
                raise ValueError(f"STROBE continued operation with flags {flags} != {self._cur_flags}")
            return
        old_begin = self._pos_begin
        self._pos_begin = self._pos + 1
        self._cur_flags = flags
        self._absorb(bytes([old_begin, flags]))
        if flags & (_FLAG_C | _FLAG_K) and self._pos != 0:
            self._run_f()


class Transcript:
    """A Merlin v1.0 transcript."""

    def __init__(self, label: bytes) -> None:
        self._strobe = Strobe128(b"Merlin v1.0")
        self.append_message(b"dom-sep", label)

    def append_message(self, label: bytes, message: bytes) -> None:
        self._strobe.meta_ad(label, False)
        self._strobe.meta_ad(len(message).to_bytes(4, "little"), True)
        self._strobe.ad(message, False)

    def challenge_bytes(self, label: bytes, length: int) -> bytes:
        self._strobe.meta_ad(label, False)
        self._strobe.meta_ad(length.to_bytes(4, "little"), True)
        return self._strobe.prf(length, False)
