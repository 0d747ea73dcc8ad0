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


def require_shared_file(path: Path) -> Path:
    """A reference file under ``SHARED_DIR``. Missing from a present shared folder is a failure;
    a missing shared folder skips loudly on a developer machine and fails under CI (``CI`` set),
    so a conformance check can never pass by skipping where it is supposed to run."""
    if path.is_file():
        return path
    if SHARED_DIR.is_dir() and path.parent.is_dir():
        pytest.fail(f"reference file {path} is missing from a present {path.parent}")
    message = f"reference folder {path.parent} is absent: conformance NOT checked"
    if os.environ.get("CI"):
        pytest.fail(message + " (CI must run with ../shared beside the checkout)")
    pytest.skip(message)


def require_vectors(name: str) -> Path:
    """Path of a reference vector file under ``VECTORS_DIR`` (see ``require_shared_file``)."""
    return require_shared_file(VECTORS_DIR / name)


def require_mainnet_kzg() -> Path:
    """The mainnet trusted setup under ``KZG_DIR`` (see ``require_shared_file``)."""
    return require_shared_file(MAINNET_KZG_PARAMS)
