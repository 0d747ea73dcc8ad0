"""Running a quickstart: lock, start in stages, watch, fail fast, stop cleanly.

Why each step:

* the data dir lock (``services.quickstart_lock``) comes before any file is written, so a second
  quickstart never touches a running one's configs or logs;
* programs start in stages (``services.quickstart.STAGES``) over supervisord's XML-RPC: the
  NATS server and the JIT warm-up at once, the dev node when NATS accepts connections (it does
  not need NATS, but a role that does never races it), the controller, caches and plot-client
  when the node's RPC listens, the PoS roles when the kernels are compiled (otherwise each would
  compile them itself, at the same time, on the same cores);
* until the first block of this run, any program that exits (or a PoS role whose self-test
  refuses work) means the cluster cannot farm: the quickstart stops everything and prints the
  program, its log file and the reason found in it, exit 1. After the first block supervisord
  restarts a program that exits, and the quickstart prints why it exited; a program supervisord
  gives up on stops the run;
* SIGINT / SIGTERM (also a second one while stopping) stop supervisord, which stops every
  program in reverse start order; the quickstart waits for it, so nothing is left running.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgspec

from services.quickstart import (
    FARMING_ROLES,
    REPO_ROOT,
    REQUIRED_SERVICES,
    STAGES,
    WARMUP,
    Layout,
    QuickstartConfig,
    available_roles,
    make_layout,
    prepare,
)
from services.quickstart_lock import DataDirBusy, DataDirLock
from services.quickstart_progress import (
    LogFollower,
    Progress,
    dev_status,
    failure_reason,
    scrape_metrics,
    waiting_for,
)
from services.quickstart_supervisor import (
    SupervisorControl,
    SupervisordLog,
    start_supervisord,
    stop_supervisord,
)

TICK_S = 0.25
NODE_POLL_S = 1.0
METRICS_POLL_S = 2.0
MEMBERS_POLL_S = 2.0


class QuickstartFailed(Exception):
    """The run cannot go on; ``str()`` is the operator's line (program, log, reason)."""


def count_blocks(blocks_file: Path) -> int:
    try:
        with open(blocks_file, "rb") as handle:
            return sum(1 for line in handle if line.strip())
    except FileNotFoundError:
        return 0


def _err(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def check_roles(config: QuickstartConfig) -> tuple[tuple[str, ...], dict[str, str]]:
    """Roles to run; QuickstartFailed when a role the run needs cannot run at all."""
    import importlib.util

    for role, module in REQUIRED_SERVICES.items():
        if importlib.util.find_spec(module) is None:
            raise QuickstartFailed(f"quickstart needs {role} ({module}), which is not available in this build")
    roles, skipped = available_roles()
    broken = {role: reason for role, reason in skipped.items() if reason.startswith("import failed")}
    if broken:
        role, reason = next(iter(broken.items()))
        raise QuickstartFailed(f"{role} cannot run: {reason}")
    missing = [role for role in FARMING_ROLES if role not in roles]
    if config.exit_after_blocks is not None and missing:
        raise QuickstartFailed(f"--exit-after-blocks needs {', '.join(missing)}, not in this build: "
                               "no block can be authored")
    return roles, skipped


def run_quickstart(config: QuickstartConfig) -> int:
    try:
        roles, skipped = check_roles(config)
    except QuickstartFailed as exc:
        _err(f"error: {exc}")
        return 1
    lock = DataDirLock(config.data_dir)
    try:
        lock.acquire()
    except DataDirBusy as exc:
        _err(f"error: {exc}")
        return 1
    try:
        return _run_locked(config, lock, roles, skipped)
    finally:
        lock.release()


def _run_locked(config: QuickstartConfig, lock: DataDirLock, roles: tuple[str, ...], skipped: dict[str, str]) -> int:
    from services.logs import configure_logging

    configure_logging("error", "console")  # the bus client's reconnect chatter stays off the terminal
    layout = make_layout(config, roles)
    conf = prepare(config, layout)
    logs = layout.path("logs")
    print(f"quickstart: data dir {layout.data_dir} (locked: {lock.path}); logs in {logs}")
    print(f"quickstart: NATS {layout.nats_url}; node RPC {layout.rpc_url}; supervisorctl -c {conf} status")
    print(f"quickstart: roles: nats-server, dev-node, controller{''.join(', ' + r for r in roles)}"
          f"{' (+ jit-warmup)' if config.jit_warmup else ''}")
    for role, reason in skipped.items():
        print(f"quickstart: {role} left out ({reason})")
    sys.stdout.flush()
    # this run's part of every log starts here (a reused data dir keeps earlier runs' lines)
    supervisord_log = SupervisordLog(logs / "supervisord.log")
    followers = {name: LogFollower(layout.log_file(name)) for name in _program_names(config, layout)}
    proc = start_supervisord(conf, layout.data_dir, REPO_ROOT, pass_fds=(lock.fd,))
    lock.update(supervisord_pid=proc.pid, data_dir=layout.data_dir)
    stop_reason: list[str] = []

    def on_signal(signum, _frame) -> None:  # noqa: ANN001
        if stop_reason:
            print("quickstart: still stopping (supervisord is stopping every program)", flush=True)
        stop_reason.append(signal.Signals(signum).name)

    # our handlers stay installed while stopping: a second Ctrl-C must not abandon supervisord
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    status = 1
    try:
        runner = Runner(config, layout, proc, supervisord_log, followers, stop_reason)
        status = asyncio.run(runner.main())
    except QuickstartFailed as exc:
        _err(f"error: {exc}")
        status = 1
    finally:
        code = stop_supervisord(proc)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        print(f"quickstart: stopped (supervisord exit status {code})", flush=True)
    return status


def _program_names(config: QuickstartConfig, layout: Layout) -> list[str]:
    from services.quickstart import programs

    return [p.name for p in programs(config, layout)]


async def _port_open(port: int) -> bool:
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 0.5)
    except (OSError, asyncio.TimeoutError):
        return False
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass
    return True


class Runner:
    def __init__(self, config: QuickstartConfig, layout: Layout, proc: subprocess.Popen,
                 supervisord_log: SupervisordLog, followers: dict[str, LogFollower], stop_reason: list[str]) -> None:
        self.config = config
        self.layout = layout
        self.proc = proc
        self.supervisord_log = supervisord_log
        self.followers = followers
        self.stop_reason = stop_reason
        self.control = SupervisorControl(layout.data_dir)
        self.progress = Progress(emit=lambda text: print(text, flush=True))
        self.programs = set(followers)
        self.started: set[str] = set()
        self.stages_started: set[int] = set()
        self.nats_up = False
        self.rpc_up = False
        self.warmup_done = not config.jit_warmup
        self.baseline = count_blocks(layout.blocks_file)
        self.blocks = 0
        self._members_task: asyncio.Task | None = None

    # ---- main loop

    async def main(self) -> int:
        await asyncio.to_thread(self.control.wait_ready, self.proc)
        started = time.monotonic()
        next_status = started + self.config.progress_interval_s
        next_node = next_metrics = started
        try:
            while not self.stop_reason:
                if self.proc.poll() is not None:
                    raise QuickstartFailed(f"supervisord exited with status {self.proc.returncode}; see "
                                           f"{self.layout.path('logs', 'supervisord.log')}")
                await self._advance_stages()
                self._program_events()
                self._read_logs()
                now = time.monotonic()
                if now >= next_node and self.rpc_up:
                    next_node = now + NODE_POLL_S
                    self.progress.observe_node(await dev_status(self.layout.rpc_url))
                    self.blocks = count_blocks(self.layout.blocks_file) - self.baseline
                    self.progress.blocks = self.blocks
                    if self.blocks:
                        self.progress.reach("first-block", f"first block of this run authored "
                                                           f"({self.progress.elapsed():.1f} s after start)")
                if now >= next_metrics and "plot-client" in self.started:
                    next_metrics = now + METRICS_POLL_S
                    address = self.layout.metrics_address("plot-client")
                    if address is not None:
                        self.progress.observe_metrics(await asyncio.to_thread(scrape_metrics, address))
                self._check_readiness()
                wanted = self.config.exit_after_blocks
                if wanted is not None and self.blocks >= wanted:
                    print(f"quickstart: {self.blocks} blocks authored in this run (wanted {wanted}); stopping",
                          flush=True)
                    return 0
                if self.config.timeout_s is not None and now - started >= self.config.timeout_s:
                    raise QuickstartFailed(self._timeout_message())
                if now >= next_status:
                    next_status = now + self.config.progress_interval_s
                    print(self.progress.status_line(), flush=True)
                await asyncio.sleep(TICK_S)
            print(f"quickstart: {self.stop_reason[0]} received; stopping", flush=True)
            return 0
        finally:
            if self._members_task is not None:
                self._members_task.cancel()
                await asyncio.gather(self._members_task, return_exceptions=True)

    def _timeout_message(self) -> str:
        wanted = self.config.exit_after_blocks
        of = f" of {wanted}" if wanted is not None else ""
        text = f"timeout after {self.config.timeout_s:g}s with {self.blocks}{of} blocks authored"
        waiting = waiting_for(self.progress, self.started)
        if waiting is not None:
            what, programs = waiting
            logs = ", ".join(str(self.layout.log_file(name)) for name in programs) or str(self.layout.path("logs"))
            text += f"; still waiting for {what} (see {logs})"
        return f"{text}; last status: {self.progress.status_line()}"

    # ---- stages

    def _start(self, names: tuple[str, ...]) -> None:
        todo = [name for name in names if name in self.programs and name not in self.started]
        for name in todo:
            self.control.start(name)
            self.started.add(name)
        if todo:
            self.progress.say(f"started {', '.join(todo)}")

    def warmup_ready(self, role: str) -> bool:
        """The kernels ``role`` needs are in the cache (or there is no warm-up)."""
        from services.jit_warmup import NEEDED_BY

        return self.warmup_done or set(NEEDED_BY.get(role, ())) <= self.progress.warmup_parts

    def stage_ready(self, index: int) -> bool:
        """Whether stage ``index`` of :data:`services.quickstart.STAGES` may start."""
        return (True, self.nats_up, self.rpc_up, self.nats_up and self.warmup_ready("plot-server"),
                self.nats_up and self.warmup_ready("proof-server"))[index]

    async def _advance_stages(self) -> None:
        if not self.nats_up and "nats-server" in self.started and await _port_open(self.layout.nats_port):
            self.nats_up = True
            self.progress.reach("nats", f"nats-server accepts connections on {self.layout.nats_url}")
            self._members_task = asyncio.ensure_future(self._follow_members())
        if not self.rpc_up and "dev-node" in self.started and await _port_open(self.layout.rpc_port):
            self.rpc_up = True
            self.progress.reach("rpc", f"dev node RPC listens on {self.layout.rpc_url}")
        for index, (_, names) in enumerate(STAGES):
            if index not in self.stages_started and self.stage_ready(index):
                self.stages_started.add(index)
                self._start(names)

    # ---- what happened to the programs

    def _program_events(self) -> None:
        for event in self.supervisord_log.events():
            name = event.program
            if event.kind == "exited" and name == WARMUP:
                if event.status == 0:
                    self.warmup_done = True
                    self.progress.warmup = "done"
                else:
                    self._fail(name, f"exited with status {event.status if event.status is not None else event.signal}")
            elif event.kind == "exited":
                how = f"status {event.status}" if event.status is not None else f"signal {event.signal}"
                if not self.blocks:
                    self._fail(name, f"exited ({how}) before the cluster authored a block")
                log = self.layout.log_file(name)
                self.progress.say(f"{name} exited ({how}): {failure_reason(log)} (log {log}); supervisord restarts it")
            elif event.kind == "gave-up":
                self._fail(name, "kept exiting; supervisord gave up on it")
            elif event.kind == "spawn-error":
                self.progress.say(f"supervisord could not start a program: {event.detail}")

    def _fail(self, name: str, what: str) -> None:
        log = self.layout.log_file(name)
        reason = failure_reason(log)
        raise QuickstartFailed(f"{name} {what}: {reason} (log {log})")

    def _read_logs(self) -> None:
        for name, follower in self.followers.items():
            if name not in self.started:
                continue
            for record in follower.records():
                self.progress.observe(name, record, follower.path)

    def _check_readiness(self) -> None:
        """A PoS role whose self-test failed never takes work: no block can come."""
        if self.blocks:
            return
        for member in self.progress.members.values():
            capacity = member.get("capacity", {})
            if capacity.get("accepting_work") == 0 and isinstance(capacity.get("self_test"), str):
                role = member.get("role", "?")
                log = self.layout.log_file(role)
                raise QuickstartFailed(f"{role} refuses work: {capacity['self_test']} (log {log})")

    async def _follow_members(self) -> None:
        """Keep ``progress.members`` current from the membership bucket (best effort)."""
        from services.bus.client import Bus
        from services.bus.membership import Membership

        while True:
            bus = None
            try:
                bus = await Bus.connect([self.layout.nats_url], name="quickstart-monitor")
                membership = await Membership.open(bus)
                watcher = await membership.watch()
                try:
                    while True:
                        self.progress.observe_members({key: msgspec.to_builtins(m) for key, m in watcher.members.items()})
                        await asyncio.sleep(MEMBERS_POLL_S)
                finally:
                    await watcher.stop()
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - progress only: try again later
                await asyncio.sleep(MEMBERS_POLL_S)
            finally:
                if bus is not None:
                    try:
                        await bus.close()
                    except Exception:  # noqa: BLE001
                        pass
