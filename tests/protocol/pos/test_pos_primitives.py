"""F1, Fn and has_match against the in-spec vectors (spec 02 §3-5) and the reference JSON."""

from __future__ import annotations

import numpy as np
import pytest
from pos_vector_data import load_vectors

from services.protocol.hashes import blake3_hash
from services.protocol.pos import compute_f1, compute_fn, has_match
from services.protocol.pos.chacha8 import f1_all
from services.protocol.pos.params import PARAM_BC, metadata_size_bits, num_buckets, validate_k

SPEC_SEED = bytes([0, 2, 3, 4, 5, 5, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 1, 2, 3, 41, 5, 6, 7, 8, 9,
                   10, 11, 12, 13, 11, 15, 16])
CHIA_SEED = b"\x01" + SPEC_SEED[:31]  # the Chia test transform (tests only)


@pytest.mark.parametrize(
    ("k", "x", "y"),
    [(25, 525, 2016650816), (25, 526, 2063162112), (25, 625, 1930299520),
     (22, 1837491, 105738140), (22, 1837492, 192213404), (22, 1837493, 64977628),
     (22, 1837746, 91711644)],
)
def test_f1_spec_vectors(k, x, y):
    assert compute_f1(x, CHIA_SEED, k) == y


def test_f1_whole_table_agrees_with_single_x():
    ys = f1_all(np.frombuffer(CHIA_SEED, dtype=np.uint8), 22)
    assert [int(ys[x]) for x in (1837491, 1837492, 1837493, 1837746)] == [
        105738140, 192213404, 64977628, 91711644]


@pytest.mark.parametrize("k", [17, 20])
def test_f1_reference_json(k):
    data = load_vectors(k)
    for entry in data["seeds"]:
        seed = bytes.fromhex(entry["seed"])
        ys = f1_all(np.frombuffer(seed, dtype=np.uint8), k)
        assert [int(ys[x]) for x in entry["f1"]["xs"]] == entry["f1"]["ys"]
        assert [compute_f1(x, seed, k) for x in entry["f1"]["xs"][60:70]] == entry["f1"]["ys"][60:70]


FN_SPEC_VECTORS_K16 = [
    (2, 0x44CB, 0x204F, 0x20A61A, 0x2AF546, 0x44CB204F),
    (2, 0x3C5F, 0xFDA9, 0x3988EC, 0x15293B, 0x3C5FFDA9),
    (3, 0x35BF992D, 0x7CE42C82, 0x31E541, 0xF73B3, 0x35BF992D7CE42C82),
    (3, 0x7204E52D, 0xF1FD42A2, 0x28A188, 0x3FB0B5, 0x7204E52DF1FD42A2),
    (4, 0x5B6E6E307D4BEDC, 0x8A9A021EA648A7DD, 0x30CB4C, 0x11AD5, 0xD4BD0B144FC26138),
    (4, 0xB9D179E06C0FD4F5, 0xF06D3FEF701966A0, 0x1DD5B6, 0xE69A2, 0xD02115F512009D4D),
    (5, 0xC2CD789A380208A9, 0x19999E3FA46D6753, 0x25F01E, 0x1F22BD, 0xABE423040A33),
    (5, 0xBE3EDC0A1EF2A4F0, 0x4DA98F1D3099FDF5, 0x3FEB18, 0x31501E, 0x7300A3A03AC5),
    (6, 0xC965815A47C5, 0xF5E008D6AF57, 0x1F121A, 0x1CABBE, 0xC8CC6947),
    (6, 0xD420677F6CBD, 0x5894AA2CA1AF, 0x2EFDE9, 0xC2121, 0x421BB8EC),
    (7, 0x5FEC898F, 0x82283D15, 0x14F410, 0x24C3C2, 0),
    (7, 0x64AC5DB9, 0x7923986, 0x590FD, 0x1C74A2, 0),
]


@pytest.mark.parametrize(("table", "meta_l", "meta_r", "y_l", "y_out", "meta_out"), FN_SPEC_VECTORS_K16)
def test_fn_spec_vectors_k16(table, meta_l, meta_r, y_l, y_out, meta_out):
    assert compute_fn(16, table, y_l, meta_l, meta_r) == (y_out, meta_out)


@pytest.mark.parametrize("k", [17, 20])
def test_fn_reference_json(k):
    data = load_vectors(k)
    assert len(data["compute_fn"]) == 48
    for entry in data["compute_fn"]:
        table = entry["table"]
        assert entry["parent_metadata_bits"] == metadata_size_bits(k, table - 1)
        assert entry["metadata_out_bits"] == metadata_size_bits(k, table)
        y_out, meta_out = compute_fn(k, table, entry["y"], int(entry["left_metadata"]),
                                     int(entry["right_metadata"]))
        assert (y_out, meta_out) == (entry["y_out"], int(entry["metadata_out"])), entry


@pytest.mark.parametrize("k", [17, 20])
def test_has_match_reference_json(k):
    """Exactly the listed right ys of the next bucket match, and the verifier is permissive:
    the reference counts the same number of matches inside the left entry's own bucket."""
    data = load_vectors(k)
    assert data["has_match"]
    for entry in data["has_match"]:
        left_y = entry["left_y"]
        bucket = left_y // PARAM_BC
        next_bucket = range((bucket + 1) * PARAM_BC, (bucket + 2) * PARAM_BC)
        assert [y for y in next_bucket if has_match(left_y, y, k)] == entry["matching_right_ys_in_next_bucket"]
        same_bucket = range(bucket * PARAM_BC, (bucket + 1) * PARAM_BC)
        assert sum(has_match(left_y, y, k) for y in same_bucket) == entry["matches_in_same_bucket"]


def test_has_match_ignores_bucket_distance():
    left_y = 1000
    right_in_next = next(y for y in range(PARAM_BC, 2 * PARAM_BC) if has_match(left_y, y))
    far = right_in_next + 10 * PARAM_BC  # same r, buckets 11 apart, same parity rule applies
    assert has_match(left_y, far)


def test_fn_input_validation():
    with pytest.raises(ValueError, match="meta_left"):
        compute_fn(20, 2, 5, 1 << 20, 0)
    with pytest.raises(ValueError, match="table"):
        compute_fn(20, 8, 5, 0, 0)
    with pytest.raises(ValueError, match="K=40"):
        validate_k(40)
    with pytest.raises(ValueError, match="x=1048576"):
        compute_f1(1 << 20, bytes(32), 20)
    with pytest.raises(ValueError, match="32 bytes"):
        compute_f1(1, bytes(31), 20)


def test_derived_sizes():
    assert num_buckets(20) == 4441
    assert [metadata_size_bits(20, t) for t in range(1, 8)] == [20, 40, 80, 80, 60, 40, 0]


def test_vector_seed_rule():
    for k in (17, 20):
        for entry in load_vectors(k)["seeds"]:
            assert entry["seed"] == blake3_hash(entry["index"].to_bytes(4, "little")).hex()


def _spec_fn(k, table, y_left, meta_left, meta_right):
    """Spec 02 §5 transcribed literally with Python ints and the blake3 package."""
    ys = k + 6
    pb = metadata_size_bits(k, table - 1)
    bits = (((y_left << pb) | meta_left) << pb) | meta_right
    n_bits = ys + 2 * pb
    n_bytes = (n_bits + 7) // 8
    digest = int.from_bytes(blake3_hash((bits << (8 * n_bytes - n_bits)).to_bytes(n_bytes, "big")), "big")
    y_out = digest >> (256 - ys)
    ob = metadata_size_bits(k, table)
    if table in (2, 3):
        meta_out = (meta_left << pb) | meta_right
    elif table == 7:
        meta_out = 0
    else:
        meta_out = (digest >> (256 - ys - ob)) & ((1 << ob) - 1)
    return y_out, meta_out


@pytest.mark.parametrize("k", [10, 16, 17, 20, 23, 24, 25, 26])
def test_fn_all_k_against_spec_text(k):
    rng = np.random.default_rng(k)
    for table in range(2, 8):
        pb = metadata_size_bits(k, table - 1)
        for _ in range(20):
            y_left = int(rng.integers(0, 1 << (k + 6)))
            meta_left = int.from_bytes(rng.bytes(16), "big") & ((1 << pb) - 1)
            meta_right = int.from_bytes(rng.bytes(16), "big") & ((1 << pb) - 1)
            assert compute_fn(k, table, y_left, meta_left, meta_right) == _spec_fn(
                k, table, y_left, meta_left, meta_right), (k, table)


def test_unrolled_blake3_module_is_what_its_generator_writes():
    """blake3_unrolled.py is generated (scripts/gen_blake3_unrolled.py): never edited by hand."""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    spec = importlib.util.spec_from_file_location("gen_blake3_unrolled", root / "scripts" / "gen_blake3_unrolled.py")
    generator = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(generator)
    assert (root / "services" / "protocol" / "pos" / "blake3_unrolled.py").read_text() == generator.generate()
