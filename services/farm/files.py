"""Low-level file operations the farm needs to be crash-safe: positional reads and writes that
never stop short, durable atomic replacement of small files, and preallocation.

Positional I/O (``os.pread`` / ``os.pwrite``) releases the GIL and needs no
shared file offset, so many threads can read one plot file at once.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path


def fsync_directory(directory: Path) -> None:
    """Make renames/creations inside ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that a crash leaves either the old or the new content."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        write_all_at(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_directory(path.parent)


def write_all_at(fd: int, data: bytes | bytearray | memoryview, offset: int) -> None:
    view = memoryview(data).cast("B")
    while view:
        written = os.pwrite(fd, view, offset)
        if written <= 0:
            raise OSError(f"pwrite wrote nothing at offset {offset}")
        view = view[written:]
        offset += written


def read_exact_at(fd: int, size: int, offset: int) -> bytes:
    """``size`` bytes at ``offset``; EOFError when the file ends first."""
    chunks = []
    remaining = size
    while remaining:
        data = os.pread(fd, remaining, offset)
        if not data:
            raise EOFError(f"file ends before byte {offset + remaining} (wanted {size} bytes)")
        chunks.append(data)
        remaining -= len(data)
        offset += len(data)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def resize_file(fd: int, size: int, preallocate: bool) -> None:
    """Set the file length to ``size``; with ``preallocate`` the blocks are reserved first (as
    the reference does, so later writes cannot fail for lack of space)."""
    current = os.fstat(fd).st_size
    if current == size:
        return
    if preallocate and size > current:
        try:
            os.posix_fallocate(fd, current, size - current)
        except OSError as exc:
            if exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL):  # no fallocate here: sparse
                raise
    os.ftruncate(fd, size)
