"""Reed-Solomon erasure coding over Fr, bit-exact with the reference ``ErasureCoding`` (spec 01 §8).

Why: records are extended 2^15 -> 2^16 scalars for plotting (s-buckets) and segments 128 -> 256
pieces by the archiver; readers recover missing values.

Semantics (reference ``ErasureCoding::new(scale)``, rust-kzg ``das_fft_extension``): for ``n``
source scalars (power of two, ``2n <= 2^scale``) let ``w`` be the primitive 2n-th root of unity
(``7^((r-1)/2n)``) and ``p`` the polynomial of degree < n with ``p(w^(2i)) = source[i]``. Then
``extend(source)[i] = p(w^(2i+1))`` (parity only). The full vector is *interleaved*:
``v[2i] = source[i]``, ``v[2i+1] = parity[i]``, i.e. ``v[j] = p(w^j)``; ``recover`` takes shards
in that interleaved order and returns all 2n values in it.

API (all scalars 32-byte big-endian canonical; anything >= r raises ``InvalidScalarError``):

* ``ErasureCoding(scale)`` - ``scale`` in 1..16 (the reference node/farmer use 16).
* ``.extend(list[bytes]) -> list[bytes]`` parity values.
* ``.recover(list[bytes | None]) -> list[bytes]`` all 2n values; ``.recover_source`` the n
  even-position (source) values. Raises ``ErasureError`` with fewer than n shards present, or when
  more than n shards are present and they are not evaluations of one polynomial of degree < n.
* Hot-path numpy variants: ``extend_array`` / ``recover_array`` take ``(n, 32)`` or
  ``(batch, n, 32)`` uint8 arrays of big-endian scalars (a batch shares one erasure pattern, e.g.
  the 32 768 chunk offsets of a segment); ``extend_limbs`` / ``recover_limbs`` take ``field``
  limb arrays ``(n, 4)`` / ``(batch, n, 4)`` uint64 (canonical or Montgomery: the maps are linear
  and results come back in the input's representation) and skip byte conversion and validation.

Recovery: zero polynomial ``Z`` of the erased positions (subproduct tree with NTT products),
``P·Z`` interpolated on the 2n domain, divided by ``Z`` on the coset ``7·<w>``, interpolated back
and evaluated on the domain; present values are then checked against the result.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from services.protocol import field, ntt
from services.protocol.constants import SCALAR_FULL_BYTES
from services.protocol.field import R

MAX_SCALE = ntt.MAX_LOG_SIZE


class ErasureError(ValueError):
    """Recovery impossible (too few shards) or shards inconsistent, or bad erasure input."""


_tables_lock = threading.Lock()
_extend_shift_tables: dict[int, np.ndarray] = {}
_coset_tables: dict[int, tuple[np.ndarray, np.ndarray]] = {}

COSET_SHIFT = ntt.GENERATOR


def _extend_shift(n: int) -> np.ndarray:
    """Montgomery table ``w_{2n}^k / n`` for k < n (coset shift fused with 1/n of the iDFT)."""
    with _tables_lock:
        table = _extend_shift_tables.get(n)
        if table is None:
            powers = ntt.domain_powers((2 * n).bit_length() - 1, n)
            table = field.mul(powers, field.from_ints([pow(n, -1, R)]))
            table.flags.writeable = False
            _extend_shift_tables[n] = table
        return table


def _coset_powers(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Montgomery tables ``k^i`` and ``k^-i / size`` (k = COSET_SHIFT) for i < size."""
    with _tables_lock:
        tables = _coset_tables.get(size)
        if tables is None:
            fwd = np.empty((size, 4), dtype=np.uint64)
            inv = np.empty((size, 4), dtype=np.uint64)
            one = field.u32_view(field.from_ints([1]))
            ntt._powers_kernel(field.u32_view(field.from_ints([COSET_SHIFT])), size, one, field.u32_view(fwd))
            ntt._powers_kernel(field.u32_view(field.from_ints([pow(COSET_SHIFT, -1, R)])), size, one, field.u32_view(inv))
            inv = field.mul(inv, field.from_ints([pow(size, -1, R)]))
            fwd.flags.writeable = False
            inv.flags.writeable = False
            tables = (fwd, inv)
            _coset_tables[size] = tables
        return tables


def _to_batch(values: np.ndarray, last: tuple[int, ...], dtype, what: str) -> tuple[np.ndarray, bool]:
    if not isinstance(values, np.ndarray) or values.dtype != dtype or values.shape[-len(last):] != last:
        raise ErasureError(
            f"{what} must be a numpy {np.dtype(dtype).name} array of shape (n, {', '.join(map(str, last))}) or "
            f"(batch, n, ...), got {getattr(values, 'dtype', type(values).__name__)} {getattr(values, 'shape', None)}"
        )
    if values.ndim == 1 + len(last):
        return values[None], True
    if values.ndim == 2 + len(last):
        return values, False
    raise ErasureError(f"{what} must be 2-D or 3-D, got shape {values.shape}")


def _bytes_rows_to_limbs(rows: np.ndarray) -> np.ndarray:
    """(batch, n, 32) uint8 BE scalars -> (batch, n, 4) canonical limbs (validated)."""
    batch, n = rows.shape[0], rows.shape[1]
    return field.bytes_to_limbs(rows.reshape(batch * n, SCALAR_FULL_BYTES)).reshape(batch, n, 4)


def _limbs_to_bytes_rows(limbs: np.ndarray) -> np.ndarray:
    batch, n = limbs.shape[0], limbs.shape[1]
    return field.limbs_to_bytes(limbs.reshape(batch * n, 4)).reshape(batch, n, SCALAR_FULL_BYTES)


def _zero_poly(roots_mont: np.ndarray) -> np.ndarray:
    """Monic coefficients of prod (X - root), Montgomery, length m + 1; m must be a power of two or 0."""
    m = roots_mont.shape[0]
    if m == 0:
        return field.from_ints([1])
    # low[c] holds the low coefficients of monic polynomial c (degree d, leading 1 implicit).
    low = field.neg(roots_mont).reshape(m, 1, 4)
    d = 1
    while low.shape[0] > 1:
        count = low.shape[0] // 2
        a = np.zeros((count, 2 * d, 4), dtype=np.uint64)
        b = np.zeros((count, 2 * d, 4), dtype=np.uint64)
        a[:, :d] = low[0::2]
        b[:, :d] = low[1::2]
        # (X^d + a)(X^d + b) = X^2d + X^d (a + b) + a*b, deg(a*b) <= 2d - 2.
        ntt.ntt_inplace_batch(a)
        ntt.ntt_inplace_batch(b)
        prod = field.mul(a.reshape(-1, 4), b.reshape(-1, 4)).reshape(count, 2 * d, 4)
        prod = ntt.intt(prod)
        cross = field.add(low[0::2].reshape(-1, 4), low[1::2].reshape(-1, 4)).reshape(count, d, 4)
        prod[:, d:] = field.add(prod[:, d:].reshape(-1, 4), cross.reshape(-1, 4)).reshape(count, d, 4)
        low = prod
        d *= 2
    return np.concatenate([low[0], field.from_ints([1])])


class ErasureCoding:
    """Erasure coding instance for up to ``2^scale`` shards (reference ``ErasureCoding::new``)."""

    def __init__(self, scale: int) -> None:
        if not isinstance(scale, int) or not 1 <= scale <= MAX_SCALE:
            raise ErasureError(f"erasure coding scale must be an int in 1..{MAX_SCALE}, got {scale!r}")
        self.scale = scale
        self.max_shards = 1 << scale

    def __repr__(self) -> str:
        return f"ErasureCoding(scale={self.scale})"

    # ---- extension -----------------------------------------------------------------------

    def _check_source_count(self, n: int) -> None:
        if n < 1 or n & (n - 1) or 2 * n > self.max_shards:
            raise ErasureError(
                f"source count {n} must be a power of two with 2*{n} <= {self.max_shards} (scale {self.scale})"
            )

    def extend_limbs(self, source: np.ndarray) -> np.ndarray:
        """Parity limbs for (n, 4) or (batch, n, 4) uint64 source limbs (no validation of < r)."""
        batch, single = _to_batch(source, (4,), np.uint64, "source limbs")
        n = batch.shape[1]
        self._check_source_count(n)
        work = np.array(batch, dtype=np.uint64, order="C", copy=True)
        ntt.ntt_inplace_batch(work)  # n * coefficients, index-reversed
        parity = ntt.reverse_and_scale(work, _extend_shift(n))  # coefficients * w_2n^k
        ntt.ntt_inplace_batch(parity)  # evaluations at w_2n^(2i+1)
        return parity[0] if single else parity

    def extend_array(self, source: np.ndarray) -> np.ndarray:
        """Parity for (n, 32) or (batch, n, 32) uint8 big-endian scalars; same shape out."""
        batch, single = _to_batch(source, (SCALAR_FULL_BYTES,), np.uint8, "source")
        self._check_source_count(batch.shape[1])
        parity = _limbs_to_bytes_rows(self.extend_limbs(_bytes_rows_to_limbs(batch)))
        return parity[0] if single else parity

    def extend(self, source: Sequence[bytes]) -> list[bytes]:
        """Parity scalars ``p(w^(2i+1))`` for n source scalars (32-byte BE, canonical)."""
        rows = field._scalar_rows(list(source), SCALAR_FULL_BYTES)
        parity = self.extend_array(rows)
        return [parity[i].tobytes() for i in range(parity.shape[0])]

    # ---- recovery ------------------------------------------------------------------------

    def _check_shard_count(self, total: int) -> None:
        if total < 2 or total & (total - 1) or total > self.max_shards:
            raise ErasureError(
                f"shard count {total} must be a power of two in 2..{self.max_shards} (scale {self.scale})"
            )

    def recover_limbs(self, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        """All 2n values from (2n, 4) or (batch, 2n, 4) limbs where ``present`` (2n bools) marks
        the known positions (others are ignored). Same representation out as in."""
        batch, single = _to_batch(values, (4,), np.uint64, "shard limbs")
        total = batch.shape[1]
        self._check_shard_count(total)
        present = np.asarray(present, dtype=bool)
        if present.shape != (total,):
            raise ErasureError(f"present mask must have shape ({total},), got {present.shape}")
        n = total // 2
        count = int(present.sum())
        if count < n:
            raise ErasureError(f"too few shards to recover: {count} present, need at least {n} of {total}")
        log_total = total.bit_length() - 1

        missing = np.flatnonzero(~present)
        erased = np.zeros(total, dtype=bool)
        erased[missing] = True
        pad = (1 << (len(missing) - 1).bit_length()) - len(missing) if len(missing) else 0
        if pad:  # erase a few present positions too, so the zero polynomial degree is a power of two
            erased[np.flatnonzero(present)[:pad]] = True
        erased_idx = np.flatnonzero(erased)

        all_powers = np.concatenate([ntt.domain_powers(log_total), field.neg(ntt.domain_powers(log_total))])
        z = np.zeros((total, 4), dtype=np.uint64)
        z_coeffs = _zero_poly(np.ascontiguousarray(all_powers[erased_idx]))
        z[: z_coeffs.shape[0]] = z_coeffs
        z_on_domain = ntt.ntt(z)

        coset_fwd, coset_inv = _coset_powers(total)
        z_on_coset = ntt.ntt(field.mul(z, coset_fwd))
        z_on_coset_inv = field.batch_inverse(z_on_coset)

        work = np.array(batch, dtype=np.uint64, order="C", copy=True)
        work[:, erased] = 0
        work = ntt.scale_rows(work, z_on_domain)  # (P*Z) on the domain
        work = ntt.intt(work)  # coefficients of P*Z
        work = ntt.scale_rows(work, coset_fwd)
        ntt.ntt_inplace_batch(work)  # P*Z on the coset
        work = ntt.scale_rows(work, z_on_coset_inv)  # P on the coset
        ntt.ntt_inplace_batch(work)  # total * coefficients of P(k X), index-reversed
        work = ntt.reverse_and_scale(work, coset_inv)  # coefficients of P
        if work[:, n:].any():
            raise ErasureError("shards are inconsistent: not evaluations of one polynomial of degree < n")
        ntt.ntt_inplace_batch(work)  # P on the domain
        if not np.array_equal(work[:, present], batch[:, present]):
            raise ErasureError("shards are inconsistent: present values disagree with the recovered polynomial")
        return work[0] if single else work

    def recover_array(self, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        """All 2n values from (2n, 32) or (batch, 2n, 32) uint8 BE scalars and a present mask."""
        batch, single = _to_batch(values, (SCALAR_FULL_BYTES,), np.uint8, "shards")
        present = np.asarray(present, dtype=bool)
        self._check_shard_count(batch.shape[1])
        if present.shape != (batch.shape[1],):
            raise ErasureError(f"present mask must have shape ({batch.shape[1]},), got {present.shape}")
        known = np.zeros_like(batch)
        known[:, present] = batch[:, present]
        full = _limbs_to_bytes_rows(self.recover_limbs(_bytes_rows_to_limbs(known), present))
        return full[0] if single else full

    def recover(self, shards: Sequence[bytes | None]) -> list[bytes]:
        """All 2n values (interleaved order) from 2n optional shards, at least n present."""
        shards = list(shards)
        self._check_shard_count(len(shards))
        present = np.array([s is not None for s in shards], dtype=bool)
        rows = np.zeros((len(shards), SCALAR_FULL_BYTES), dtype=np.uint8)
        for i, shard in enumerate(shards):
            if shard is None:
                continue
            if not isinstance(shard, (bytes, bytearray, memoryview)) or len(shard) != SCALAR_FULL_BYTES:
                raise ErasureError(f"shard {i} must be {SCALAR_FULL_BYTES} bytes or None, got {shard!r:.80}")
            rows[i] = np.frombuffer(bytes(shard), dtype=np.uint8)
        full = self.recover_array(rows, present)
        return [full[i].tobytes() for i in range(full.shape[0])]

    def recover_source(self, shards: Sequence[bytes | None]) -> list[bytes]:
        """The n source values (even positions) from 2n optional shards, at least n present."""
        return self.recover(shards)[0::2]
