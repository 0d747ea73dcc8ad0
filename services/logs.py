"""Structured logs for every daemon (structlog): readable on a terminal, one JSON object per
line under supervisor, each line carrying who wrote it (``component``, ``instance``) and what it
was about (``farm_id``, ``sector_index``, ``piece_index`` ... where known).

Why: an operator tails one log in a terminal and ships dozens to a log store; the same line must
serve both, and ``grep``/``jq`` must find a farm's lines without guessing. ``--log-format auto``
(the default) renders for a TTY and JSON otherwise (supervisor's ``stdout_logfile`` is a file);
``--log-format console|json`` forces one, ``--json-logs`` is the older spelling of ``json``.

API::

    configure_logging("info", "auto")                # once per process (the CLI does it)
    bind_process(component="plot-client", instance="host-plot-client")   # every later line
    log = structlog.get_logger()
    with log_context(farm_id=farm_id, sector_index=7):   # this task (and tasks it starts) only
        log.info(PLOTTING_SECTOR.format(progress=12.5))
    farm_log = log.bind(farm_id=farm_id)              # or bind a logger explicitly

Context bound with :func:`log_context` lives in a ``contextvars`` context, so concurrent asyncio
tasks never see each other's ids. Standard-library loggers (nats-py, websockets) go through the
same renderer.

Official wording: community monitors grep the official farmer's messages, so where our daemons
report the same event they log the same text (constants below; the event text is the message,
ids go into fields). JSON lines keep the text in ``event``.
"""

from __future__ import annotations

import logging
import sys
from contextlib import contextmanager
from typing import Any, Iterator, TextIO

import structlog

LOG_FORMATS = ("auto", "console", "json")

# --- the official farmer's wording (subspace-farmer at 72a5aa6f), same text, same level ----------
REWARD_SIGNED = "Successfully signed reward hash 0x{hash}"  # info; reward counters grep this
REWARD_SIGNATURE_FAILED = "Failed to send signature for reward hash 0x{hash}"  # warn
PLOTTING_SECTOR = "Plotting sector ({progress:.2f}% complete)"  # info, field sector_index
REPLOTTING_SECTOR = "Replotting sector ({progress:.2f}% complete)"  # info
PLOTTING_SECTOR_RETRY = "Plotting sector retry"  # info
INITIAL_PLOTTING_COMPLETE = "Initial plotting complete"  # info
REPLOTTING_COMPLETE = "Replotting complete"  # info
SECTOR_PLOTTED = "Sector plotted successfully"  # debug
PLOT_SECTOR_REQUEST = "Plot sector request"  # info, plotter
FINISHED_PLOTTING_SECTOR = "Finished plotting sector successfully"  # info, plotter
SOLUTION_FOUND = "Solution found"  # debug, fields slot, sector_index
SLOW_FARMING_SKIPPING_SLOT = "Slow farming, skipping slot"  # debug, field slot
PROVING_SKIPPED_TIME_LIMIT = "Proving for solution skipped due to farming time limit"  # warn
SOLUTION_SEND_FAILED = "Failed to send solution to node, skipping further proving for this slot"  # warn
NON_FATAL_FARMING_ERROR = "Non-fatal farming error"  # error
SYNCHRONIZING_PIECE_CACHE = "Synchronizing piece cache"  # info
PIECE_CACHE_SYNC_PROGRESS = "Piece cache sync {progress:.2f}% complete"  # info
FINISHED_PIECE_CACHE_SYNC = "Finished piece cache synchronization"  # info
SUBSCRIBING_TO_SLOT_INFO = "Subscribing to slot info notifications"  # info
SUBSCRIBING_TO_REWARD_SIGNING = "Subscribing to reward signing notifications"  # info
SUBSCRIBING_TO_ARCHIVED_SEGMENTS = "Subscribing to archived segments"  # info
CONNECTING_TO_NODE = "Connecting to node RPC"  # info

OFFICIAL_MESSAGES = {name: value for name, value in globals().items() if name.isupper() and isinstance(value, str)
                     and name not in ("LOG_FORMATS",)}


def resolve_format(log_format: str, stream: TextIO) -> str:
    """``auto`` -> ``console`` on a TTY, ``json`` otherwise."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"log format {log_format!r} is not one of {', '.join(LOG_FORMATS)}")
    if log_format != "auto":
        return log_format
    isatty = getattr(stream, "isatty", None)
    return "console" if isatty is not None and isatty() else "json"


def configure_logging(level: str = "info", log_format: str = "auto", stream: TextIO | None = None) -> str:
    """Route structlog and stdlib logging to ``stream`` (stderr) at ``level``; returns the
    concrete format used."""
    out = sys.stderr if stream is None else stream
    fmt = resolve_format(log_format, out)
    lvl = getattr(logging, level.upper(), logging.INFO) if level != "trace" else logging.DEBUG
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if fmt == "json":
        renderer: Any = structlog.processors.JSONRenderer(sort_keys=False)
        tail: list[Any] = [structlog.processors.dict_tracebacks, renderer]
    else:
        renderer = structlog.dev.ConsoleRenderer(colors=False)
        tail = [renderer]
    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), *tail],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                    *([structlog.processors.dict_tracebacks] if fmt == "json" else []), renderer],
    ))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(lvl, logging.INFO))  # libraries' debug noise stays off
    return fmt


def bind_process(**fields: Any) -> None:
    """Fields every later line of this process carries (``component``, ``instance``)."""
    structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Bind ``fields`` (``farm_id``, ``sector_index``, ...) for the code inside the block and the
    tasks it creates; the previous values come back afterwards."""
    tokens = structlog.contextvars.bind_contextvars(**{k: v for k, v in fields.items() if v is not None})
    try:
        yield
    finally:
        structlog.contextvars.reset_contextvars(**tokens)
