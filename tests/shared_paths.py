"""Where the reference vectors and the KZG trusted setup live (import as ``shared_paths``).

A plain module, not a conftest: several test folders have their own conftest.py, so
``from conftest import ...`` would be ambiguous."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DIR = Path(os.environ.get("AUTONOMYS_SHARED_DIR", REPO_ROOT.parent / "shared"))
VECTORS_DIR = SHARED_DIR / "vectors"
KZG_DIR = SHARED_DIR / "kzg"
MAINNET_KZG_PARAMS = KZG_DIR / "eth-public-parameters.bin"


def require_vectors(name: str) -> Path:
    """Path of a reference vector file; skip (loudly) only when the shared folder is absent."""
    path = VECTORS_DIR / name
    if not VECTORS_DIR.is_dir():
        pytest.skip(f"reference vectors folder {VECTORS_DIR} is absent: conformance NOT checked")
    if not path.is_file():
        pytest.fail(f"reference vector file {path} is missing from a present vectors folder")
    return path


def require_mainnet_kzg() -> Path:
    if not MAINNET_KZG_PARAMS.is_file():
        pytest.skip(f"mainnet KZG parameters {MAINNET_KZG_PARAMS} absent: conformance NOT checked")
    return MAINNET_KZG_PARAMS
