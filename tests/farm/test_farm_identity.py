"""Farm identity: the official farm's key and reward signatures, and identities we create."""

from __future__ import annotations

import stat

import pytest
from official_farm import accepted_blocks, copy_farm, params, vector_dir

from services.farm.identity import Identity, create_identity, load_identity
from services.farm.layout import FarmError
from services.protocol.constants import REWARD_SIGNING_CONTEXT
from services.protocol.sr25519 import schnorrkel


def test_official_identity_derives_the_farm_public_key() -> None:
    identity = load_identity(vector_dir() / "farm")
    assert identity is not None
    assert identity.public_key.hex() == params()["publicKey"]
    assert identity.to_file_bytes() == (vector_dir() / "farm" / "identity.bin").read_bytes()


def test_official_reward_signatures_verify_and_ours_too() -> None:
    identity = load_identity(vector_dir() / "farm")
    blocks = accepted_blocks()
    for block in blocks[:3]:
        block_hash = bytes.fromhex(block["hash"])
        official = bytes.fromhex(block["rewardSignature"])
        assert schnorrkel.verify(REWARD_SIGNING_CONTEXT, block_hash, official, identity.public_key)
        ours = identity.sign_reward_hash(block_hash)
        assert schnorrkel.verify(REWARD_SIGNING_CONTEXT, block_hash, ours, identity.public_key)
        assert not schnorrkel.verify(b"substrate", block_hash, ours, identity.public_key)


def test_created_identity_is_private_and_in_the_reference_format(tmp_path) -> None:
    identity = create_identity(tmp_path)
    path = tmp_path / "identity.bin"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    data = path.read_bytes()
    assert len(data) == 33 and data[0] == 0x80
    assert load_identity(tmp_path) == identity
    assert Identity.from_entropy(data[1:]).public_key == identity.public_key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["identity.bin"]


def test_an_identity_is_never_overwritten(tmp_path) -> None:
    copy_farm(tmp_path / "farm")
    before = (tmp_path / "farm" / "identity.bin").read_bytes()
    with pytest.raises(FarmError, match="not overwriting"):
        create_identity(tmp_path / "farm")
    assert (tmp_path / "farm" / "identity.bin").read_bytes() == before


def test_a_damaged_identity_is_a_clear_error(tmp_path) -> None:
    (tmp_path / "identity.bin").write_bytes(b"\x80" + bytes(31))
    with pytest.raises(FarmError, match="not a farm identity"):
        load_identity(tmp_path)
    assert load_identity(tmp_path / "nowhere") is None
