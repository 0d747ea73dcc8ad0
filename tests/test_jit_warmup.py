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
    probe = ("import json; from services import jit_warmup; "
             "print(json.dumps({p: all(map(jit_warmup._in_cache, jit_warmup.PROBES[p])) for p in jit_warmup.PROBES}))")
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
    assert after == {part: part == "pos-build" for part in jit_warmup.PROBES}
    assert any(cache.rglob("chacha8.f1_all-*.nbi")) and any(cache.rglob("*.nbc"))


def test_a_failing_part_is_one_error_line(monkeypatch, capsys):
    def broken() -> None:
        raise RuntimeError("no compiler")

    monkeypatch.setitem(jit_warmup.WARMERS, "broken", broken)
    assert jit_warmup.main(["--part", "broken"]) == 1
    assert capsys.readouterr().err.strip() == "error: jit warm-up part broken: RuntimeError: no compiler"


def test_every_part_has_probes_and_a_stage():
    staged = [part for stage in jit_warmup.STAGES for part in stage]
    assert sorted(staged) == sorted(jit_warmup.WARMERS) == sorted(jit_warmup.PROBES)


def test_a_failed_stage_names_the_part(capsys):
    assert jit_warmup.run_stages((("no-such-part",),), jobs=1) == 1
    assert capsys.readouterr().err.strip() == "error: jit warm-up failed: part no-such-part exited with status 2"
