"""``util verify-piece [--repair]``: check every cached piece in the cluster against its segment
commitment, and report bad and missing pieces per cache.

Each live cache (membership registry) checks its own pieces (``CacheVerifyRequest``): all caches
work in parallel on their own disks and CPUs instead of shipping every piece to this machine.
A shard re-reads each piece it holds (BLAKE3 against its index), checks it with the batched
segment-commitment check, drops the bad ones and lists the pieces it owns by rendezvous but does
not hold; a full-piece cache does the same for the whole history. With ``--repair`` bad and
missing pieces are fetched from another source (other caches, then the controller), verified,
and stored.

Output: a progress line per cache while it works, then one line per cache (checked, bad,
missing, repaired) and the first bad/missing indices. Exit status 0 when nothing bad or missing
is left, 1 otherwise.
"""

from __future__ import annotations

import asyncio
import sys
import time
from dataclasses import dataclass, field

from services.bus.errors import BusError
from services.cache.messages import CACHE_GROUP_LABEL, CACHE_ROLES, CacheVerifyRequest
from services.daemon import DaemonError
from services.utils.config import VerifyPieceConfig

PROGRESS_EVERY_S = 5.0
SHOW_FIRST = 10


@dataclass
class CacheReport:
    key: str
    checked: int = 0
    total: int = 0
    bad: list[int] = field(default_factory=list)
    missing: list[int] = field(default_factory=list)
    repaired: set[int] = field(default_factory=set)
    done: bool = False
    error: str | None = None

    @property
    def unrepaired_bad(self) -> list[int]:
        return [i for i in self.bad if i not in self.repaired]

    @property
    def unrepaired_missing(self) -> list[int]:
        return [i for i in self.missing if i not in self.repaired]

    def line(self) -> str:
        if self.error:
            return f"{self.key:<48} ERROR {self.error}"
        status = "ok" if not self.unrepaired_bad and not self.unrepaired_missing and self.done else "PROBLEMS"
        text = (f"{self.key:<48} {status:<8} checked {self.checked}/{self.total} bad {len(self.bad)} "
                f"missing {len(self.missing)} repaired {len(self.repaired)}")
        if self.unrepaired_bad:
            text += f" bad: {self.unrepaired_bad[:SHOW_FIRST]}"
        if self.unrepaired_missing:
            text += f" missing: {self.unrepaired_missing[:SHOW_FIRST]}"
        return text


async def _check(bus, member, config: VerifyPieceConfig, report: CacheReport, out) -> None:  # noqa: ANN001
    last = 0.0
    try:
        async for step in bus.stream_request(CacheVerifyRequest(repair=config.repair), instance=member.instance,
                                             timeout=config.timeout_s, retries=0):
            report.checked, report.total = step.checked, step.total
            report.bad += step.bad
            report.missing += step.missing
            report.repaired.update(step.repaired)
            report.done = report.done or step.done
            if step.error:
                report.error = step.error
            now = time.monotonic()
            if now - last >= PROGRESS_EVERY_S:
                last = now
                print(f"{report.key}: {step.checked}/{step.total} checked, {len(report.bad)} bad", file=out, flush=True)
    except BusError as exc:
        report.error = str(exc)


async def verify(config: VerifyPieceConfig, out=sys.stdout) -> tuple[int, list[CacheReport]]:  # noqa: ANN001
    from services.bus.client import Bus
    from services.bus.membership import Membership

    bus = await Bus.connect(list(config.nats_servers), name="util-verify-piece")
    try:
        members = [m for m in (await (await Membership.open(bus)).members()).values()
                   if m.role in CACHE_ROLES and config.cache_group in (None, m.labels.get(CACHE_GROUP_LABEL, "default"))]
        members.sort(key=lambda m: m.key)
        if not members:
            print("no live caches", file=out)
            return 1, []
        print(f"verifying {len(members)} caches{' (repairing)' if config.repair else ''}", file=out, flush=True)
        reports = [CacheReport(m.key) for m in members]
        await asyncio.gather(*(_check(bus, m, config, r, out) for m, r in zip(members, reports)))
    finally:
        await bus.close()
    for report in reports:
        print(report.line(), file=out)
    problems = [r for r in reports if r.error or r.unrepaired_bad or r.unrepaired_missing or not r.done]
    print(f"{len(reports) - len(problems)} of {len(reports)} caches clean", file=out)
    return (1 if problems else 0), reports


def main(config: VerifyPieceConfig) -> int:
    from services.daemon import configure_logging

    configure_logging("warning" if config.log_level == "info" else config.log_level, config.json_logs)
    try:
        code, _ = asyncio.run(verify(config))
        return code
    except DaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
