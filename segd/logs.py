"""structlog setup: JSON lines when stderr is not a terminal, a console renderer when it is.

Call ``configure()`` once per process: the daemon at start-up, every Ray worker as its
actor starts (``worker_setup``, see ``segd.daemon.workers``).

Libraries that log through the standard ``logging`` module (Ray's Python side) are bridged
with ``route_stdlib``: their records become structlog events (``library_log`` with
``logger`` and ``message``), so the terminal shows one format. Messages known to need no
action from an operator (``QUIET``) go to debug level instead of being shown.
"""

from __future__ import annotations

import logging
import os
import sys

import structlog

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}

#: Library messages that ask nothing of a segd operator, by the text they start with, and why.
QUIET = (
    # Ray wants to install its own SIGTERM handler in the driver; segd installs its own
    # (drain, then stop) on the event loop, so Ray's is not wanted.
    "SIGTERM handler is not set because current thread is not the main thread",
    # A local Ray started by segd generates its own token and segd passes it along itself.
    "Token authentication is enabled for this Ray cluster",
)


def level_of(level: str | None = None) -> int:
    """The ``logging`` level ``configure`` filters at: ``level``, else ``$SEGD_LOG_LEVEL``,
    else info (a name it does not know is info too)."""
    name = (level or os.environ.get("SEGD_LOG_LEVEL") or "info").lower()
    return _LEVELS.get(name, logging.INFO)


def configure(level: str | None = None, *, json: bool | None = None) -> None:
    """Configure structlog for this process.

    ``level``: see ``level_of``; ``json`` defaults to "stderr is not a terminal". Logs go
    to stderr so stdout stays free for command output.
    """
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
        wrapper_class=structlog.make_filtering_bound_logger(level_of(level)),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


class StructlogHandler(logging.Handler):
    """A ``logging`` handler that re-emits each record as a structlog ``library_log`` event,
    at the record's level, or at debug for a message in ``QUIET``."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
            level = logging.DEBUG if message.startswith(QUIET) else record.levelno
            fields: dict[str, object] = {"logger": record.name, "message": message}
            if record.exc_info:
                fields["exc_info"] = record.exc_info
            structlog.get_logger(record.name).log(level, "library_log", **fields)
        except Exception:  # a log line must never break the caller
            self.handleError(record)


def route_stdlib(name: str) -> None:
    """Send logger ``name``'s records (and its children's) through structlog instead of the
    handlers it had; its level is left as it is."""
    lib = logging.getLogger(name)
    lib.handlers[:] = [StructlogHandler()]
    lib.propagate = False


def worker_setup() -> None:
    """The same logging in every Ray worker process, Ray's own Python logging included:
    each actor calls it first as it starts (``segd.daemon.workers``). It also works as a
    ``worker_process_setup_hook`` (the tests' Ray sessions use it so)."""
    configure()
    route_stdlib("ray")
