"""services.logs: JSON lines off a terminal, console lines on one, process and task context on
every line, stdlib loggers through the same renderer, and the official farmer's wording."""

from __future__ import annotations

import asyncio
import io
import json
import logging

import pytest
import structlog

from services import logs


@pytest.fixture(autouse=True)
def restore_logging():
    """configure_logging is process-wide: put structlog and the root logger back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()
    root.handlers[:] = handlers
    root.setLevel(level)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_auto_is_json_off_a_terminal_and_console_on_one():
    assert logs.resolve_format("auto", io.StringIO()) == "json"
    assert logs.resolve_format("auto", Tty()) == "console"
    tty = Tty()
    assert logs.configure_logging("info", "auto", tty) == "console"
    structlog.get_logger().info("Initial plotting complete", farm_id="01J0FARM")
    text = tty.getvalue()
    assert "Initial plotting complete" in text and "farm_id=01J0FARM" in text and not text.startswith("{")


async def test_context_per_process_and_per_task():
    out = io.StringIO()
    logs.configure_logging("info", "json", out)
    logs.bind_process(component="plot-client", instance="host-plot-client")
    log = structlog.get_logger()

    async def plot(sector: int) -> None:
        with logs.log_context(farm_id="01J0FARM", sector_index=sector):
            await asyncio.sleep(0)
            log.info(logs.PLOTTING_SECTOR.format(progress=sector * 12.5))

    await asyncio.gather(plot(1), plot(2))
    log.info(logs.REWARD_SIGNED.format(hash="ab" * 32))
    logging.getLogger("nats.aio.client").warning("library line")
    records = lines(out)
    plotting = {r["sector_index"]: r for r in records if r["event"].startswith("Plotting sector")}
    assert plotting[1]["event"] == "Plotting sector (12.50% complete)" and plotting[2]["event"].startswith(
        "Plotting sector (25.00% complete)")
    for record in records:
        assert record["component"] == "plot-client" and record["instance"] == "host-plot-client"
        assert record["timestamp"].endswith("Z") and record["level"] in ("info", "warning")
    signed = next(r for r in records if r["event"].startswith("Successfully"))
    assert signed["event"] == "Successfully signed reward hash 0x" + "ab" * 32 and "farm_id" not in signed
    library = next(r for r in records if r["event"] == "library line")
    assert library["logger"] == "nats.aio.client" and library["level"] == "warning"


def test_official_messages_are_listed():
    assert logs.OFFICIAL_MESSAGES["REWARD_SIGNED"] == "Successfully signed reward hash 0x{hash}"
    assert "Finished plotting sector successfully" in logs.OFFICIAL_MESSAGES.values()
    assert all(isinstance(v, str) for v in logs.OFFICIAL_MESSAGES.values())
