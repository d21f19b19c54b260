"""The Ray layer: start or join Ray, create the actor pools, wrap every remote call.

This is the only module of ``segd/`` that uses Ray's API (``.remote()``, options, kills),
as Ray Serve keeps its calls in one wrapper layer. Actor options live here:

- ``UserShard`` x ``[ray] shards``: synchronous actors, one submitter (the router),
  ``max_task_retries=0`` (Ray must never re-run a call: that would reorder the log) and
  ``max_restarts=-1`` (Ray restarts a dead shard; the router then restores it). Placed
  round-robin over the alive nodes with soft affinity (Ray's SPREAD is best-effort and
  may stack them): even when it can be, elsewhere when a node is gone. They need no disk.
- ``SegmentManager`` x ``MANAGERS``: pinned to the daemon's node, where ``data_dir`` is.
- ``Dispatcher`` x 1: an async actor pinned to the daemon's node (it owns ``outbox.db``),
  one submitter (the router), so its triggers arrive in order.
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Awaitable
from typing import Any

import msgpack
import ray
import structlog
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.dispatch.shell import Dispatcher, summarize
from actors.manager import SegmentManager
from actors.shard.core import UserShard
from segd.config import Config
from store.schema import OUTBOX_FILE

log = structlog.get_logger("segd.daemon.runtime")

#: Segment-manager actors. One SQLite writer for membership and history is plenty for the
#: transition rates segd sees (transitions are much rarer than events).
MANAGERS = 1
# A token CPU request: with num_cpus=0, Ray (2.60, seen here) ignores soft node affinity and
# may stack every shard on one node; 0.01 lets a node host 100 shards per CPU.
SHARD_OPTIONS = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0.01}
MANAGER_OPTIONS = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0}
DISPATCHER_OPTIONS = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0}

_RemoteShard = ray.remote(UserShard)
_RemoteManager = ray.remote(SegmentManager)
_RemoteDispatcher = ray.remote(Dispatcher)


def shard_of(user: str, shards: int) -> int:
    """The shard hosting ``user``: stable across processes and machines (not ``hash()``)."""
    return zlib.crc32(user.encode()) % shards


def manager_of(segment: str) -> int:
    return zlib.crc32(segment.encode()) % MANAGERS


def init_ray(config: Config) -> bool:
    """Start a local Ray or join a cluster per ``[ray] address``; reuse one already running.

    Returns True if this call started or joined Ray (so ``shutdown_ray`` should leave it).
    """
    if ray.is_initialized():
        return False
    address = config.ray.address or None
    kwargs: dict[str, Any] = {
        "namespace": "segd",
        "runtime_env": {"worker_process_setup_hook": "segd.logs.worker_setup"},
        "logging_level": "WARNING",
        "log_to_driver": True,
    }
    if address is None:
        kwargs["include_dashboard"] = False
        if config.ray.num_cpus:
            kwargs["num_cpus"] = config.ray.num_cpus
    ray.init(address=address, **kwargs)
    log.info("ray_ready", address=address or "local", nodes=len([n for n in ray.nodes() if n["Alive"]]))
    return True


class Runtime:
    """Handles on the actor pools; every method returns an awaitable of the remote result."""

    def __init__(
        self,
        config: Config,
        fingerprints: dict[str, tuple[str, str]],
        *,
        rebuild: bool = False,
        dispatch: bool = True,
        deliver: bool = True,
        start_clock: float = float("-inf"),
    ) -> None:
        """``dispatch`` False: no dispatcher (``segd replay --no-dispatch``); ``deliver`` False:
        decide and record messages but send none (``segd replay``). ``start_clock`` is the
        engine clock now: campaigns new in this config fire from it on."""
        self.config = config
        self.n = config.ray.shards
        here = ray.get_runtime_context().get_node_id()
        pinned = NodeAffinitySchedulingStrategy(node_id=here, soft=False)
        self.managers = [
            _RemoteManager.options(scheduling_strategy=pinned, **MANAGER_OPTIONS).remote(
                config.daemon.data_dir, {s: v for s, v in fingerprints.items() if manager_of(s) == i}, rebuild
            )
            for i in range(MANAGERS)
        ]
        self._dispatch = dispatch
        self._deliver = deliver
        self._pinned = pinned
        self._set_campaigns(config)
        self.dispatcher = None
        others = sorted(n["NodeID"] for n in ray.nodes() if n["Alive"] and n["NodeID"] != here)
        nodes = [here, *others]
        self.shards = [
            _RemoteShard.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=nodes[i % len(nodes)], soft=True),
                **SHARD_OPTIONS,
            ).remote(config, i, self.n)
            for i in range(self.n)
        ]
        # No campaigns and no outbox yet (no message was ever decided here): no dispatcher.
        # An outbox left by earlier campaigns still needs one, for `forget` and the stats.
        if dispatch and (config.campaigns or (config.daemon.data_dir / OUTBOX_FILE).exists()):
            self._make_dispatcher(config, {s: fp for s, (_, fp) in fingerprints.items()}, start_clock)

    # shards

    def apply(self, i: int, rows: list, clock: float, expect: int) -> Awaitable:
        # Rows cross the Ray boundary as one msgpack blob: cloudpickle spends ~7 us per
        # namedtuple in the daemon (the busiest process), msgpack ~0.7 us.
        return self.shards[i].apply.remote(msgpack.packb(rows), clock, expect)

    def advance(self, i: int, clock: float, expect: int) -> Awaitable:
        return self.shards[i].advance.remote(clock, expect)

    def restore(self, i: int, state: bytes | None) -> Awaitable:
        return self.shards[i].restore.remote(state, self.notify)

    def snapshot(self, i: int, expect: int) -> Awaitable:
        return self.shards[i].snapshot.remote(expect)

    def forget(self, i: int, user: str, expect: int) -> Awaitable:
        return self.shards[i].forget.remote(user, expect)

    def forget_at_manager(self, m: int, user: str) -> Awaitable:
        return self.managers[m].forget.remote(user)

    def forget_messages(self, user: str) -> Awaitable:
        return self.dispatcher.forget.remote(user)

    def user(self, user: str) -> Awaitable:
        return self.shards[shard_of(user, self.n)].user.remote(user)

    def shard_stats(self, i: int) -> Awaitable:
        return self.shards[i].stats.remote()

    def shard_node(self, i: int) -> Awaitable:
        return self.shards[i].node.remote()

    # managers

    def record(self, m: int, transitions: list) -> Awaitable:
        return self.managers[m].apply.remote(transitions)

    def sizes(self, m: int) -> Awaitable:
        return self.managers[m].sizes.remote()

    def page(self, segment: str, after: str | None, limit: int) -> Awaitable:
        return self.managers[manager_of(segment)].page.remote(segment, after, limit)

    def history(self, segment: str, since: float, until: float | None) -> Awaitable:
        return self.managers[manager_of(segment)].history.remote(segment, since, until)

    def reset_segments(self, m: int) -> Awaitable:
        return self.managers[m].reset_segments.remote()

    # dispatcher

    def _set_campaigns(self, config: Config) -> None:
        # Campaign triggers: (segment, kind) of each campaign; goal events feed conversions;
        # shards attach the user's context to transitions of the campaigns' segments.
        on = self._dispatch
        self.triggers = frozenset((c.segment, c.on) for c in config.campaigns) if on else frozenset()
        self.goal_events = frozenset(c.goal.event for c in config.campaigns if c.goal) if on else frozenset()
        self.notify = frozenset(c.segment for c in config.campaigns) if on else frozenset()

    def _make_dispatcher(self, config: Config, fingerprints: dict[str, str], clock: float) -> None:
        self.dispatcher = _RemoteDispatcher.options(
            scheduling_strategy=self._pinned, **DISPATCHER_OPTIONS
        ).remote(config, fingerprints, clock, self._deliver, self.shards)
        self.dispatcher.start.remote()

    async def reload_campaigns(self, config: Config, fingerprints: dict[str, str], clock: float) -> None:
        """Apply new ``[campaigns]``, ``[channels]`` and ``[throttle]`` (SIGHUP)."""
        self.config = config
        self._set_campaigns(config)
        await asyncio.gather(*(s.set_notify.remote(self.notify) for s in self.shards))
        if self.dispatcher is not None:
            await self.dispatcher.reload.remote(config, fingerprints, clock)
        elif self._dispatch and config.campaigns:
            self._make_dispatcher(config, fingerprints, clock)

    async def message_stats(self) -> dict:
        """The ``messages`` of ``stats`` (all zero when there is no dispatcher)."""
        return await self.dispatcher.stats.remote() if self.dispatcher is not None else summarize({})

    async def campaign_report(self) -> list:
        return await self.dispatcher.report.remote() if self.dispatcher is not None else []

    def dispatch(self, triggers: list, goals: list, clock: float) -> Awaitable:
        return self.dispatcher.submit.remote(triggers, goals, clock)

    async def close_dispatcher(self) -> None:
        """Stop delivery and close the outbox cleanly (before ``close``)."""
        if self.dispatcher is not None:
            try:
                await self.dispatcher.close.remote()
            except Exception as exc:
                if not is_actor_failure(exc):
                    raise

    def close(self) -> None:
        """Kill every actor of this runtime (Ray itself stays up)."""
        extra = [self.dispatcher] if self.dispatcher is not None else []
        for actor in [*self.shards, *self.managers, *extra]:
            ray.kill(actor, no_restart=True)


def shutdown_ray(started: bool) -> None:
    if started and ray.is_initialized():
        ray.shutdown()


def is_actor_failure(exc: BaseException) -> bool:
    """Errors meaning a remote actor died or is restarting (recoverable by the router)."""
    return isinstance(exc, (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError))
