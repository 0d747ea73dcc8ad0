"""A progress line for long operator commands: items done / total, MiB/s, ETA.

On a terminal the line is redrawn in place (``\\r``); otherwise (supervisor logs, pipes) a full
line is printed at most every ``interval`` seconds, so logs stay readable.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}"


class Progress:
    def __init__(self, label: str, total: int, *, done: int = 0, unit: str = "pieces", bytes_per_item: int = 0,
                 stream: TextIO | None = None, interval: float = 5.0, width: int = 30) -> None:
        self.label = label
        self.total = total
        self.start_done = done
        self.done = done
        self.unit = unit
        self.bytes_per_item = bytes_per_item
        self.stream = stream or sys.stderr
        self.interval = interval
        self.width = width
        self.started = time.monotonic()
        self._last_print = 0.0
        self._printed: int | None = None
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def rate(self) -> float:
        """Items per second during this run."""
        return (self.done - self.start_done) / self.elapsed if self.elapsed > 0 else 0.0

    def line(self) -> str:
        total = max(self.total, 1)
        fraction = min(1.0, self.done / total)
        filled = int(fraction * self.width)
        rate = self.rate()
        mib_s = rate * self.bytes_per_item / 2**20
        eta = format_duration((self.total - self.done) / rate) if rate > 0 and self.done < self.total else "-"
        return (f"{self.label} [{'#' * filled}{'.' * (self.width - filled)}] {self.done}/{self.total} {self.unit} "
                f"{fraction * 100:5.1f}% {mib_s:7.1f} MiB/s ETA {eta}")

    def update(self, done: int | None = None, *, advance: int = 0, force: bool = False) -> None:
        self.done = done if done is not None else self.done + advance
        now = time.monotonic()
        if not force and not self._tty and now - self._last_print < self.interval:
            return
        self._last_print = now
        self._printed = self.done
        if self._tty:
            self.stream.write("\r" + self.line())
        else:
            self.stream.write(self.line() + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self._printed != self.done:
            self.update(force=True)
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
