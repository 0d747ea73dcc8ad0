"""Cluster secret loading: flag, file, environment, precedence, one-line errors, never shown."""

from __future__ import annotations

import os

import msgspec
import pytest

from services.p2p.secret import ENV_VAR, NO_SECRET, ClusterSecret, ClusterSecretError, load_cluster_secret

TOKEN = "correct-horse-battery-staple-42"


def test_sources_and_precedence(tmp_path):
    path = tmp_path / "secret"
    path.write_text(TOKEN + "\n")
    os.chmod(path, 0o600)
    env = {ENV_VAR: "from-env-0123456789abcdef"}
    assert load_cluster_secret(environ={}) is NO_SECRET
    assert load_cluster_secret(environ=env).key == b"from-env-0123456789abcdef"
    assert load_cluster_secret(environ=env).source == f"env {ENV_VAR}"
    from_flag = load_cluster_secret(text=TOKEN, environ=env)
    assert (from_flag.key, from_flag.source) == (TOKEN.encode(), "--cluster-secret")
    from_file = load_cluster_secret(file=str(path), environ=env)
    assert (from_file.key, from_file.source) == (TOKEN.encode(), f"--cluster-secret-file {path}")
    assert from_file == from_flag and hash(from_file) == hash(from_flag)


def test_errors(tmp_path):
    with pytest.raises(ClusterSecretError, match="not both"):
        load_cluster_secret(text="a", file="b", environ={})
    with pytest.raises(ClusterSecretError, match="empty"):
        load_cluster_secret(text="  ", environ={})
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(ClusterSecretError, match="empty"):
        load_cluster_secret(file=str(tmp_path / "empty"), environ={})
    with pytest.raises(ClusterSecretError, match="cannot read"):
        load_cluster_secret(file=str(tmp_path / "absent"), environ={})
    with pytest.raises(ClusterSecretError, match="empty"):
        load_cluster_secret(environ={ENV_VAR: ""})


def test_warnings(tmp_path):
    path = tmp_path / "secret"
    path.write_text("short")
    os.chmod(path, 0o644)
    warnings: list[str] = []
    load_cluster_secret(file=str(path), environ={}, warn=warnings.append)
    assert any("readable by other users" in w for w in warnings)
    assert any("shorter than 16" in w for w in warnings)


def test_never_shows_its_value():
    secret = ClusterSecret(TOKEN.encode(), "--cluster-secret")
    assert TOKEN not in repr(secret) and TOKEN not in str(secret.public_view())
    assert secret.public_view() == {"set": True, "source": "--cluster-secret"}
    assert NO_SECRET.public_view() == {"set": False, "source": None} and NO_SECRET.key == b""

    class Holder(msgspec.Struct):
        secret: ClusterSecret

    with pytest.raises(TypeError):  # no silent encoding without the public_view hook
        msgspec.json.encode(Holder(secret))
