"""The data directory's lock: one daemon (or ``segd replay``) per ``data_dir`` at a time.

The lock file holds its holder's pid (its ``token``). Workers that write derived stores for a
holder (the segment managers) call ``fence(data_dir, token)`` inside each write transaction,
before its COMMIT: once a new process holds the lock (the old one was killed, its workers
still running), their commits are refused with ``Fenced``. A new holder writes its pid before
it opens any store, and a refused or earlier commit holds SQLite's write lock until it ends,
so every write of an old holder's worker lands before the new holder's first one, or never.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from segd.errors import SegdError

LOCK_FILE = "segd.lock"


class Fenced(SegdError):
    """The data-dir lock has a new holder: this worker's holder is gone; it must not write."""


def fence(data_dir: Path, token: str) -> None:
    """Raise Fenced unless the holder of ``data_dir``'s lock is still ``token``."""
    try:
        holder = (Path(data_dir) / LOCK_FILE).read_text().strip()
    except OSError:
        holder = ""
    if holder != token:
        raise Fenced(f"{data_dir} is now held by {holder or 'nobody'}, not {token}: write refused")


class DataDirLock:
    """An exclusive lock on ``data_dir`` (``segd.lock``): one daemon or replay at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None
        self.token = ""  # the holder's pid once acquired (see ``fence``)

    def acquire(self) -> DataDirLock:
        """Take the lock or raise SegdError naming the holder's lock file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise SegdError(
                f"{self.path.parent} is in use by another segd (lock {self.path} is held)"
            ) from exc
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        self.token = str(os.getpid())
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
