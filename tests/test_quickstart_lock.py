"""One quickstart per data dir: the lock, its holder record, and a second real quickstart refused
while the first runs (naming the holder, touching none of its files)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from quickstart_processes import REPO_ROOT, processes_mentioning, read_until, start_quickstart

from services.quickstart_lock import LOCK_FILE, DataDirBusy, DataDirLock


def test_second_lock_is_refused_naming_the_holder(tmp_path):
    first = DataDirLock(tmp_path).acquire()
    try:
        first.update(supervisord_pid=4242)
        with pytest.raises(DataDirBusy) as busy:
            DataDirLock(tmp_path).acquire()
        message = str(busy.value)
        assert message.startswith(f"data dir {tmp_path} is in use by another quickstart (pid {os.getpid()} on ")
        assert "supervisord pid 4242" in message and "started 20" in message
        assert f"kill {os.getpid()})" in message and message.endswith(", or choose another --data-dir")
        assert busy.value.holder["pid"] == os.getpid()
    finally:
        first.release()
    # released: the next one gets it and rewrites the holder record
    with DataDirLock(tmp_path) as again:
        holder = json.loads((tmp_path / LOCK_FILE).read_text())
        assert holder["pid"] == os.getpid() and "supervisord_pid" not in holder
        assert again.fd is not None


def test_lock_dies_with_its_holder(tmp_path):
    """A killed holder leaves no stale lock (the kernel drops a flock with its last descriptor)."""
    code = ("import sys, time; from services.quickstart_lock import DataDirLock; "
            f"DataDirLock({str(tmp_path)!r}).acquire(); print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(DataDirBusy) as busy:
            DataDirLock(tmp_path).acquire()
        assert f"pid {proc.pid} " in str(busy.value)
    finally:
        proc.kill()
        proc.wait()
    DataDirLock(tmp_path).acquire().release()


def test_a_gone_quickstart_whose_supervisord_runs_is_named(tmp_path):
    """Killed with -9, the quickstart leaves supervisord holding the lock: say which pid to stop."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    lock = DataDirLock(tmp_path).acquire()
    try:
        lock.update(pid=int(gone.stdout), supervisord_pid=os.getpid())  # "supervisord": this live process
        with pytest.raises(DataDirBusy) as busy:
            DataDirLock(tmp_path).acquire()
        assert (f"its quickstart (pid {int(gone.stdout)}) is gone but its supervisord still runs the cluster: "
                f"stop it with kill {os.getpid()}, or choose another --data-dir") in str(busy.value)
    finally:
        lock.release()


def test_holder_without_details_yet(tmp_path):
    import fcntl

    fd = os.open(tmp_path / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # locked, nothing written yet
    try:
        with pytest.raises(DataDirBusy, match="it is starting and has not written its details yet"):
            DataDirLock(tmp_path).acquire()
    finally:
        os.close(fd)


@pytest.mark.integration
@pytest.mark.slow
def test_second_quickstart_on_a_running_data_dir_is_refused(tmp_path):
    data = tmp_path / "data"
    first = start_quickstart(data, "--no-jit-warmup")
    try:
        read_until(first, lambda line: "started dev-node" in line, "the dev node's start")
        conf = (data / "supervisord.conf").read_text()
        layout = (data / "quickstart.json").read_text()
        second = subprocess.run([sys.executable, "-m", "services", "quickstart", "--data-dir", str(data)],
                                cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                                capture_output=True, text=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.startswith(f"error: data dir {data} is in use by another quickstart (pid {first.pid} on ")
        assert "supervisord pid " in second.stderr and "command: " in second.stderr and "quickstart" in second.stderr
        assert second.stdout == ""
        # the running one's files are untouched
        assert (data / "supervisord.conf").read_text() == conf
        assert (data / "quickstart.json").read_text() == layout
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=200)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, err
    assert processes_mentioning(str(data)) == []
