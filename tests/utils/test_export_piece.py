"""``autonomys-export-piece`` against a real dev node process: every piece rebuilt from the
node's blocks (``dev_historyBlock``) with our archiver, checked against the node's segment
headers, written byte-identical to what the node archived; a SIGKILL mid-export and a rerun
continue to the same result; a rerun after completion has nothing to do."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from dev_node_process import REPO_ROOT, TEMPLATE_FLAGS, DevNodeProcess, archived_template, call, clone_data_dir  # noqa: E402

from services.cache.history_store import HistoryStore  # noqa: E402
from services.node import dev_history  # noqa: E402

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _export(node_url: str, out: Path, *flags: str, stop_after_progress: bool = False) -> tuple[int, str]:
    http_url = node_url.replace("ws://", "http://")  # the manual's NODE_URL form
    proc = subprocess.Popen([sys.executable, "-m", "services", "export-piece", "--output", str(out), *flags],
                            cwd=REPO_ROOT, env={**os.environ, "NODE_URL": http_url, "PYTHONPATH": str(REPO_ROOT)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if stop_after_progress:
        assert proc.stderr is not None
        for line in proc.stderr:
            if line.startswith("export [") and " 0/256 " not in line:  # part of a segment is buffered
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait()
        return proc.returncode, ""
    out_text, err = proc.communicate(timeout=1200)
    return proc.returncode, out_text + err


def test_export_rebuilds_the_dev_chain_history(tmp_path: Path, tmp_path_factory) -> None:
    template = archived_template(tmp_path_factory.getbasetemp(), *TEMPLATE_FLAGS)
    node = DevNodeProcess(clone_data_dir(template, tmp_path / "node"), *TEMPLATE_FLAGS)
    out = tmp_path / "full-cache-tmp"
    try:
        url = node.wait_ready()
        first = asyncio.run(call(url, "dev_historyBlock", [0]))
        assert first == {"number": 0, "block": dev_history.history_block("autonomys-dev", 0).hex()}
        assert asyncio.run(call(url, "dev_historyBlock", [1 << 31])) is None

        code, _ = _export(url, out, stop_after_progress=True)
        assert code == -signal.SIGKILL
        code, text = _export(url, out)
        assert code == 0, text
        assert "exported 1 segments (256 pieces" in text and "holds segments 0..0" in text, text
        exported = (out / "segments" / "0000000000.pieces").read_bytes()
        assert exported == (node.data_dir / "segments" / "00000000.pieces").read_bytes()
        with HistoryStore(out, create=False) as store:
            assert store.counts() == {"verified": 256, "unverified": 0, "bad": 0}
            assert store.headers[0].to_json() == asyncio.run(call(url, "subspace_segmentHeaders", [[0]]))[0]

        code, text = _export(url, out)
        assert code == 0 and "exported 0 segments" in text, text
        code, text = _export(url, out, "--first-segment", "0")  # re-export from segment 0
        assert code == 0 and "exported 1 segments" in text, text
        assert (out / "segments" / "0000000000.pieces").read_bytes() == exported
    finally:
        assert node.terminate() == 0
