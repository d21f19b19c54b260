"""structlog setup: JSON lines when stderr is not a terminal, a console renderer when it is.

Call ``configure()`` once per process: the daemon at start-up, every Ray worker through
``worker_process_setup_hook`` (see ``segd.daemon.runtime``).
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def configure(level: str | None = None, *, json: bool | None = None) -> None:
    """Configure structlog for this process.

    ``level`` defaults to ``$SEGD_LOG_LEVEL`` or ``info``; ``json`` defaults to "stderr is
    not a terminal". Logs go to stderr so stdout stays free for command output.
    """
    level = (level or os.environ.get("SEGD_LOG_LEVEL") or "info").lower()
    if json is None:
        json = not sys.stderr.isatty()
    renderer = structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS.get(level, logging.INFO)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


def worker_setup() -> None:
    """Ray ``worker_process_setup_hook``: the same logging in every worker process."""
    configure()
