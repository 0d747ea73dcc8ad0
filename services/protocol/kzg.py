"""KZG commitments over BLS12-381 with the reference's conventions (spec 01 §7).

Why: pieces carry record commitments and witnesses against the segment commitment; plotting
and proving need chunk witnesses; all must be bit-identical with the reference node.

Curve arithmetic (MSM, pairings, point compression) is ``py_arkworks_bls12381``; the scalar
side (inverse DFT, synthetic division, Horner) is ``field``/``ntt`` (numba).

Conventions (reference ``subspace-kzg`` on rust-kzg):

* ``poly(values)``: ``values[i]`` is the evaluation at ``w_n^i`` (natural order, n a power of
  two, ``w_n = 7^((r-1)/n)``); the polynomial holds monomial coefficients (inverse DFT).
* ``commit(poly) = sum_k c_k [tau^k]G1`` as a 48-byte compressed G1 point.
* ``create_witness(poly, num_values, index)``: ``x = w_m^index`` with
  ``m = next_power_of_two(num_values)``; witness = ``commit((p(X) - p(x)) / (X - x))``.
* ``verify(commitment, num_values, index, value, witness)`` checks
  ``e(C - [value]G1, G2) == e(W, [tau]G2 - [x]G2)``; any undecodable input gives ``False``.

Setups come in as **bytes**: ``Kzg.from_bytes(data)`` parses the reference
``eth-public-parameters.bin`` layout (32 768 compressed G1 powers then 65 compressed G2 powers,
1 579 104 bytes); data whose sha256 is the mainnet digest (``MAINNET_PARAMS_SHA256``) is decoded
without per-point subgroup checks (~0.9 s instead of ~3 s), every setup gets the generator and
``e([tau]G1, G2) == e(G1, [tau]G2)`` checks. Finding the bytes (the packaged mainnet file, a
path, an environment variable) is the caller's business: ``services.kzg_setup``.

``Kzg.dev(tau)`` is an INSECURE setup from a publicly known tau, for tests and dev chains only
(anyone can forge proofs against it). Because tau is known, a commitment there is one scalar
multiplication, ``[p(tau)]G1``, and a witness ``[q(tau)]G1`` with
``q(tau) = (p(tau) - p(x)) / (tau - x)``: the same points the MSM gives, in microseconds instead
of ~0.45 s per 2^15 polynomial (``Kzg.dev(tau, shortcut=False)`` keeps the MSM, for
cross-checks). Its G1 powers are only generated when something needs them (``to_bytes``, MSM).

Extras beyond the reference API: ``poly_from_limbs`` (canonical limbs, hot path),
``Polynomial.evaluate``, ``create_witness_at`` / ``verify_at`` (any point, used by the C-KZG
cross-check), ``to_bytes`` (reference layout).

Threads: ``commit`` / ``create_witness`` take an optional ``workers``
(:class:`services.protocol.parallel.Workers`): arkworks' MSM is single-threaded but releases the
GIL, so a large MSM is split into partial sums on the caller's threads (2^15 points: ~0.45 s
on one thread, ~0.27 s on two). Without ``workers`` it runs on the calling thread.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from dataclasses import dataclass
from typing import Sequence

import numba
import numpy as np
from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

from services.protocol import field, ntt
from services.protocol.constants import COMMITMENT_SIZE, SCALAR_FULL_BYTES
from services.protocol.field import R, _add64, _ld, _mont_mul64, _st
from services.protocol.parallel import Workers, run_all, worker_count

G1_COUNT = 32768
G2_COUNT = 65
G1_SIZE = 48
G2_SIZE = 96
PARAMS_SIZE = G1_COUNT * G1_SIZE + G2_COUNT * G2_SIZE  # 1_579_104
# sha256 of the reference shared/subspace-kzg/src/eth-public-parameters.bin (Ethereum KZG ceremony
# transcript[3]); a file with this digest is trusted and its points decoded without subgroup checks.
MAINNET_PARAMS_SHA256 = "f3ead1a6249527aa503d6c56578325c01d19b3365cc59905be2bba64ae322925"
# Publicly known tau of the insecure dev setup: small and sparse (17 bits, two set bits), so the
# powers are a cheap scalar-multiplication chain.
DEV_TAU = 0x1_0001
MAX_DOMAIN_LOG = 32  # 2-adicity of r


class KzgError(ValueError):
    """Bad KZG parameters, polynomial or argument."""


@dataclass(frozen=True, eq=False)
class Polynomial:
    """Monomial coefficients ``c_0..c_{m-1}`` as canonical (m, 4) uint64 limbs (read-only)."""

    coefficients: np.ndarray

    def __post_init__(self) -> None:
        c = self.coefficients
        if not isinstance(c, np.ndarray) or c.dtype != np.uint64 or c.ndim != 2 or c.shape[1] != 4 or not c.flags.c_contiguous:
            raise KzgError(
                f"Polynomial coefficients must be a C-contiguous uint64 array of shape (m, 4), got "
                f"{getattr(c, 'dtype', type(c).__name__)} {getattr(c, 'shape', None)}"
            )
        bad = field._first_noncanonical(c) if c.shape[0] else -1
        if bad >= 0:
            raise KzgError(f"Polynomial coefficient {bad} is not a canonical scalar (>= r)")

    def __len__(self) -> int:
        return int(self.coefficients.shape[0])

    def evaluate(self, point: bytes) -> bytes:
        """p(point) for a 32-byte big-endian canonical scalar point, as 32-byte BE scalar."""
        x = field.scalar_from_bytes(point)
        out = np.zeros((1, 4), dtype=np.uint64)
        if len(self):
            _horner(self.coefficients, field.from_ints([x]), out)
        return field.limbs_to_bytes(out)[0].tobytes()

    def coefficient_bytes(self) -> list[bytes]:
        """Coefficients as 32-byte big-endian scalars."""
        rows = field.limbs_to_bytes(self.coefficients)
        return [rows[i].tobytes() for i in range(rows.shape[0])]


@numba.njit(cache=True, nogil=True)
def _divide_by_linear(coeffs, x, quotient):
    """quotient = (p(X) - p(x)) / (X - x) by synthetic division (x in Montgomery form).

    Coefficients may be canonical limbs: the recurrence is linear in them.
    """
    m = coeffs.shape[0]
    if m < 2:
        return
    xm = _ld(x, 0)
    acc = _ld(coeffs, m - 1)
    _st(quotient, m - 2, acc)
    for k in range(m - 2, 0, -1):
        acc = _add64(_ld(coeffs, k), _mont_mul64(acc, xm))
        _st(quotient, k - 1, acc)


@numba.njit(cache=True, nogil=True)
def _horner(coeffs, x, out):
    """out[0] = p(x) (x Montgomery; coefficients and result in the same representation)."""
    xm = _ld(x, 0)
    acc = _ld(coeffs, coeffs.shape[0] - 1)
    for k in range(coeffs.shape[0] - 2, -1, -1):
        acc = _add64(_ld(coeffs, k), _mont_mul64(acc, xm))
    _st(out, 0, acc)


MSM_SPLIT_MIN_POINTS = 4096


def _msm_parts(m: int, workers: Workers | None) -> int:
    return 1 if m < MSM_SPLIT_MIN_POINTS else max(1, min(worker_count(workers), m // (MSM_SPLIT_MIN_POINTS // 2)))


def _scalar_from_limbs(limbs: np.ndarray) -> int:
    """One canonical (1, 4) limb row as an int."""
    return int.from_bytes(np.ascontiguousarray(limbs).tobytes(), "little")


def _scalars_from_limbs(limbs: np.ndarray) -> list[Scalar]:
    raw = np.ascontiguousarray(limbs).tobytes()
    from_le = Scalar.from_le_bytes
    return [from_le(raw[i : i + 32]) for i in range(0, len(raw), 32)]


def _domain_point(num_values: int, index: int) -> int:
    if not isinstance(num_values, int) or num_values < 1:
        raise KzgError(f"num_values must be a positive int, got {num_values!r}")
    m = 1 << (num_values - 1).bit_length()
    log_m = m.bit_length() - 1
    if log_m > MAX_DOMAIN_LOG:
        raise KzgError(f"num_values {num_values} exceeds the 2^{MAX_DOMAIN_LOG} domain limit")
    if not isinstance(index, int) or not 0 <= index < m:
        raise KzgError(f"index {index!r} is outside the domain of size {m} (num_values {num_values})")
    return pow(ntt.root_of_unity(log_m), index, R)


class Kzg:
    """A KZG setup: monomial G1 powers ``[tau^i]G1`` and G2 powers ``[tau^i]G2``.

    ``known_tau`` (dev setups only) switches commitments and witnesses to one scalar
    multiplication each; ``g1_powers`` may then be None (generated on first need).
    """

    def __init__(
        self,
        g1_powers: Sequence[G1Point] | None,
        g2_powers: Sequence[G2Point],
        *,
        source: str = "<memory>",
        known_tau: int | None = None,
        g1_count: int = G1_COUNT,
    ) -> None:
        if g1_powers is None and known_tau is None:
            raise KzgError(f"KZG setup {source}: G1 powers can only be left out when tau is known")
        count = len(g1_powers) if g1_powers is not None else g1_count
        if count < 1 or len(g2_powers) < 2:
            raise KzgError(f"KZG setup {source}: need >= 1 G1 and >= 2 G2 powers")
        self._g1_list = list(g1_powers) if g1_powers is not None else None
        self._g1_count = count
        self._g1_lock = threading.Lock()
        self._g2 = list(g2_powers)
        self.source = source
        self._known_tau = known_tau
        self._g1_gen = G1Point()
        self._g2_gen = G2Point()
        self._tau_g2 = self._g2[1]
        self._x_g2_cache = functools.lru_cache(maxsize=4096)(self._tau_minus_x_g2)

    def __repr__(self) -> str:
        return f"Kzg(source={self.source!r}, g1_powers={self._g1_count})"

    @property
    def max_values(self) -> int:
        """Largest polynomial length (coefficients) this setup can commit to."""
        return self._g1_count

    @property
    def _g1(self) -> list[G1Point]:
        with self._g1_lock:
            if self._g1_list is None:
                self._g1_list = _powers(G1Point(), self._known_tau, self._g1_count)
            return self._g1_list

    # ---- construction --------------------------------------------------------------------

    @classmethod
    def from_bytes(cls, data: bytes, *, source: str = "<bytes>", check: bool | None = None) -> Kzg:
        """Parse the reference layout; ``check`` subgroup-checks points (default: unless the
        data is the known mainnet file)."""
        if len(data) != PARAMS_SIZE:
            raise KzgError(f"KZG parameters {source}: size is {len(data)} bytes, expected {PARAMS_SIZE}")
        if check is None:
            check = hashlib.sha256(data).hexdigest() != MAINNET_PARAMS_SHA256
        g1_decode = G1Point.from_compressed_bytes if check else G1Point.from_compressed_bytes_unchecked
        g2_base = G1_COUNT * G1_SIZE

        def g1_at(i: int) -> G1Point:
            try:
                return g1_decode(data[i * G1_SIZE : (i + 1) * G1_SIZE])
            except ValueError as exc:
                raise KzgError(f"KZG parameters {source}: G1 point {i} is invalid ({exc})") from None

        def g2_at(i: int) -> G2Point:
            try:
                return G2Point.from_compressed_bytes(data[g2_base + i * G2_SIZE : g2_base + (i + 1) * G2_SIZE])
            except ValueError as exc:
                raise KzgError(f"KZG parameters {source}: G2 point {i} is invalid ({exc})") from None

        # Cheap structural checks first, so a wrong file fails fast.
        if g1_at(0) != G1Point():
            raise KzgError(f"KZG parameters {source}: G1 point 0 is not the G1 generator")
        if g2_at(0) != G2Point():
            raise KzgError(f"KZG parameters {source}: G2 point 0 is not the G2 generator")
        if not GT.pairing_check([g1_at(1), -G1Point()], [G2Point(), g2_at(1)]):
            raise KzgError(f"KZG parameters {source}: [tau]G1 and [tau]G2 do not match (pairing check failed)")
        g1 = [g1_at(i) for i in range(G1_COUNT)]
        g2 = [g2_at(i) for i in range(G2_COUNT)]
        return cls(g1, g2, source=source)

    @classmethod
    def dev(cls, tau: int = DEV_TAU, *, shortcut: bool = True) -> Kzg:
        """INSECURE setup with a publicly known ``tau`` (tests and dev chains only).

        Full size (32 768 G1 + 65 G2 powers), cached in memory per ``(tau, shortcut)``. With
        ``shortcut`` (default) commitments and witnesses use the known tau (see module doc);
        ``shortcut=False`` computes them by MSM over the powers, like any other setup.
        """
        if not isinstance(tau, int) or not 1 < tau < R or pow(tau, 1 << MAX_DOMAIN_LOG, R) == 1:
            raise KzgError(f"dev tau {tau!r} must be in 2..r-1 and not a 2^k-th root of unity")
        return _dev_setup(tau, bool(shortcut))

    def to_bytes(self) -> bytes:
        """The setup in the reference file layout (needs the full 32 768 / 65 powers)."""
        if self._g1_count != G1_COUNT or len(self._g2) != G2_COUNT:
            raise KzgError(f"setup {self.source} does not have {G1_COUNT}/{G2_COUNT} powers")
        return b"".join(p.to_compressed_bytes() for p in self._g1) + b"".join(p.to_compressed_bytes() for p in self._g2)

    # ---- operations ----------------------------------------------------------------------

    def poly(self, values) -> Polynomial:
        """Interpolate evaluations at ``w_n^i`` (32-byte BE canonical scalars: a list of bytes,
        concatenated bytes or an (n, 32) uint8 array) into monomial coefficients."""
        limbs = field.bytes_to_limbs(values)
        return self.poly_from_limbs(limbs)

    def poly_from_limbs(self, limbs: np.ndarray, workers: Workers | None = None) -> Polynomial:
        """Like ``poly`` for canonical (n, 4) uint64 limbs (hot path; values assumed < r)."""
        n = limbs.shape[0] if isinstance(limbs, np.ndarray) and limbs.ndim == 2 else -1
        if n < 1 or n & (n - 1) or n > ntt.MAX_SIZE:
            raise KzgError(f"poly needs a power-of-two number of values in 1..{ntt.MAX_SIZE}, got {n if n >= 0 else limbs!r:.80}")
        coeffs = ntt.intt(limbs, workers)
        coeffs.flags.writeable = False
        return Polynomial(coeffs)

    def _check_length(self, m: int) -> None:
        if m > self._g1_count:
            raise KzgError(f"polynomial has {m} coefficients, setup {self.source} supports {self._g1_count}")

    def _commit_limbs(self, limbs: np.ndarray, workers: Workers | None) -> G1Point:
        m = limbs.shape[0]
        self._check_length(m)
        if m == 0:
            return G1Point.identity()
        if self._known_tau is not None:
            return self._g1_gen * Scalar(_evaluate_limbs(limbs, self._known_tau))
        g1 = self._g1
        scalars = _scalars_from_limbs(limbs)
        parts = _msm_parts(m, workers)
        if parts == 1:
            return G1Point.multiexp_unchecked(g1[:m], scalars)
        # arkworks' MSM is single-threaded but releases the GIL: split the sum across threads.
        step = -(-m // parts)
        calls = [(G1Point.multiexp_unchecked, g1[i : i + step], scalars[i : i + step]) for i in range(0, m, step)]
        partial = run_all(workers, calls)
        total = partial[0]
        for point in partial[1:]:
            total = total + point
        return total

    def commit(self, poly: Polynomial, workers: Workers | None = None) -> bytes:
        """48-byte compressed commitment ``sum c_k [tau^k]G1``."""
        if not isinstance(poly, Polynomial):
            raise KzgError(f"commit needs a Polynomial, got {type(poly).__name__}")
        return self._commit_limbs(poly.coefficients, workers).to_compressed_bytes()

    def create_witness(self, poly: Polynomial, num_values: int, index: int, workers: Workers | None = None) -> bytes:
        """48-byte witness for ``p(w_m^index)``, ``m = next_power_of_two(num_values)``."""
        if not isinstance(poly, Polynomial):
            raise KzgError(f"create_witness needs a Polynomial, got {type(poly).__name__}")
        return self._witness(poly, _domain_point(num_values, index), workers)

    def create_witness_at(self, poly: Polynomial, point: bytes, workers: Workers | None = None) -> bytes:
        """48-byte witness for ``p(point)`` at any 32-byte BE canonical scalar ``point``."""
        if not isinstance(poly, Polynomial):
            raise KzgError(f"create_witness_at needs a Polynomial, got {type(poly).__name__}")
        return self._witness(poly, field.scalar_from_bytes(point), workers)

    def _witness(self, poly: Polynomial, x: int, workers: Workers | None) -> bytes:
        coeffs = poly.coefficients
        tau = self._known_tau
        if tau is not None and tau != x:
            # q(tau) = (p(tau) - p(x)) / (tau - x): no quotient polynomial needed
            self._check_length(max(coeffs.shape[0] - 1, 0))
            if coeffs.shape[0] < 2:
                return G1Point.identity().to_compressed_bytes()
            difference = _evaluate_limbs(coeffs, tau) - _evaluate_limbs(coeffs, x)
            q_at_tau = difference * pow(tau - x, -1, R) % R
            return (self._g1_gen * Scalar(q_at_tau)).to_compressed_bytes()
        quotient = np.zeros((max(coeffs.shape[0] - 1, 0), 4), dtype=np.uint64)
        _divide_by_linear(coeffs, field.from_ints([x]), quotient)
        return self._commit_limbs(quotient, workers).to_compressed_bytes()

    def _tau_minus_x_g2(self, num_values: int, index: int) -> G2Point:
        x = _domain_point(num_values, index)
        return self._tau_g2 - self._g2_gen * Scalar(x)

    def verify(self, commitment: bytes, num_values: int, index: int, value: bytes, witness: bytes) -> bool:
        """Check that ``witness`` opens ``commitment`` to ``value`` at ``w_m^index``.

        Returns False for any undecodable commitment / witness / non-canonical value; raises
        KzgError only for an invalid ``num_values`` / ``index`` (a caller bug).
        """
        return self._verify(commitment, self._x_g2_cache(num_values, index), value, witness)

    def verify_at(self, commitment: bytes, point: bytes, value: bytes, witness: bytes) -> bool:
        """Like ``verify`` at an arbitrary 32-byte BE canonical point (False if it is not one)."""
        try:
            x = field.scalar_from_bytes(point)
        except ValueError:
            return False
        return self._verify(commitment, self._tau_g2 - self._g2_gen * Scalar(x), value, witness)

    def _verify(self, commitment: bytes, tau_minus_x: G2Point, value: bytes, witness: bytes) -> bool:
        try:
            if len(commitment) != COMMITMENT_SIZE or len(witness) != COMMITMENT_SIZE or len(value) != SCALAR_FULL_BYTES:
                return False
            c = G1Point.from_compressed_bytes(bytes(commitment))
            w = G1Point.from_compressed_bytes(bytes(witness))
            v = int.from_bytes(bytes(value), "big")
            if v >= R:
                return False
        except (ValueError, TypeError):
            return False
        lhs = c - self._g1_gen * Scalar(v)
        return GT.pairing_check([lhs, -w], [self._g2_gen, tau_minus_x])


def _evaluate_limbs(coefficients: np.ndarray, x: int) -> int:
    """p(x) as an int for canonical coefficient limbs (m >= 1) and an int point."""
    out = np.zeros((1, 4), dtype=np.uint64)
    _horner(coefficients, field.from_ints([x]), out)
    return _scalar_from_limbs(out)


def _powers(generator, tau: int, count: int) -> list:
    step = Scalar(tau)
    out = [generator]
    for _ in range(count - 1):
        out.append(out[-1] * step)
    return out


@functools.lru_cache(maxsize=8)
def _dev_setup(tau: int, shortcut: bool) -> Kzg:
    g2 = _powers(G2Point(), tau, G2_COUNT)
    label = f"dev(tau={tau:#x})" if shortcut else f"dev(tau={tau:#x}, msm)"
    return Kzg(None, g2, source=label, known_tau=tau) if shortcut else Kzg(_powers(G1Point(), tau, G1_COUNT), g2, source=label)
