"""Fixtures for dev node tests: one archived template data dir per session, cloned per node."""

from __future__ import annotations

import pytest

from dev_node_process import TEMPLATE_FLAGS, archived_template


@pytest.fixture(scope="session")
def dev_node_template(tmp_path_factory: pytest.TempPathFactory):
    return archived_template(tmp_path_factory.getbasetemp(), *TEMPLATE_FLAGS)
