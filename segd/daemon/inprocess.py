"""Actors run inside the calling process, behind the handle interface of a Ray actor.

``segd replay`` runs its segment managers and its dispatcher this way
(``Runtime(rebuild=True)``): they keep their state in ``data_dir``, on the node of the
process that runs the replay, so a Ray worker process buys them nothing there, and starting
one costs ~0.9-1.3 CPU-seconds (the interpreter, Ray, segd, measured per process from
/proc) on cores the shards need, plus a serialisation of every batch both ways. They end
with the process, so a ``kill -9`` of the replay leaves no writer of them behind.

- ``InProcess``: a synchronous object (the segment manager), built and called on one thread
  of its own, in call order (as Ray runs one caller's calls to an actor); SQLite releases
  the GIL while it works.
- ``AsyncInProcess``: an asynchronous object (the dispatcher: its methods are coroutines
  sharing one loop, and it may start tasks of its own), built and run on an event loop of
  its own, on a thread of its own. Calls start in call order, as an async Ray actor starts
  one caller's calls, and interleave where they await, as they would there.

Either way ``handle.method.remote(*args)`` returns an awaitable of the method's result (or
its exception, the factory's if building the object failed), for the caller's loop. As with
Ray, a call that is made runs: cancelling the caller's await does not cancel the call.
``close(handle)`` finishes the calls already made, then stops the thread. (It is a function,
not a method: every public name of a handle is a method of its object, ``close`` included,
as the dispatcher's ``close.remote()``.)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
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

    def _close(self) -> None:
        self._pool.shutdown(wait=True)


class AsyncInProcess:
    """``handle.method.remote(*args)`` runs the coroutine ``method`` of the object
    ``factory()`` builds, on this handle's event loop and thread, and returns an awaitable of
    its result (or its exception) for the caller's loop."""

    def __init__(self, factory: Callable[[], Any], name: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._obj: Any = None
        self._error: BaseException | None = None
        self._calls: set[concurrent.futures.Future[Any]] = set()
        self._lock = threading.Lock()  # _calls is added to by callers, emptied on the loop
        self._closed = False
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()
        # Built on the loop, before any call: the first callback it runs.
        self._loop.call_soon_threadsafe(self._build, factory)

    def _build(self, factory: Callable[[], Any]) -> None:
        try:
            self._obj = factory()
        except BaseException as exc:  # every call raises it, as every call to a dead actor fails
            self._error = exc

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(self, name)

    async def _run(self, name: str, args: tuple[Any, ...]) -> Any:
        if self._error is not None:
            raise self._error
        return await getattr(self._obj, name)(*args)

    def _call(self, name: str, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        caller = asyncio.get_running_loop()
        result: asyncio.Future[Any] = caller.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._thread.name} is closed")
            # Tasks are created in the order of these callbacks, so calls start in call order.
            call = asyncio.run_coroutine_threadsafe(self._run(name, args), self._loop)
            self._calls.add(call)
        call.add_done_callback(lambda done: self._settled(done, caller, result))
        return result

    def _settled(
        self,
        done: concurrent.futures.Future[Any],
        caller: asyncio.AbstractEventLoop,
        result: asyncio.Future[Any],
    ) -> None:
        """On this handle's thread: the call ``done`` finished; its outcome to the caller's loop."""
        with self._lock:
            self._calls.discard(done)
        if caller.is_closed():
            return
        try:
            caller.call_soon_threadsafe(_copy, done, result)
        except RuntimeError:  # the caller's loop closed meanwhile: nobody awaits the result
            pass

    def _close(self) -> None:
        """Finish the calls already made, cancel the tasks the object left running (a
        dispatcher's channel workers, if it has not stopped them), then stop the loop."""
        with self._lock:
            self._closed = True
            calls = list(self._calls)
        concurrent.futures.wait(calls)
        asyncio.run_coroutine_threadsafe(_cancel_tasks(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def close(handle: InProcess | AsyncInProcess) -> None:
    """Finish the calls already made to ``handle``, then stop its thread."""
    handle._close()


def _copy(done: concurrent.futures.Future[Any], result: asyncio.Future[Any]) -> None:
    """On the caller's loop: ``done``'s outcome into ``result`` (unless the caller cancelled it)."""
    if result.cancelled():
        return
    exc = done.exception() if not done.cancelled() else asyncio.CancelledError()
    if exc is not None:
        result.set_exception(exc)
    else:
        result.set_result(done.result())


async def _cancel_tasks() -> None:
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _Method:
    def __init__(self, handle: InProcess | AsyncInProcess, name: str) -> None:
        self._handle, self._name = handle, name

    def remote(self, *args: Any) -> asyncio.Future[Any]:
        return self._handle._call(self._name, args)
