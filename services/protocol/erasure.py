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
* ``recover_poly_limbs`` (reference ``recover_poly``): the n monomial coefficients of ``p``
  straight from the shards, i.e. ``Kzg.poly`` of the source values without evaluating them;
  ``recover_source_limbs``: only the n source values (one size-n NTT instead of a size-2n one).

Recovery: zero polynomial ``Z`` of the erased positions times ``X^pad`` (degree padded to a power
of two with roots at 0, which lie on neither domain nor coset), built by a subproduct tree of
NTT products; ``P·Z`` interpolated on the 2n domain, divided by ``Z`` on the coset ``7·<w>``,
interpolated back. The result must have degree < n; since ``Z`` vanishes exactly on the erased
positions, that check alone proves every present shard consistent. With exactly n present (any
record read from a sector) there is nothing to check: the division then runs on the n-point coset
``7·<w_n>`` and Z on the domain comes from the tree's last level (``_recover_exactly_n``).
A 2^16 record from a random half: ~0.21 s on one core, ~0.12 s on two (``workers``: every hot
method takes an optional :class:`services.protocol.parallel.Workers` to split its NTTs).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numba
import numpy as np

from services.protocol import field, ntt
from services.protocol.constants import SCALAR_FULL_BYTES
from services.protocol.field import R, _add64, _ld, _mont_mul64, _st
from services.protocol.parallel import Workers

MAX_SCALE = ntt.MAX_LOG_SIZE


class ErasureError(ValueError):
    """Recovery impossible (too few shards) or shards inconsistent, or bad erasure input."""


_tables_lock = threading.Lock()
_extend_shift_tables: dict[int, np.ndarray] = {}
_coset_tables: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

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


def _coset_powers(size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Montgomery tables ``k^i``, ``k^i / size`` and ``k^-i / size`` (k = COSET_SHIFT), i < size."""
    with _tables_lock:
        tables = _coset_tables.get(size)
        if tables is None:
            fwd = np.empty((size, 4), dtype=np.uint64)
            inv = np.empty((size, 4), dtype=np.uint64)
            one = field.from_ints([1])
            ntt._powers_kernel(field.from_ints([COSET_SHIFT]), size, one, fwd)
            ntt._powers_kernel(field.from_ints([pow(COSET_SHIFT, -1, R)]), size, one, inv)
            inverse_size = field.from_ints([pow(size, -1, R)])
            fwd_scaled = field.mul(fwd, inverse_size)
            inv = field.mul(inv, inverse_size)
            for table in (fwd, fwd_scaled, inv):
                table.flags.writeable = False
            tables = (fwd, fwd_scaled, inv)
            _coset_tables[size] = tables
        return tables


def _zero_poly_tables(log_total: int, missing: np.ndarray, workers: Workers | None) -> tuple[np.ndarray, np.ndarray]:
    """Values on the size-2^log_total domain and inverse values on its coset ``k<w>`` of a zero
    polynomial Z of the ``missing`` positions: their roots, times ``X^pad`` to make the degree a
    power of two (X is non-zero on domain and coset, so present positions stay usable and the
    degree check in recovery stays a complete consistency check)."""
    total = 1 << log_total
    padded = (1 << (len(missing) - 1).bit_length()) if len(missing) else 0
    roots = _domain_roots(log_total, missing, padded)
    coefficients = _zero_poly(roots, workers)
    z = np.zeros((2, total, 4), dtype=np.uint64)
    z[0, : coefficients.shape[0]] = coefficients
    z[1] = ntt.scale_rows(z[:1], _coset_powers(total)[0], workers)[0]
    ntt.ntt_inplace_batch(z, workers)  # Z on the domain, Z on the coset
    return z[0], field.batch_inverse(z[1])


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


@numba.njit(cache=True, nogil=True)
def _odd_point_inputs(transforms, table, minus_one, out, c_start, c_stop, k_start, k_stop):
    """Inputs of the size-d NTTs that evaluate the tree nodes ``X^d + low`` at the odd points of
    the size-2d domain: ``out[c, k] = low[c, k] * w_2d^k``, where ``low[c, k] =
    transforms[c, -k mod d] / d - [k == 0]`` (``transforms`` = forward NTT of the node's values on
    the size-d domain, ``table[k] = w_2d^k / d``)."""
    d = transforms.shape[1]
    m1 = _ld(minus_one, 0)
    for c in range(c_start, c_stop):
        for k in range(k_start, k_stop):
            x = _mont_mul64(_ld(transforms[c], (d - k) & (d - 1)), _ld(table, k))
            if k == 0:
                x = _add64(x, m1)
            _st(out[c], k, x)


@numba.njit(cache=True, nogil=True)
def _pair_products(even_values, odd_values, minus_one, out, c_start, c_stop, i_start, i_stop):
    """Values of the products of node pairs (2c, 2c+1) on the size-2d domain, interleaved:
    ``out[c, 2i] = even[2c, i] * even[2c+1, i]``, ``out[c, 2i+1]`` the same for the odd points
    (where ``X^d = -1``, so the monic node's value is ``odd[., i] - 1``)."""
    m1 = _ld(minus_one, 0)
    for c in range(c_start, c_stop):
        a_even = even_values[2 * c]
        b_even = even_values[2 * c + 1]
        a_odd = odd_values[2 * c]
        b_odd = odd_values[2 * c + 1]
        for i in range(i_start, i_stop):
            _st(out[c], 2 * i, _mont_mul64(_ld(a_even, i), _ld(b_even, i)))
            _st(out[c], 2 * i + 1, _mont_mul64(_add64(_ld(a_odd, i), m1), _add64(_ld(b_odd, i), m1)))


_odd_tables: dict[int, np.ndarray] = {}


def _odd_point_table(d: int) -> np.ndarray:
    """Montgomery ``w_2d^k / d`` for k < d (cached)."""
    with _tables_lock:
        table = _odd_tables.get(d)
        if table is None:
            table = field.mul(ntt.domain_powers((2 * d).bit_length() - 1, d), field.from_ints([pow(d, -1, R)]))
            table.flags.writeable = False
            _odd_tables[d] = table
        return table


def _zero_poly_root(roots_mont: np.ndarray, workers: Workers | None) -> tuple[np.ndarray, np.ndarray]:
    """Values on the size-m domain of ``prod (X - root)`` (m a power of two >= 1), and their
    forward NTT (which encodes the low coefficients, see ``_odd_point_inputs``).

    Subproduct tree. A node (monic, degree d) is kept as its values on the size-d domain (where
    ``X^d = 1``) and their forward NTT. A pair's product on the size-2d domain then takes the
    children's values at the odd points (one size-d NTT each) and one size-2d NTT, instead of
    two forward and one inverse size-2d NTT.
    """
    m = roots_mont.shape[0]
    one = field.from_ints([1])
    minus_one = field.from_ints([R - 1])
    values = field.sub(np.repeat(one, m, axis=0), roots_mont).reshape(m, 1, 4)  # X - root at 1
    transforms = values  # the size-1 NTT is the identity
    d = 1
    while values.shape[0] > 1:
        count = values.shape[0] // 2
        odd = np.empty_like(values)
        ntt.run_split(_odd_point_inputs, values.shape[0], d, transforms, _odd_point_table(d), minus_one, odd, workers=workers)
        ntt.ntt_inplace_batch(odd, workers)
        products = np.empty((count, 2 * d, 4), dtype=np.uint64)
        ntt.run_split(_pair_products, count, d, values, odd, minus_one, products, workers=workers)
        values = products
        transforms = products.copy()
        ntt.ntt_inplace_batch(transforms, workers)
        d *= 2
    return values[0], transforms[0]


def _low_coefficients(transforms: np.ndarray, workers: Workers | None) -> np.ndarray:
    """``low`` of the monic ``X^m + low`` whose size-m domain values have forward NTT ``transforms``."""
    m = transforms.shape[0]
    low = ntt.reverse_and_scale(transforms[None], ntt._inverse_scale(m), workers)[0]  # intt = X^m + low there
    low[0] = field.sub(low[:1], field.from_ints([1]))[0]
    return low


def _zero_poly(roots_mont: np.ndarray, workers: Workers | None) -> np.ndarray:
    """Monic coefficients of prod (X - root), Montgomery, length m + 1; m must be a power of two or 0."""
    if roots_mont.shape[0] == 0:
        return field.from_ints([1])
    _, transforms = _zero_poly_root(roots_mont, workers)
    return np.concatenate([_low_coefficients(transforms, workers), field.from_ints([1])])


def _domain_roots(log_total: int, positions: np.ndarray, count: int) -> np.ndarray:
    """Montgomery ``w^i`` for the given domain positions, zero-padded to ``count`` rows."""
    total = 1 << log_total
    roots = np.zeros((count, 4), dtype=np.uint64)
    half = total // 2
    powers = ntt.domain_powers(log_total)  # w^i for i < total / 2; w^(i + total/2) = -w^i
    low = positions[positions < half]
    high = positions[positions >= half] - half
    roots[: len(low)] = powers[low]
    roots[len(low) : len(positions)] = field.neg(np.ascontiguousarray(powers[high]))
    return roots


@numba.njit(cache=True, nogil=True)
def _fold_to_coset(src, low_table, high_table, dst, b_start, b_stop, i_start, i_stop):
    """Values-to-coset step for exactly-n recovery: ``src`` holds forward size-2n NTTs, i.e.
    ``2n * q[-t]`` for coefficient vectors ``q``; ``dst[b, i] = (q_i + k^n q_(i+n)) k^i`` (the
    inputs of a size-n NTT giving ``q`` on the coset ``k<w_n>``), with ``low_table[i] = k^i / 2n``
    and ``high_table[i] = k^(n+i) / 2n``."""
    total = src.shape[1]
    n = dst.shape[1]
    for b in range(b_start, b_stop):
        for i in range(i_start, i_stop):
            lo = _mont_mul64(_ld(src[b], (total - i) & (total - 1)), _ld(low_table, i))
            hi = _mont_mul64(_ld(src[b], n - i), _ld(high_table, i))
            _st(dst[b], i, _add64(lo, hi))


def _recover_exactly_n(batch: np.ndarray, present: np.ndarray, missing: np.ndarray, workers: Workers | None) -> np.ndarray:
    """Coefficients (batch, n, 4) when exactly n of the 2n shards are present (every record read
    back from a sector): nothing can be inconsistent, so ``P = (P·Z) / Z`` is only needed on the
    n-point coset ``k<w_n>``, and ``Z`` (degree n) on the 2n domain comes from the tree's last
    level. Three size-2n NTT equivalents fewer than the general path."""
    total = batch.shape[1]
    n = total // 2
    log_total = total.bit_length() - 1
    minus_one = field.from_ints([R - 1])
    values, transforms = _zero_poly_root(_domain_roots(log_total, missing, n), workers)
    # Z on the 2n domain: X^n = 1 at even points (the tree's values), -1 at odd points.
    odd = np.empty((1, n, 4), dtype=np.uint64)
    ntt.run_split(_odd_point_inputs, 1, n, transforms[None], _odd_point_table(n), minus_one, odd, workers=workers)
    ntt.ntt_inplace_batch(odd, workers)
    z_on_domain = np.empty((total, 4), dtype=np.uint64)
    z_on_domain[0::2] = values
    z_on_domain[1::2] = field.add(odd[0], minus_one)
    # Z on the coset k<w_n>: X^n = k^n there, so the values are NTT_n(low_i k^i) + k^n.
    coset_fwd, coset_fwd_scaled, _ = _coset_powers(total)
    shifted = ntt.scale_rows(_low_coefficients(transforms, workers)[None], coset_fwd[:n], workers)
    shifted[0, 0] = field.add(shifted[0, :1], field.from_ints([pow(COSET_SHIFT, n, R)]))[0]
    ntt.ntt_inplace_batch(shifted, workers)
    z_on_coset_inv = field.batch_inverse(shifted[0])

    work = np.array(batch, dtype=np.uint64, order="C", copy=True)
    work[:, ~present] = 0
    work = ntt.scale_rows(work, z_on_domain, workers)  # (P*Z) on the domain
    ntt.ntt_inplace_batch(work, workers)  # 2n * coefficients of P*Z, index-reversed
    folded = np.empty((batch.shape[0], n, 4), dtype=np.uint64)
    ntt.run_split(
        _fold_to_coset, batch.shape[0], n, work, np.ascontiguousarray(coset_fwd_scaled[:n]),
        np.ascontiguousarray(coset_fwd_scaled[n:]), folded, workers=workers,
    )
    ntt.ntt_inplace_batch(folded, workers)  # P*Z on the coset k<w_n>
    folded = ntt.scale_rows(folded, z_on_coset_inv, workers)  # P on the coset
    ntt.ntt_inplace_batch(folded, workers)  # n * coefficients of P(k X), index-reversed
    return ntt.reverse_and_scale(folded, _coset_powers(n)[2], workers)  # coefficients of P


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

    def extend_limbs(self, source: np.ndarray, workers: Workers | None = None) -> np.ndarray:
        """Parity limbs for (n, 4) or (batch, n, 4) uint64 source limbs (no validation of < r)."""
        batch, single = _to_batch(source, (4,), np.uint64, "source limbs")
        n = batch.shape[1]
        self._check_source_count(n)
        work = np.array(batch, dtype=np.uint64, order="C", copy=True)
        ntt.ntt_inplace_batch(work, workers)  # n * coefficients, index-reversed
        parity = ntt.reverse_and_scale(work, _extend_shift(n), workers)  # coefficients * w_2n^k
        ntt.ntt_inplace_batch(parity, workers)  # evaluations at w_2n^(2i+1)
        return parity[0] if single else parity

    def extend_array(self, source: np.ndarray, workers: Workers | None = None) -> np.ndarray:
        """Parity for (n, 32) or (batch, n, 32) uint8 big-endian scalars; same shape out."""
        batch, single = _to_batch(source, (SCALAR_FULL_BYTES,), np.uint8, "source")
        self._check_source_count(batch.shape[1])
        parity = _limbs_to_bytes_rows(self.extend_limbs(_bytes_rows_to_limbs(batch), workers))
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

    def _check_present(self, total: int, present: np.ndarray) -> np.ndarray:
        present = np.asarray(present, dtype=bool)
        if present.shape != (total,):
            raise ErasureError(f"present mask must have shape ({total},), got {present.shape}")
        count = int(present.sum())
        if count < total // 2:
            raise ErasureError(f"too few shards to recover: {count} present, need at least {total // 2} of {total}")
        return present

    def _recover_coefficients(self, batch: np.ndarray, present: np.ndarray, workers: Workers | None) -> np.ndarray:
        """(batch, 2n, 4) -> (batch, n, 4) coefficients of the degree < n polynomials (verified:
        the interpolant's top half is zero), same representation as the input."""
        total = batch.shape[1]
        self._check_shard_count(total)
        present = self._check_present(total, present)
        n = total // 2
        log_total = total.bit_length() - 1
        missing = np.flatnonzero(~present)
        if len(missing) == n:
            return _recover_exactly_n(batch, present, missing, workers)
        z_on_domain, z_on_coset_inv = _zero_poly_tables(log_total, missing, workers)
        _, coset_fwd_scaled, coset_inv = _coset_powers(total)
        work = np.array(batch, dtype=np.uint64, order="C", copy=True)
        work[:, ~present] = 0
        work = ntt.scale_rows(work, z_on_domain, workers)  # (P*Z) on the domain
        ntt.ntt_inplace_batch(work, workers)  # total * coefficients of P*Z, index-reversed
        work = ntt.reverse_and_scale(work, coset_fwd_scaled, workers)  # coefficients of (P*Z)(k X)
        ntt.ntt_inplace_batch(work, workers)  # P*Z on the coset
        work = ntt.scale_rows(work, z_on_coset_inv, workers)  # P on the coset
        ntt.ntt_inplace_batch(work, workers)  # total * coefficients of P(k X), index-reversed
        work = ntt.reverse_and_scale(work, coset_inv, workers)  # coefficients of P
        if work[:, n:].any():
            raise ErasureError("shards are inconsistent: not evaluations of one polynomial of degree < n")
        return np.ascontiguousarray(work[:, :n])

    def recover_poly_limbs(self, values: np.ndarray, present: np.ndarray, workers: Workers | None = None) -> np.ndarray:
        """The n monomial coefficients of the polynomial behind (2n, 4) or (batch, 2n, 4) shard
        limbs (``present`` marks the known positions): what ``Kzg.poly`` gives for the recovered
        source values, without evaluating them. Same representation out as in."""
        batch, single = _to_batch(values, (4,), np.uint64, "shard limbs")
        coefficients = self._recover_coefficients(batch, present, workers)
        return coefficients[0] if single else coefficients

    def recover_source_limbs(self, values: np.ndarray, present: np.ndarray, workers: Workers | None = None) -> np.ndarray:
        """The n source values (even positions) from (2n, 4) or (batch, 2n, 4) shard limbs."""
        batch, single = _to_batch(values, (4,), np.uint64, "shard limbs")
        source = self._recover_coefficients(batch, present, workers)
        ntt.ntt_inplace_batch(source, workers)  # degree < n: its values on the size-n domain
        return source[0] if single else source

    def recover_limbs(self, values: np.ndarray, present: np.ndarray, workers: Workers | None = None) -> np.ndarray:
        """All 2n values from (2n, 4) or (batch, 2n, 4) limbs where ``present`` (2n bools) marks
        the known positions (others are ignored). Same representation out as in."""
        batch, single = _to_batch(values, (4,), np.uint64, "shard limbs")
        coefficients = self._recover_coefficients(batch, present, workers)
        work = np.zeros(batch.shape, dtype=np.uint64)
        work[:, : coefficients.shape[1]] = coefficients
        ntt.ntt_inplace_batch(work, workers)  # P on the domain
        present = np.asarray(present, dtype=bool)
        # Implied by the degree check (Z vanishes only on erased positions); kept as a guard.
        if not np.array_equal(work[:, present], batch[:, present]):
            raise ErasureError("shards are inconsistent: present values disagree with the recovered polynomial")
        return work[0] if single else work

    def recover_array(self, values: np.ndarray, present: np.ndarray, workers: Workers | None = None) -> np.ndarray:
        """All 2n values from (2n, 32) or (batch, 2n, 32) uint8 BE scalars and a present mask."""
        batch, single = _to_batch(values, (SCALAR_FULL_BYTES,), np.uint8, "shards")
        present = np.asarray(present, dtype=bool)
        self._check_shard_count(batch.shape[1])
        if present.shape != (batch.shape[1],):
            raise ErasureError(f"present mask must have shape ({batch.shape[1]},), got {present.shape}")
        known = np.zeros_like(batch)
        known[:, present] = batch[:, present]
        full = _limbs_to_bytes_rows(self.recover_limbs(_bytes_rows_to_limbs(known), present, workers))
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
