"""Daemon lifecycle shared by every role: ``start / run / stop`` under uvloop with graceful
shutdown on SIGTERM/SIGINT (supervisor sends SIGTERM), metrics, structured logging, and one exit
path whose status tells supervisor what happened.

A role implements :class:`Daemon`; the CLI builds its config and calls :func:`run_daemon`.

* ``self.metrics`` (:class:`services.metrics.DaemonMetrics`) is this process's registry; the
  lifecycle serves it on ``config.prometheus_listen_on`` (every address; none when empty)
  *before* ``start()``, so a busy port fails fast, and closes the listeners after ``stop()``.
* Every log line carries ``component`` (the role) and ``instance`` (``config.instance``).
* Exit status: 0 after a requested stop (SIGTERM) or a ``run()`` that returned; 1 when
  ``start``/``run`` raised :class:`DaemonError` (one ``error:`` line) **or a task spawned with
  ``fatal=True`` failed** (the daemon stops, then exits 1 naming the task's error), so
  supervisor's ``autorestart`` and an operator's ``echo $?`` both see the failure.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import Any

import structlog

from services.logs import bind_process, configure_logging as _configure_logging


class DaemonError(Exception):
    """An operator-facing failure: printed as one line, exit status 1, never a traceback."""


class FatalTaskError(DaemonError):
    """A task the role cannot live without failed; the daemon stopped because of it."""


def configure_logging(level: str = "info", json_logs: bool = False, log_format: str | None = None) -> str:
    """structlog to stderr; ``log_format`` ``auto|console|json`` (``json_logs`` = ``json``)."""
    return _configure_logging(level, log_format or ("json" if json_logs else "auto"))


class Daemon:
    """Base class for a role process.

    ``start`` acquires resources (connections, files, listeners) and returns; ``run`` does the
    work until it finishes or ``stop_event`` is set; ``stop`` releases everything and must be
    safe to call after a partial ``start``.
    """

    name = "daemon"

    def __init__(self) -> None:
        from services.metrics import DaemonMetrics  # services.metrics imports DaemonError from here

        self.stop_event = asyncio.Event()
        self.log = structlog.get_logger(self.name)
        self.metrics = DaemonMetrics(self.name)
        self.fatal_error: BaseException | None = None
        self._tasks: set[asyncio.Task] = set()

    @property
    def prometheus_listen_on(self) -> tuple[str, ...]:
        """Addresses to serve metrics on: ``config.prometheus_listen_on`` when the role has one."""
        config = getattr(self, "config", None)
        return tuple(getattr(config, "prometheus_listen_on", ()) or ())

    @property
    def instance_name(self) -> str | None:
        return getattr(getattr(self, "config", None), "instance", None)

    async def start(self) -> None:  # pragma: no cover - overridden
        pass

    async def run(self) -> None:
        await self.stop_event.wait()

    async def stop(self) -> None:  # pragma: no cover - overridden
        pass

    def request_stop(self) -> None:
        self.stop_event.set()

    def spawn(self, coro, *, fatal: bool = False, name: str | None = None) -> asyncio.Task:  # noqa: ANN001
        """Run ``coro`` as a background task owned by this daemon (``cancel_tasks`` ends it).
        A failure is logged; with ``fatal`` it also stops the daemon, which then exits 1."""
        task = asyncio.ensure_future(coro)
        label = name or getattr(coro, "__qualname__", None) or "task"
        self._tasks.add(task)

        def done(finished: asyncio.Task) -> None:
            self._tasks.discard(finished)
            if finished.cancelled() or finished.exception() is None:
                if fatal and not self.stop_event.is_set() and not finished.cancelled():
                    # a loop the role needs ended on its own: that is a failure too
                    self._fail(label, RuntimeError(f"{label} ended unexpectedly"))
                return
            error = finished.exception()
            self.log.error(f"{self.name} task failed", task=label, error=repr(error), fatal=fatal)
            if fatal:
                self._fail(label, error)

        task.add_done_callback(done)
        return task

    def _fail(self, label: str, error: BaseException) -> None:
        if self.fatal_error is None:
            self.fatal_error = FatalTaskError(f"{self.name}: {label} failed: {error}")
        self.request_stop()

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


def package_version() -> str:
    """This build's version (the installed distribution's, else the source tree's)."""
    try:
        from importlib.metadata import version

        return version("autonomys-farmer-py")
    except Exception:  # noqa: BLE001 - not installed as a distribution (source checkout)
        return "0.1.0"


async def _lifecycle(daemon: Daemon) -> None:
    from services.metrics import serve

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(sig, daemon.request_stop)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-main thread
            pass
    bind_process(component=daemon.name, instance=daemon.instance_name)
    daemon.metrics.describe(instance=daemon.instance_name or daemon.name, version=package_version(),
                            hourly_cost=getattr(getattr(daemon, "config", None), "hourly_cost", None))
    listeners = serve(daemon.metrics.registry, daemon.prometheus_listen_on)
    if listeners.servers:
        daemon.log.info("prometheus metrics listening",
                        addresses=[f"{host}:{port}" for host, port in listeners.addresses])
    try:
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
    finally:
        listeners.close()
    if daemon.fatal_error is not None:
        raise daemon.fatal_error


def run_daemon(daemon: Daemon) -> int:
    """Run ``daemon`` to completion under uvloop; return the process exit status."""
    try:
        import uvloop

        runner: Any = uvloop.run
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
