"""The data directory's lock: one daemon (or ``segd replay``) per ``data_dir`` at a time."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from segd.errors import SegdError

LOCK_FILE = "segd.lock"


class DataDirLock:
    """An exclusive lock on ``data_dir`` (``segd.lock``): one daemon or replay at a time."""

    def __init__(self, data_dir: Path) -> None:
        self.path = Path(data_dir) / LOCK_FILE
        self._fd: int | None = None

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
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
