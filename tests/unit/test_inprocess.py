"""The in-process actor handles (segd.daemon.inprocess) behave as a Ray actor's handle does
for the replay's callers: calls start in call order, results and exceptions reach the
caller's loop, a call once made runs even if its caller stops waiting, and ``close``
finishes the calls made before it stops the thread."""

import asyncio
import threading

import pytest

from segd.daemon.inprocess import AsyncInProcess, InProcess, close


class Log:
    """An async object like the dispatcher: coroutine methods on one loop, a task of its own."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.loop = asyncio.get_running_loop()  # built on its handle's loop
        self.thread = threading.current_thread().name
        self.seen: list[int] = []
        self.gate = gate
        self.background: asyncio.Task[None] | None = None
        self.cancelled = False

    async def add(self, x: int) -> int:
        assert asyncio.get_running_loop() is self.loop
        self.seen.append(x)
        return len(self.seen)

    async def slow(self, x: int) -> int:
        if self.gate is not None:
            await asyncio.to_thread(self.gate.wait)
        self.seen.append(x)
        return x

    async def fail(self, message: str) -> None:
        raise ValueError(message)

    async def spawn(self) -> None:
        self.background = asyncio.get_running_loop().create_task(self._forever())

    async def _forever(self) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled = True
            raise

    async def close(self) -> str:
        return "the object's own close"

    async def state(self) -> tuple[str, list[int]]:
        return self.thread, list(self.seen)


def test_async_calls_run_in_call_order_on_their_own_loop_and_thread():
    async def main():
        h = AsyncInProcess(Log, "test-async")
        try:
            got = await asyncio.gather(*(h.add.remote(i) for i in range(200)))
            thread, seen = await h.state.remote()
            own = await h.close.remote()  # the object's method, not the handle's
        finally:
            close(h)
        return got, thread, seen, own

    got, thread, seen, own = asyncio.run(main())
    assert own == "the object's own close"
    assert seen == list(range(200))
    assert got == list(range(1, 201))
    assert thread == "test-async" and thread != threading.current_thread().name


def test_async_exception_reaches_the_caller_and_the_object_goes_on():
    async def main():
        h = AsyncInProcess(Log, "test-async")
        try:
            with pytest.raises(ValueError, match="no disk"):
                await h.fail.remote("no disk")
            return await h.add.remote(7)
        finally:
            close(h)

    assert asyncio.run(main()) == 1


def test_async_factory_failure_fails_every_call():
    def broken() -> Log:
        raise OSError("outbox unreadable")

    async def main():
        h = AsyncInProcess(broken, "test-async")
        try:
            for _ in range(2):
                with pytest.raises(OSError, match="outbox unreadable"):
                    await h.add.remote(1)
        finally:
            close(h)

    asyncio.run(main())


def test_async_close_finishes_the_calls_made_even_if_nobody_waits():
    gate = threading.Event()
    box: dict[str, Log] = {}

    def build() -> Log:
        box["obj"] = Log(gate)
        return box["obj"]

    async def main():
        h = AsyncInProcess(build, "test-async")
        waited = h.slow.remote(1)
        h.slow.remote(2)  # never awaited
        waited.cancel()  # the caller stops waiting: the call still runs
        threading.Timer(0.2, gate.set).start()
        close(h)  # returns once both calls are done
        # both ran (in either order: each waits for the gate on a thread of its own)
        assert sorted(box["obj"].seen) == [1, 2]
        with pytest.raises(RuntimeError, match="closed"):
            h.add.remote(3)

    asyncio.run(main())


def test_async_close_cancels_tasks_the_object_left_running():
    box: dict[str, Log] = {}

    def build() -> Log:
        box["obj"] = Log()
        return box["obj"]

    async def main():
        h = AsyncInProcess(build, "test-async")
        await h.spawn.remote()
        close(h)

    asyncio.run(main())
    assert box["obj"].cancelled and box["obj"].background is not None and box["obj"].background.done()


class Counter:
    def __init__(self) -> None:
        self.seen: list[int] = []

    def add(self, x: int) -> int:
        self.seen.append(x)
        return len(self.seen)


def test_sync_calls_in_order_and_close_finishes_them():
    box: dict[str, Counter] = {}

    def build() -> Counter:
        box["obj"] = Counter()
        return box["obj"]

    async def main():
        h = InProcess(build, "test-sync")
        got = await asyncio.gather(*(h.add.remote(i) for i in range(50)))
        h.add.remote(50)  # never awaited
        close(h)
        return got

    assert asyncio.run(main()) == list(range(1, 51))
    assert box["obj"].seen == list(range(51))
