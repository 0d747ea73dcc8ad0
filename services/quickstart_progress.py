"""What the quickstart tells the terminal while the cluster comes up: milestones and a status line.

Why: a first-time user sees a cluster that needs a minute or two before its first block
(archiving history, filling caches, compiling kernels, plotting, the first audit, proof and
block); a terminal that stays silent, or prints ``ready=False`` for two minutes, looks broken.
Every phase is printed once when it is reached (with the seconds since start), a compact status
line follows every few seconds, and every error a role logs is shown with the log it came from.

Sources, all read without touching the roles: the programs' own log files (JSON lines, one
:class:`LogFollower` each, read from where this run began), the dev node's ``dev_status`` RPC,
the cluster membership bucket (capacity records: cache pieces, plotted sectors, self-tests) and
the plot-client's Prometheus metrics (audits). A source that is not there yet is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

MAX_ERRORS_SHOWN_PER_PROGRAM = 5


class LogFollower:
    """New lines of one log file as records (JSON objects, or ``{"event": line}`` for text)."""

    def __init__(self, path: Path, from_end: bool = True) -> None:
        self.path = path
        self.offset = 0
        if from_end:
            try:
                self.offset = path.stat().st_size
            except FileNotFoundError:
                pass
        self._partial = b""
        self.last_lines: list[str] = []

    def records(self, limit_bytes: int = 4 << 20) -> list[dict]:
        try:
            with open(self.path, "rb") as handle:
                if os.fstat(handle.fileno()).st_size < self.offset:  # rotated
                    self.offset = 0
                handle.seek(self.offset)
                data = handle.read(limit_bytes)
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        out = []
        for raw in lines:
            text = raw.decode(errors="replace").strip()
            if not text:
                continue
            self.last_lines = (self.last_lines + [text])[-20:]
            out.append(parse_record(text))
        return out


def parse_record(text: str) -> dict:
    if text.startswith("{"):
        try:
            record = json.loads(text)
            if isinstance(record, dict):
                return record
        except ValueError:
            pass
    lowered = text.lower()
    level = "error" if lowered.startswith("error:") or lowered.startswith("traceback") else "raw"
    return {"event": text, "level": level}


def is_error(record: dict) -> bool:
    return str(record.get("level", "")).lower() in ("error", "critical", "fatal")


def describe(record: dict, limit: int = 300) -> str:
    """``event (key=value, ...)`` of a record, for one terminal line."""
    event = str(record.get("event", ""))
    skip = {"event", "level", "timestamp", "component", "instance", "logger", "data_dir"}
    fields = ", ".join(f"{k}={v}" for k, v in record.items() if k not in skip)
    text = f"{event} ({fields})" if fields else event
    return text if len(text) <= limit else text[: limit - 3] + "..."


def last_error_line(follower: LogFollower) -> str | None:
    """The most recent error-looking line of a log (its one-line reason when a role failed)."""
    for text in reversed(follower.last_lines):
        record = parse_record(text)
        if is_error(record):
            return describe(record)
    return None


def log_tail(path: Path, lines: int = 20) -> list[str]:
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return []
    return [line for line in data.splitlines() if line.strip()][-lines:]


def failure_reason(path: Path, limit: int = 1000) -> str:
    """Why a program stopped, from its log: the last error line, else its last line."""
    tail = log_tail(path, 50)
    for text in reversed(tail):
        record = parse_record(text)
        if is_error(record):
            return describe(record, limit)
    return describe(parse_record(tail[-1]), limit) if tail else "(its log is empty)"


# --- the dev node and the metrics ----------------------------------------------------------------


async def dev_status(url: str) -> dict | None:
    import websockets

    try:
        async with websockets.connect(url, open_timeout=2, close_timeout=1) as ws:
            await ws.send(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "dev_status", "params": []}))
            reply = json.loads(await asyncio.wait_for(ws.recv(), 2))
    except Exception:  # noqa: BLE001 - the node may be starting or restarting
        return None
    result = reply.get("result") if isinstance(reply, dict) else None
    return result if isinstance(result, dict) else None


def scrape_metrics(address: str, timeout_s: float = 2.0) -> dict[str, float] | None:
    """Sample name -> value, summed over label sets (``None`` when nothing answers)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=timeout_s) as response:  # noqa: S310
            text = response.read().decode()
    except OSError:
        return None
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = sample.name
            if sample.name.endswith("_Sectors") and "state" in sample.labels:
                key = f"{sample.name}{{state={sample.labels['state']}}}"
            values[key] = values.get(key, 0.0) + float(sample.value)
    return values


AUDITS_METRIC = "subspace_farmer_farm_auditing_time_seconds_count"
SOLUTIONS_METRIC = "subspace_farmer_farm_solutions_found_total"


# --- milestones -----------------------------------------------------------------------------


@dataclass
class Progress:
    """Milestones reached (printed once each) and the numbers of the status line."""

    started: float = field(default_factory=time.monotonic)
    emit: Callable[[str], None] = print
    reached: dict[str, float] = field(default_factory=dict)
    node: dict | None = None
    members: dict[str, dict] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    blocks: int = 0
    warmup: str = "pending"
    warmup_parts: set[str] = field(default_factory=set)  # parts compiled (or found in the cache)
    errors_shown: dict[str, int] = field(default_factory=dict)
    plotting: dict[str, str] = field(default_factory=dict)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def say(self, text: str) -> None:
        self.emit(f"[{self.elapsed():6.1f}s] {text}")

    def reach(self, key: str, text: str | None = None) -> bool:
        """Print ``text`` the first time ``key`` is reached; True that time."""
        if key in self.reached:
            return False
        self.reached[key] = self.elapsed()
        self.say(text or key)
        return True

    # ---- logs

    def observe(self, program: str, record: dict, log_path: Path) -> None:
        event = str(record.get("event", ""))
        if is_error(record):
            shown = self.errors_shown.get(program, 0)
            if shown < MAX_ERRORS_SHOWN_PER_PROGRAM:
                self.say(f"{program} logged an error: {describe(record)} (log {log_path})")
            elif shown == MAX_ERRORS_SHOWN_PER_PROGRAM:
                self.say(f"{program}: more errors in {log_path}")
            self.errors_shown[program] = shown + 1
        handler = _LOG_MILESTONES.get(program) or (_cache_milestones if "cache" in program else None)
        if handler is not None:
            handler(self, event, record)

    # ---- the status line

    def status_line(self) -> str:
        parts = [f"[{self.elapsed():6.1f}s]"]
        node = self.node
        if node is None:
            parts.append("node: starting")
        else:
            state = "ready" if node.get("ready") else f"archiving (segments {node.get('segmentsArchived', 0)})"
            parts.append(f"node: {state}, height {node.get('chainHeight', 0)}, slot {node.get('lastSlot')}")
        parts.append(f"warm-up: {self.warmup}")
        pieces = self.cache_pieces()
        if pieces is not None:
            parts.append(f"caches: {pieces} pieces")
        plotted = self.plotted()
        if plotted is not None:
            parts.append(f"plotted: {plotted[0]}/{plotted[1]} sectors")
        if AUDITS_METRIC in self.metrics:
            parts.append(f"audits: {int(self.metrics[AUDITS_METRIC])}")
        if node is not None:
            parts.append(f"solutions: {node.get('solutionsReceived', 0)} ({node.get('solutionsRejected', 0)} rejected)")
        parts.append(f"blocks: {self.blocks}")
        return " | ".join(parts)

    def cache_pieces(self) -> int | None:
        values = [m.get("capacity", {}).get("pieces") for m in self.members.values() if "cache" in m.get("role", "")]
        values = [v for v in values if isinstance(v, (int, float))]
        return int(sum(values)) if values else None

    def plotted(self) -> tuple[int, int] | None:
        for member in self.members.values():
            if member.get("role") == "plot-client":
                capacity = member.get("capacity", {})
                if isinstance(capacity.get("plotted"), (int, float)) and isinstance(capacity.get("sectors"), (int, float)):
                    return int(capacity["plotted"]), int(capacity["sectors"])
        return None

    # ---- the other sources

    def observe_node(self, status: dict | None) -> None:
        if status is None:
            return
        self.node = status
        if status.get("ready"):
            self.reach("node-ready", f"dev node ready: {status.get('segmentsArchived')} segment(s) archived, "
                                     f"history size {status.get('historySize')}, slots ticking")
        if status.get("solutionsReceived"):
            self.reach("first-solution", "first solution received by the dev node")
        if status.get("solutionsRejected"):
            self.reach("first-rejection", "the dev node rejected a solution (reason in its log)")

    def observe_members(self, members: dict[str, dict]) -> None:
        self.members = members
        pieces = self.cache_pieces()
        if pieces:
            self.reach("cache-first", f"caches hold their first pieces ({pieces})")
        plotted = self.plotted()
        if plotted and plotted[0] >= 1:
            self.reach("first-sector", f"first sector plotted and written ({plotted[0]}/{plotted[1]})")
        if plotted and plotted[1] and plotted[0] >= plotted[1]:
            self.reach("all-sectors", f"all {plotted[1]} sectors plotted")
        for member in members.values():
            capacity = member.get("capacity", {})
            verdict = capacity.get("self_test")
            if isinstance(verdict, str):
                self.reach(f"self-test-{member.get('role')}-{member.get('instance')}",
                           f"{member.get('role')} self-test: {verdict} ({capacity.get('backend', '?')} backend, "
                           f"{capacity.get('tables_per_second', '?')} table sets/s)")

    def observe_metrics(self, values: dict[str, float] | None) -> None:
        if not values:
            return
        self.metrics = values
        if values.get(AUDITS_METRIC):
            self.reach("first-audit", "first audit of a plotted sector (metrics)")


# what a first block waits for, in order: milestone key (or a test on the progress), what it
# is, and the programs whose logs say why it has not happened
WAITS: tuple[tuple[Callable[["Progress"], bool], str, tuple[str, ...]], ...] = (
    (lambda p: "node-ready" in p.reached, "the dev node's first archived segment", ("dev-node",)),
    (lambda p: p.warmup == "done", "the JIT warm-up", ("jit-warmup",)),
    (lambda p: bool(p.cache_pieces()), "the caches' first pieces",
     ("sharded-cache", "full-piece-sharded-cache", "controller")),
    (lambda p: bool(p.plotted() and p.plotted()[0] >= 1), "the first plotted sector", ("plot-client", "plot-server")),
    (lambda p: "first-audit" in p.reached, "the first audit of a plotted sector", ("plot-client",)),
    (lambda p: "first-solution" in p.reached, "the first solution at the dev node", ("plot-client", "proof-server")),
    (lambda p: p.blocks > 0, "the first block", ("dev-node", "controller", "plot-client")),
)


def waiting_for(progress: "Progress", running: set[str]) -> tuple[str, tuple[str, ...]] | None:
    """The first thing a block still waits for, and the running programs whose logs tell why."""
    for done, what, programs in WAITS:
        if not done(progress):
            return what, tuple(name for name in programs if name in running)
    return None


def _dev_node_milestones(progress: Progress, event: str, record: dict) -> None:
    if event == "archiving segment":
        index = record.get("segment_index")
        progress.reach(f"archiving-{index}", f"dev node archiving segment {index} (synthetic history, dev KZG)")
    elif event == "segment archived":
        index = record.get("segment_index")
        progress.reach(f"archived-{index}", f"segment {index} archived in {record.get('seconds')} s")
    elif event == "block authored":
        progress.say(f"block {record.get('number')} authored: slot {record.get('slot')}, sector "
                     f"{record.get('sector_index')}, piece offset {record.get('piece_offset')}, reward signature in "
                     f"{record.get('reward_signature_ms')} ms")
    elif event == "solution rejected":
        progress.say(f"dev node rejected a solution: {record.get('reason')}")


def _warmup_milestones(progress: Progress, event: str, record: dict) -> None:
    if event == "jit warm-up started":
        progress.warmup = "compiling"
        progress.warmup_parts.update(record.get("cached") or ())
    elif event == "jit warm-up part done":
        progress.warmup_parts.add(str(record.get("part")))
        progress.warmup = f"compiling ({len(progress.warmup_parts)} parts done)"
    elif event == "jit warm-up done":
        progress.warmup = "done"
        progress.reach("warmup-done", f"numba kernels compiled / loaded from the cache in {record.get('seconds')} s")


def _plot_client_milestones(progress: Progress, event: str, record: dict) -> None:
    if event.startswith("Plotting sector (") or event.startswith("Replotting sector ("):
        key = f"{record.get('farm_id', '')}/{record.get('sector_index')}"
        progress.plotting[key] = event
        progress.reach(f"plotting-{key}", f"plot-client: sector {record.get('sector_index')} is being plotted")
    elif event == "audited" and isinstance(record.get("sectors"), int) and record["sectors"] > 0:
        progress.reach("first-audit", f"first audit of a plotted sector: {record['sectors']} sector(s), "
                                      f"{record.get('winning_sectors')} winning, {record.get('time_s')} s")
    elif event == "solution submitted":
        progress.reach("first-submitted", f"plot-client submitted its first solution (slot {record.get('slot')}, "
                                          f"sector {record.get('sector_index')})")
    elif event.startswith("Successfully signed reward hash"):
        progress.reach("first-reward", "plot-client signed its first reward hash")


def _plot_server_milestones(progress: Progress, event: str, record: dict) -> None:
    if event == "plot-server ready":
        progress.reach("plot-server-ready", "plot-server ready for sector jobs")
    elif event == "sector plotted":
        progress.reach("plot-server-first", f"plot-server plotted its first sector in {record.get('seconds')} s")


def _proof_server_milestones(progress: Progress, event: str, record: dict) -> None:
    if event == "proof-server started":
        progress.reach("proof-server-ready", "proof-server ready")
    elif event == "proved":
        progress.reach("proof-server-first", f"proof-server proved its first candidate in {record.get('time_s')} s")


def _cache_milestones(progress: Progress, event: str, record: dict) -> None:
    if event == "new segment cached":
        progress.reach(f"cached-{record.get('segment_index')}-{record.get('component')}",
                       f"{record.get('component', 'cache')} cached segment {record.get('segment_index')} "
                       f"({record.get('held')} pieces)")


_LOG_MILESTONES = {
    "dev-node": _dev_node_milestones,
    "jit-warmup": _warmup_milestones,
    "plot-client": _plot_client_milestones,
    "plot-server": _plot_server_milestones,
    "proof-server": _proof_server_milestones,
}
