"""KZG (spec 01 §7): bit-exact with the C-KZG cross-check vectors on the mainnet setup, a live
ckzg oracle, an independent known-tau oracle for the dev setup, and round/negative trips."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from shared_paths import KZG_DIR, require_mainnet_kzg, require_shared_file, require_vectors
from py_arkworks_bls12381 import G1Point, Scalar

from services.protocol import field, ntt
from services.protocol.constants import BLS12_381_R as R
from services.protocol.kzg import DEV_TAU, G1_COUNT, PARAMS_SIZE, Kzg, KzgError, Polynomial

VECTOR_N = 4096


@pytest.fixture(scope="module")
def mainnet_bytes() -> bytes:
    return require_mainnet_kzg().read_bytes()


@pytest.fixture(scope="module")
def mainnet(mainnet_bytes) -> Kzg:
    return Kzg.from_bytes(mainnet_bytes, source="mainnet")


@pytest.fixture(scope="module")
def dev() -> Kzg:
    return Kzg.dev()


@pytest.fixture(scope="module")
def vectors() -> dict:
    data = json.loads(require_vectors("kzg_ckzg_crosscheck.json").read_text())
    assert data["n"] == VECTOR_N and data["blobs"]
    return data


def blob_values(blob: dict) -> list[bytes]:
    return [bytes.fromhex(h) for h in blob["data_natural_hex"]]


def random_safe_scalars(rng: random.Random, n: int) -> list[bytes]:
    return [b"\x00" + rng.randbytes(31) for _ in range(n)]


# ---- conformance: C-KZG cross-check vectors on the mainnet parameters ----------------------


def test_mainnet_params_loaded(mainnet, mainnet_bytes):
    assert mainnet.max_values == G1_COUNT
    assert len(mainnet_bytes) == PARAMS_SIZE
    assert mainnet.to_bytes() == mainnet_bytes


def test_vector_commitments(mainnet, vectors):
    for blob in vectors["blobs"]:
        poly = mainnet.poly(blob_values(blob))
        assert [c.hex() for c in poly.coefficient_bytes()[:8]] == blob["coefficients_first8_hex_be"]
        assert mainnet.commit(poly).hex() == blob["commitment_hex"]


def test_vector_witnesses_and_verify(mainnet, vectors):
    for blob in vectors["blobs"]:
        values = blob_values(blob)
        poly = mainnet.poly(values)
        commitment = bytes.fromhex(blob["commitment_hex"])
        assert blob["witnesses"]
        for case in blob["witnesses"]:
            index = case["index"]
            assert int(case["x_hex_be"], 16) == pow(ntt.root_of_unity(12), index, R)
            assert values[index].hex() == case["value_hex"]
            witness = mainnet.create_witness(poly, VECTOR_N, index)
            assert witness.hex() == case["witness_hex"]
            assert mainnet.verify(commitment, VECTOR_N, index, values[index], witness)
            assert not mainnet.verify(commitment, VECTOR_N, (index + 1) % VECTOR_N, values[index], witness)


def test_vector_out_of_domain_opening(mainnet, vectors):
    for blob in vectors["blobs"]:
        poly = mainnet.poly(blob_values(blob))
        case = blob["out_of_domain"]
        point = bytes.fromhex(case["x_hex_be"])
        assert poly.evaluate(point).hex() == case["value_hex"]
        witness = mainnet.create_witness_at(poly, point)
        assert witness.hex() == case["witness_hex"]
        assert mainnet.verify_at(bytes.fromhex(blob["commitment_hex"]), point, bytes.fromhex(case["value_hex"]), witness)


def test_record_size_domain_reproduces_vector(mainnet, vectors):
    """The vector polynomial evaluated on the 2^15 record domain commits to the same point, and
    its witnesses on the 2^16 s-bucket domain at w_16^(16k) = w_12^k equal the vector's."""
    blob = vectors["blobs"][0]
    small = mainnet.poly(blob_values(blob))
    padded = np.zeros((1 << 15, 4), np.uint64)
    padded[:VECTOR_N] = small.coefficients
    record_values = field.limbs_to_bytes(ntt.ntt(padded))
    record_poly = mainnet.poly(record_values)
    assert np.array_equal(record_poly.coefficients, padded)
    assert mainnet.commit(record_poly).hex() == blob["commitment_hex"]
    case = blob["witnesses"][4]
    assert mainnet.create_witness(record_poly, 1 << 16, 16 * case["index"]).hex() == case["witness_hex"]


# ---- live ckzg oracle (same trusted setup, first 4096 powers) --------------------------------


@pytest.fixture(scope="module")
def ckzg_setup():
    import ckzg  # a dev dependency: its absence is an install error, not a reason to skip

    path = require_shared_file(KZG_DIR / "ckzg_setup_4096_from_subspace_params.txt")
    return ckzg, ckzg.load_trusted_setup(str(path), 0)


def bit_reverse(i: int, bits: int) -> int:
    return int(format(i, f"0{bits}b")[::-1], 2)


def test_live_ckzg_oracle(mainnet, ckzg_setup):
    ckzg, setup = ckzg_setup
    rng = random.Random(99)
    values = random_safe_scalars(rng, VECTOR_N)
    blob = b"".join(values[bit_reverse(i, 12)] for i in range(VECTOR_N))  # ckzg blobs are bit-reversed
    poly = mainnet.poly(values)
    commitment = mainnet.commit(poly)
    assert commitment == bytes(ckzg.blob_to_kzg_commitment(blob, setup))
    w = ntt.root_of_unity(12)
    for index in (0, 1, 777, 4095):
        proof, y = ckzg.compute_kzg_proof(blob, pow(w, index, R).to_bytes(32, "big"), setup)
        witness = mainnet.create_witness(poly, VECTOR_N, index)
        assert bytes(y) == values[index]
        assert witness == bytes(proof)
        assert ckzg.verify_kzg_proof(commitment, pow(w, index, R).to_bytes(32, "big"), values[index], witness, setup)


# ---- dev setup: independent known-tau oracle and round trips --------------------------------


def evaluate_at_tau(values: list[int], tau: int) -> int:
    """p(tau) for p with p(w_n^i) = values[i], by the barycentric formula (Python ints)."""
    n = len(values)
    w = ntt.root_of_unity(n.bit_length() - 1)
    total, wi = 0, 1
    for v in values:
        total = (total + v * wi * pow(tau - wi, -1, R)) % R
        wi = wi * w % R
    return total * (pow(tau, n, R) - 1) * pow(n, -1, R) % R


def test_dev_record_commitment_and_witness_match_known_tau(dev):
    rng = random.Random(7)
    values = random_safe_scalars(rng, 1 << 15)
    ints = [int.from_bytes(v, "big") for v in values]
    poly = dev.poly(values)
    p_tau = evaluate_at_tau(ints, DEV_TAU)
    commitment = dev.commit(poly)
    assert commitment == (G1Point() * Scalar(p_tau)).to_compressed_bytes()
    # chunk witness on the 2^16 s-bucket domain; even s-buckets are the source chunks
    for index in (0, 2 * 4321, 12345):
        x = pow(ntt.root_of_unity(16), index, R)
        value = poly.evaluate(x.to_bytes(32, "big"))
        if index % 2 == 0:
            assert value == values[index // 2]
        expected = (p_tau - int.from_bytes(value, "big")) * pow(DEV_TAU - x, -1, R) % R
        witness = dev.create_witness(poly, 1 << 16, index)
        assert witness == (G1Point() * Scalar(expected)).to_compressed_bytes()
        assert dev.verify(commitment, 1 << 16, index, value, witness)


def test_dev_round_trip_and_every_flipped_byte_fails(dev):
    rng = random.Random(8)
    values = random_safe_scalars(rng, 256)
    poly = dev.poly(values)
    commitment = dev.commit(poly)
    for index in (0, 1, 100, 255):
        assert dev.verify(commitment, 256, index, values[index], dev.create_witness(poly, 256, index))
    index = 37
    witness = dev.create_witness(poly, 256, index)
    value = values[index]
    for name, blob in (("commitment", commitment), ("witness", witness), ("value", value)):
        for pos in range(len(blob)):
            flipped = bytearray(blob)
            flipped[pos] ^= 0x01 if name != "value" or pos else 0x20
            args = {"commitment": commitment, "witness": witness, "value": value, name: bytes(flipped)}
            assert not dev.verify(args["commitment"], 256, index, args["value"], args["witness"]), (name, pos)


def test_verify_rejects_garbage(dev):
    poly = dev.poly([bytes(32)] * 4)
    commitment = dev.commit(poly)
    witness = dev.create_witness(poly, 4, 1)
    assert dev.verify(commitment, 4, 1, bytes(32), witness)
    assert not dev.verify(commitment[:47], 4, 1, bytes(32), witness)
    assert not dev.verify(commitment, 4, 1, bytes(32), b"\xff" * 48 + b"\x00")
    assert not dev.verify(b"\x00" * 48, 4, 1, bytes(32), witness)
    assert not dev.verify(commitment, 4, 1, R.to_bytes(32, "big"), witness)
    assert not dev.verify(commitment, 4, 1, None, witness)  # type: ignore[arg-type]
    with pytest.raises(KzgError, match="index 4 is outside the domain of size 4"):
        dev.verify(commitment, 4, 4, bytes(32), witness)
    with pytest.raises(KzgError, match="num_values"):
        dev.create_witness(poly, 0, 0)


def test_poly_and_commit_argument_errors(dev):
    with pytest.raises(KzgError, match="power-of-two"):
        dev.poly([bytes(32)] * 3)
    with pytest.raises(field.InvalidScalarError, match="Invalid scalar at index 2"):
        dev.poly([bytes(32), bytes(32), R.to_bytes(32, "big"), bytes(32)])
    too_long = Polynomial(np.zeros((G1_COUNT * 2, 4), np.uint64))
    with pytest.raises(KzgError, match="65536 coefficients"):
        dev.commit(too_long)
    with pytest.raises(KzgError, match="coefficient 1 is not a canonical scalar"):
        Polynomial(field.ints_to_limbs([R - 1, 0]) | np.array([[0, 0, 0, 0], [0, 0, 0, 1 << 63]], np.uint64))
    with pytest.raises(KzgError, match="uint64"):
        Polynomial(np.zeros((4, 4), np.int64))
    with pytest.raises(KzgError, match="Polynomial"):
        dev.commit([bytes(32)])  # type: ignore[arg-type]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_dev_known_tau_shortcut_equals_msm(dev, seed):
    """The dev setup's one-scalar-multiplication commitments and witnesses are the MSM's points
    (random polynomials of random lengths, witnesses on and off the domain)."""
    rng = np.random.default_rng(seed)
    msm = Kzg.dev(shortcut=False)
    for length in (1, 2, 3, int(rng.integers(4, 300)), 1 << int(rng.integers(8, 16)), 1 << 15):
        raw = rng.integers(0, 256, (length, 32), dtype=np.uint8)
        raw[:, 0] &= 0x3F
        poly = Polynomial(field.bytes_to_limbs(raw))
        assert dev.commit(poly) == msm.commit(poly), (seed, length)
        index = int(rng.integers(0, 1 << 16))
        assert dev.create_witness(poly, 1 << 16, index) == msm.create_witness(poly, 1 << 16, index), (seed, length, index)
        point = (b"\x00" + rng.bytes(31), DEV_TAU.to_bytes(32, "big"))  # x = tau takes the division path
        for x in point:
            assert dev.create_witness_at(poly, x) == msm.create_witness_at(poly, x), (seed, length, x.hex())
    empty = Polynomial(np.zeros((0, 4), np.uint64))
    assert dev.commit(empty) == msm.commit(empty)


def test_dev_setup_is_cached_and_lazy(dev):
    assert Kzg.dev() is dev
    assert Kzg.dev(shortcut=False) is not dev
    assert dev.max_values == G1_COUNT


def test_reference_layout_round_trip(dev):
    """to_bytes() emits the reference layout; from_bytes reads it back (with subgroup checks)."""
    data = dev.to_bytes()
    assert len(data) == PARAMS_SIZE
    loaded = Kzg.from_bytes(data, check=True)
    poly = dev.poly(random_safe_scalars(random.Random(10), 32))
    assert loaded.commit(poly) == dev.commit(poly)
    assert loaded.create_witness(poly, 32, 3) == dev.create_witness(poly, 32, 3)


# ---- parameter errors -----------------------------------------------------------------------


def test_wrong_size_bytes():
    with pytest.raises(KzgError, match="short: size is 1000 bytes, expected 1579104"):
        Kzg.from_bytes(bytes(1000), source="short")


def _corrupt(data: bytes, offset: int, replacement: bytes) -> bytes:
    return data[:offset] + replacement + data[offset + len(replacement) :]


def test_malformed_point_named(mainnet_bytes):
    with pytest.raises(KzgError, match="corrupt: G1 point 0 is invalid"):
        Kzg.from_bytes(_corrupt(mainnet_bytes, 0, b"\x00" * 48), source="corrupt")


def test_wrong_generator_detected(mainnet_bytes):
    with pytest.raises(KzgError, match="G1 point 0 is not the G1 generator"):
        Kzg.from_bytes(_corrupt(mainnet_bytes, 0, mainnet_bytes[48:96]))


def test_mismatched_tau_detected(mainnet_bytes):
    g2 = G1_COUNT * 48
    with pytest.raises(KzgError, match="pairing check failed"):
        Kzg.from_bytes(_corrupt(mainnet_bytes, g2 + 96, mainnet_bytes[g2 + 192 : g2 + 288]))
