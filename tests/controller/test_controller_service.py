"""The controller process against a real nats-server and a real dev node process: identify
broadcasts, membership, request answers, and surviving a node restart (re-subscription)."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "node"))
from dev_node_process import (  # noqa: E402
    REPO_ROOT,
    TEMPLATE_FLAGS,
    DevNodeProcess,
    archived_template,
    call,
    clone_data_dir,
)

from services.bus.client import Bus  # noqa: E402
from services.bus.membership import Membership  # noqa: E402
from services.controller.messages import (  # noqa: E402
    CacheIdentify,
    FarmerAppInfoRequest,
    FarmerIdentify,
    PieceRequest,
    SlotInfoBroadcast,
)

pytestmark = pytest.mark.integration

INSTANCE = "ctl-svc-test"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def _next_slot(sub, after: int | None, timeout: float) -> int:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        msg = await sub.next(timeout=max(0.1, remaining))
        slot = msg.decoded().slot_number
        if after is None or slot > after:
            return slot


def test_controller_serves_and_survives_a_node_restart(tmp_path: Path, tmp_path_factory, nats_server) -> None:
    template = archived_template(tmp_path_factory.getbasetemp(), *TEMPLATE_FLAGS)
    data_dir = clone_data_dir(template, tmp_path / "node")
    port = _free_port()
    flags = (*TEMPLATE_FLAGS, "--slot-duration-ms", "300")
    # a fixed port (the later flag wins) so the restarted node is at the same URL
    node = DevNodeProcess(data_dir, *flags, "--rpc-listen-on", f"127.0.0.1:{port}")
    node.wait_ready()
    controller = None
    log = open(tmp_path / "controller.log", "ab")
    try:

        async def scenario() -> None:
            nonlocal controller, node
            bus = await Bus.connect([nats_server.url], name="controller-test")
            try:
                farmer_identify = await bus.subscribe(FarmerIdentify)
                cache_identify = await bus.subscribe(CacheIdentify, "default")
                slots = await bus.subscribe(SlotInfoBroadcast)
                controller = subprocess.Popen(
                    [sys.executable, "-m", "services", "cluster", "--nats-server", nats_server.url, "controller",
                     "--tmp", "--node-rpc-url", node.url, "--instance", INSTANCE],
                    cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT,
                )
                await farmer_identify.next(timeout=90)
                await cache_identify.next(timeout=10)
                members = await (await Membership.open(bus)).members()
                assert f"controller.{INSTANCE}" in members
                assert members[f"controller.{INSTANCE}"].endpoints == [node.url]

                first = await _next_slot(slots, None, 30)
                info = (await bus.request(FarmerAppInfoRequest(), timeout=30)).unwrap()
                assert info.protocol_info.history_size == 1
                assert (await bus.request(PieceRequest(piece_index=1 << 40), timeout=30)).decoded() is None

                # Restart the node on the same port: the controller reconnects and re-subscribes.
                assert node.terminate() == 0
                node = DevNodeProcess(data_dir, *flags, "--rpc-listen-on", f"127.0.0.1:{port}")
                await asyncio.to_thread(node.wait_ready)
                # Slot numbers follow wall time: one at or after the new node's first slot can only
                # have come through the controller's new subscription.
                new_first = (await call(node.url, "dev_status"))["lastSlot"]
                assert await _next_slot(slots, new_first - 1, 60) >= new_first > first
                info = (await bus.request(FarmerAppInfoRequest(), timeout=30)).unwrap()
                assert info.protocol_info.history_size == 1
                assert controller.poll() is None
            finally:
                await bus.close()

        asyncio.run(scenario())
    finally:
        if controller is not None and controller.poll() is None:
            controller.send_signal(signal.SIGTERM)
            status = controller.wait(30)
        else:
            status = controller.returncode if controller is not None else None
        log.close()
        node_status = node.terminate()
        print((tmp_path / "controller.log").read_text()[-3000:])
    assert status == 0 and node_status == 0
