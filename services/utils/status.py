"""``autonomys-farmer status --nats-server URL``: the cluster at a glance, from the bus alone.

On a terminal it is a live full-screen view (rich): components and their health, per-farm
plotting progress with ETA, per-GPU throughput and cost per TiB plotted, cache fill, recent
solutions and rewards, and a red line for anything stale or failing. ``--json`` prints one
snapshot (:class:`services.utils.status_model.Snapshot`) for scripts; without a terminal (a pipe,
``watch``) it prints the screen once.

Data: the membership records every daemon keeps in the ``autonomys-members`` bucket (watched
live) and, in the live view, the cluster's own broadcasts: solutions sent to controllers,
reward signing requests and signatures. Needs only NATS, so it works from any machine that
can reach the servers; it opens no port and sends nothing but its KV watch.
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import signal
import sys
import time

import msgspec

from services.daemon import DaemonError
from services.utils.config import StatusConfig
from services.utils.status_model import Event, Snapshot, build_snapshot

REFRESH_S = 1.0
EVENTS_KEPT = 64
PRINT_WIDTH = 160  # one-shot print without a terminal (COLUMNS overrides)


class ClusterFeed:
    """Live membership plus the broadcasts worth showing, kept in a bounded list of events."""

    def __init__(self, bus, watcher) -> None:  # noqa: ANN001 - Bus, MembershipWatcher
        self.bus = bus
        self.watcher = watcher
        self.events: collections.deque[Event] = collections.deque(maxlen=EVENTS_KEPT)
        self._tasks: list[asyncio.Task] = []
        self._subscriptions: list = []

    def _farm_name(self, public_key: bytes) -> str:
        key = public_key.hex()
        for member in self.watcher.members.values():
            for name, value in member.capacity.items():
                if name.endswith(".public_key") and isinstance(value, str) and value and key.startswith(value):
                    return f"farm {name.split('.')[1]} ({member.instance})"
        return f"public key {key[:16]}"

    async def start(self) -> None:
        from services.controller.messages import RewardSignatureNotification, RewardSigningBroadcast, \
            SolutionNotification

        handlers = {SolutionNotification: self._solution, RewardSigningBroadcast: self._reward_requested,
                    RewardSignatureNotification: self._reward_signed}
        for message_type, handler in handlers.items():
            subscription = await self.bus.subscribe(message_type)
            self._subscriptions.append(subscription)
            self._tasks.append(asyncio.ensure_future(self._follow(subscription, handler)))
        self._tasks.append(asyncio.ensure_future(self._members()))

    async def _follow(self, subscription, handler) -> None:  # noqa: ANN001
        async for message in subscription:
            try:
                self.events.append(handler(message))
            except ValueError:  # a malformed message is the daemons' problem, not the view's
                continue

    def _solution(self, message) -> Event:  # noqa: ANN001 - SolutionNotification
        response = message.decoded()
        solution = response.solution
        return Event(at=time.time(), kind="solution", public_key=solution.public_key.hex(),
                     text=f"slot {response.slot_number}: sector {solution.sector_index} piece "
                          f"{solution.piece_offset} of {self._farm_name(solution.public_key)}")

    def _reward_requested(self, message) -> Event:  # noqa: ANN001 - RewardSigningBroadcast
        info = message.decoded()
        return Event(at=time.time(), kind="reward-requested", public_key=info.public_key.hex(),
                     text=f"block 0x{info.hash.hex()[:16]}… won by {self._farm_name(info.public_key)}")

    def _reward_signed(self, message) -> Event:  # noqa: ANN001 - RewardSignatureNotification
        response = message.decoded()
        return Event(at=time.time(), kind="reward-signed", text=f"block 0x{response.hash.hex()[:16]}… reward signed")

    async def _members(self) -> None:
        async for event in self.watcher:
            if event.kind in ("join", "leave"):
                self.events.append(Event(at=time.time(), kind=event.kind,
                                         text=f"{event.member.role} {event.member.instance}"))

    def snapshot(self, nats_servers: list[str]) -> Snapshot:
        return build_snapshot(self.watcher.members.values(), nats_servers=nats_servers, recent=list(self.events))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for subscription in self._subscriptions:
            try:
                await subscription.unsubscribe()
            except Exception:  # noqa: BLE001 - closing anyway
                pass


async def _connect(config: StatusConfig):  # noqa: ANN202 - (Bus, MembershipWatcher)
    from services.bus.client import Bus
    from services.bus.membership import Membership

    bus = await asyncio.wait_for(Bus.connect(list(config.nats_servers), name="autonomys-status"), config.timeout_s)
    try:
        membership = await asyncio.wait_for(Membership.open(bus), config.timeout_s)
        watcher = await asyncio.wait_for(membership.watch(), config.timeout_s)
    except BaseException:
        await bus.close()
        raise
    return bus, watcher


async def collect(config: StatusConfig) -> Snapshot:
    """One snapshot of the cluster from the current membership records."""
    bus, watcher = await _connect(config)
    try:
        return build_snapshot(watcher.members.values(), nats_servers=list(config.nats_servers))
    finally:
        await watcher.stop()
        await bus.close()


async def live(config: StatusConfig) -> None:
    """Redraw the full screen every second until Ctrl-C / SIGTERM."""
    from rich.console import Console
    from rich.live import Live

    from services.utils.status_view import render

    bus, watcher = await _connect(config)
    feed = ClusterFeed(bus, watcher)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    servers = list(config.nats_servers)
    try:
        await feed.start()
        with Live(render(feed.snapshot(servers), live=True), console=Console(), screen=True, auto_refresh=False,
                  redirect_stderr=False) as view:
            while not stop.is_set():
                view.update(render(feed.snapshot(servers), live=True), refresh=True)
                try:
                    await asyncio.wait_for(stop.wait(), REFRESH_S)
                except asyncio.TimeoutError:
                    pass
    finally:
        await feed.stop()
        await watcher.stop()
        await bus.close()


def main(config: StatusConfig) -> int:
    from services.daemon import configure_logging

    # connection retries would otherwise be logged as warnings before the one-line answer
    configure_logging("error" if config.log_level == "info" else config.log_level, config.json_logs)
    interactive = not config.json_output and sys.stdout.isatty()
    try:
        if interactive:
            asyncio.run(live(config))
            return 0
        snapshot = asyncio.run(collect(config))
    except asyncio.TimeoutError:
        print(f"error: no answer from NATS {', '.join(config.nats_servers)} within {config.timeout_s:g}s",
              file=sys.stderr)
        return 1
    except DaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if config.json_output:
        print(json.dumps(msgspec.to_builtins(snapshot), indent=2))
    else:
        from rich.console import Console

        from services.utils.status_view import render

        width = int(os.environ.get("COLUMNS") or 0) or PRINT_WIDTH
        Console(width=width, no_color=True, highlight=False).print(render(snapshot))
    return 0
