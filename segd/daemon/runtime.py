"""The Ray layer: start or join Ray, create the actor pools, wrap every remote call.

This is the only module of ``segd/`` that uses Ray's API (``.remote()``, options, kills),
as Ray Serve keeps its calls in one wrapper layer. Each method awaits its remote call and
returns a record of ``actors.records``; Ray's actor failures become ``ActorDown`` here, so
no caller needs to know Ray's exceptions. Actor options:

- ``UserShard`` x ``[ray] shards``: synchronous actors, one submitter (the router),
  ``max_task_retries=0`` (Ray must never re-run a call: that would reorder the log) and
  ``max_restarts=-1`` (Ray restarts a dead shard; the router then restores it). Placed
  round-robin over the alive nodes with soft affinity (Ray's SPREAD is best-effort and
  may stack them): even when it can be, elsewhere when a node is gone. They need no disk.
- ``SegmentManager`` x ``MANAGERS``: pinned to the daemon's node, where ``data_dir`` is; in a
  rebuild (``segd replay``) they run in the replay's own process (``segd.daemon.inprocess``).
- ``Dispatcher`` x 1: an async actor pinned to the daemon's node (it owns ``outbox.db``),
  one submitter (the router), so its triggers arrive in order; in a rebuild it runs in the
  replay's own process, on an event loop of its own (``segd.daemon.inprocess``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import signal
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping
from typing import Any, TypeVar

import ray
import structlog
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from actors.dispatch.core import CampaignPolicy
from actors.dispatch.report import summarize
from actors.dispatch.shell import Dispatcher
from actors.manager import SegmentManager
from actors.placement import MANAGERS, manager_of, shard_of
from actors.records import (
    GoalEvent,
    PreviewPart,
    Row,
    SegmentPage,
    ShardReply,
    ShardSnapshot,
    ShardStats,
    Transition,
    Trigger,
    UserView,
    decoder,
    encode,
)
from segd import logs
from segd.config import Config
from segd.daemon import inprocess
from segd.daemon.health import ShardWatch
from segd.daemon.inprocess import AsyncInProcess, InProcess
from segd.daemon.workers import dispatcher as dispatcher_worker
from segd.daemon.workers import manager as manager_worker
from segd.daemon.workers import shard as shard_worker
from segd.errors import Unavailable
from store.schema import OUTBOX_FILE

log = structlog.get_logger("segd.runtime")

T = TypeVar("T")

# A token CPU request: with num_cpus=0, Ray (2.60, seen here) ignores soft node affinity and
# may stack every shard on one node; 0.01 lets a node host 100 shards per CPU.
SHARD_OPTIONS = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0.01}
MANAGER_OPTIONS = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0}
DISPATCHER_OPTIONS = {"max_restarts": -1, "max_task_retries": 0, "num_cpus": 0}
RETRY_TIMEOUT = 120.0  # seconds to wait for Ray to bring an actor back

# The shells with segd's logging set up in their worker first (segd.daemon.workers).
_RemoteShard = ray.remote(shard_worker.UserShard)
_RemoteManager = ray.remote(manager_worker.SegmentManager)
_RemoteDispatcher = ray.remote(dispatcher_worker.Dispatcher)
_REPLY = decoder(ShardReply)
_TRANSITIONS = decoder(list[Transition])
_REFUSED = ShardReply(ok=False, applied_seq=-1)


class ActorDown(Unavailable):
    """A remote actor died or is being restarted by Ray."""


async def _get(ref: Any) -> Any:
    """Await a remote call; Ray's actor failures become ActorDown."""
    try:
        return await ref
    except (ray.exceptions.RayActorError, ray.exceptions.ActorUnavailableError) as exc:
        raise ActorDown(f"an actor is restarting ({type(exc).__name__}); retry shortly") from exc


async def retrying(what: str, call: Callable[..., Awaitable[T]], *args: Any) -> T:
    """``await call(*args)``, again while the actor is down, for up to RETRY_TIMEOUT seconds.

    For idempotent calls only (the managers record by transition id, the dispatcher by
    message id): a call that reached the actor before it died may run twice.
    """
    deadline = time.monotonic() + RETRY_TIMEOUT
    while True:
        try:
            return await call(*args)
        except ActorDown as exc:
            if time.monotonic() > deadline:
                raise
            log.warning("actor_retry", actor=what, error=str(exc.__cause__.__class__.__name__))
            await asyncio.sleep(0.2)


#: Signals that Ray's local processes (GCS, raylet, their agents and workers) must not act on.
#: ``kill -TERM -PGID`` and systemd's ``KillMode=control-group`` signal every process of the
#: daemon, and Ray's die at once (the raylet takes the shard workers with it) while the daemon
#: still needs them to drain and snapshot. Ray already starts its processes with SIGINT
#: blocked, so that Ctrl-C reaches only the driver; segd extends that to SIGTERM and SIGHUP.
#: A blocked signal stays pending and is never acted on; ``ray.shutdown`` falls back to
#: SIGKILL after its one-second grace per process, and the kernel's parent-death signal
#: (Ray's fate sharing) still ends them all if the daemon is killed with SIGKILL.
SHIELDED_SIGNALS = frozenset({signal.SIGTERM, signal.SIGHUP})


@contextlib.contextmanager
def _shielded() -> Iterator[None]:
    """Block ``SHIELDED_SIGNALS`` in this thread while Ray forks its processes from it: a
    child inherits its parent thread's signal mask through fork and exec."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, SHIELDED_SIGNALS)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def init_ray(config: Config, *, shield: bool = True) -> bool:
    """Start a local Ray or join a cluster per ``[ray] address``; reuse one already running.

    Returns True if this call started or joined Ray (so ``shutdown_ray`` should leave it).
    With ``shield``, a local Ray's processes ignore SIGTERM and SIGHUP (``SHIELDED_SIGNALS``):
    the daemon stops them itself once it has drained. ``segd replay`` drains nothing on a
    signal (it dies, and its Ray with it), so it starts them unshielded: ``ray.shutdown``
    stops each with SIGTERM and waits up to a second for it before SIGKILL, and shielded
    ones used that whole second each (5.4 s of the command, measured). The thread that calls this must outlive Ray (Ray
    ties its processes' lives to it); the daemon calls it on its default executor. Ray's
    Python logging goes through structlog (``segd.logs.route_stdlib``), in the workers too:
    each actor sets it up as it starts (``segd.daemon.workers``), so the job has no
    ``runtime_env`` and its actors start on the workers the raylet prestarted.
    """
    if ray.is_initialized():
        return False
    logs.route_stdlib("ray")
    # "local", not None: ray.init(address=None) joins the cluster named in
    # /tmp/ray/ray_current_cluster (the last `ray start` on the machine) when there is one.
    address = config.ray.address or "local"
    kwargs: dict[str, Any] = {
        "namespace": "segd",
        "logging_level": "WARNING",
        "log_to_driver": True,
    }
    if address == "local":
        kwargs["include_dashboard"] = False
        if config.ray.num_cpus:
            kwargs["num_cpus"] = config.ray.num_cpus
    with _shielded() if shield else contextlib.nullcontext():
        ray.init(address=address, **kwargs)
    log.info("ray_ready", address=address, nodes=len(_alive_nodes()))
    return True


def _alive_nodes() -> list[str]:
    """The ids of the cluster's nodes that are alive."""
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]  # Ray leaves it untyped
    return [n["NodeID"] for n in nodes if n["Alive"]]


def shutdown_ray(started: bool) -> None:
    if started and ray.is_initialized():
        ray.shutdown()


class ShardTraits:
    """The dispatcher's consent lookup (``actors.dispatch.shell.TraitsLookup``): a user's
    current traits, read from their shard. Pickled into the dispatcher's process.

    It names the shards instead of holding their handles: Ray keeps actor handles passed to
    a restartable actor's constructor as object-store arguments and warns that the restart
    fails if those are lost (ray-project/ray#53727). Names stay valid across restarts."""

    def __init__(self, names: list[str], namespace: str) -> None:
        self.names = names
        self.namespace = namespace
        self._shards: list[Any] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {"names": self.names, "namespace": self.namespace, "_shards": None}

    async def __call__(self, user: str) -> Mapping[str, Any] | None:
        if self._shards is None:
            self._shards = [ray.get_actor(n, namespace=self.namespace) for n in self.names]
        view: UserView | None = await _get(self._shards[shard_of(user, len(self._shards))].user.remote(user))
        return None if view is None else view.traits


class Runtime:
    """Handles on the actor pools; every method awaits its remote call."""

    def __init__(
        self,
        config: Config,
        fingerprints: dict[str, tuple[str, str]],
        *,
        rebuild: bool = False,
        dispatch: bool = True,
        deliver: bool = True,
        start_clock: float = float("-inf"),
        owner: str | None = None,
    ) -> None:
        """``fingerprints``: segment -> (description, fingerprint). ``dispatch`` False: no
        dispatcher (``segd replay --no-dispatch``); ``deliver`` False: decide and record
        messages but send none (``segd replay``). ``start_clock`` is the engine clock now:
        campaigns new in this config fire from it on. ``owner``: the data dir lock's token,
        which fences the managers' and the dispatcher's writes (store.schema.transaction)."""
        self.config = config
        self.owner = owner
        self.n = config.ray.shards
        self.watch = ShardWatch(self.n)  # the shards' health as seen from the daemon's calls
        here = ray.get_runtime_context().get_node_id()
        pinned = NodeAffinitySchedulingStrategy(node_id=here, soft=False)
        hosted = [{s: v for s, v in fingerprints.items() if manager_of(s) == i} for i in range(MANAGERS)]
        data_dir = config.daemon.data_dir
        # A rebuild (``segd replay``) runs its managers in this process (segd.daemon.inprocess):
        # no worker process to start on the cores the shards need.
        self.managers: list[Any] = [
            InProcess(
                functools.partial(SegmentManager, data_dir, hosted[i], True, owner), f"segd-manager-{i}"
            )
            if rebuild
            else _RemoteManager.options(scheduling_strategy=pinned, **MANAGER_OPTIONS).remote(
                data_dir, hosted[i], rebuild, owner
            )
            for i in range(MANAGERS)
        ]
        self._dispatch = dispatch
        self._deliver = deliver
        self._rebuild = rebuild
        self._pinned = pinned
        self.policy = CampaignPolicy(config.campaigns, enabled=dispatch)
        self.dispatcher: Any = None
        others = sorted(n for n in _alive_nodes() if n != here)
        nodes = [here, *others]
        self.shard_names = [f"segd-{uuid.uuid4().hex[:12]}-shard-{i}" for i in range(self.n)]
        self.shards: list[Any] = [
            _RemoteShard.options(
                name=self.shard_names[i],
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id=nodes[i % len(nodes)], soft=True),
                **SHARD_OPTIONS,
            ).remote(config, i, self.n)
            for i in range(self.n)
        ]
        self._traits = ShardTraits(self.shard_names, ray.get_runtime_context().namespace)
        # No campaigns and no outbox yet (no message was ever decided here): no dispatcher.
        # An outbox left by earlier campaigns still needs one, for `forget` and the stats.
        if dispatch and (config.campaigns or (config.daemon.data_dir / OUTBOX_FILE).exists()):
            self._make_dispatcher(config, {s: fp for s, (_, fp) in fingerprints.items()}, start_clock)

    # ------------------------------------------------------------------ shards
    #
    # State-changing shard calls answer a ShardReply; one whose shard is down answers
    # ok=False like a shard that refused the expected seq: either way the router recovers it.

    async def _reply(self, i: int, ref: Any) -> ShardReply:
        token = self.watch.sent(i)
        try:
            reply = _REPLY.decode(await _get(ref))
        except ActorDown as exc:
            self.watch.settled(i, token, answered=False)
            log.warning("shard_unreachable", shard=i, error=exc.__cause__.__class__.__name__)
            return _REFUSED
        self.watch.settled(i, token, answered=True)
        return reply

    async def apply(self, i: int, rows: list[Row], clock: float, expect: int) -> ShardReply:
        return await self._reply(i, self.shards[i].apply.remote(encode(rows), clock, expect))

    async def apply_encoded(self, i: int, rows: bytes, clock: float, expect: int) -> ShardReply:
        """``apply`` of rows already encoded as ``list[Row]`` (``segd replay`` encodes them
        on its reader thread)."""
        return await self._reply(i, self.shards[i].apply.remote(rows, clock, expect))

    async def advance(self, i: int, clock: float, expect: int) -> ShardReply:
        return await self._reply(i, self.shards[i].advance.remote(clock, expect))

    async def forget(self, i: int, user: str, expect: int) -> ShardReply:
        return await self._reply(i, self.shards[i].forget.remote(user, expect))

    async def restore(self, i: int, state: bytes | None) -> int:
        """Load ``state`` (or nothing) into shard ``i``; its applied seq. Raises ActorDown,
        or SnapshotMismatch for a snapshot the shard's model cannot use."""
        applied: int = await _get(self.shards[i].restore.remote(state, self.policy.notify))
        return applied

    async def snapshot(self, i: int, expect: int) -> ShardSnapshot | None:
        """Shard ``i``'s state if it is at ``expect``; None if not, or if it is down."""
        try:
            snap: ShardSnapshot | None = await _get(self.shards[i].snapshot.remote(expect))
        except ActorDown:
            return None
        return snap

    async def snapshot_begin(self, i: int, expect: int) -> bool:
        """Start a snapshot in steps of shard ``i`` (``UserShard.snapshot_begin``); False if
        it is not at ``expect`` or is down."""
        try:
            begun: bool = await _get(self.shards[i].snapshot_begin.remote(expect))
        except ActorDown:
            return False
        return begun

    async def snapshot_step(self, i: int) -> ShardSnapshot | bool:
        """One step of shard ``i``'s snapshot (``UserShard.snapshot_step``); False if none is
        in progress or the shard is down."""
        try:
            step: ShardSnapshot | bool = await _get(self.shards[i].snapshot_step.remote())
        except ActorDown:
            return False
        return step

    async def user(self, user: str) -> UserView | None:
        view: UserView | None = await _get(self.shards[shard_of(user, self.n)].user.remote(user))
        return view

    async def preview(self, when: str) -> list[PreviewPart]:
        """Every shard's ``preview`` of the (already checked) expression ``when``."""
        parts: list[PreviewPart] = await asyncio.gather(*(_get(s.preview.remote(when)) for s in self.shards))
        return parts

    async def shard_stats(self, i: int) -> ShardStats:
        stats: ShardStats = await _get(self.shards[i].stats.remote())
        return stats

    # ------------------------------------------------------------------ managers

    async def record(self, m: int, transitions: list[Transition]) -> list[Transition]:
        """Record ``transitions`` at manager ``m``; the ones it had not seen, in order."""
        return _TRANSITIONS.decode(await _get(self.managers[m].apply.remote(encode(transitions))))

    async def checkpoint_managers(self) -> None:
        """Every manager's recorded transitions durable (the end of ``segd replay``)."""
        await asyncio.gather(*(_get(m.checkpoint.remote()) for m in self.managers))

    async def forget_at_manager(self, m: int, user: str) -> int:
        left: int = await _get(self.managers[m].forget.remote(user))
        return left

    async def sizes(self) -> dict[str, int]:
        """Every segment's size."""
        sizes: dict[str, int] = {}
        for part in await asyncio.gather(*(_get(m.sizes.remote()) for m in self.managers)):
            sizes.update(part)
        return sizes

    async def page(
        self, segment: str, after: str | None, limit: int, at: float | None = None
    ) -> SegmentPage | None:
        """One page of ``segment``'s members, now or at logical time ``at``; None if unknown."""
        page: SegmentPage | None = await _get(
            self.managers[manager_of(segment)].page.remote(segment, after, limit, at)
        )
        return page

    async def history(
        self, segment: str | None, user: str | None, since: float | None, until: float | None, limit: int
    ) -> list[Transition] | None:
        """Transitions of ``segment`` and/or ``user`` with ``since <= at <= until``, in history
        order (at, seq, user, id), at most ``limit``; None for an unknown segment."""
        if segment is not None:
            rows: list[Transition] | None = await _get(
                self.managers[manager_of(segment)].history.remote(segment, user, since, until, limit)
            )
            return rows
        parts = await asyncio.gather(
            *(_get(m.history.remote(None, user, since, until, limit)) for m in self.managers)
        )
        merged = sorted((t for part in parts for t in part), key=lambda t: (t.at, t.seq, t.user, t.id))
        return merged[:limit]

    async def size_points(
        self, segment: str, since: float, step: float, count: int
    ) -> list[tuple[float, int]] | None:
        """``segment``'s size at ``since + k*step`` for k < ``count``; None if unknown."""
        points: list[tuple[float, int]] | None = await _get(
            self.managers[manager_of(segment)].size_points.remote(segment, since, step, count)
        )
        return points

    async def reset_segments(self) -> list[str]:
        """Segments whose stored rows were dropped at start-up, to be rebuilt from the log."""
        parts = await asyncio.gather(*(_get(m.reset_segments.remote()) for m in self.managers))
        return [name for part in parts for name in part]

    # ------------------------------------------------------------------ dispatcher

    def _make_dispatcher(self, config: Config, fingerprints: dict[str, str], clock: float) -> None:
        args = (config, fingerprints, clock, self._deliver, self._traits, self.owner)
        if self._rebuild:
            # ``segd replay`` (deliver=False): it only decides and records in outbox.db, on
            # this node, so it runs here (segd.daemon.inprocess), not in a worker started on
            # the cores the shards need; ``traits_of`` is read only by a delivery.
            self.dispatcher = AsyncInProcess(functools.partial(Dispatcher, *args), "segd-dispatcher")
        else:
            self.dispatcher = _RemoteDispatcher.options(
                scheduling_strategy=self._pinned, **DISPATCHER_OPTIONS
            ).remote(*args)
        self.dispatcher.start.remote()

    async def skip_contexts(self, i: int, decided: frozenset[str]) -> bool:
        """Shard ``i`` (fresh: ``segd replay``) builds contexts only for the campaigns'
        triggers not ``decided``; with no dispatcher none at all. False if it had applied rows."""
        if self.dispatcher is None:
            await _get(self.shards[i].set_notify.remote(frozenset()))
            return True
        done: bool = await _get(self.shards[i].skip_contexts.remote(decided, self.policy.triggers))
        return done

    async def reload_campaigns(self, config: Config, fingerprints: dict[str, str], clock: float) -> None:
        """Apply new ``[campaigns]``, ``[channels]`` and ``[throttle]`` (SIGHUP)."""
        self.config = config
        self.policy = CampaignPolicy(config.campaigns, enabled=self._dispatch)
        await asyncio.gather(*(_get(s.set_notify.remote(self.policy.notify)) for s in self.shards))
        if self.dispatcher is not None:
            await _get(self.dispatcher.reload.remote(config, fingerprints, clock))
        elif self._dispatch and config.campaigns:
            self._make_dispatcher(config, fingerprints, clock)

    async def dispatch(self, triggers: list[Trigger], goals: list[GoalEvent], clock: float) -> int:
        """Hand the dispatcher the triggers and goal events of a batch; its new decisions."""
        decided: int = await _get(self.dispatcher.submit.remote(encode(triggers), encode(goals), clock))
        return decided

    async def forget_messages(self, user: str) -> int:
        erased: int = await _get(self.dispatcher.forget.remote(user))
        return erased

    async def message_stats(self) -> dict[str, Any]:
        """The ``messages`` of ``stats`` (all zero when there is no dispatcher)."""
        if self.dispatcher is None:
            return summarize({})
        stats: dict[str, Any] = await _get(self.dispatcher.stats.remote())
        return stats

    async def campaign_report(self) -> list[dict[str, Any]]:
        if self.dispatcher is None:
            return []
        report: list[dict[str, Any]] = await _get(self.dispatcher.report.remote())
        return report

    async def close_dispatcher(self) -> None:
        """Stop delivery and close the outbox cleanly (before ``close``); a dispatcher that
        is down has nothing to close."""
        if self.dispatcher is not None:
            try:
                await _get(self.dispatcher.close.remote())
            except ActorDown:
                pass

    def close(self) -> None:
        """Kill every actor of this runtime (Ray itself stays up)."""
        extra = [self.dispatcher] if self.dispatcher is not None else []
        for actor in [*self.shards, *self.managers, *extra]:
            if isinstance(actor, (InProcess, AsyncInProcess)):
                inprocess.close(actor)
            else:
                ray.kill(actor, no_restart=True)
