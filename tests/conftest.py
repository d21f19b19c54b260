"""Fixtures for unit and integration tests: real local HTTP and SMTP servers for channels,
and the test process's logging."""

import pytest
import structlog

from segd import logs
from tests.servers import http_server, smtp_server  # noqa: F401  (pytest fixtures)


@pytest.fixture(scope="session", autouse=True)
def segd_log_level():
    """The daemons, replays and cores the tests run in this process log at the level ``segd
    run`` logs at (``logs.level_of``: ``$SEGD_LOG_LEVEL``, else info).

    ``segd run`` gets it from ``logs.configure``; ``tests.helpers.DaemonThread`` and the
    in-process replays start the daemon's parts without the CLI, and unconfigured structlog
    logs every level, the per-batch debug trace (``batch_routed``) included. It prints to
    ``sys.stdout`` as it is at the call, and a daemon thread still routing after its test
    (a module's daemon, an ack before the fold) printed straight to the terminal when its
    line fell between two test phases, where pytest's capture is suspended.

    Only the level is set: output stays structlog's default, resolved at each call, so
    ``capfd`` and pytest's capture see every line as before (``logs.configure`` would bind
    the stderr object of the moment).
    """
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logs.level_of()))
    yield
    structlog.reset_defaults()
