"""The callers' side of PoS backend selection (the core itself reads no environment)."""

from __future__ import annotations

import pytest

from services.pos_backend import POS_BACKEND_ENV, pos_backend


def test_flag_wins_then_environment_then_auto():
    assert pos_backend(environ={}) == "auto"
    assert pos_backend(environ={POS_BACKEND_ENV: " GPU "}) == "gpu"
    assert pos_backend("cpu", environ={POS_BACKEND_ENV: "gpu"}) == "cpu"


def test_bad_values_name_their_source():
    with pytest.raises(ValueError, match=r"invalid \$AUTONOMYS_POS_BACKEND 'tpu'"):
        pos_backend(environ={POS_BACKEND_ENV: "tpu"})
    with pytest.raises(ValueError, match="invalid backend 'fast'"):
        pos_backend("fast", environ={})


def test_reads_the_process_environment(monkeypatch):
    monkeypatch.setenv(POS_BACKEND_ENV, "cpu")
    assert pos_backend() == "cpu"
    monkeypatch.delenv(POS_BACKEND_ENV)
    assert pos_backend() == "auto"
