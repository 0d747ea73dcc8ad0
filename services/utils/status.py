"""``autonomys-farmer status``: who is in the cluster right now.

Reads the JetStream membership bucket every daemon registers in (services.bus.membership) and
prints one line per live member (role, instance, endpoints, capacity, version, last refresh), or
JSON with ``--json``. Needs only NATS, so it works from any machine that can reach the servers.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import msgspec

from services.daemon import DaemonError
from services.utils.config import StatusConfig


async def collect(config: StatusConfig) -> list[dict]:
    """Current members as plain dicts, sorted by role then instance."""
    from services.bus.client import Bus
    from services.bus.membership import Membership

    bus = await asyncio.wait_for(Bus.connect(list(config.nats_servers), name="autonomys-status"), config.timeout_s)
    try:
        membership = await asyncio.wait_for(Membership.open(bus), config.timeout_s)
        members = await asyncio.wait_for(membership.members(), config.timeout_s)
    finally:
        await bus.close()
    return sorted((msgspec.to_builtins(m) for m in members.values()), key=lambda m: (m["role"], m["instance"]))


def format_members(members: list[dict], now: float | None = None) -> str:
    now = time.time() if now is None else now
    if not members:
        return "no live members"
    lines = []
    for m in members:
        age = max(0.0, now - m.get("updated_at", now))
        capacity = ",".join(f"{k}={v}" for k, v in sorted(m.get("capacity", {}).items())) or "-"
        endpoints = ",".join(m.get("endpoints", [])) or "-"
        lines.append(f"{m['role']:<26} {m['instance']:<32} endpoints={endpoints} capacity={capacity} "
                     f"version={m.get('version') or '-'} seen={age:.0f}s ago")
    return "\n".join(lines)


def main(config: StatusConfig) -> int:
    from services.daemon import configure_logging

    # connection retries would otherwise be logged as warnings before the one-line answer
    configure_logging("error" if config.log_level == "info" else config.log_level, config.json_logs)
    try:
        members = asyncio.run(collect(config))
    except asyncio.TimeoutError:
        print(f"error: no answer from NATS {', '.join(config.nats_servers)} within {config.timeout_s:g}s",
              file=sys.stderr)
        return 1
    except DaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if config.json_output:
        print(json.dumps(members, indent=2))
    else:
        print(format_members(members))
    return 0
