"""The status view's rules from membership records: health (stale, refusing work, node and
farming silence, filling caches), farm progress and ETA, cost per TiB plotted per GPU (measured
and self-test based), cluster-wide problems, and the rendered screen."""

from __future__ import annotations

import msgspec
import pytest
from rich.console import Console

from services.protocol.sector import sector_size
from services.utils.status_model import (
    AUDIT_SILENT_S,
    STALE_AFTER_S,
    TIB,
    Event,
    build_snapshot,
    farm_of,
)
from services.utils.status_view import duration, render

NOW = 1_800_000_000.0


def record(role: str, instance: str, age: float = 1.0, uptime: float = 3600.0, **capacity) -> dict:
    return {"role": role, "instance": instance, "capacity": capacity, "version": "0.1.0",
            "updated_at": NOW - age, "started_at": NOW - uptime, "endpoints": []}


CONTROLLER = record("controller", "ctl", node_connected=1, last_slot=77, last_slot_at=NOW - 1, solutions=3, rewards=2)


def test_healthy_cluster_has_no_problems():
    snapshot = build_snapshot([CONTROLLER, record("sharded-cache", "sc", slots=100, pieces=100, missing=0)], now=NOW)
    assert snapshot.problems == [] and snapshot.totals.failing == 0
    assert [c.health for c in snapshot.components] == ["ok", "ok"]
    assert snapshot.totals.last_slot == 77 and "slot 77" in snapshot.components[0].summary


@pytest.mark.parametrize("member, problem", [
    (record("plot-server", "ps", age=STALE_AFTER_S + 5), "stale: no record for 50 s"),
    (record("proof-server", "pf", accepting_work=0, self_test="failed: known-answer check failed: x"),
     "refusing work: known-answer check failed: x"),
    (record("controller", "ctl2", node_connected=0), "node RPC disconnected"),
    (record("controller", "ctl3", node_connected=1, last_slot_at=NOW - 95), "no slot from the node for 95 s"),
    (record("plot-client", "pc", plotted=4, last_audit_at=NOW - AUDIT_SILENT_S - 10),
     "not farming: no audit for 70 s"),
])
def test_failing_components_get_a_red_line(member, problem):
    snapshot = build_snapshot([CONTROLLER, member], now=NOW)
    failing = [c for c in snapshot.components if c.health == "failing"]
    assert [c.instance for c in failing] == [member["instance"]]
    assert failing[0].problem.startswith(problem)
    assert snapshot.problems[0] == f"{member['role']} {member['instance']}: {failing[0].problem}"


def test_warnings_are_not_failures():
    snapshot = build_snapshot([CONTROLLER, record("sharded-cache", "sc", slots=100, pieces=60, missing=40),
                               record("plot-client", "pc", plotted=1, last_audit_at=NOW - 1, skipped_slots=2)], now=NOW)
    health = {c.instance: (c.health, c.problem) for c in snapshot.components}
    assert health["sc"] == ("warn", "filling: 40 piece(s) missing")
    assert health["pc"] == ("warn", "2 slot(s) skipped (audits slower than slots)")
    assert snapshot.problems == []


def test_cluster_wide_problems():
    refusing = record("proof-server", "pf", accepting_work=0, self_test="failed: vram check failed")
    snapshot = build_snapshot([refusing], now=NOW)
    assert snapshot.problems[0].startswith("no controller registered")
    assert snapshot.problems[-1] == "no proof-server accepts work: plot-clients prove locally"
    assert build_snapshot([], now=NOW).problems == [
        "no controller registered: farmers get no slots and the node gets no solutions"]


def test_farm_progress_eta_and_rewards():
    client = record("plot-client", "pc", farms=2, sectors=30, plotted=12, solutions=5, rewards=3, last_reward_at=NOW - 60,
                    last_audit_at=NOW - 1, **{
                        "farm.01JA.sectors": 20, "farm.01JA.plotted": 10, "farm.01JA.sectors_per_hour": 5.0,
                        "farm.01JA.solutions": 4, "farm.01JA.rewards": 3, "farm.01JA.public_key": "aabbccdd00112233",
                        "farm.01JB.sectors": 10, "farm.01JB.plotted": 2, "farm.01JB.sectors_per_hour": 0.0})
    snapshot = build_snapshot([CONTROLLER, client], now=NOW)
    a, b = snapshot.farms
    assert (a.farm_id, a.plotted, a.sectors, a.percent, a.eta_s) == ("01JA", 10, 20, 50.0, 7200)
    assert (a.solutions, a.rewards) == (4, 3)
    assert (b.percent, b.eta_s) == (20.0, None)  # no plotting rate yet: no ETA
    assert snapshot.totals.plotted == 12 and snapshot.totals.sectors == 30 and snapshot.totals.rewards == 3
    assert snapshot.totals.last_reward_at == NOW - 60
    assert farm_of(snapshot, "aabbccdd00112233" + "ff" * 24) is a and farm_of(snapshot, "00" * 32) is None


def test_cost_per_tib_measured_and_estimated():
    sector = sector_size(1000)
    measured = record("plot-server", "gpu0", uptime=7200, backend="gpu", gpu_model="NVIDIA H200", gpus=1,
                      vram_bytes=141 << 30, tables_per_second=50.0, hourly_cost=2.0, self_test="passed",
                      accepting_work=1, sectors_plotted=100)
    fresh = record("plot-server", "gpu1", tables_per_second=10.0, hourly_cost=1.0, self_test="passed", accepting_work=1)
    free = record("proof-server", "pf", tables_per_second=9.0, self_test="passed", accepting_work=1, proved=7)
    # plotted 12 sectors of 1000 pieces in 1800 s of plotting (busy) out of 3 h up: its rate is 24/h
    busy = record("plot-server", "gpu2", uptime=10800, backend="gpu", tables_per_second=50.0, hourly_cost=3.0,
                  self_test="passed", accepting_work=1, sectors_plotted=12, plotting_busy_s=1800.0,
                  seconds_per_sector=150.0, sector_bytes=sector)
    snapshot = build_snapshot([CONTROLLER, measured, fresh, free, busy], now=NOW)
    rows = {g.instance: g for g in snapshot.gpus}
    assert rows["gpu2"].cost_basis == "measured" and rows["gpu2"].sectors_per_hour == 24.0
    assert rows["gpu2"].seconds_per_sector == 150.0
    assert rows["gpu2"].cost_per_tib == pytest.approx(3.0 / (24 * sector / TIB), rel=1e-3)
    tib_per_hour = 50 * sector / TIB  # 100 sectors in 2 h
    assert rows["gpu0"].cost_basis == "measured" and rows["gpu0"].sectors_per_hour == 50.0
    assert rows["gpu0"].cost_per_tib == pytest.approx(2.0 / tib_per_hour, rel=1e-3)
    estimated = 10.0 * 3600 / 1000 * sector / TIB  # one table set per record, 1000 records per sector
    assert rows["gpu1"].cost_basis == "self-test" and rows["gpu1"].cost_per_tib == pytest.approx(1.0 / estimated,
                                                                                                  rel=1e-3)
    assert rows["pf"].cost_per_tib is None and rows["pf"].cost_basis == "" and rows["pf"].proved == 7
    assert snapshot.totals.hourly_cost == 6.0


def test_snapshot_is_json_and_the_screen_shows_it():
    refusing = record("proof-server", "pf-bad", accepting_work=0, self_test="failed: known-answer check failed")
    client = record("plot-client", "pc", plotted=1, sectors=4, last_audit_at=NOW - 1,
                    **{"farm.01JA.sectors": 4, "farm.01JA.plotted": 1, "farm.01JA.sectors_per_hour": 3.0})
    recent = [Event(at=NOW - 5, kind="solution", text="slot 76: sector 0 piece 3 of farm 01JA (pc)"),
              Event(at=NOW - 2, kind="reward-signed", text="block 0xab… reward signed")]
    snapshot = build_snapshot([CONTROLLER, refusing, client], now=NOW, nats_servers=["nats://127.0.0.1:4222"],
                              recent=recent)
    assert [e.kind for e in snapshot.recent] == ["reward-signed", "solution"]  # newest first
    decoded = msgspec.json.decode(msgspec.json.encode(snapshot))
    assert decoded["farms"][0]["eta_s"] == 3600 and decoded["problems"][0].startswith("proof-server pf-bad")
    console = Console(width=180, record=True, color_system=None)
    console.print(render(snapshot, live=True))
    screen = console.export_text()
    assert "✗ proof-server pf-bad: refusing work: known-answer check failed" in screen
    assert "25.0%" in screen and "1/4" in screen and "1h 00m" in screen
    assert "slot 76: sector 0 piece 3 of farm 01JA (pc)" in screen and "Ctrl-C quits" in screen


def test_durations():
    assert [duration(s) for s in (None, 5, 425, 11_520, 180_000)] == ["-", "5s", "7m 05s", "3h 12m", "2d 2h"]
