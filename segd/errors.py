"""The error hierarchy: one root, a few shallow branches.

Foreign errors (sqlite3, msgpack, OSError...) are translated at the boundary with
``raise ... from exc`` so callers only ever catch ``SegdError`` subclasses.
"""

from __future__ import annotations


class SegdError(Exception):
    """Root of every error segd raises on purpose."""


class ConfigError(SegdError):
    """The config file is invalid.

    ``problems`` holds one ``(file, table, message)`` triple per problem, so ``segd check``
    can report all of them at once; ``str()`` renders them as ``file: table: message`` lines.
    """

    def __init__(self, problems: list[tuple[str, str, str]]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(f"{f}: {t}: {m}" for f, t, m in self.problems))


class CodedError(SegdError):
    """An error with one of SPEC section 2's codes and a message for a person."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(f"{code}: {message}")


class ProtocolError(CodedError):
    """A client sent something the protocol does not allow, or the request cannot be served
    now (``overloaded``, ``unavailable``, ``internal``); ``message`` names the field at fault."""


class StoreError(SegdError):
    """A durable store (SQLite file under data_dir) failed or holds unexpected data."""


class Fenced(SegdError):
    """A store refused a write because another segd now holds the data dir's lock: the
    writer belongs to a daemon or replay that is gone (``kill -9``) and must stop."""


class RemoteError(CodedError):
    """A daemon answered a client request with an error frame (``code``, ``message``)."""


class ConnectError(SegdError):
    """A client could not reach the daemon's socket."""


class Unavailable(SegdError):
    """A part of segd cannot answer now (an actor is being restarted, the daemon is draining):
    the request changed nothing and may be retried. Answered with the ``unavailable`` code."""
