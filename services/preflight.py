"""Checks on a role's configuration that need the machine, run before a daemon starts and by
``--dry-run``: listening ports already taken (or not addresses of this machine), the same port
given twice, and free disk space for farms (``path=DIR,sectors=N``) and sized cache directories.

Why: a supervisor program that fails on its first bind, or a farm that fills its disk after a
day of plotting, costs an operator far more than one line at ``--dry-run`` time. Unwritable
paths (read-only, or kernel filesystems such as /proc: :func:`filesystem_type` here) are refused
by ``services.config.check_directory`` while the config is built.

Space for a farm is ``plot.bin`` (``sectors × sector_size(pieces_in_sector)``, spec 03 §7, rounded
to 4 KiB) plus ``metadata.bin`` (1 MiB + 131 116 bytes per sector, §9) plus the small info and
identity files, less what the farm's existing files already occupy; farms on one filesystem are
added up. ``pieces_in_sector`` comes from the node at start; before that the mainnet value
(1000) is assumed, so at a real start a shortfall is a warning and ``--dry-run`` makes it an error.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path
from typing import Any

from services.config import ConfigError, parse_host_port

# Filesystems where no farm, cache or plot-server directory can ever live (kernel views).
PSEUDO_FILESYSTEMS = frozenset({"proc", "sysfs", "devpts", "cgroup", "cgroup2", "securityfs", "debugfs", "tracefs",
                                "pstore", "bpf", "configfs", "fusectl", "mqueue", "efivarfs", "binfmt_misc",
                                "autofs", "rpc_pipefs", "nsfs", "devtmpfs", "selinuxfs", "hugetlbfs"})
MAINNET_PIECES_IN_SECTOR = 1000
SMALL_FILES_BYTES = 3 * 4096  # single_disk_farm.json, identity.bin, a lock file
FARM_FILES = ("plot.bin", "metadata.bin")


def filesystem_type(path: str | Path) -> str | None:
    """Type of the filesystem holding ``path`` (``ext4``, ``proc``...), from /proc/self/mountinfo;
    None where that cannot be read."""
    try:
        lines = Path("/proc/self/mountinfo").read_text().splitlines()
    except OSError:
        return None
    real = os.path.realpath(path)
    best, best_type = "", None
    for line in lines:
        fields = line.split(" ")
        try:
            mount_point = fields[4].encode().decode("unicode_escape")
            fstype = fields[fields.index("-") + 1]
        except (IndexError, ValueError):
            continue
        inside = real == mount_point or real.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, best_type = mount_point, fstype
    return best_type


def listen_addresses(config: Any) -> list[tuple[str, str]]:
    """``(flag, HOST:PORT)`` of every listener a config asks for."""
    found: list[tuple[str, str]] = []
    for address in getattr(config, "prometheus_listen_on", ()) or ():
        found.append(("--prometheus-listen-on", address))
    if getattr(config, "listen", None):
        found.append(("--listen-on", config.listen))
    if getattr(config, "listen_port", None):
        found.append(("--listen-port", f"{getattr(config, 'listen_host', '0.0.0.0')}:{config.listen_port}"))
    if getattr(config, "rpc_listen_on", None):
        found.append(("--rpc-listen-on", config.rpc_listen_on))
    return found


def check_ports(config: Any) -> None:
    """Every listener is free on this machine; no port is given twice."""
    by_port: dict[int, str] = {}
    for flag, address in listen_addresses(config):
        host, port = parse_host_port(address, flag, allow_zero_port=True)
        if port == 0:
            continue
        if port in by_port:
            raise ConfigError(f"port {port} is given twice ({by_port[port]} and {flag} {address})")
        by_port[port] = f"{flag} {address}"
        check_port_free(host, port, flag)


def check_port_free(host: str, port: int, flag: str) -> None:
    try:
        infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise ConfigError(f"{flag} {host}:{port}: cannot resolve {host!r}: {exc.strerror}") from None
    family, kind, proto, _, sockaddr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # a TIME_WAIT leftover is not "in use"
        try:
            sock.bind(sockaddr)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise ConfigError(f"{flag} {host}:{port}: port {port} is already in use on this machine") from None
            if exc.errno == errno.EADDRNOTAVAIL:
                raise ConfigError(f"{flag} {host}:{port}: {host} is not an address of this machine") from None
            if exc.errno == errno.EACCES:
                raise ConfigError(f"{flag} {host}:{port}: port {port} needs more privileges") from None
            raise ConfigError(f"{flag} {host}:{port}: {exc.strerror}") from None


def farm_bytes_needed(sectors: int, pieces_in_sector: int = MAINNET_PIECES_IN_SECTOR) -> int:
    """Disk bytes of a farm of ``sectors`` sectors, all files included."""
    from services.protocol.sector import metadata_file_size, plot_file_size  # numpy: only when there are farms

    return plot_file_size(sectors, pieces_in_sector) + metadata_file_size(sectors) + SMALL_FILES_BYTES


def _existing_dir(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _allocated(path: Path, names: tuple[str, ...]) -> int:
    total = 0
    for name in names:
        try:
            total += (path / name).stat().st_blocks * 512
        except OSError:
            pass
    return total


def space_requests(config: Any) -> list[tuple[str, str, int]]:
    """``(what, path, bytes still to allocate)`` for farms and sized caches of a config."""
    requests: list[tuple[str, str, int]] = []
    for farm in getattr(config, "farms", ()) or ():
        path = Path(farm.path)
        need = farm_bytes_needed(farm.sectors) - _allocated(path, FARM_FILES)
        requests.append((f"path={farm.path},sectors={farm.sectors}", farm.path, max(0, need)))
    for cache in getattr(config, "paths", ()) or ():
        size = getattr(cache, "size_bytes", None)
        if size:
            used = sum(f.stat().st_blocks * 512 for f in Path(cache.path).glob("*") if f.is_file()) \
                if Path(cache.path).is_dir() else 0
            requests.append((f"path={cache.path},size={size}", cache.path, max(0, size - used)))
    return requests


def check_space(config: Any, strict: bool) -> None:
    """Enough free space on each filesystem for everything placed on it; ``strict`` raises,
    otherwise one warning line per shortfall."""
    per_device: dict[int, tuple[int, int, list[str]]] = {}  # st_dev -> (needed, free, what)
    for what, path, need in space_requests(config):
        anchor = _existing_dir(Path(path))
        stat = os.statvfs(anchor)
        device = anchor.stat().st_dev
        needed, free, names = per_device.get(device, (0, stat.f_bavail * stat.f_frsize, []))
        per_device[device] = (needed + need, free, [*names, what])
    for needed, free, names in per_device.values():
        if needed > free:
            message = (f"not enough free space for {' + '.join(names)}: needs {_gib(needed)} "
                       f"(mainnet sector size, {MAINNET_PIECES_IN_SECTOR} pieces per sector), {_gib(free)} free")
            if strict:
                raise ConfigError(message)
            print(f"warning: {message}", file=sys.stderr)


def _gib(size: int) -> str:
    return f"{size / 2**30:,.1f} GiB"


def preflight(config: Any, dry_run: bool) -> None:
    """All checks above (raises :class:`ConfigError`)."""
    check_ports(config)
    check_space(config, strict=dry_run)
