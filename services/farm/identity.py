"""The farm's identity: its sr25519 key, kept in ``identity.bin`` (spec 03 §9).

The file is SCALE ``Vec<u8>`` of 32 bytes of entropy (``0x80 ‖ entropy``), exactly what the
reference farmer writes, so a farm moves between the two implementations with its key. The
keypair is substrate-bip39's ``mini_secret_from_entropy(entropy, "")`` (PBKDF2-HMAC-SHA512 with
the raw entropy as password, salt ``"mnemonic"``, 2048 rounds, first 32 bytes) expanded with
schnorrkel's Ed25519 mode, which is what ``sr25519.pair_from_seed`` of the maintained binding
does. Reward hashes are signed under the context ``b"subspace_reward"``
(:mod:`services.protocol.sr25519`; the binding only signs under ``b"substrate"``).

A new identity is written with mode 0600 through a temporary file, fsync and rename, so a crash
never leaves a truncated key behind and nobody else on the machine can read it.
"""

from __future__ import annotations

import hashlib
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

import sr25519

from services.farm.files import fsync_directory
from services.farm.layout import IDENTITY_FILE, FarmError
from services.protocol.constants import REWARD_SIGNING_CONTEXT
from services.protocol.sr25519 import schnorrkel

ENTROPY_SIZE = 32
_SCALE_VEC_32_PREFIX = b"\x80"  # compact length 32
_PBKDF2_SALT = b"mnemonic"
_PBKDF2_ROUNDS = 2048


def keypair_from_entropy(entropy: bytes) -> tuple[bytes, bytes]:
    """``(public_key, secret_key)`` (32, 64 bytes) of the farm identity for ``entropy``."""
    if len(entropy) != ENTROPY_SIZE:
        raise ValueError(f"identity entropy must be {ENTROPY_SIZE} bytes, got {len(entropy)}")
    mini_secret = hashlib.pbkdf2_hmac("sha512", bytes(entropy), _PBKDF2_SALT, _PBKDF2_ROUNDS)[:32]
    public_key, secret_key = sr25519.pair_from_seed(mini_secret)
    return bytes(public_key), bytes(secret_key)


@dataclass(frozen=True)
class Identity:
    entropy: bytes = field(repr=False)
    public_key: bytes
    secret_key: bytes = field(repr=False)

    @classmethod
    def from_entropy(cls, entropy: bytes) -> Identity:
        public_key, secret_key = keypair_from_entropy(entropy)
        return cls(bytes(entropy), public_key, secret_key)

    @classmethod
    def from_file_bytes(cls, data: bytes, source: str = IDENTITY_FILE) -> Identity:
        if len(data) != 1 + ENTROPY_SIZE or data[:1] != _SCALE_VEC_32_PREFIX:
            raise FarmError(f"{source} is not a farm identity (expected SCALE Vec<u8> of {ENTROPY_SIZE} bytes)")
        return cls.from_entropy(data[1:])

    def to_file_bytes(self) -> bytes:
        return _SCALE_VEC_32_PREFIX + self.entropy

    def sign_reward_hash(self, hash_: bytes) -> bytes:
        """64-byte schnorrkel signature of a block/vote pre-hash (context ``subspace_reward``)."""
        return schnorrkel.sign(REWARD_SIGNING_CONTEXT, hash_, self.public_key, self.secret_key)


def load_identity(directory: Path) -> Identity | None:
    """The identity in ``directory``, or None when it has none yet."""
    path = Path(directory) / IDENTITY_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise FarmError(f"cannot read {path}: {exc.strerror or exc}") from None
    return Identity.from_file_bytes(data, str(path))


def create_identity(directory: Path) -> Identity:
    """Write a fresh identity (mode 0600, atomically); refuses to replace an existing one."""
    directory = Path(directory)
    path = directory / IDENTITY_FILE
    identity = Identity.from_entropy(secrets.token_bytes(ENTROPY_SIZE))
    tmp = directory / f".{IDENTITY_FILE}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)  # an existing leftover keeps its mode otherwise
            os.write(fd, identity.to_file_bytes())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails if an identity appeared meanwhile: never overwrite a key
        os.unlink(tmp)
        fsync_directory(directory)
    except FileExistsError:
        os.unlink(tmp)
        raise FarmError(f"{path} appeared while creating the farm identity; not overwriting it") from None
    except OSError as exc:
        raise FarmError(f"cannot write {path}: {exc.strerror or exc}") from None
    return identity
