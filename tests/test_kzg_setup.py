"""The trusted-setup loader: packaged mainnet file (hash-checked), a path, the dev setup, the
environment override, and one-line errors for bad files."""

from __future__ import annotations

import hashlib

import pytest
from shared_paths import require_mainnet_kzg

from services import kzg_setup
from services.kzg_setup import KzgSetupError, load_kzg, load_kzg_file, mainnet_params_bytes
from services.protocol.kzg import MAINNET_PARAMS_SHA256, PARAMS_SIZE, Kzg


def test_packaged_setup_is_the_reference_mainnet_file():
    data = mainnet_params_bytes()
    assert len(data) == PARAMS_SIZE
    assert hashlib.sha256(data).hexdigest() == MAINNET_PARAMS_SHA256
    assert data == require_mainnet_kzg().read_bytes()


def test_mainnet_is_the_default_and_loaded_once(monkeypatch):
    monkeypatch.delenv(kzg_setup.PARAMS_ENV_VAR, raising=False)
    kzg = load_kzg()
    assert load_kzg("mainnet") is kzg and load_kzg(" Mainnet ") is kzg
    assert kzg.max_values == 32768 and "packaged" in kzg.source


def test_dev_keyword():
    assert load_kzg("dev") is Kzg.dev()


def test_damaged_package_is_refused(tmp_path, monkeypatch):
    fake = tmp_path / "eth-public-parameters.bin"
    data = bytearray(require_mainnet_kzg().read_bytes())
    data[1000] ^= 1
    fake.write_bytes(bytes(data))
    monkeypatch.setattr(kzg_setup, "packaged_params_path", lambda: fake)
    with pytest.raises(KzgSetupError, match="is damaged: sha256"):
        mainnet_params_bytes()
    fake.unlink()
    with pytest.raises(KzgSetupError, match="cannot be read"):
        mainnet_params_bytes()


def test_path_loads_and_is_cached(tmp_path):
    path = tmp_path / "params.bin"
    path.write_bytes(require_mainnet_kzg().read_bytes())
    loaded = load_kzg(str(path))
    assert load_kzg_file(path) is loaded and loaded.source == str(path.resolve())
    poly = loaded.poly([bytes(32), b"\x00" + bytes(30) + b"\x05"])
    assert loaded.commit(poly) == load_kzg("mainnet").commit(poly)


def test_environment_override(tmp_path, monkeypatch):
    path = tmp_path / "custom.bin"
    monkeypatch.setenv(kzg_setup.PARAMS_ENV_VAR, str(path))
    with pytest.raises(KzgSetupError, match="custom.bin cannot be read"):
        load_kzg()
    monkeypatch.setenv(kzg_setup.PARAMS_ENV_VAR, "dev")
    assert load_kzg() is Kzg.dev()


def test_wrong_size_file(tmp_path):
    path = tmp_path / "short.bin"
    path.write_bytes(bytes(1000))
    with pytest.raises(KzgSetupError, match="short.bin: size is 1000 bytes, expected 1579104"):
        load_kzg(path)


def test_corrupt_file_names_the_point(tmp_path):
    path = tmp_path / "corrupt.bin"
    path.write_bytes(b"\x00" * 48 + require_mainnet_kzg().read_bytes()[48:])
    with pytest.raises(KzgSetupError, match="corrupt.bin: G1 point 0 is invalid"):
        load_kzg(path)
