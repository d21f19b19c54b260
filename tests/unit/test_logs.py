"""segd.logs: the level every process logs at, the test process included."""

from __future__ import annotations

import logging

import structlog

from segd import logs


def test_the_level_is_the_argument_else_the_environment_else_info(monkeypatch):
    monkeypatch.setenv("SEGD_LOG_LEVEL", "WARNING")
    assert logs.level_of("debug") == logging.DEBUG
    assert logs.level_of() == logging.WARNING
    monkeypatch.delenv("SEGD_LOG_LEVEL")
    assert logs.level_of() == logging.INFO
    assert logs.level_of("loud") == logging.INFO


def test_the_test_process_drops_the_daemons_debug_lines_as_segd_run_does():
    # tests/conftest.py's segd_log_level: an in-process daemon's per-batch trace is not
    # printed (it reached the terminal between two tests), unless SEGD_LOG_LEVEL asks for it
    with structlog.testing.capture_logs() as seen:
        structlog.get_logger("segd.router").debug("batch_routed", first_seq=1, last_seq=2)
        structlog.get_logger("segd.router").info("shard_recovered", shard=0)
    debug = logs.level_of() <= logging.DEBUG
    assert [e["event"] for e in seen] == (["batch_routed"] if debug else []) + ["shard_recovered"]
