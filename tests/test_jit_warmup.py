"""The JIT warm-up writes the kernels into numba's cache, sees that they are there, and names a
part that fails."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from services import jit_warmup

REPO_ROOT = Path(__file__).resolve().parent.parent


def _run(cache: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "services.jit_warmup", *args], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "NUMBA_CACHE_DIR": str(cache)})


@pytest.mark.slow
def test_a_part_fills_an_empty_cache_and_is_then_seen_as_cached(tmp_path):
    cache = tmp_path / "numba"
    probe = ("import json; from services import jit_warmup as w; "
             "print(json.dumps({n: all(map(w._in_cache, p.probes)) for n, p in w.PARTS.items()}))")
    check = [sys.executable, "-c", probe]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NUMBA_CACHE_DIR": str(cache)}
    before = json.loads(subprocess.run(check, cwd=REPO_ROOT, capture_output=True, text=True, env=env,
                                       check=True).stdout)
    assert not any(before.values())
    done = _run(cache, "--part", "pos-build")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["event"] == "jit warm-up part done"
    after = json.loads(subprocess.run(check, cwd=REPO_ROOT, capture_output=True, text=True, env=env,
                                      check=True).stdout)
    assert after == {part: part == "pos-build" for part in jit_warmup.PARTS}
    assert any(cache.rglob("chacha8.f1_into-*.nbi")) and any(cache.rglob("*.nbc"))


def test_a_failing_part_is_one_error_line(monkeypatch, capsys):
    def broken() -> None:
        raise RuntimeError("no compiler")

    monkeypatch.setitem(jit_warmup.WARMERS, "broken", broken)
    assert jit_warmup.main(["--part", "broken"]) == 1
    assert capsys.readouterr().err.strip() == "error: jit warm-up part broken: RuntimeError: no compiler"


def test_parts_come_after_what_they_build_on_and_roles_name_real_parts():
    order = list(jit_warmup.PARTS)
    for name, part in jit_warmup.PARTS.items():
        assert part.probes, name
        assert all(order.index(dep) < order.index(name) for dep in part.after), name
    for role, needed in jit_warmup.NEEDED_BY.items():
        assert set(needed) <= set(order), role
        for name in needed:  # what a part builds on is needed too
            assert set(jit_warmup.PARTS[name].after) <= set(needed), (role, name)


def test_a_failed_part_is_named_and_stops_the_rest(capsys):
    assert jit_warmup.run_parts(["no-such-part"], jobs=1) == 1
    assert capsys.readouterr().err.strip() == "error: jit warm-up failed: part no-such-part exited with status 2"
