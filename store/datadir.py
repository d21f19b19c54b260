"""The data directory's lock: one daemon (or ``segd replay``) per ``data_dir`` at a time."""

from __future__ import annotations

import fcntl
import os
import secrets
from pathlib import Path

from segd.errors import SegdError

LOCK_FILE = "segd.lock"


class DataDirLock:
    """An exclusive lock on ``data_dir`` (``segd.lock``): one daemon or replay at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None
        #: This holder's fencing token (pid and 64 random bits), new at every acquire: the
        #: workers of this daemon or replay write the derived stores with it, and a store
        #: claimed by a later holder refuses their writes (store.schema.transaction).
        self.token = ""

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
        self.token = f"{os.getpid()}-{secrets.token_hex(8)}"
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{self.token}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def holder_token(data_dir: Path) -> str | None:
    """The fencing token of the lock's current (or last) holder: the second line of
    ``segd.lock``, which holds the holder's pid, then its token; None if there is none."""
    try:
        lines = (Path(data_dir) / LOCK_FILE).read_text().splitlines()
    except OSError:
        return None
    return lines[1] if len(lines) > 1 else None
