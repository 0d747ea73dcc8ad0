"""Session fixtures for the farming end-to-end tests: one archived dev chain whose segment 0 is
the official farm's (mainnet trusted setup), archived once per session."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
for folder in (HERE.parent / "node", HERE.parent / "farm"):
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

from cluster_processes import official_chain_flags  # noqa: E402
from dev_node_process import archived_template  # noqa: E402


@pytest.fixture(scope="session")
def official_chain_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Data dir of a dev node that archived segment 0 with the mainnet setup (40-140 s, once)."""
    return archived_template(tmp_path_factory.mktemp("official-chain"), *official_chain_flags())
