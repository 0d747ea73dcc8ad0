"""supervisord's log lines the quickstart acts on, and following them from where a run began."""

from __future__ import annotations

from services.quickstart_supervisor import Program, SupervisordLog, parse_event, render_config

LINES = """2026-01-01 00:00:00,100 INFO spawned: 'dev-node' with pid 4242
2026-01-01 00:00:01,000 INFO exited: dev-node (exit status 1; not expected)
2026-01-01 00:00:02,000 INFO exited: jit-warmup (exit status 0; expected)
2026-01-01 00:00:03,000 INFO exited: plot-server (terminated by SIGKILL; not expected)
2026-01-01 00:00:04,000 INFO gave up: controller entered FATAL state, too many start retries too quickly
2026-01-01 00:00:05,000 INFO spawnerr: can't find command '/nope'
2026-01-01 00:00:06,000 INFO success: dev-node entered RUNNING state, process has stayed up for > than 2 seconds
"""


def test_parse_events():
    events = [parse_event(line) for line in LINES.splitlines()]
    assert [(e.kind, e.program) for e in events if e] == [
        ("spawned", "dev-node"), ("exited", "dev-node"), ("exited", "jit-warmup"), ("exited", "plot-server"),
        ("gave-up", "controller"), ("spawn-error", "")]
    assert (events[1].status, events[1].expected) == (1, False)
    assert (events[2].status, events[2].expected) == (0, True)
    assert (events[3].status, events[3].signal) == (None, "SIGKILL")
    assert events[5].detail == "can't find command '/nope'"
    assert events[6] is None


def test_log_is_followed_from_this_runs_offset(tmp_path):
    path = tmp_path / "supervisord.log"
    path.write_text("2026-01-01 00:00:00,000 INFO exited: old (exit status 1; not expected)\n")
    log = SupervisordLog(path)  # a reused data dir: earlier runs' lines do not count
    assert log.events() == []
    with open(path, "a") as handle:
        handle.write("2026-01-01 00:01:00,000 INFO exited: dev-node (exit status 2; not expected)\n2026-01-01 00:0")
    assert [(e.program, e.status) for e in log.events()] == [("dev-node", 2)]
    with open(path, "a") as handle:  # the torn line completes
        handle.write("2:00,000 INFO gave up: dev-node entered FATAL state, too many start retries\n")
    assert [(e.kind, e.program) for e in log.events()] == [("gave-up", "dev-node")]
    assert log.events() == []


def test_render_config_escapes_and_oneshot(tmp_path):
    text = render_config(str(tmp_path), [Program("a", ["echo", "100%", "x y"]), Program("w", ["true"], oneshot=True)])
    assert "command=echo 100%% 'x y'" in text
    sections = text.split("[program:")
    assert "autorestart=true" in sections[1] and "autostart=false" in sections[1]
    assert "autorestart=false" in sections[2] and "startsecs=0" in sections[2]
