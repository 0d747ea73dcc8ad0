"""The screen of ``autonomys-farmer status``: a :class:`~services.utils.status_model.Snapshot`
drawn with rich (tables, progress bars), red lines first.

Why a separate module: the model decides what is wrong; this only decides how it looks, the same
for the live full-screen view and a one-shot print (``status | less``, ``watch``).
"""

from __future__ import annotations

import time

from rich.console import Group, RenderableType
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from services.utils.status_model import Snapshot

HEALTH_MARK = {"ok": ("✓", "green"), "warn": ("!", "yellow"), "failing": ("✗", "bold red")}


def duration(seconds: float | None) -> str:
    """``42s``, ``7m 05s``, ``3h 12m``, ``2d 4h``; ``-`` for None."""
    if seconds is None:
        return "-"
    seconds = int(max(0, seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d {seconds % 86400 // 3600}h"


def _bar(percent: float, width: int = 24) -> Table:
    grid = Table.grid(padding=(0, 1))
    grid.add_row(ProgressBar(total=100.0, completed=min(100.0, percent), width=width), f"{percent:5.1f}%")
    return grid


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:,.2f}"


def _table(title: str, *columns: str) -> Table:
    table = Table(title=title, title_justify="left", title_style="bold", expand=False, pad_edge=False,
                  header_style="bold cyan")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def render(snapshot: Snapshot, live: bool = False) -> RenderableType:
    parts: list[RenderableType] = []
    totals = snapshot.totals
    clock = time.strftime("%H:%M:%S", time.localtime(snapshot.taken_at))
    header = Text.assemble(("autonomys cluster", "bold"), f"  {', '.join(snapshot.nats_servers)}  {clock}  ",
                           f"slot {totals.last_slot}  " if totals.last_slot else "",
                           f"{totals.components} component(s)  ",
                           (f"{totals.failing} failing" if totals.failing else "all healthy",
                            "bold red" if totals.failing else "green"))
    parts.append(header)
    for problem in snapshot.problems:
        parts.append(Text(f"✗ {problem}", style="bold red"))

    components = _table("Components", "", "role", "instance", "seen", "up", "version", "now")
    for c in snapshot.components:
        mark, style = HEALTH_MARK.get(c.health, ("?", ""))
        what = c.problem if c.health != "ok" else c.summary
        components.add_row(Text(mark, style=style), c.role, c.instance, f"{c.age_s:.0f}s ago", duration(c.uptime_s),
                           c.version or "-", Text(what, style=style if c.health != "ok" else ""),
                           style="red" if c.health == "failing" else None)
    parts.append(components if snapshot.components else Text("no live members", style="bold red"))

    if snapshot.farms:
        farms = _table(f"Farms: {totals.plotted:,}/{totals.sectors:,} sectors plotted, "
                       f"{totals.solutions} solution(s), {totals.rewards} reward(s)",
                       "plot-client", "farm", "plotting", "sectors", "per hour", "ETA", "solutions", "rewards")
        for f in snapshot.farms:
            eta = "done" if f.plotted >= f.sectors else duration(f.eta_s)
            farms.add_row(f.plot_client, f.farm_id, _bar(f.percent), f"{f.plotted:,}/{f.sectors:,}",
                          f"{f.sectors_per_hour:.1f}" if f.sectors_per_hour else "-", eta, str(f.solutions),
                          str(f.rewards))
        parts.append(farms)

    if snapshot.gpus:
        gpus = _table(f"GPUs: {totals.hourly_cost:,.2f}/h declared", "instance", "role", "model", "VRAM",
                      "tables/s", "sectors/h", "proofs", "cost/h", "cost/TiB", "self-test")
        for g in snapshot.gpus:
            basis = {"measured": "", "self-test": " est."}.get(g.cost_basis, "")
            test_style = "green" if g.accepting_work else "bold red"
            gpus.add_row(g.instance, g.role, g.gpu_model or g.backend, f"{g.vram_bytes / 2**30:.0f} GiB" if g.vram_bytes
                         else "-", f"{g.tables_per_second:.2f}", f"{g.sectors_per_hour:.1f}" if g.sectors_per_hour
                         else "-", str(g.proved) if g.role == "proof-server" else "-", _money(g.hourly_cost),
                         _money(g.cost_per_tib) + basis, Text(g.self_test or "-", style=test_style),
                         style="red" if not g.accepting_work else None)
        parts.append(gpus)

    if snapshot.caches:
        caches = _table(f"Caches: {totals.cache_pieces:,} pieces in {totals.cache_slots:,} slots, "
                        f"{totals.cache_fill_percent:.1f}% of their share held", "instance", "role", "group", "fill",
                        "held/share", "slots", "missing")
        for c in snapshot.caches:
            caches.add_row(c.instance, c.role, c.group or "-", _bar(c.fill_percent), f"{c.owned - c.missing:,}/"
                           f"{c.owned:,}", f"{c.slots:,}", f"{c.missing:,}")
        parts.append(caches)

    recent = _table("Recent solutions and rewards", "time", "what", "")
    for event in snapshot.recent:
        style = {"reward-signed": "green", "leave": "yellow"}.get(event.kind, "")
        recent.add_row(time.strftime("%H:%M:%S", time.localtime(event.at)), event.kind, Text(event.text, style=style))
    if snapshot.recent:
        parts.append(recent)
    elif live:
        parts.append(Text("Recent solutions and rewards: none seen since status started", style="dim"))
    if totals.last_reward_at:
        parts.append(Text(f"last reward signed {duration(snapshot.taken_at - totals.last_reward_at)} ago", style="dim"))
    if live:
        parts.append(Text("Ctrl-C quits; records refresh every 5 s when they change", style="dim"))
    return Group(*parts)
