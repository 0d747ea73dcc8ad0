"""Real processes for the plotting tests: a dev node (cloned from the session's archived
template), a controller, and cluster daemons (``python -m services cluster ... <role>``) logging
JSON lines into a file, waited on by log line or event, stopped with SIGTERM or killed with
SIGKILL.

Import as ``plot_cluster`` (tests/plot_server is put on sys.path by the tests using it)."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO_ROOT = HERE.parents[1]
for _helpers in ("node", "integration"):
    if str(HERE.parent / _helpers) not in sys.path:
        sys.path.insert(0, str(HERE.parent / _helpers))

from cluster_processes import ClusterProcess as RoleProcess  # noqa: E402,F401
from dev_node_process import TEMPLATE_FLAGS, DevNodeProcess, archived_template, call, clone_data_dir  # noqa: E402,F401

CONTROLLER_INSTANCE = "ctl-plot"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_dev_node(template: Path, data_dir: Path, *flags: str) -> DevNodeProcess:
    return DevNodeProcess(clone_data_dir(template, data_dir), *TEMPLATE_FLAGS, *flags)


def start_controller(nats_url: str, node_url: str, log_dir: Path, wait: float = 120.0) -> RoleProcess:
    """A controller, returned once it serves the cluster ("controller started")."""
    controller = RoleProcess("controller", nats_url, ["controller", "--tmp", "--node-rpc-url", node_url,
                                                      "--instance", CONTROLLER_INSTANCE], log_dir / "controller.log")
    controller.wait_for("controller started", wait)
    return controller


def start_plot_server(nats_url: str, base: Path, log_dir: Path, name: str = "plot-server", *extra: str) -> RoleProcess:
    base.mkdir(parents=True, exist_ok=True)
    port = free_port()
    args = ["plot-server", "--listen-host", "127.0.0.1", "--listen-port", str(port), "--instance", name,
            "--record-encoding-concurrency", "2", *extra, str(base)]
    return RoleProcess(name, nats_url, args, log_dir / f"{name}.log")


def stop_all(processes: list, timeout: float = 60.0) -> dict[str, int]:
    """SIGTERM everything (reverse start order); exit statuses by name."""
    statuses = {}
    for process in reversed(processes):
        if isinstance(process, RoleProcess):
            statuses[process.name] = process.terminate(timeout)
        else:
            statuses["dev-node"] = process.terminate(timeout)
    return statuses
