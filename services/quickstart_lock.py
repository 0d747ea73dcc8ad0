"""The quickstart's hold on its data directory: one running quickstart per ``--data-dir``.

Why: a second quickstart on the same directory used to rewrite the running one's supervisord
and NATS configs (new ports), start a second cluster on the same plots and chain, and point at
logs the first one was writing. Now the first one holds an exclusive ``flock`` on
``DATA_DIR/quickstart.lock`` for its whole run, and writes who it is into that file; a second
one is refused with one line naming the holder (pid, host, start time, command line).

The lock is an open file description, so it is released by the kernel whenever its holders are
gone (no stale lock after a crash or ``kill -9``). The quickstart passes the descriptor to
supervisord, so a data dir whose quickstart was killed but whose supervisord and roles still
run stays locked until supervisord exits too. supervisord closes it in the programs it starts.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

LOCK_FILE = "quickstart.lock"


class DataDirBusy(Exception):
    """Another quickstart holds the data directory; ``str()`` is the operator's one line."""

    def __init__(self, data_dir: str, holder: dict) -> None:
        self.data_dir = data_dir
        self.holder = holder
        pid, supervisord = holder.get("pid"), holder.get("supervisord_pid")
        if _alive(pid, holder) is False and supervisord and _alive(supervisord, holder):
            how = (f"its quickstart (pid {pid}) is gone but its supervisord still runs the cluster: stop it "
                   f"with kill {supervisord}")
        else:
            how = f"stop that one first (Ctrl-C in its terminal, or kill {pid or '<its pid>'})"
        super().__init__(f"data dir {data_dir} is in use by another quickstart ({describe_holder(holder)}); "
                         f"{how}, or choose another --data-dir")


def _alive(pid: object, holder: dict) -> bool | None:
    """Whether process ``pid`` of the holder runs (None: on another host, or unknown)."""
    if not isinstance(pid, int) or holder.get("host") != socket.gethostname():
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_holder(holder: dict) -> str:
    if not holder:
        return "it is starting and has not written its details yet"
    parts = [f"pid {holder.get('pid', '?')} on {holder.get('host', '?')}"]
    if holder.get("supervisord_pid"):
        parts.append(f"supervisord pid {holder['supervisord_pid']}")
    if holder.get("started_at"):
        parts.append(f"started {holder['started_at']}")
    if holder.get("command"):
        parts.append(f"command: {holder['command']}")
    return ", ".join(parts)


class DataDirLock:
    """``acquire()`` or :class:`DataDirBusy`; ``update(**fields)`` adds to the holder record."""

    def __init__(self, data_dir: str | os.PathLike) -> None:
        self.data_dir = str(data_dir)
        self.path = Path(data_dir, LOCK_FILE)
        self.fd: int | None = None
        self.holder: dict = {}

    def acquire(self) -> "DataDirLock":
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise DataDirBusy(self.data_dir, holder) from None
        except BaseException:
            os.close(fd)
            raise
        self.fd = fd
        self.holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": " ".join([os.path.basename(sys.executable), *sys.argv]) if sys.argv else "",
            "cwd": os.getcwd(),
        }
        self._write()
        return self

    def update(self, **fields: object) -> None:
        self.holder.update(fields)
        self._write()

    def _write(self) -> None:
        assert self.fd is not None
        data = (json.dumps(self.holder, indent=2) + "\n").encode()
        os.ftruncate(self.fd, 0)
        os.pwrite(self.fd, data, 0)
        os.fsync(self.fd)

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing our descriptor drops our share of the lock
            self.fd = None

    def __enter__(self) -> "DataDirLock":
        return self.acquire()

    def __exit__(self, *exc_info: object) -> None:
        self.release()


def _read_holder(fd: int) -> dict:
    try:
        data = os.pread(fd, 64 * 1024, 0)
        holder = json.loads(data.decode()) if data.strip() else {}
    except (OSError, ValueError):
        return {}
    return holder if isinstance(holder, dict) else {}
