"""``util reinitialization-cache --delay N``: have every cache of the cluster rebuild N seconds
from now, and show each cache's confirmation.

One broadcast (``CacheReinitializeBroadcast``, with a fresh request id) reaches every cache; each
answers "scheduled" at once and "done" (or "failed") when its rebuild finished: a shard
re-checks every stored piece's bytes and refills what it owns, a full-piece cache re-checks its
headers and unverified pieces and fills gaps (:mod:`services.sharded_cache.service`,
:mod:`services.full_piece_cache.service`). The caches expected are the live members of the
cache roles (membership registry), so a cache that does not confirm is named.

Exit status: 0 when every cache confirmed and none failed; 1 otherwise.
"""

from __future__ import annotations

import asyncio
import sys
import time

from services.bus.message import new_ulid
from services.cache.messages import (
    CACHE_GROUP_LABEL,
    CACHE_ROLES,
    CacheReinitializeBroadcast,
    CacheReinitializeConfirmation,
)
from services.daemon import DaemonError
from services.utils.config import ReinitializationCacheConfig

SCHEDULE_TIMEOUT_S = 10.0
REBUILD_TIMEOUT_S = 1800.0


async def reinitialize(config: ReinitializationCacheConfig, out=sys.stdout) -> int:  # noqa: ANN001
    from services.bus.client import Bus
    from services.bus.membership import Membership

    bus = await Bus.connect(list(config.nats_servers), name="util-reinitialization-cache")
    try:
        members = await (await Membership.open(bus)).members()
        expected = {m.key for m in members.values() if m.role in CACHE_ROLES
                    and config.cache_group in (None, m.labels.get(CACHE_GROUP_LABEL, "default"))}
        request_id = new_ulid()
        confirmations = await bus.subscribe(CacheReinitializeConfirmation, instance=request_id)
        await bus.broadcast(CacheReinitializeBroadcast(request_id=request_id, delay_s=config.delay_s,
                                                       cache_group=config.cache_group), dedup_id=request_id)
        print(f"asked {len(expected)} caches to rebuild in {config.delay_s} s (request {request_id})", file=out, flush=True)
        scheduled: set[str] = set()
        finished: dict[str, str] = {}
        schedule_deadline = time.monotonic() + SCHEDULE_TIMEOUT_S
        done_deadline = time.monotonic() + config.delay_s + REBUILD_TIMEOUT_S
        while len(finished) < len(expected | scheduled):
            deadline = schedule_deadline if scheduled < expected else done_deadline
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                note = await confirmations.next(timeout=remaining)
            except Exception:  # noqa: BLE001 - RequestTimeout: deadline reached
                if deadline == schedule_deadline and scheduled:
                    schedule_deadline = done_deadline  # stop waiting for silent ones; wait for the rest
                    continue
                break
            key = f"{note.role}.{note.instance}"
            if note.state == "scheduled":
                scheduled.add(key)
            else:
                finished[key] = note.state
            print(f"{key:<48} {note.state:<10} {note.detail}", file=out, flush=True)
        await confirmations.unsubscribe()
    finally:
        await bus.close()
    silent = sorted(expected - scheduled)
    failed = sorted(k for k, state in finished.items() if state != "done")
    unfinished = sorted(scheduled - set(finished))
    for key in silent:
        print(f"{key:<48} no answer", file=out)
    for key in unfinished:
        print(f"{key:<48} still rebuilding", file=out)
    ok = not silent and not failed and not unfinished
    print(f"{len(finished) - len(failed)} of {len(expected | scheduled)} caches rebuilt"
          + ("" if ok else f"; {len(silent)} silent, {len(failed)} failed, {len(unfinished)} unfinished"), file=out)
    return 0 if ok else 1


def main(config: ReinitializationCacheConfig) -> int:
    from services.daemon import configure_logging

    configure_logging("warning" if config.log_level == "info" else config.log_level, config.json_logs)
    try:
        return asyncio.run(reinitialize(config))
    except DaemonError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
