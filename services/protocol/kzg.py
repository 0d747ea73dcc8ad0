"""KZG commitments over BLS12-381 with the reference's conventions (spec 01 §7).

Why: pieces carry record commitments and witnesses against the segment commitment; plotting
and proving need chunk witnesses; all must be bit-identical with the reference node.

Curve arithmetic (MSM, pairings, point compression) is ``py_arkworks_bls12381``; the scalar
side (inverse DFT, synthetic division) is ``field``/``ntt`` (numba).

Conventions (reference ``subspace-kzg`` on rust-kzg):

* ``poly(values)``: ``values[i]`` is the evaluation at ``w_n^i`` (natural order, n a power of
  two, ``w_n = 7^((r-1)/n)``); the polynomial holds monomial coefficients (inverse DFT).
* ``commit(poly) = sum_k c_k [tau^k]G1`` as a 48-byte compressed G1 point.
* ``create_witness(poly, num_values, index)``: ``x = w_m^index`` with
  ``m = next_power_of_two(num_values)``; witness = ``commit((p(X) - p(x)) / (X - x))``.
* ``verify(commitment, num_values, index, value, witness)`` checks
  ``e(C - [value]G1, G2) == e(W, [tau]G2 - [x]G2)``; any undecodable input gives ``False``.

Setups: ``Kzg.from_file(path)`` reads the reference ``eth-public-parameters.bin`` layout
(32 768 compressed G1 powers then 65 compressed G2 powers, 1 579 104 bytes); ``path=None``
resolves ``default_params_path()`` (env ``AUTONOMYS_KZG_PARAMS``, else the shared checkout
``../shared/kzg/eth-public-parameters.bin``). ``Kzg.dev()`` builds an INSECURE setup from a
publicly known tau, for tests and dev nodes only: anyone can forge proofs against it.
Loaded setups are cached in memory (per path/size/mtime, per dev tau). Files whose sha256 is the
reference mainnet digest are decoded without per-point subgroup checks (~0.9 s instead of ~3 s);
every file gets the generator and ``e([tau]G1, G2) == e(G1, [tau]G2)`` checks.

Extras beyond the reference API: ``poly_from_limbs`` (canonical limbs, hot path),
``Polynomial.evaluate``, ``create_witness_at`` / ``verify_at`` (any point, used by the C-KZG
cross-check), ``write``/``to_bytes`` (reference layout).

Performance: ``commit``/``create_witness`` of a 2^15 polynomial are one arkworks MSM (~0.45 s,
single-threaded). arkworks releases the GIL, so callers may commit several records in threads.
"""

from __future__ import annotations

import functools
import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numba
import numpy as np
from py_arkworks_bls12381 import GT, G1Point, G2Point, Scalar

from services.protocol import field, ntt
from services.protocol.constants import COMMITMENT_SIZE, SCALAR_FULL_BYTES
from services.protocol.field import R, _add64, _ld, _mont_mul64, _st

G1_COUNT = 32768
G2_COUNT = 65
G1_SIZE = 48
G2_SIZE = 96
PARAMS_SIZE = G1_COUNT * G1_SIZE + G2_COUNT * G2_SIZE  # 1_579_104
PARAMS_ENV_VAR = "AUTONOMYS_KZG_PARAMS"
# sha256 of the reference shared/subspace-kzg/src/eth-public-parameters.bin (Ethereum KZG ceremony
# transcript[3]); a file with this digest is trusted and its points decoded without subgroup checks.
MAINNET_PARAMS_SHA256 = "f3ead1a6249527aa503d6c56578325c01d19b3365cc59905be2bba64ae322925"
# Publicly known tau of the insecure dev setup: small and sparse (17 bits, two set bits), so the
# powers are a cheap scalar-multiplication chain.
DEV_TAU = 0x1_0001
DEV_CACHE_MAGIC = b"autonomys-py dev kzg xy v1\x00\x00\x00\x00\x00\x00"  # 32 bytes
G1_XY_SIZE = 96
G2_XY_SIZE = 192
MAX_DOMAIN_LOG = 32  # 2-adicity of r


class KzgError(ValueError):
    """Bad KZG parameters, polynomial or argument."""


def default_params_path() -> Path:
    """Mainnet parameters path: env AUTONOMYS_KZG_PARAMS, else ../shared/kzg next to the repo."""
    env = os.environ.get(PARAMS_ENV_VAR)
    if env:
        return Path(env)
    shared = os.environ.get("AUTONOMYS_SHARED_DIR")
    base = Path(shared) if shared else Path(__file__).resolve().parents[3] / "shared"
    return base / "kzg" / "eth-public-parameters.bin"


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


def _msm_threads() -> int:
    """Threads for one large MSM: ``AUTONOMYS_MSM_THREADS`` or the CPU count (at most 8)."""
    value = os.environ.get("AUTONOMYS_MSM_THREADS")
    if value is not None:
        try:
            return max(1, int(value))
        except ValueError:
            raise KzgError(f"AUTONOMYS_MSM_THREADS must be an integer, got {value!r}") from None
    return max(1, min(8, os.cpu_count() or 1))


def _msm_parts(m: int) -> int:
    return 1 if m < MSM_SPLIT_MIN_POINTS else min(_msm_threads(), m // (MSM_SPLIT_MIN_POINTS // 2))


@functools.lru_cache(maxsize=1)
def _msm_pool():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=_msm_threads(), thread_name_prefix="kzg-msm")


os.register_at_fork(after_in_child=_msm_pool.cache_clear)  # a forked child gets a fresh pool


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
    """A KZG setup: monomial G1 powers ``[tau^i]G1`` and G2 powers ``[tau^i]G2``."""

    def __init__(self, g1_powers: Sequence[G1Point], g2_powers: Sequence[G2Point], *, source: str = "<memory>") -> None:
        if len(g1_powers) < 1 or len(g2_powers) < 2:
            raise KzgError(f"KZG setup {source}: need >= 1 G1 and >= 2 G2 powers")
        self._g1 = list(g1_powers)
        self._g2 = list(g2_powers)
        self.source = source
        self._g1_gen = G1Point()
        self._g2_gen = G2Point()
        self._tau_g2 = self._g2[1]
        self._x_g2_cache = functools.lru_cache(maxsize=4096)(self._tau_minus_x_g2)

    def __repr__(self) -> str:
        return f"Kzg(source={self.source!r}, g1_powers={len(self._g1)})"

    @property
    def max_values(self) -> int:
        """Largest polynomial length (coefficients) this setup can commit to."""
        return len(self._g1)

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
    def from_file(cls, path: str | os.PathLike | None = None, *, check: bool | None = None) -> Kzg:
        """Load (and cache in memory per path/size/mtime) a parameters file; see module doc."""
        path = Path(path) if path is not None else default_params_path()
        try:
            stat = path.stat()
        except OSError as exc:
            hint = f" (set {PARAMS_ENV_VAR} or pass a path)" if path == default_params_path() else ""
            raise KzgError(f"KZG parameters file {path} cannot be read: {exc.strerror or exc}{hint}") from None
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, check)
        with _file_cache_lock:
            cached = _file_cache.get(key)
        if cached is not None:
            return cached
        if stat.st_size != PARAMS_SIZE:
            raise KzgError(f"KZG parameters file {path}: size is {stat.st_size} bytes, expected {PARAMS_SIZE}")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KzgError(f"KZG parameters file {path} cannot be read: {exc.strerror or exc}") from None
        kzg = cls.from_bytes(data, source=str(path), check=check)
        with _file_cache_lock:
            _file_cache[key] = kzg
        return kzg

    @classmethod
    def dev(cls, tau: int = DEV_TAU, *, cache_path: str | os.PathLike | None = None) -> Kzg:
        """INSECURE setup with a publicly known ``tau`` (tests and dev nodes only).

        Full size (32 768 G1 + 65 G2 powers). Cached in memory per tau. With ``cache_path`` the
        points are also cached in that file (uncompressed, private format: loads in ~50 ms, vs
        ~0.3-0.6 s to generate with the default tau); use ``write()`` for the reference layout.
        """
        if not isinstance(tau, int) or not 1 < tau < R or pow(tau, 1 << MAX_DOMAIN_LOG, R) == 1:
            raise KzgError(f"dev tau {tau!r} must be in 2..r-1 and not a 2^k-th root of unity")
        with _dev_cache_lock:
            kzg = _dev_cache.get(tau)
            if kzg is None:
                path = Path(cache_path) if cache_path is not None else None
                if path is not None and path.is_file():
                    kzg = cls._read_dev_cache(path, tau)
                else:
                    g1 = _powers(G1Point(), tau, G1_COUNT)
                    g2 = _powers(G2Point(), tau, G2_COUNT)
                    kzg = cls(g1, g2, source=f"dev(tau={tau:#x})")
                _dev_cache[tau] = kzg
        if cache_path is not None and not Path(cache_path).is_file():
            kzg._write_dev_cache(Path(cache_path), tau)
        return kzg

    def _write_dev_cache(self, path: Path, tau: int) -> None:
        data = b"".join(
            [DEV_CACHE_MAGIC, tau.to_bytes(32, "big")]
            + [p.to_xy_bytes_le() for p in self._g1]
            + [p.to_xy_bytes_le() for p in self._g2]
        )
        tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)

    @classmethod
    def _read_dev_cache(cls, path: Path, tau: int) -> Kzg:
        expected = 64 + G1_COUNT * G1_XY_SIZE + G2_COUNT * G2_XY_SIZE
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KzgError(f"KZG dev cache {path} cannot be read: {exc.strerror or exc}") from None
        if len(data) != expected or data[:32] != DEV_CACHE_MAGIC:
            raise KzgError(f"KZG dev cache {path} is not a dev setup cache ({len(data)} bytes, expected {expected})")
        if int.from_bytes(data[32:64], "big") != tau:
            raise KzgError(f"KZG dev cache {path} holds a setup for a different tau")
        try:
            g1 = [G1Point.from_xy_bytes_unchecked_le(data[o : o + G1_XY_SIZE]) for o in range(64, 64 + G1_COUNT * G1_XY_SIZE, G1_XY_SIZE)]
            base = 64 + G1_COUNT * G1_XY_SIZE
            g2 = [G2Point.from_xy_bytes_unchecked_le(data[o : o + G2_XY_SIZE]) for o in range(base, expected, G2_XY_SIZE)]
        except ValueError as exc:
            raise KzgError(f"KZG dev cache {path} is corrupt ({exc})") from None
        step = Scalar(tau)
        if g1[0] != G1Point() or g2[0] != G2Point() or g1[1] != g1[0] * step or g1[-1] != g1[-2] * step or g2[1] != g2[0] * step:
            raise KzgError(f"KZG dev cache {path} is corrupt (points are not powers of tau {tau:#x})")
        return cls(g1, g2, source=f"dev(tau={tau:#x}, cache={path})")

    def to_bytes(self) -> bytes:
        """The setup in the reference file layout (needs the full 32 768 / 65 powers)."""
        if len(self._g1) != G1_COUNT or len(self._g2) != G2_COUNT:
            raise KzgError(f"setup {self.source} does not have {G1_COUNT}/{G2_COUNT} powers")
        return b"".join(p.to_compressed_bytes() for p in self._g1) + b"".join(p.to_compressed_bytes() for p in self._g2)

    def write(self, path: str | os.PathLike) -> None:
        """Write ``to_bytes()`` atomically to ``path``."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_bytes(self.to_bytes())
        os.replace(tmp, path)

    # ---- operations ----------------------------------------------------------------------

    def poly(self, values) -> Polynomial:
        """Interpolate evaluations at ``w_n^i`` (32-byte BE canonical scalars: a list of bytes,
        concatenated bytes or an (n, 32) uint8 array) into monomial coefficients."""
        limbs = field.bytes_to_limbs(values)
        return self.poly_from_limbs(limbs)

    def poly_from_limbs(self, limbs: np.ndarray) -> Polynomial:
        """Like ``poly`` for canonical (n, 4) uint64 limbs (hot path; values assumed < r)."""
        n = limbs.shape[0] if isinstance(limbs, np.ndarray) and limbs.ndim == 2 else -1
        if n < 1 or n & (n - 1) or n > ntt.MAX_SIZE:
            raise KzgError(f"poly needs a power-of-two number of values in 1..{ntt.MAX_SIZE}, got {n if n >= 0 else limbs!r:.80}")
        coeffs = ntt.intt(limbs)
        coeffs.flags.writeable = False
        return Polynomial(coeffs)

    def _commit_limbs(self, limbs: np.ndarray) -> G1Point:
        m = limbs.shape[0]
        if m > len(self._g1):
            raise KzgError(f"polynomial has {m} coefficients, setup {self.source} supports {len(self._g1)}")
        if m == 0:
            return G1Point.identity()
        scalars = _scalars_from_limbs(limbs)
        parts = _msm_parts(m)
        if parts == 1:
            return G1Point.multiexp_unchecked(self._g1[:m], scalars)
        # arkworks' MSM is single-threaded but releases the GIL: split the sum across threads.
        step = -(-m // parts)
        chunks = [(self._g1[i : i + step], scalars[i : i + step]) for i in range(0, m, step)]
        partial = list(_msm_pool().map(lambda c: G1Point.multiexp_unchecked(*c), chunks))
        total = partial[0]
        for point in partial[1:]:
            total = total + point
        return total

    def commit(self, poly: Polynomial) -> bytes:
        """48-byte compressed commitment ``sum c_k [tau^k]G1``."""
        if not isinstance(poly, Polynomial):
            raise KzgError(f"commit needs a Polynomial, got {type(poly).__name__}")
        return self._commit_limbs(poly.coefficients).to_compressed_bytes()

    def create_witness(self, poly: Polynomial, num_values: int, index: int) -> bytes:
        """48-byte witness for ``p(w_m^index)``, ``m = next_power_of_two(num_values)``."""
        if not isinstance(poly, Polynomial):
            raise KzgError(f"create_witness needs a Polynomial, got {type(poly).__name__}")
        return self._witness(poly, _domain_point(num_values, index))

    def create_witness_at(self, poly: Polynomial, point: bytes) -> bytes:
        """48-byte witness for ``p(point)`` at any 32-byte BE canonical scalar ``point``."""
        if not isinstance(poly, Polynomial):
            raise KzgError(f"create_witness_at needs a Polynomial, got {type(poly).__name__}")
        return self._witness(poly, field.scalar_from_bytes(point))

    def _witness(self, poly: Polynomial, x: int) -> bytes:
        coeffs = poly.coefficients
        quotient = np.zeros((max(coeffs.shape[0] - 1, 0), 4), dtype=np.uint64)
        _divide_by_linear(coeffs, field.from_ints([x]), quotient)
        return self._commit_limbs(quotient).to_compressed_bytes()

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


def _powers(generator, tau: int, count: int) -> list:
    step = Scalar(tau)
    out = [generator]
    for _ in range(count - 1):
        out.append(out[-1] * step)
    return out


_file_cache_lock = threading.Lock()
_file_cache: dict[tuple, Kzg] = {}
_dev_cache_lock = threading.Lock()
_dev_cache: dict[int, Kzg] = {}
