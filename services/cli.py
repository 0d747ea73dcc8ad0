"""``autonomys-farmer`` and ``autonomys-export-piece``: the operator's command lines.

The interface is the operator manual's: its supervisor ``command=`` lines must work when pasted,
e.g. ``autonomys-farmer cluster --nats-server nats://192.168.1.1:4222 ... plot-server
--record-encoding-concurrency 32 --priority-cache --listen-port 9966 /var/plot-server/base-path-0``.

Every command takes ``--dry-run`` (validate, print the effective configuration as JSON, exit 0,
touch nothing; ports already in use, paths that can never be created and missing disk space are
reported there, see :mod:`services.preflight`). Bad input exits 2 with one ``error: ...`` line
naming the value; an unknown or misspelled flag is named (with the closest valid one) under the
usage of the command it was given to, not the top-level usage. A real run
imports the role's service lazily (``services.<role>.service.<Role>Service``) and hands it to
:func:`services.daemon.run_daemon`.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import json
import re
import sys
from typing import Any, Callable, NoReturn, Sequence

from services.config import (
    CommonArgs,
    ConfigError,
    dedupe_nats_servers,
    parse_cluster_secret,
    parse_hourly_cost,
    parse_listen_list,
    parse_log_format,
    parse_log_level,
)
from services.p2p.secret import NO_SECRET

PROG = "autonomys-farmer"

# role name on the command line -> (config module, service module, service class)
CLUSTER_ROLES: dict[str, tuple[str, str, str]] = {
    "controller": ("services.controller.config", "services.controller.service", "ControllerService"),
    "sharded-cache": ("services.sharded_cache.config", "services.sharded_cache.service", "ShardedCacheService"),
    "full-piece-sharded-cache": (
        "services.full_piece_cache.config",
        "services.full_piece_cache.service",
        "FullPieceCacheService",
    ),
    "plot-server": ("services.plot_server.config", "services.plot_server.service", "PlotServerService"),
    "plot-client": ("services.plot_client.config", "services.plot_client.service", "PlotClientService"),
    "proof-server": ("services.proof_server.config", "services.proof_server.service", "ProofServerService"),
}
DEV_NODE_SERVICE = ("services.node.dev_node", "DevNode")
GPU_ROLES = ("plot-server", "proof-server")  # they take --hourly-cost and run the GPU self-test

ROLE_HELP = {
    "controller": "proxy the node to the cluster (slot info, rewards, segments, pieces)",
    "sharded-cache": "piece cache shard: path=DIR",
    "full-piece-sharded-cache": "full history piece cache: path=DIR (autonomys-export-piece output)",
    "plot-server": "encode sectors: [--record-encoding-concurrency N] [--priority-cache] [--listen-port P] BASE_PATH",
    "plot-client": "farm plots: --reward-address ADDR path=DIR,sectors=N ...",
    "proof-server": "compute proofs for audit winners (CUDA_VISIBLE_DEVICES, GPU_CONCURRENCY)",
}

# util command -> (argument adder, config builder, implementation module); names in services.utils.config
UTIL_COMMANDS: dict[str, tuple[str, str, str, str]] = {
    "reinitialization-cache": (
        "add_reinitialization_cache_arguments",
        "reinitialization_cache_from_args",
        "services.utils.reinitialization_cache",
        "re-initialize the whole cache cluster after --delay seconds",
    ),
    "sharded-cache-benchmark": (
        "add_sharded_cache_benchmark_arguments",
        "sharded_cache_benchmark_from_args",
        "services.utils.sharded_cache_benchmark",
        "simulate plot-server sector downloads against the cache cluster",
    ),
    "verify-piece": (
        "add_verify_piece_arguments",
        "verify_piece_from_args",
        "services.utils.verify_piece",
        "verify cached pieces against segment commitments",
    ),
}


class UsageError(Exception):
    """Bad command line; printed as one ``error:`` line after the usage."""


class NotAvailable(Exception):
    """The command's implementation is not part of this build (exit 1, one line)."""


_NEGATIVE_NUMBER = re.compile(r"^-\d+$|^-\d*\.\d+$")


class _Parser(argparse.ArgumentParser):
    """argparse with errors where they belong: a parser checks its own flags before its
    sub-command takes over, so ``cluster ... plot-server --listen-prot 9966 BASE`` names
    ``--listen-prot`` under plot-server's usage (argparse alone would hand it up to the
    top-level parser, which prints its own usage and calls BASE unrecognized too)."""

    def error(self, message: str) -> NoReturn:  # argparse hook
        self.print_usage(sys.stderr)
        raise UsageError(f"{self.prog}: {message}")

    def parse_known_args(self, args=None, namespace=None):  # noqa: ANN001, ANN201 - argparse signature
        words = list(sys.argv[1:] if args is None else args)
        self._check_options(words)
        namespace, extras = super().parse_known_args(words, namespace)
        if extras and self._subparsers is None:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        return namespace, extras

    def _check_options(self, words: list[str]) -> None:
        """Name the first unknown option among this parser's own words (up to its sub-command)."""
        leaf = self._subparsers is None
        i = 0
        while i < len(words):
            word = words[i]
            if word == "--":
                return
            if not word.startswith("-") or word == "-" or _NEGATIVE_NUMBER.match(word):
                if not leaf:
                    return  # the sub-command's name: the rest is its business
                i += 1
                continue
            flag = word.split("=", 1)[0]
            action = self._option_string_actions.get(flag) or self._unique_prefix(flag)
            if action is None:
                self.error(f"unrecognized option {flag!r}{self._suggestion(flag)}")
            if "=" not in word and action.nargs is None:
                i += 1  # its value, which may start with '-'
            i += 1

    def _unique_prefix(self, flag: str):  # noqa: ANN202 - argparse Action | None
        if not flag.startswith("--"):
            return None
        matches = {action for option, action in self._option_string_actions.items() if option.startswith(flag)}
        return matches.pop() if len(matches) == 1 else None

    def _suggestion(self, flag: str) -> str:
        options = [o for o in self._option_string_actions if o.startswith("--")]
        close = difflib.get_close_matches(flag, options, n=1, cutoff=0.6)
        if close:
            return f" (did you mean {close[0]}?)"
        return f"; see {self.prog} --help"


def _add_global_flags(parser: argparse.ArgumentParser) -> None:
    """Flags accepted at every level; ``SUPPRESS`` keeps an outer value when an inner level omits it."""
    parser.add_argument("--dry-run", action="store_true", default=argparse.SUPPRESS,
                        help="validate and print the effective configuration as JSON; start nothing")
    parser.add_argument("--log-level", default=argparse.SUPPRESS, metavar="LEVEL",
                        help="trace|debug|info|warning|error (default info)")
    parser.add_argument("--log-format", default=argparse.SUPPRESS, metavar="auto|console|json",
                        help="console lines on a terminal, JSON lines otherwise (default auto)")
    parser.add_argument("--json-logs", action="store_true", default=argparse.SUPPRESS,
                        help="same as --log-format json")


def _add_nats_flags(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument("--nats-server", "--nats-servers", action="append", dest=dest, default=argparse.SUPPRESS,
                        metavar="URL", help="NATS server URL (repeatable)")


def _add_prometheus_flag(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument("--prometheus-listen-on", "--metrics-listen", dest=dest, action="append",
                        default=argparse.SUPPRESS, metavar="HOST:PORT",
                        help="serve Prometheus metrics at http://HOST:PORT/metrics (repeatable; none by default)")


def _add_command(subparsers: Any, name: str, help_text: str, nats_dest: str | None = None) -> argparse.ArgumentParser:
    """A (sub)command taking the global flags and, with ``nats_dest``, ``--nats-server``."""
    sub = subparsers.add_parser(name, help=help_text, description=help_text)
    _add_global_flags(sub)
    if nats_dest is not None:
        _add_nats_flags(sub, nats_dest)
    return sub


def build_parser() -> argparse.ArgumentParser:
    from services import confgen, quickstart
    from services.gpu import selftest as gpu_selftest
    from services.node import config as node_config
    from services.utils import config as util_config

    parser = _Parser(prog=PROG, description="Autonomys farmer cluster (NATS-coordinated)")
    _add_global_flags(parser)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    cluster = _add_command(commands, "cluster", "run one cluster role", "nats_servers")
    _add_prometheus_flag(cluster, "prometheus_listen_on")
    secret = cluster.add_mutually_exclusive_group()
    secret.add_argument("--cluster-secret", default=None, metavar="TEXT",
                        help="shared secret every TCP data-plane peer must prove (visible in ps: prefer the file)")
    secret.add_argument("--cluster-secret-file", default=None, metavar="PATH",
                        help="file holding the cluster secret (env AUTONOMYS_CLUSTER_SECRET also works); "
                             "without one, data-plane listeners bind loopback only")
    roles = cluster.add_subparsers(dest="role", metavar="ROLE", parser_class=_Parser)
    roles.required = True
    for role, (config_module, _, _) in CLUSTER_ROLES.items():
        role_parser = _add_command(roles, role, ROLE_HELP[role], "nats_servers_role")
        _add_prometheus_flag(role_parser, "prometheus_listen_on_role")
        if role in GPU_ROLES:
            role_parser.add_argument("--hourly-cost", default=None, metavar="COST",
                                     help="what this process costs per hour (your currency), "
                                          "for Grafana and the cluster registry")
            role_parser.add_argument("--self-test-known-answer", default=None, metavar="FILE",
                                     help="start-up self-test compares with this file (a reference "
                                          "pos_k20.json) instead of the built-in answer")
        importlib.import_module(config_module).add_arguments(role_parser)

    util = _add_command(commands, "util", "operator utilities", "nats_servers")
    utils = util.add_subparsers(dest="util_command", metavar="UTIL", parser_class=_Parser)
    utils.required = True
    for name, (adder, _, _, text) in UTIL_COMMANDS.items():
        getattr(util_config, adder)(_add_command(utils, name, text, "nats_servers_role"))

    util_config.add_status_arguments(_add_command(
        commands, "status", "live cluster view: health, plotting, GPUs, caches, rewards (--json: one snapshot)",
        "nats_servers"))
    node_config.add_arguments(
        _add_command(commands, "dev-node", "run the embedded development node (JSON-RPC on --rpc-listen-on)"))
    confgen.add_arguments(
        _add_command(commands, "conf", "write supervisor programs / systemd units for one machine"))
    quickstart.add_arguments(
        _add_command(commands, "quickstart", "run a whole local cluster with a dev node under supervisord"))
    gpu_selftest.add_arguments(
        _add_command(commands, "self-test", "GPU inventory and known-answer self-test (CPU backend without a GPU)"))
    util_config.add_export_piece_arguments(_add_command(commands, "export-piece", "same as autonomys-export-piece"))
    return parser


def _common(args: argparse.Namespace) -> CommonArgs:
    urls = list(getattr(args, "nats_servers", None) or []) + list(getattr(args, "nats_servers_role", None) or [])
    listeners = [*getattr(args, "prometheus_listen_on", []), *getattr(args, "prometheus_listen_on_role", [])]
    json_logs = bool(getattr(args, "json_logs", False))
    return CommonArgs(
        nats_servers=dedupe_nats_servers(urls),
        prometheus_listen_on=parse_listen_list(listeners),
        log_level=parse_log_level(getattr(args, "log_level", "info")),
        log_format=parse_log_format(getattr(args, "log_format", None), json_logs),
        json_logs=json_logs,
        hourly_cost=parse_hourly_cost(getattr(args, "hourly_cost", None)),
        self_test_known_answer=_known_answer_file(getattr(args, "self_test_known_answer", None)),
        cluster_secret=(parse_cluster_secret(getattr(args, "cluster_secret", None),
                                             getattr(args, "cluster_secret_file", None))
                        if getattr(args, "command", None) == "cluster" else NO_SECRET),
    )


def _known_answer_file(path: str | None) -> str | None:
    if path is None:
        return None
    from services.gpu.selftest import parse_known_answer_file

    return parse_known_answer_file(path, "--self-test-known-answer")


def _require_available(module: str, what: str, dry_run: bool) -> None:
    """A real run needs the command's implementation module (``--dry-run`` does not)."""
    if dry_run:
        return
    try:
        available = importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        available = False
    if not available:
        raise NotAvailable(f"{what}: not available in this build yet")


def _load_class(module: str, cls: str, what: str) -> Callable[..., Any]:
    try:
        return getattr(importlib.import_module(module), cls)
    except (ImportError, AttributeError) as exc:
        raise NotAvailable(f"{what}: cannot load {module}.{cls}: {exc}") from None


def _print_or_run(config: Any, dry_run: bool, run: Callable[[Any], int]) -> int:
    """``--dry-run``: print ``config`` as JSON and exit 0; otherwise ``run(config)``."""
    if dry_run:
        print(config.to_json())
        return 0
    return int(run(config))


def _run_service(module: str, cls: str, what: str, common: CommonArgs) -> Callable[[Any], int]:
    """Runner of a daemon: loads ``module.cls`` (lazily, only for a real run) and runs it."""

    def run(config: Any) -> int:
        from services.daemon import configure_logging, run_daemon

        factory = _load_class(module, cls, what)
        configure_logging(common.log_level, log_format=common.log_format)
        return run_daemon(factory(config))

    return run


def _preflight(config: Any, dry_run: bool) -> None:
    from services.preflight import preflight

    preflight(config, dry_run)


def _run_main(module: str, what: str) -> Callable[[Any], int]:
    """Runner of a one-shot command: ``module.main(config)``, loaded lazily."""
    return lambda config: _load_class(module, "main", what)(config)


def _cluster(args: argparse.Namespace, dry_run: bool) -> int:
    role = args.role
    config_module, service_module, service_class = CLUSTER_ROLES[role]
    _require_available(service_module, role, dry_run)
    common = _common(args)
    config = importlib.import_module(config_module).from_args(args, common, dry_run)
    _preflight(config, dry_run)
    return _print_or_run(config, dry_run, _run_service(service_module, service_class, role, common))


def _util(args: argparse.Namespace, dry_run: bool) -> int:
    from services.utils import config as util_config

    name = args.util_command
    _, builder, impl_module, _ = UTIL_COMMANDS[name]
    _require_available(impl_module, f"util {name}", dry_run)
    config = getattr(util_config, builder)(args, _common(args), dry_run)
    return _print_or_run(config, dry_run, _run_main(impl_module, f"util {name}"))


def _status(args: argparse.Namespace, dry_run: bool) -> int:
    from services.utils import config as util_config

    config = util_config.status_from_args(args, _common(args), dry_run)
    return _print_or_run(config, dry_run, _run_main("services.utils.status", "status"))


def _dev_node(args: argparse.Namespace, dry_run: bool) -> int:
    from services.node import config as node_config

    module, cls = DEV_NODE_SERVICE
    _require_available(module, "dev-node", dry_run)
    common = _common(args)
    config = node_config.from_args(args, dry_run, log_level=common.log_level, json_logs=common.log_format == "json")
    _preflight(config, dry_run)
    return _print_or_run(config, dry_run, _run_service(module, cls, "dev-node", common))


def _conf(args: argparse.Namespace, dry_run: bool) -> int:
    from services import confgen

    config = confgen.from_args(args)
    files = confgen.render(config)
    if dry_run:
        report = json.loads(config.to_json())
        report["would_write"] = sorted(files)
        print(json.dumps(report, indent=2))
        return 0
    for path in confgen.write(config, files):
        print(path)
    return 0


def _self_test(args: argparse.Namespace, dry_run: bool) -> int:
    from services.gpu import selftest

    config = selftest.from_args(args)
    return _print_or_run(config, dry_run, selftest.main)


def _quickstart(args: argparse.Namespace, dry_run: bool) -> int:
    from services import quickstart

    config = quickstart.from_args(args, dry_run, log_level=parse_log_level(getattr(args, "log_level", "info")))
    if dry_run:
        print(quickstart.dry_run_report(config))  # the configuration and the plan: stages, command lines
        return 0
    return int(quickstart.run(config))


def _export_piece(args: argparse.Namespace, dry_run: bool) -> int:
    from services.utils import config as util_config

    impl = "services.utils.export_piece"
    _require_available(impl, "export-piece", dry_run)
    common = _common(args)
    config = util_config.export_piece_from_args(args, dry_run, log_level=common.log_level, json_logs=common.json_logs)
    return _print_or_run(config, dry_run, _run_main(impl, "export-piece"))


HANDLERS = {
    "cluster": _cluster,
    "util": _util,
    "status": _status,
    "dev-node": _dev_node,
    "conf": _conf,
    "quickstart": _quickstart,
    "self-test": _self_test,
    "export-piece": _export_piece,
}


def _guarded(body: Callable[[], int]) -> int:
    try:
        return body()
    except (UsageError, ConfigError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NotAvailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except SystemExit as exc:  # --help / --version
        return exc.code if isinstance(exc.code, int) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``autonomys-farmer``; returns the exit status."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        return HANDLERS[args.command](args, bool(getattr(args, "dry_run", False)))

    return _guarded(body)


def export_piece_main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``autonomys-export-piece`` (``NODE_URL=... ./autonomys-export-piece``)."""

    def body() -> int:
        parser = _Parser(prog="autonomys-export-piece",
                         description="export history pieces from an archival node (NODE_URL) into full-cache-tmp")
        _add_global_flags(parser)
        from services.utils import config as util_config

        util_config.add_export_piece_arguments(parser)
        args = parser.parse_args(argv)
        return _export_piece(args, bool(getattr(args, "dry_run", False)))

    return _guarded(body)


if __name__ == "__main__":
    sys.exit(main())
