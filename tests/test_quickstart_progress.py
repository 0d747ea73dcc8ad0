"""What the quickstart prints: log records followed incrementally, failure reasons found in a
log, milestones printed once each, and the status line built from the node, members and metrics."""

from __future__ import annotations

import json

from services.quickstart_progress import AUDITS_METRIC, LogFollower, Progress, failure_reason, parse_record


def _progress() -> tuple[Progress, list[str]]:
    lines: list[str] = []
    return Progress(emit=lines.append), lines


def test_log_follower_reads_new_complete_lines(tmp_path):
    path = tmp_path / "x.log"
    path.write_text('{"event": "old"}\n')
    follower = LogFollower(path)
    assert follower.records() == []
    with open(path, "a") as handle:
        handle.write('{"event": "a", "level": "info"}\nplain text\n{"event": "b"')
    assert follower.records() == [{"event": "a", "level": "info"}, {"event": "plain text", "level": "raw"}]
    with open(path, "a") as handle:
        handle.write(', "level": "error"}\n')
    assert follower.records() == [{"event": "b", "level": "error"}]
    assert LogFollower(tmp_path / "missing.log").records() == []


def test_failure_reason_is_the_last_error_line(tmp_path):
    path = tmp_path / "role.log"
    path.write_text("\n".join([
        json.dumps({"event": "starting", "level": "info"}),
        json.dumps({"event": "cannot listen", "level": "error", "port": 9966, "timestamp": "t"}),
        json.dumps({"event": "stopped", "level": "info"}),
        "error: plot-server: cannot listen on 127.0.0.1:9966: address in use",
        "",
    ]))
    assert failure_reason(path) == "error: plot-server: cannot listen on 127.0.0.1:9966: address in use"
    path.write_text(json.dumps({"event": "only info", "level": "info"}) + "\n")
    assert failure_reason(path) == "only info"
    assert failure_reason(tmp_path / "none.log") == "(its log is empty)"
    assert parse_record("Traceback (most recent call last):")["level"] == "error"


def test_milestones_print_once_and_errors_name_their_log(tmp_path):
    progress, lines = _progress()
    log = tmp_path / "dev-node.log"
    progress.observe("dev-node", {"event": "archiving segment", "segment_index": 0}, log)
    progress.observe("dev-node", {"event": "archiving segment", "segment_index": 0}, log)
    progress.observe("dev-node", {"event": "segment archived", "segment_index": 0, "seconds": 6.2}, log)
    progress.observe("jit-warmup", {"event": "jit warm-up done", "seconds": 41.0}, log)
    progress.observe("plot-client", {"event": "Plotting sector (25.00% complete)", "sector_index": 0,
                                     "farm_id": "F"}, log)
    progress.observe("plot-client", {"event": "audited", "level": "debug", "sectors": 0, "winning_sectors": 0}, log)
    progress.observe("plot-client", {"event": "audited", "level": "debug", "sectors": 1, "winning_sectors": 1,
                                     "time_s": 0.002}, log)
    progress.observe("plot-server", {"event": "disk full", "level": "error", "path": "/x"}, tmp_path / "p.log")
    progress.observe("dev-node", {"event": "block authored", "number": 1, "slot": 9, "sector_index": 0,
                                  "piece_offset": 3, "reward_signature_ms": 12.5}, log)
    texts = [line.split("] ", 1)[1] for line in lines]
    assert texts == [
        "dev node archiving segment 0 (synthetic history, dev KZG)",
        "segment 0 archived in 6.2 s",
        "numba kernels compiled / loaded from the cache in 41.0 s",
        "plot-client: sector 0 is being plotted",
        "first audit of a plotted sector: 1 sector(s), 1 winning, 0.002 s",
        f"plot-server logged an error: disk full (path=/x) (log {tmp_path / 'p.log'})",
        "block 1 authored: slot 9, sector 0, piece offset 3, reward signature in 12.5 ms",
    ]
    assert progress.warmup == "done"


def test_status_line_from_node_members_and_metrics():
    progress, lines = _progress()
    assert "node: starting" in progress.status_line()
    progress.observe_node({"ready": True, "segmentsArchived": 1, "historySize": 1, "chainHeight": 2, "lastSlot": 77,
                           "solutionsReceived": 3, "solutionsRejected": 1})
    progress.observe_members({
        "sharded-cache.a": {"role": "sharded-cache", "capacity": {"pieces": 200}},
        "full-piece-sharded-cache.b": {"role": "full-piece-sharded-cache", "capacity": {"pieces": 256}},
        "plot-client.c": {"role": "plot-client", "capacity": {"plotted": 1, "sectors": 2}},
        "plot-server.d": {"role": "plot-server", "capacity": {"self_test": "passed", "backend": "cpu",
                                                              "tables_per_second": 1.2}},
    })
    progress.observe_metrics({AUDITS_METRIC: 5.0})
    progress.blocks = 2
    line = progress.status_line()
    for part in ("node: ready, height 2, slot 77", "caches: 456 pieces", "plotted: 1/2 sectors", "audits: 5",
                 "solutions: 3 (1 rejected)", "blocks: 2"):
        assert part in line, (part, line)
    said = "\n".join(lines)
    for text in ("dev node ready", "first solution received", "rejected a solution", "caches hold their first pieces",
                 "first sector plotted", "plot-server self-test: passed (cpu backend, 1.2 table sets/s)",
                 "first audit of a plotted sector (metrics)"):
        assert text in said, text


def test_waiting_for_names_the_first_missing_step_and_its_logs():
    from services.quickstart_progress import waiting_for

    progress, _ = _progress()
    running = {"dev-node", "jit-warmup", "sharded-cache", "plot-client", "plot-server"}
    assert waiting_for(progress, running) == ("the dev node's first archived segment", ("dev-node",))
    progress.observe_node({"ready": True})
    progress.warmup = "done"
    assert waiting_for(progress, running) == ("the caches' first pieces", ("sharded-cache",))
    progress.observe_members({"c": {"role": "sharded-cache", "capacity": {"pieces": 1}},
                              "p": {"role": "plot-client", "capacity": {"plotted": 0, "sectors": 2}}})
    assert waiting_for(progress, running) == ("the first plotted sector", ("plot-client", "plot-server"))


def test_warmup_parts_done_are_tracked(tmp_path):
    progress, _ = _progress()
    log = tmp_path / "jit-warmup.log"
    progress.observe("jit-warmup", {"event": "jit warm-up started", "parts": ["pos-fn", "plot"],
                                    "cached": ["pieces", "pos-build"]}, log)
    progress.observe("jit-warmup", {"event": "jit warm-up part done", "part": "plot", "seconds": 9.0}, log)
    assert progress.warmup_parts == {"pieces", "pos-build", "plot"}
    assert progress.warmup == "compiling (3 parts done)"
