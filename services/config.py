"""Shared parsing and validation for every role's configuration.

Operators paste command lines from the manual into supervisor files; a typo there must stop the
process with one line naming the bad value, not a traceback and not a silently wrong setting.
Every role config (``services/<role>/config.py``) is a frozen ``msgspec.Struct`` built from CLI
flags with the helpers below, and prints itself as JSON for ``--dry-run``.
"""

from __future__ import annotations

import argparse
import hashlib
import ipaddress
import os
import socket
import sys
from pathlib import Path
from typing import Iterable
from urllib.parse import SplitResult, urlsplit

import base58
import msgspec

from services.p2p.endpoints import is_loopback_host
from services.p2p.secret import NO_SECRET, ClusterSecret, ClusterSecretError, load_cluster_secret

NATS_SCHEMES = ("nats", "tls", "ws", "wss")
NODE_RPC_SCHEMES = ("ws", "wss", "http", "https")
LOG_LEVELS = ("trace", "debug", "info", "warning", "error", "critical")
LOG_FORMATS = ("auto", "console", "json")

# Subspace/Autonomys SS58 address-format prefix (addresses start with "su"/"st").
AUTONOMYS_SS58_PREFIX = 6094
_SS58_CHECKSUM_PREFIX = b"SS58PRE"
_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "k": 1000,
    "kb": 1000,
    "m": 1000**2,
    "mb": 1000**2,
    "g": 1000**3,
    "gb": 1000**3,
    "t": 1000**4,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
}


class ConfigError(ValueError):
    """Invalid operator input; the message names the bad value and fits on one line."""


def _public_form(value: object) -> object:
    """JSON form of values that must not print as themselves (the cluster secret)."""
    public_view = getattr(value, "public_view", None)
    if public_view is None:
        raise NotImplementedError(f"cannot encode {type(value).__name__} in a configuration")
    return public_view()


class JsonConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Base of every configuration struct: prints itself as indented JSON (``--dry-run``)."""

    def to_json(self) -> str:
        return msgspec.json.format(msgspec.json.encode(self, enc_hook=_public_form), indent=2).decode()


class RoleConfig(JsonConfig, frozen=True, kw_only=True):
    """Fields every cluster daemon has; role configs subclass this.

    ``prometheus_listen_on``: metrics listeners (none: no metrics served); ``log_format``:
    ``auto | console | json`` (``json_logs`` is kept for ``--json-logs``); ``hourly_cost``: what
    the operator pays for this process per hour (``--hourly-cost``, GPU roles), for Grafana's
    cost panels and the membership record; ``self_test_known_answer``: a known-answer file the
    GPU roles' start-up self-test compares with instead of the built-in reference values
    (``--self-test-known-answer``). ``cluster_secret`` is the data-plane secret
    (``services.p2p``); it prints as ``{"set": ..., "source": ...}`` only."""

    role: str
    nats_servers: tuple[str, ...]
    instance: str
    prometheus_listen_on: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "auto"
    json_logs: bool = False
    cluster_secret: ClusterSecret = NO_SECRET
    hourly_cost: float | None = None
    self_test_known_answer: str | None = None


class CommonArgs(msgspec.Struct, frozen=True, kw_only=True):
    """Options given before the role name (``cluster --nats-server URL ... <role>``) or valid at
    any level (``--log-format``), merged by the CLI."""

    nats_servers: tuple[str, ...] = ()
    prometheus_listen_on: tuple[str, ...] = ()
    log_level: str = "info"
    log_format: str = "auto"
    json_logs: bool = False
    cluster_secret: ClusterSecret = NO_SECRET
    hourly_cost: float | None = None
    self_test_known_answer: str | None = None

    def role_fields(self) -> dict:
        """These options as keyword arguments of a :class:`RoleConfig`."""
        return msgspec.structs.asdict(self)


# --- names and addresses -------------------------------------------------------------------


def require_nats_servers(servers: tuple[str, ...], who: str, flag: str = "--nats-server") -> tuple[str, ...]:
    """``servers`` unless empty: ``who`` (a role or command) cannot work without NATS."""
    if not servers:
        raise ConfigError(f"{who} needs at least one {flag} URL")
    return servers


def default_instance(role: str, suffix: str | None = None) -> str:
    """``<hostname>-<role>[-<suffix>]``: unique per machine and role in the manual's layouts."""
    name = f"{socket.gethostname() or 'localhost'}-{role}"
    return f"{name}-{suffix}" if suffix else name


def _parse_server_url(url: str, schemes: tuple[str, ...], what: str, example: str) -> tuple[str, SplitResult]:
    """Stripped ``url`` and its parts when its scheme is one of ``schemes`` with a host and a
    valid port; ``what`` names it in the error (``NATS server URL``)."""
    text = url.strip()
    parts = urlsplit(text)
    if parts.scheme not in schemes or not parts.hostname:
        raise ConfigError(f"invalid {what} {url!r}: expected {example}")
    try:
        parts.port
    except ValueError:
        raise ConfigError(f"invalid port in {what} {url!r}") from None
    return text, parts


def parse_nats_url(url: str) -> str:
    """Validate a NATS server URL (``nats://host:port``); returns it stripped."""
    text, parts = _parse_server_url(url, NATS_SCHEMES, "NATS server URL", "nats://HOST:PORT")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"invalid NATS server URL {url!r}: unexpected path or query")
    return text


def dedupe_nats_servers(urls: Iterable[str]) -> tuple[str, ...]:
    """Validate and de-duplicate (order kept); a duplicate is dropped with a warning."""
    seen: list[str] = []
    for url in urls:
        clean = parse_nats_url(url)
        if clean in seen:
            print(f"warning: duplicate --nats-server {clean} ignored", file=sys.stderr)
        else:
            seen.append(clean)
    return tuple(seen)


def parse_node_rpc_url(url: str) -> str:
    """Validate a node JSON-RPC URL (``ws://host:port``, as in the manual; http(s) also taken)."""
    return _parse_server_url(url, NODE_RPC_SCHEMES, "node RPC URL", "ws://HOST:PORT")[0]


def parse_port(value: str | int, what: str = "port") -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise ConfigError(f"invalid {what} {value!r}: expected an integer 1-65535") from None
    if not 1 <= port <= 65535:
        raise ConfigError(f"invalid {what} {value!r}: expected an integer 1-65535")
    return port


def parse_host_port(value: str, what: str = "listen address", allow_zero_port: bool = False) -> tuple[str, int]:
    """``HOST:PORT`` or ``[IPv6]:PORT``; host must be an IP address or a plain host name."""
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep or not host:
        raise ConfigError(f"invalid {what} {value!r}: expected HOST:PORT")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not all(c.isalnum() or c in "-._" for c in host):
            raise ConfigError(f"invalid host in {what} {value!r}") from None
    if allow_zero_port and port_text.strip() == "0":
        return host, 0
    return host, parse_port(port_text, what=f"port in {what} {value!r}")


def parse_listen(value: str | None, what: str, allow_zero_port: bool = False) -> str | None:
    """Validated ``HOST:PORT`` kept as a string (config fields stay JSON-friendly)."""
    if value is None:
        return None
    host, port = parse_host_port(value, what, allow_zero_port=allow_zero_port)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_cluster_secret(text: str | None, file: str | None, environ: dict | None = None) -> ClusterSecret:
    """``--cluster-secret`` / ``--cluster-secret-file`` / ``AUTONOMYS_CLUSTER_SECRET`` (see
    :mod:`services.p2p.secret`); advice such as a world-readable file goes to stderr."""
    try:
        return load_cluster_secret(text, file, environ,
                                   warn=lambda message: print(f"warning: {message}", file=sys.stderr))
    except ClusterSecretError as exc:
        raise ConfigError(str(exc)) from None


def data_plane_listen_host(given: str | None, default: str, secret: ClusterSecret, flag: str, who: str) -> str:
    """Host of a TCP data-plane listener. Without a cluster secret only loopback is allowed: an
    explicit other address is an error, a non-loopback default falls back to 127.0.0.1 with a
    warning (so the manual's command lines still start, reachable from this machine only)."""
    host = default if given is None else given.strip().strip("[]")
    if secret.is_set or is_loopback_host(host):
        return host
    if given is not None:
        raise ConfigError(f"{flag} {given!r} needs a cluster secret (--cluster-secret-file PATH, --cluster-secret "
                          "or AUTONOMYS_CLUSTER_SECRET); without one listen on 127.0.0.1")
    fallback = "::1" if ":" in host else "127.0.0.1"
    print(f"warning: no cluster secret: {who} listens on {fallback} only, other machines cannot reach it "
          "(give --cluster-secret-file PATH)", file=sys.stderr)
    return fallback
def parse_listen_list(values: Iterable[str], what: str = "--prometheus-listen-on") -> tuple[str, ...]:
    """Validated ``HOST:PORT`` listeners (port 0 allowed), a repeated one dropped with a warning."""
    seen: list[str] = []
    for value in values:
        clean = parse_listen(value, what, allow_zero_port=True)
        if clean in seen:
            print(f"warning: duplicate {what} {clean} ignored", file=sys.stderr)
        else:
            seen.append(clean)
    return tuple(seen)


def parse_log_format(value: str | None, json_logs: bool = False) -> str:
    """``--log-format auto|console|json``; ``--json-logs`` (older spelling) means ``json``."""
    if value is None:
        return "json" if json_logs else "auto"
    fmt = value.strip().lower()
    if fmt not in LOG_FORMATS:
        raise ConfigError(f"invalid --log-format {value!r}: expected one of {', '.join(LOG_FORMATS)}")
    if json_logs and fmt != "json":
        raise ConfigError(f"--json-logs contradicts --log-format {value!r}")
    return fmt


def parse_hourly_cost(value: str | None) -> float | None:
    """``--hourly-cost 0.85``: the operator's cost of this process per hour (any currency), >= 0."""
    if value is None:
        return None
    try:
        cost = float(value)
    except ValueError:
        raise ConfigError(f"invalid --hourly-cost {value!r}: expected a number like 0.85") from None
    if not cost >= 0 or cost == float("inf"):
        raise ConfigError(f"invalid --hourly-cost {value!r}: must be a finite number >= 0")
    return cost


def parse_log_level(value: str) -> str:
    level = value.strip().lower()
    if level == "warn":
        level = "warning"
    if level not in LOG_LEVELS:
        raise ConfigError(f"invalid log level {value!r}: expected one of {', '.join(LOG_LEVELS)}")
    return level


# --- numbers -------------------------------------------------------------------------------


def parse_int(value: str | int, what: str, minimum: int | None = None, maximum: int | None = None) -> int:
    try:
        number = int(str(value).replace("_", ""), 10)
    except ValueError:
        raise ConfigError(f"invalid {what} {value!r}: expected an integer") from None
    if minimum is not None and number < minimum:
        raise ConfigError(f"invalid {what} {value!r}: must be >= {minimum}")
    if maximum is not None and number > maximum:
        raise ConfigError(f"invalid {what} {value!r}: must be <= {maximum}")
    return number


def parse_seconds(value: str, what: str) -> float:
    """A positive duration in seconds (``--timeout 30``, ``2.5``)."""
    try:
        seconds = float(value)
    except ValueError:
        raise ConfigError(f"invalid {what} {value!r}: expected seconds") from None
    if seconds <= 0:
        raise ConfigError(f"invalid {what} {value!r}: must be > 0")
    return seconds


def parse_size(value: str, what: str = "size") -> int:
    """Byte size like ``100GiB``, ``2TB``, ``1048576``; must be > 0."""
    text = value.strip().replace("_", "")
    idx = len(text)
    while idx and not text[idx - 1].isdigit() and text[idx - 1] != ".":
        idx -= 1
    number, unit = text[:idx], text[idx:].strip().lower()
    if unit not in _SIZE_UNITS or not number:
        raise ConfigError(f"invalid {what} {value!r}: expected a number with an optional unit (GiB, TB, ...)")
    try:
        size = int(float(number) * _SIZE_UNITS[unit])
    except ValueError:
        raise ConfigError(f"invalid {what} {value!r}") from None
    if size <= 0:
        raise ConfigError(f"invalid {what} {value!r}: must be > 0")
    return size


# --- paths ---------------------------------------------------------------------------------


def check_directory(path: str, what: str, create: bool) -> str:
    """Check that ``path`` is (or can become) a writable directory; returns its absolute form.

    With ``create`` the directory is made; without (``--dry-run``) nothing is touched and a
    directory that does not exist yet only has to be creatable from its nearest existing parent.
    """
    if not path or not path.strip():
        raise ConfigError(f"empty {what} path")
    target = Path(path).expanduser()
    target = target if target.is_absolute() else Path.cwd() / target
    from services.preflight import PSEUDO_FILESYSTEMS, filesystem_type

    if target.exists():
        if not target.is_dir():
            raise ConfigError(f"{what} {path!r} exists and is not a directory")
        fstype = filesystem_type(target)
        if fstype in PSEUDO_FILESYSTEMS:
            raise ConfigError(f"{what} {path!r} is on the kernel's {fstype} filesystem, not a disk")
        if not os.access(target, os.W_OK | os.X_OK):
            raise ConfigError(f"{what} {path!r} is not writable")
        return str(target)
    parent = target.parent
    while not parent.exists():
        parent = parent.parent
    fstype = filesystem_type(parent)
    if fstype in PSEUDO_FILESYSTEMS:
        raise ConfigError(f"{what} {path!r} can never be created: {str(parent)!r} is on the kernel's {fstype} "
                          f"filesystem")
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path!r} does not exist and cannot be created under {str(parent)!r}")
    if create:
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"cannot create {what} {path!r}: {exc.strerror}") from None
    else:
        print(f"note: {what} {str(target)!r} does not exist yet; it will be created at start", file=sys.stderr)
    return str(target)


def check_file(path: str, what: str) -> str:
    target = Path(path).expanduser()
    if not target.is_file():
        raise ConfigError(f"{what} {path!r} is not a readable file")
    if not os.access(target, os.R_OK):
        raise ConfigError(f"{what} {path!r} is not readable")
    return str(target.resolve())


def parse_kzg_params(value: str | None) -> str | None:
    """``--kzg-params`` of the proving roles: None (``$AUTONOMYS_KZG_PARAMS``, else the packaged
    mainnet setup), ``"mainnet"``, ``"dev"`` (the dev node's insecure setup) or a readable file's
    absolute path (see ``services.kzg_setup``)."""
    if value is None:
        return None
    keyword = value.strip().lower()
    if keyword in ("mainnet", "dev"):
        return keyword
    return check_file(value, "--kzg-params")


def parse_kv_spec(text: str, what: str, required: Iterable[str], optional: Iterable[str] = ()) -> dict[str, str]:
    """``key=value,key=value`` (the manual's ``path=/mnt/nvme0n1/,sectors=8000``)."""
    required = tuple(required)
    allowed = set(required) | set(optional)
    values: dict[str, str] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not value.strip():
            raise ConfigError(f"invalid {what} {text!r}: {item!r} is not key=value")
        if key not in allowed:
            raise ConfigError(f"invalid {what} {text!r}: unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")
        if key in values:
            raise ConfigError(f"invalid {what} {text!r}: {key!r} given twice")
        values[key] = value.strip()
    for key in required:
        if key not in values:
            raise ConfigError(f"invalid {what} {text!r}: missing {key}=")
    return values


# --- GPU environment -----------------------------------------------------------------------


def parse_cuda_visible_devices(value: str | None) -> str | None:
    """``CUDA_VISIBLE_DEVICES`` as in the manual (``0``, ``0,1``; GPU UUIDs also allowed)."""
    if value is None:
        return None
    text = value.strip()
    if text == "":
        return ""
    for item in text.split(","):
        item = item.strip()
        if not (item.isdigit() or item.startswith(("GPU-", "MIG-")) or item == "-1"):
            raise ConfigError(f"invalid CUDA_VISIBLE_DEVICES {value!r}: expected GPU indices like 0 or 0,1")
    return text


def parse_gpu_concurrency(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    return parse_int(value, "GPU_CONCURRENCY", minimum=1, maximum=1024)


# --- SS58 reward addresses -----------------------------------------------------------------


def _ss58_checksum(data: bytes) -> bytes:
    return hashlib.blake2b(_SS58_CHECKSUM_PREFIX + data, digest_size=64).digest()[:2]


def ss58_decode(address: str) -> tuple[int, bytes]:
    """SS58 address -> (address-format prefix, 32-byte account id / sr25519 public key)."""
    text = address.strip()
    if not text:
        raise ConfigError("empty SS58 reward address")
    try:
        raw = base58.b58decode(text)
    except ValueError as exc:
        raise ConfigError(f"invalid SS58 address {text!r}: {exc} (not base58)") from None
    if not raw:
        raise ConfigError(f"invalid SS58 address {address!r}")
    if raw[0] < 64:
        prefix, head = raw[0], 1
    elif raw[0] < 128 and len(raw) >= 2:
        lower = ((raw[0] & 0b0011_1111) << 2) | (raw[1] >> 6)
        upper = raw[1] & 0b0011_1111
        prefix, head = lower | (upper << 8), 2
    else:
        raise ConfigError(f"invalid SS58 address {address!r}: unsupported address-format byte")
    if len(raw) != head + 32 + 2:
        raise ConfigError(f"invalid SS58 address {address!r}: not a 32-byte account (decoded {len(raw)} bytes)")
    if _ss58_checksum(raw[:-2]) != raw[-2:]:
        raise ConfigError(f"invalid SS58 address {address!r}: checksum mismatch")
    return prefix, raw[head:-2]


def ss58_encode(public_key: bytes, prefix: int = AUTONOMYS_SS58_PREFIX) -> str:
    """32-byte public key -> SS58 address with the given address-format prefix."""
    if len(public_key) != 32:
        raise ConfigError(f"public key must be 32 bytes, got {len(public_key)}")
    if not 0 <= prefix < 16384 or prefix in (46, 47):
        raise ConfigError(f"invalid SS58 prefix {prefix}")
    if prefix < 64:
        head = bytes([prefix])
    else:
        head = bytes([((prefix & 0b1111_1100) >> 2) | 0b0100_0000, (prefix >> 8) | ((prefix & 0b11) << 6)])
    body = head + public_key
    return base58.b58encode(body + _ss58_checksum(body)).decode()


# --- shared role pieces --------------------------------------------------------------------


class DataDir(msgspec.Struct, frozen=True, kw_only=True):
    """One ``path=DIR[,size=SIZE]`` cache directory; ``exists`` is False when it will be created."""

    path: str
    size_bytes: int | None = None
    exists: bool = True


def parse_cache_dir(text: str, what: str, create: bool) -> DataDir:
    values = parse_kv_spec(text, what, required=("path",), optional=("size",))
    exists = Path(values["path"]).expanduser().is_dir()
    path = check_directory(values["path"], f"{what} path", create=create)
    size = parse_size(values["size"], f"{what} size") if "size" in values else None
    return DataDir(path=path, size_bytes=size, exists=exists)


def parse_cache_group(value: str) -> str:
    group = value.strip()
    if not group or any(c in group for c in " .*>"):
        raise ConfigError(f"invalid --cache-group {value!r}: no spaces, dots, '*' or '>'")
    return group



def parse_optional_cache_group(value: str | None) -> str | None:
    """``--cache-group`` where leaving it out means "any" (None)."""
    return None if value is None else parse_cache_group(value)


class CacheRoleConfig(RoleConfig, frozen=True, kw_only=True):
    """A cache role (sharded-cache, full-piece-sharded-cache). ``paths``: one or more cache
    directories; ``listen``: TCP data plane listener; ``advertise_host``: address other machines
    use to reach it (None: detected at start)."""

    paths: tuple[DataDir, ...] = ()
    cache_group: str = "default"
    listen: str = ""
    advertise_host: str | None = None


def add_cache_arguments(parser: argparse.ArgumentParser, role: str, default_listen: str, paths_help: str) -> None:
    """Command line of a cache role: ``path=DIR[,size=SIZE] ... [--cache-group] [--listen-on] ...``."""
    parser.add_argument("paths", nargs="+", metavar="path=DIR[,size=SIZE]", help=paths_help)
    parser.add_argument("--cache-group", default="default", metavar="NAME", help="cache group (default 'default')")
    parser.add_argument("--listen-on", default=None, metavar="HOST:PORT",
                        help=f"TCP data plane listener (default {default_listen}; loopback without a cluster secret)")
    parser.add_argument("--advertise-host", default=None, metavar="HOST", help="address peers connect to")
    parser.add_argument("--instance", metavar="NAME", help=f"instance name (default HOSTNAME-{role})")


def _field_default(config_type: type[msgspec.Struct], name: str) -> object:
    return next(field.default for field in msgspec.structs.fields(config_type) if field.name == name)


def _cache_listen(given: str | None, default: str, secret: ClusterSecret, role: str) -> str:
    host, port = parse_host_port(given or default, "--listen-on")
    host = data_plane_listen_host(None if given is None else host, host, secret, "--listen-on", role)
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def cache_config_from_args(config_type: type[CacheRoleConfig], role: str, args: argparse.Namespace,
                           common: CommonArgs, dry_run: bool) -> CacheRoleConfig:
    """``config_type`` (a :class:`CacheRoleConfig`) from the flags of :func:`add_cache_arguments`."""
    require_nats_servers(common.nats_servers, role)
    paths = tuple(parse_cache_dir(p, role, create=not dry_run) for p in args.paths)
    if len({d.path for d in paths}) != len(paths):
        raise ConfigError(f"{role}: the same path is given twice in {' '.join(args.paths)!r}")
    return config_type(
        **common.role_fields(),
        instance=args.instance or default_instance(role),
        paths=paths,
        cache_group=parse_cache_group(args.cache_group),
        listen=_cache_listen(args.listen_on, _field_default(config_type, "listen"), common.cluster_secret, role),
        advertise_host=args.advertise_host,
    )


def parse_backend(value: str) -> str:
    backend = value.strip().lower()
    if backend not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"invalid --backend {value!r}: expected auto, cpu or gpu")
    return backend


def gpu_environment(environ: dict | None = None) -> tuple[str | None, int | None]:
    """(CUDA_VISIBLE_DEVICES, GPU_CONCURRENCY) from the environment, as the manual sets them."""
    env = os.environ if environ is None else environ
    return (
        parse_cuda_visible_devices(env.get("CUDA_VISIBLE_DEVICES")),
        parse_gpu_concurrency(env.get("GPU_CONCURRENCY")),
    )
