"""An actor run inside the calling process, behind the handle interface of a Ray actor.

``segd replay`` runs its segment managers this way (``Runtime(rebuild=True)``): they keep
their state in ``data_dir``, on the node of the process that runs the replay, so a Ray
worker process buys them nothing there, and starting one costs ~0.9 CPU-seconds (the
interpreter, Ray, segd, measured per process from /proc) on cores the shards need, plus a
serialisation of every batch both ways. The object is built and every call runs on one
thread of its own, in call order (as Ray runs one caller's calls to an actor); SQLite
releases the GIL while it works. It ends with the process, so a ``kill -9`` of the replay
leaves no writer of it behind.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class InProcess:
    """``handle.method.remote(*args)`` runs ``method`` of the object ``factory()`` builds,
    on this handle's thread, and returns an awaitable of its result (or its exception)."""

    def __init__(self, factory: Callable[[], Any], name: str) -> None:
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=name)
        self._obj: Future[Any] = self._pool.submit(factory)

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    def _call(self, name: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        obj = self._obj
        return asyncio.wrap_future(self._pool.submit(lambda: getattr(obj.result(), name)(*args)))

    def close(self) -> None:
        """Finish the calls already made, then stop the thread."""
        self._pool.shutdown(wait=True)


class _Method:
    def __init__(self, handle: InProcess, name: str) -> None:
        self._handle, self._name = handle, name

    def remote(self, *args: Any) -> asyncio.Future[Any]:
        return self._handle._call(self._name, args)
