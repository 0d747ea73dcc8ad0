"""Daemon lifecycle shared by every role: ``start / run / stop`` under uvloop with graceful
shutdown on SIGTERM/SIGINT (supervisor sends SIGTERM), structured logging, and one exit path.

A role implements :class:`Daemon`; the CLI builds its config and calls :func:`run_daemon`.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import Any

import structlog


class DaemonError(Exception):
    """An operator-facing failure: printed as one line, exit status 1, never a traceback."""


def configure_logging(level: str = "info", json_logs: bool = False) -> None:
    """structlog to stderr: key=value for terminals, JSON when ``json_logs`` (log shippers)."""
    lvl = getattr(logging, level.upper(), logging.INFO)
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(message)s")
    renderer: Any = (
        structlog.processors.JSONRenderer() if json_logs else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class Daemon:
    """Base class for a role process.

    ``start`` acquires resources (connections, files, listeners) and returns; ``run`` does the
    work until it finishes or ``stop_event`` is set; ``stop`` releases everything and must be
    safe to call after a partial ``start``.
    """

    name = "daemon"

    def __init__(self) -> None:
        self.stop_event = asyncio.Event()
        self.log = structlog.get_logger(self.name)
        self._tasks: set[asyncio.Task] = set()

    async def start(self) -> None:  # pragma: no cover - overridden
        pass

    async def run(self) -> None:
        await self.stop_event.wait()

    async def stop(self) -> None:  # pragma: no cover - overridden
        pass

    def request_stop(self) -> None:
        self.stop_event.set()

    def spawn(self, coro, *, fatal: bool = False) -> asyncio.Task:  # noqa: ANN001
        """Run ``coro`` as a background task owned by this daemon (``cancel_tasks`` ends it).
        A failure is logged; with ``fatal`` it also stops the daemon (a loop the role needs)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)

        def done(finished: asyncio.Task) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                self.log.error(f"{self.name} task failed", error=repr(finished.exception()))
                if fatal:
                    self.request_stop()

        task.add_done_callback(done)
        return task

    async def cancel_tasks(self) -> None:
        """Cancel every task started with ``spawn`` and wait for them (called from ``stop``)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


async def _lifecycle(daemon: Daemon) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, daemon.request_stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread
            pass
    try:
        await daemon.start()
        run_task = asyncio.ensure_future(daemon.run())
        stop_task = asyncio.ensure_future(daemon.stop_event.wait())
        done, _ = await asyncio.wait({run_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
        if run_task in done:
            run_task.result()  # re-raise a failure of run()
        else:
            run_task.cancel()
            try:
                await run_task
            except asyncio.CancelledError:
                pass
        stop_task.cancel()
    finally:
        await daemon.stop()


def run_daemon(daemon: Daemon) -> int:
    """Run ``daemon`` to completion under uvloop; return the process exit status."""
    try:
        import uvloop

        runner = uvloop.run
    except ImportError:  # pragma: no cover - uvloop is a hard dependency
        runner = asyncio.run
    try:
        runner(_lifecycle(daemon))
    except DaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover
        return 130
    daemon.log.info("stopped")
    return 0
