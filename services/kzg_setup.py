"""Where the KZG trusted setup comes from: the packaged mainnet file, a path, or the dev setup.

Why here and not in ``services.protocol.kzg``: the protocol core takes the setup's bytes and does
no file or environment I/O. This module is the one place that finds those bytes, so an
installed farmer works against a real node with nothing beside it:

* ``mainnet`` - the Ethereum KZG ceremony transcript the reference ships
  (``eth-public-parameters.bin``, 1 579 104 bytes), packaged as ``services/data``; it is checked
  against its sha256 on load (a damaged install fails with a one-line error).
* a path - a file in the same layout (decoded with subgroup checks unless it is the mainnet file).
* ``dev`` - the INSECURE known-tau setup of the dev chain (``Kzg.dev()``).

``load_kzg(spec)`` takes one of those; ``spec=None`` means ``$AUTONOMYS_KZG_PARAMS`` when set,
else mainnet. Loaded setups are kept in memory (per path, size and mtime), so every caller in a
process shares one.
"""

from __future__ import annotations

import functools
import hashlib
import os
from importlib import resources
from pathlib import Path

from services.protocol.kzg import MAINNET_PARAMS_SHA256, PARAMS_SIZE, Kzg, KzgError

PARAMS_ENV_VAR = "AUTONOMYS_KZG_PARAMS"
MAINNET = "mainnet"
DEV = "dev"
PACKAGED_PARAMS = ("data", "eth-public-parameters.bin")


class KzgSetupError(ValueError):
    """The trusted setup cannot be found, read or decoded (message fit for one log line)."""


def packaged_params_path() -> Path:
    """Path of the packaged mainnet setup (inside the installed ``services`` package)."""
    return Path(str(resources.files("services").joinpath(*PACKAGED_PARAMS)))


def mainnet_params_bytes() -> bytes:
    """The packaged mainnet setup's bytes, checked against the mainnet sha256."""
    path = packaged_params_path()
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KzgSetupError(f"packaged KZG setup {path} cannot be read: {exc.strerror or exc} (reinstall the package)") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != MAINNET_PARAMS_SHA256:
        raise KzgSetupError(
            f"packaged KZG setup {path} is damaged: sha256 {digest}, expected {MAINNET_PARAMS_SHA256} (reinstall the package)"
        )
    return data


@functools.cache
def mainnet_kzg() -> Kzg:
    """The mainnet setup from the package (decoded once per process, ~1 s)."""
    return Kzg.from_bytes(mainnet_params_bytes(), source="mainnet (packaged)", check=False)


def load_kzg_file(path: str | os.PathLike) -> Kzg:
    """A setup file in the reference layout (cached per path, size and mtime)."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise KzgSetupError(f"KZG parameters file {path} cannot be read: {exc.strerror or exc}") from None
    if stat.st_size != PARAMS_SIZE:
        raise KzgSetupError(f"KZG parameters file {path}: size is {stat.st_size} bytes, expected {PARAMS_SIZE}")
    return _load_file(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_file(path: str, size: int, mtime_ns: int) -> Kzg:
    del size, mtime_ns  # cache key only: a replaced file is read again
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise KzgSetupError(f"KZG parameters file {path} cannot be read: {exc.strerror or exc}") from None
    try:
        return Kzg.from_bytes(data, source=path)
    except KzgError as exc:
        raise KzgSetupError(str(exc)) from None


def load_kzg(spec: str | os.PathLike | None = None) -> Kzg:
    """``mainnet``, ``dev`` or a path; ``None``: ``$AUTONOMYS_KZG_PARAMS``, else mainnet."""
    if spec is None:
        spec = os.environ.get(PARAMS_ENV_VAR) or MAINNET
    text = os.fspath(spec)
    keyword = text.strip().lower()
    if keyword == MAINNET:
        return mainnet_kzg()
    if keyword == DEV:
        return Kzg.dev()
    return load_kzg_file(text)
