"""Download of a finished sector from its plot-server over the TCP data plane, straight into the
farm's sector slot, resumable at an offset, checksum verified on the way.

Why straight to the plot and not to RAM: a plot-client downloads several sectors of 1 GiB at
once; holding them in memory is the official cluster's failure mode. Chunks (4 MiB) land in a
small buffer pool, are hashed (BLAKE3 of everything but the sector's last 32 bytes must equal
those bytes, spec 03 §7) and written at their offset; a broken connection resumes at the
first byte not yet written (the sector range request takes any offset).
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

import structlog
from blake3 import blake3

from services.p2p import BufferPool, PeerClient, PeerError
from services.plot_server.messages import FetchSectorRange

log = structlog.get_logger("plot-client.download")

CHUNK_SIZE = 4 * 1024 * 1024
POOL_BUFFERS = 4
ATTEMPTS = 5
CHECKSUM_SIZE = 32

Write = Callable[[int, memoryview], Awaitable[None]]


class DownloadError(Exception):
    """The sector could not be downloaded intact (after the retries)."""


async def download_sector(client: PeerClient, endpoint: str, job_id: str, size: int, checksum: bytes,
                          write: Write, *, chunk_size: int = CHUNK_SIZE, attempts: int = ATTEMPTS,
                          timeout: float = 60.0) -> int:
    """Fetch ``size`` bytes of ``job_id``'s sector from ``endpoint`` and ``await write(offset,
    view)`` each chunk in order; returns how many times the download resumed. Raises
    :class:`DownloadError` when the bytes do not match ``checksum`` or the server stays
    unreachable."""
    if size <= CHECKSUM_SIZE or len(checksum) != CHECKSUM_SIZE:
        raise DownloadError(f"sector {job_id}: bad size {size} or checksum")
    hasher = blake3()
    body = size - CHECKSUM_SIZE
    tail = bytearray()
    pool = BufferPool(chunk_size, POOL_BUFFERS)
    offset = 0
    resumes = 0
    failures = 0
    while offset < size:
        request = FetchSectorRange(job_id=job_id, offset=offset, length=size - offset, chunk_size=chunk_size)
        try:
            async with client.stream(endpoint, request, pool, timeout=timeout) as items:
                async for key, view in items:
                    try:
                        if key != offset:
                            raise DownloadError(f"sector {job_id}: chunk at {key}, expected {offset}")
                        if offset + len(view) > size:
                            raise DownloadError(f"sector {job_id}: more than {size} bytes sent")
                        hashed = min(len(view), max(0, body - offset))
                        hasher.update(view[:hashed])
                        if hashed < len(view):
                            tail += view[hashed:]
                        await write(offset, view)
                        offset += len(view)
                    finally:
                        pool.release(view)
                if offset < size and not items.missing and not items.corrupt:
                    raise DownloadError(f"sector {job_id}: stream ended at {offset} of {size} bytes")
                if items.corrupt:
                    raise PeerError(f"corrupt chunk at {offset}")  # resume from there
                if items.missing:
                    raise DownloadError(f"sector {job_id}: the plot-server no longer has it")
        except PeerError as exc:
            failures += 1
            if failures >= attempts:
                raise DownloadError(f"sector {job_id} from {endpoint}: {exc} (after {failures} attempts)") from None
            resumes += 1
            log.warning("sector download interrupted; resuming", job_id=job_id, offset=offset, size=size,
                        error=str(exc), attempt=failures)
            await asyncio.sleep(min(10.0, 0.5 * 2**failures))
    digest = hasher.digest()
    if bytes(tail) != checksum or digest != checksum:
        raise DownloadError(f"sector {job_id}: checksum mismatch (computed {digest.hex()[:16]}..., "
                            f"sector says {bytes(tail).hex()[:16]}..., offered {checksum.hex()[:16]}...)")
    return resumes
