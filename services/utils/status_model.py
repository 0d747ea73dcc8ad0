"""What ``autonomys-farmer status`` shows, computed from the cluster's membership records (and,
in the live view, the broadcasts it watched): pure functions, no I/O, so every rule here is
tested without a cluster.

Why from membership records: every daemon already keeps one small JSON record alive in the
``autonomys-members`` bucket (``services.bus.membership``); putting its few counters there
(``Member.capacity``) lets any machine that reaches NATS see the whole cluster without new
ports, scraping, or a central collector. Records are refreshed every 5 s when their counters
change and every 30 s regardless, so a record older than :data:`STALE_AFTER_S` means the process
stalled or lost NATS.

Rules (health of one component: ``ok``, ``warn`` yellow, ``failing`` red):

* any record: older than :data:`STALE_AFTER_S` -> failing ``stale``;
* GPU roles: ``accepting_work: 0`` or ``self_test: failed: ...`` -> failing ``refusing work: ...``;
* controller: ``node_connected: 0`` -> failing; no slot for :data:`SLOT_SILENT_S` -> failing;
* plot-client: farms with plotted sectors but no audit for :data:`AUDIT_SILENT_S` -> failing;
  skipped slots -> warn;
* caches: pieces missing -> warn (filling);
* cluster: no controller, or proof-servers present but none accepting work -> a problem line.

Cost per TiB plotted per GPU (``gpus[].cost_per_tib``): ``hourly_cost`` divided by TiB plotted
per hour, where a plot-server's rate is measured (sectors plotted since it started, times its
``sector_bytes``, over ``plotting_busy_s``, the wall time it had a sector in flight, so waiting
for jobs does not count against the GPU; over its uptime for records without it) and, before
it has plotted (and for proof-servers, for comparison), estimated from its self-test
throughput: one K=20 table set per record, :data:`PIECES_PER_SECTOR` records per sector
(``cost_basis`` says which).
"""

from __future__ import annotations

import time
from typing import Any, Iterable

import msgspec

from services.protocol.sector import sector_size

STALE_AFTER_S = 45.0  # 1.5 x the 30 s refresh: the record should have been put again by now
SLOT_SILENT_S = 30.0  # the node emits a slot every second
AUDIT_SILENT_S = 60.0
PIECES_PER_SECTOR = 1000  # mainnet max_pieces_in_sector, for estimates
TIB = float(1 << 40)
GPU_ROLES = ("plot-server", "proof-server")
CACHE_ROLES = ("sharded-cache", "full-piece-sharded-cache")
RECENT_EVENTS = 12


class Component(msgspec.Struct, kw_only=True):
    role: str
    instance: str
    version: str = ""
    endpoints: list[str] = []
    age_s: float = 0.0  # since the record was last put
    uptime_s: float = 0.0
    health: str = "ok"  # ok | warn | failing
    problem: str = ""
    summary: str = ""  # one line of what it does right now
    capacity: dict[str, Any] = {}


class FarmRow(msgspec.Struct, kw_only=True):
    plot_client: str
    farm_id: str
    public_key: str = ""  # 16 hex digits
    sectors: int = 0
    plotted: int = 0
    percent: float = 0.0
    sectors_per_hour: float = 0.0
    eta_s: float | None = None  # None: done, or no plotting rate yet
    solutions: int = 0
    rewards: int = 0


class GpuRow(msgspec.Struct, kw_only=True):
    role: str
    instance: str
    backend: str = ""
    gpu_model: str = ""
    gpus: int = 0
    vram_bytes: int = 0
    tables_per_second: float = 0.0
    hourly_cost: float | None = None
    accepting_work: bool = False
    self_test: str = ""
    sectors_plotted: int = 0
    sectors_per_hour: float = 0.0  # measured (plot-server), 0 otherwise
    seconds_per_sector: float = 0.0  # mean plotting time of one sector (plot-server)
    proved: int = 0
    avg_proving_ms: float = 0.0
    tib_per_hour: float = 0.0
    cost_per_tib: float | None = None
    cost_basis: str = ""  # "measured" | "self-test" | "" (no cost declared or no throughput)


class CacheRow(msgspec.Struct, kw_only=True):
    """``owned``: pieces this cache is meant to hold (its share of the history, at most its
    ``slots``); ``fill_percent`` = held of owned."""

    role: str
    instance: str
    group: str = ""
    slots: int = 0
    owned: int = 0
    pieces: int = 0
    missing: int = 0
    fill_percent: float = 0.0


class Event(msgspec.Struct, kw_only=True):
    """Something the live view saw on the bus (solutions, rewards, members joining/leaving)."""

    at: float
    kind: str  # solution | reward-requested | reward-signed | join | leave
    text: str
    public_key: str = ""


class Totals(msgspec.Struct, kw_only=True):
    components: int = 0
    failing: int = 0
    sectors: int = 0
    plotted: int = 0
    sectors_per_hour: float = 0.0
    solutions: int = 0
    rewards: int = 0
    last_reward_at: float = 0.0
    cache_pieces: int = 0
    cache_slots: int = 0
    cache_fill_percent: float = 0.0
    hourly_cost: float = 0.0
    last_slot: int = 0


class Snapshot(msgspec.Struct, kw_only=True):
    taken_at: float
    nats_servers: list[str] = []
    components: list[Component] = []
    farms: list[FarmRow] = []
    gpus: list[GpuRow] = []
    caches: list[CacheRow] = []
    totals: Totals = msgspec.field(default_factory=Totals)
    recent: list[Event] = []
    problems: list[str] = []  # the red lines: "<role> <instance>: <problem>" and cluster-wide ones


def _number(capacity: dict, key: str, default: float = 0.0) -> float:
    value = capacity.get(key, default)
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _int(capacity: dict, key: str) -> int:
    return int(_number(capacity, key))


def _member_dict(member: Any) -> dict:
    return member if isinstance(member, dict) else msgspec.to_builtins(member)


def _component_health(role: str, capacity: dict, age_s: float, now: float) -> tuple[str, str]:
    if age_s > STALE_AFTER_S:
        return "failing", f"stale: no record for {age_s:.0f} s (process stalled or lost NATS)"
    self_test = str(capacity.get("self_test", ""))
    if role in GPU_ROLES and (self_test.startswith("failed") or capacity.get("accepting_work", 1) == 0):
        reason = self_test.removeprefix("failed: ") or "self-test not passed"
        return "failing", f"refusing work: {reason}"
    if role == "controller":
        if capacity.get("node_connected", 1) == 0:
            return "failing", "node RPC disconnected"
        last_slot_at = _number(capacity, "last_slot_at")
        if last_slot_at and now - last_slot_at > SLOT_SILENT_S:
            return "failing", f"no slot from the node for {now - last_slot_at:.0f} s"
    if role == "plot-client":
        last_audit_at = _number(capacity, "last_audit_at")
        if _int(capacity, "plotted") and last_audit_at and now - last_audit_at > AUDIT_SILENT_S:
            return "failing", f"not farming: no audit for {now - last_audit_at:.0f} s"
        if _int(capacity, "skipped_slots"):
            return "warn", f"{_int(capacity, 'skipped_slots')} slot(s) skipped (audits slower than slots)"
    if role in CACHE_ROLES and _int(capacity, "missing"):
        return "warn", f"filling: {_int(capacity, 'missing'):,} piece(s) missing"
    return "ok", ""


def _summary(role: str, c: dict) -> str:
    if role == "controller":
        return (f"slot {_int(c, 'last_slot')}, {_int(c, 'solutions')} solution(s) forwarded, "
                f"{_int(c, 'rewards')} reward signature(s)")
    if role == "plot-client":
        return (f"{_int(c, 'farms')} farm(s), {_int(c, 'plotted')}/{_int(c, 'sectors')} sectors, "
                f"audit {_number(c, 'audit_ms'):.1f} ms, {_int(c, 'solutions')} solution(s), {_int(c, 'rewards')} reward(s)")
    if role == "proof-server":
        return (f"{c.get('backend', '?')} {c.get('gpu_model', '')}, {_int(c, 'proved')} proof(s), "
                f"concurrency {_int(c, 'concurrency')}")
    if role == "plot-server":
        return (f"{c.get('backend', '?')} {c.get('gpu_model', '')}, {_int(c, 'sectors_plotted')} sector(s) plotted, "
                f"{_int(c, 'sectors_in_flight')} in flight")
    if role in CACHE_ROLES:
        return f"{_int(c, 'pieces'):,}/{_int(c, 'slots'):,} pieces ({_number(c, 'fill_percent'):.1f}%)"
    return ", ".join(f"{k}={v}" for k, v in sorted(c.items()))[:120]


def _farms(instance: str, c: dict) -> list[FarmRow]:
    ids = sorted({key.split(".")[1] for key in c if key.startswith("farm.") and key.count(".") >= 2})
    rows = []
    for farm_id in ids:
        prefix = f"farm.{farm_id}."
        sectors, plotted = _int(c, prefix + "sectors"), _int(c, prefix + "plotted")
        rate = _number(c, prefix + "sectors_per_hour")
        remaining = max(0, sectors - plotted)
        rows.append(FarmRow(
            plot_client=instance, farm_id=farm_id, public_key=str(c.get(prefix + "public_key", "")),
            sectors=sectors, plotted=plotted, percent=round(100.0 * plotted / sectors, 2) if sectors else 100.0,
            sectors_per_hour=rate, eta_s=round(remaining * 3600.0 / rate) if remaining and rate > 0 else None,
            solutions=_int(c, prefix + "solutions"), rewards=_int(c, prefix + "rewards")))
    return rows


def _gpu(role: str, instance: str, c: dict, uptime_s: float) -> GpuRow:
    cost = c.get("hourly_cost")
    cost = float(cost) if isinstance(cost, (int, float)) else None
    tables = _number(c, "tables_per_second")
    plotted = _int(c, "sectors_plotted")
    sector_bytes = _number(c, "sector_bytes") or float(sector_size(PIECES_PER_SECTOR))
    busy_s = _number(c, "plotting_busy_s") or uptime_s
    measured = plotted * 3600.0 / busy_s if role == "plot-server" and plotted and busy_s > 0 else 0.0
    if measured:
        tib_per_hour, basis = measured * sector_bytes / TIB, "measured"
    elif tables > 0:
        tib_per_hour, basis = tables * 3600.0 / PIECES_PER_SECTOR * float(sector_size(PIECES_PER_SECTOR)) / TIB, \
            "self-test"
    else:
        tib_per_hour, basis = 0.0, ""
    return GpuRow(
        role=role, instance=instance, backend=str(c.get("backend", "")), gpu_model=str(c.get("gpu_model", "")),
        gpus=_int(c, "gpus"), vram_bytes=_int(c, "vram_bytes"), tables_per_second=tables, hourly_cost=cost,
        accepting_work=c.get("accepting_work", 0) == 1, self_test=str(c.get("self_test", "")),
        sectors_plotted=plotted, sectors_per_hour=round(measured, 3),
        seconds_per_sector=_number(c, "seconds_per_sector"), proved=_int(c, "proved"),
        avg_proving_ms=_number(c, "avg_proving_ms"), tib_per_hour=round(tib_per_hour, 6),
        cost_per_tib=round(cost / tib_per_hour, 4) if cost is not None and tib_per_hour > 0 else None,
        cost_basis=basis if cost is not None and tib_per_hour > 0 else "")


def build_snapshot(members: Iterable[Any], *, now: float | None = None, nats_servers: Iterable[str] = (),
                   recent: Iterable[Event] = ()) -> Snapshot:
    """The view of the cluster given its membership records (``Member`` structs or their dicts)."""
    now = time.time() if now is None else now
    snapshot = Snapshot(taken_at=round(now, 3), nats_servers=list(nats_servers))
    records = sorted((_member_dict(m) for m in members), key=lambda m: (m["role"], m["instance"]))
    totals = snapshot.totals
    for record in records:
        role, instance, capacity = record["role"], record["instance"], dict(record.get("capacity") or {})
        age = max(0.0, now - float(record.get("updated_at") or now))
        uptime = max(0.0, now - float(record.get("started_at") or now))
        health, problem = _component_health(role, capacity, age, now)
        snapshot.components.append(Component(
            role=role, instance=instance, version=record.get("version", ""), endpoints=list(record.get("endpoints", [])),
            age_s=round(age, 1), uptime_s=round(uptime, 1), health=health, problem=problem,
            summary=_summary(role, capacity), capacity=capacity))
        if health == "failing":
            totals.failing += 1
            snapshot.problems.append(f"{role} {instance}: {problem}")
        if role == "plot-client":
            snapshot.farms.extend(_farms(instance, capacity))
            totals.solutions += _int(capacity, "solutions")
            totals.rewards += _int(capacity, "rewards")
            totals.last_reward_at = max(totals.last_reward_at, _number(capacity, "last_reward_at"))
        elif role in GPU_ROLES:
            snapshot.gpus.append(_gpu(role, instance, capacity, uptime))
            totals.hourly_cost += _number(capacity, "hourly_cost")
        elif role in CACHE_ROLES:
            slots, missing = _int(capacity, "slots"), _int(capacity, "missing")
            owned = _int(capacity, "owned") if "owned" in capacity else slots
            snapshot.caches.append(CacheRow(
                role=role, instance=instance, group=str((record.get("labels") or {}).get("cache_group", "")),
                slots=slots, owned=owned, pieces=_int(capacity, "pieces"), missing=missing,
                fill_percent=_number(capacity, "fill_percent", 100.0 * (owned - missing) / owned if owned else 0.0)))
        elif role == "controller":
            totals.last_slot = max(totals.last_slot, _int(capacity, "last_slot"))
    totals.components = len(snapshot.components)
    totals.sectors = sum(f.sectors for f in snapshot.farms)
    totals.plotted = sum(f.plotted for f in snapshot.farms)
    totals.sectors_per_hour = round(sum(f.sectors_per_hour for f in snapshot.farms), 2)
    totals.cache_pieces = sum(c.pieces for c in snapshot.caches)
    totals.cache_slots = sum(c.slots for c in snapshot.caches)
    owned = sum(c.owned for c in snapshot.caches)
    if owned:
        totals.cache_fill_percent = round(100.0 * sum(c.owned - c.missing for c in snapshot.caches) / owned, 2)
    totals.hourly_cost = round(totals.hourly_cost, 4)
    roles = {c.role for c in snapshot.components}
    if "controller" not in roles:
        snapshot.problems.insert(0, "no controller registered: farmers get no slots and the node gets no solutions")
    proof_servers = [g for g in snapshot.gpus if g.role == "proof-server"]
    if proof_servers and not any(g.accepting_work for g in proof_servers):
        snapshot.problems.append("no proof-server accepts work: plot-clients prove locally")
    snapshot.recent = sorted(recent, key=lambda e: e.at, reverse=True)[:RECENT_EVENTS]
    return snapshot


def farm_of(snapshot_or_farms: Snapshot | list[FarmRow], public_key_hex: str) -> FarmRow | None:
    """The farm whose public key starts like ``public_key_hex`` (records hold 16 hex digits)."""
    farms = snapshot_or_farms.farms if isinstance(snapshot_or_farms, Snapshot) else snapshot_or_farms
    for farm in farms:
        if farm.public_key and public_key_hex.startswith(farm.public_key):
            return farm
    return None
