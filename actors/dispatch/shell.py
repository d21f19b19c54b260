"""The dispatcher Ray actor: the shell around ``DispatchCore`` that owns the outbox and the
channel workers (DESIGN "Determinism and exactly-once effects").

``submit`` is called by the router, in order, with every campaign trigger after the segment
managers recorded it, the goal events of the batch and the engine clock. It drops triggers
whose message is already in the outbox (a replay, a restart or a shard recovery produce the
same transitions again), decides the rest, and commits them before returning. Snapshots are
taken only after that, so a trigger is never lost between a crash and the next start.

Delivery runs beside it, one asyncio task per channel, so a slow or failing channel never
holds up ingestion or the other channels: take the due messages, check staleness, wait for
the channel's rate limit, claim them (committed), deliver in threads with the channel's
timeout, mark them sent; a failure is retried with exponential backoff and jitter until
``max_attempts``, then dead-lettered. An async Ray actor: its methods share one event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import msgpack
import structlog

from actors.dispatch.channels import Channel, DeliveryError, Message, TokenBucket, open_channel
from actors.dispatch.core import DispatchCore, campaign_key
from actors.dispatch.report import campaign_report, summarize
from actors.dispatch.throttle import opted_out, unsubscribed
from actors.records import DueMessage, GoalEvent, Trigger, decoder
from segd.config import ChannelConfig, Config
from store.outbox import OutboxStore

log = structlog.get_logger("segd.dispatch")

BATCH = 64  # due messages read per round, per channel
IDLE = 0.25  # seconds a worker sleeps when nothing is due (unless woken)
MAX_BACKOFF = 3600.0  # seconds: the longest wait between two attempts
PRUNE_EVERY = 10_000  # triggers between two prunes of the caps and goal windows
STOP_GRACE = 5.0  # seconds deliveries in flight may take to finish at reload or stop


#: ``await traits_of(user)``: the user's current traits, None for a user never seen; raises
#: when they cannot be read now (a shard restarting). Injected by the runtime.
TraitsLookup = Callable[[str], Awaitable[Mapping[str, Any] | None]]

_TRIGGERS = decoder(list[Trigger])
_GOALS = decoder(list[GoalEvent])


def backoff(cfg: ChannelConfig, attempts: int) -> float:
    """Seconds before attempt ``attempts + 1``: exponential with 'equal jitter' (half fixed,
    half random), so retries of many messages do not hit a recovering provider together."""
    d = min(MAX_BACKOFF, cfg.backoff * 2.0 ** max(attempts - 1, 0))
    return d / 2 + random.uniform(0, d / 2)


class Dispatcher:
    """Ray actor (options in segd.daemon.runtime). ``deliver=False`` (``segd replay``) records
    decisions only; the next ``segd run`` delivers them."""

    def __init__(
        self,
        config: Config,
        segment_fingerprints: dict[str, str],
        start_clock: float,
        deliver: bool = True,
        traits_of: TraitsLookup | None = None,
        owner: str | None = None,
    ) -> None:
        """``owner``: the data dir lock's token of the daemon or replay this dispatcher works
        for; its outbox writes (so its sends) stop (Fenced) once another segd holds the lock."""
        self.config = config
        self.traits_of = traits_of  # consent is read again before a deferred or retried send
        self.store = OutboxStore(
            Path(config.daemon.data_dir), synchronous=config.daemon.synchronous, owner=owner
        )
        self.clock = start_clock
        self.core = self._load_core(config, segment_fingerprints)
        self.deliver = deliver
        self._since_prune = 0
        self._wake = {c.name: asyncio.Event() for c in config.channels}
        self._tasks: list[asyncio.Task[None]] = []
        self._channels: dict[str, Channel] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._stopping = False
        self._unconfirmed: list[tuple[str, str]] = []
        released = self._release_claims()
        log.info(
            "dispatcher_started",
            campaigns=len(config.campaigns),
            channels=len(config.channels),
            retried_after_crash=released,
            deliver=deliver,
        )

    async def reload(self, config: Config, segment_fingerprints: dict[str, str], clock: float) -> None:
        """New campaigns, channels and throttle (SIGHUP): stop the channel workers, rebuild the
        core (new campaigns activate at ``clock``), start the workers again. Pending messages
        stay in the outbox and go out on their channel if it still exists."""
        await self._stop_workers()
        self.config = config
        self.clock = max(self.clock, clock)
        self.core = self._load_core(config, segment_fingerprints)
        self._wake = {c.name: asyncio.Event() for c in config.channels}
        self._release_claims()  # deliveries cut off by the grace period
        await self.start()
        log.info("dispatcher_reloaded", campaigns=len(config.campaigns), channels=len(config.channels))

    def _load_core(self, config: Config, segment_fingerprints: dict[str, str]) -> DispatchCore:
        """A core for ``config``: campaigns new (or with a changed segment) activate at the
        current clock; caps and goal exposures still in their windows come from the outbox."""
        keys = {c.name: campaign_key(c, segment_fingerprints.get(c.segment, "")) for c in config.campaigns}
        core = DispatchCore(config, self.store.activations(keys, self.clock))
        core.load(
            self.store.capped_since(self.clock - core.caps.horizon),
            self.store.exposures_since(self.clock - core.goal_horizon),
        )
        return core

    def _release_claims(self) -> int:
        """Claimed messages (a crash, or a stop cut short) go back to pending, to be retried
        under the same id; ``start`` first asks their channel whether they were delivered."""
        self._unconfirmed = self.store.claimed()
        return self.store.release_claims()

    def _confirm_unconfirmed(self) -> None:
        """Messages claimed before a crash go out again (same id), unless their channel shows
        they were delivered: the file channel finds them in its file and they are marked sent,
        so a crash between the write and the outbox update leaves no duplicate line."""
        unconfirmed, self._unconfirmed = self._unconfirmed, []
        by_channel: dict[str, set[str]] = {}
        for mid, name in unconfirmed:
            by_channel.setdefault(name, set()).add(mid)
        for name, ids in by_channel.items():
            channel = self._channels.get(name)
            done = channel.delivered(ids) if channel is not None else set()
            if done:
                self.store.sent([(mid, self.clock) for mid in done])
                log.info("delivered_before_crash", channel=name, messages=len(done))

    async def _stop_workers(self) -> None:
        """Let every worker finish its deliveries in flight for up to STOP_GRACE seconds, then
        cancel it (a message cut off stays claimed: the next start retries it, same id)."""
        self._stopping = True
        for ev in self._wake.values():
            ev.set()
        if self._tasks:
            _, late = await asyncio.wait(self._tasks, timeout=STOP_GRACE)
            for task in late:
                task.cancel()
            for task in late:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._tasks = []
        self._buckets = {}
        self._stopping = False
        for ch in self._channels.values():
            ch.close()
        self._channels = {}

    async def start(self) -> None:
        """Start one delivery worker per channel (no-op with ``deliver=False``)."""
        if not self.deliver or self._tasks:
            return
        for cfg in self.config.channels:
            self._channels[cfg.name] = open_channel(cfg)
            if cfg.rate:
                self._buckets[cfg.name] = TokenBucket(cfg.rate, now=time.monotonic())
        self._confirm_unconfirmed()
        for cfg in self.config.channels:
            self._tasks.append(
                asyncio.get_running_loop().create_task(self._worker(cfg), name=f"channel-{cfg.name}")
            )

    async def submit(self, triggers_blob: bytes, goals_blob: bytes, clock: float) -> int:
        """Decide and record the triggers (encoded ``list[Trigger]``) not seen before, record
        the conversions of the goal events (encoded ``list[GoalEvent]``); advance the engine
        clock to ``clock``. Returns the number of new decisions."""
        if self.deliver and not self._tasks:
            await self.start()  # also after Ray restarted this actor: __init__ ran, start did not
        triggers, goals = _TRIGGERS.decode(triggers_blob), _GOALS.decode(goals_blob)
        if clock > self.clock:
            self.clock = clock
        new = []
        if triggers:
            candidates = self.core.candidates(triggers)
            if candidates:
                known = self.store.known([x.message for x in candidates])
                rows = self.core.decide([x for x in candidates if x.message not in known], self.clock)
                new = self.store.record(rows)
            self._since_prune += len(triggers)
        if goals and (conversions := self.core.convert(goals)):
            self.store.convert(conversions)
        if self._since_prune >= PRUNE_EVERY:
            self._since_prune = 0
            self.core.prune(self.clock)
        for ev in self._wake.values():
            ev.set()
        return len(new)

    # ------------------------------------------------------------------ delivery

    async def _worker(self, cfg: ChannelConfig) -> None:
        """Deliver ``cfg``'s due messages until ``_stopping``; a round in progress finishes
        first, so no delivered message is left unmarked. Never dies of an error: it logs it
        and tries again a little later."""
        while not self._stopping:
            try:
                await self._round(cfg)
            except Exception:
                log.exception("channel_worker_error", channel=cfg.name)
                await asyncio.sleep(1.0)

    async def _round(self, cfg: ChannelConfig) -> None:
        channel = self._channels[cfg.name]
        bucket = self._buckets.get(cfg.name)
        width = 1 if cfg.kind == "file" else 4  # a file takes one writer; network channels overlap
        wake = self._wake[cfg.name]
        wake.clear()
        batch = self.store.due(cfg.name, self.clock, time.time(), BATCH)
        if not batch:
            retry = self.store.next_retry(cfg.name, self.clock)
            wait = IDLE if retry is None else min(IDLE, max(retry - time.time(), 0.01))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), wait)
            return
        for i in range(0, len(batch), width):
            if self._stopping:
                return
            chunk = []
            for m in batch[i : i + width]:
                if self._expired(m) or await self._withdrawn(m):
                    continue
                while bucket is not None and (delay := bucket.take(time.monotonic())) > 0:
                    await asyncio.sleep(delay)
                chunk.append(m)
            if chunk:
                self.store.claim([m.id for m in chunk])
                done = await asyncio.gather(*(self._deliver(cfg, channel, m) for m in chunk))
                self.store.sent([d for d in done if d is not None])

    def _expired(self, m: DueMessage) -> bool:
        """Suppress a due message that may no longer go out: too old, or its campaign gone."""
        c = self.core.campaigns.get(m.campaign)
        reason = (
            "campaign_removed"
            if c is None
            else "stale"
            if c.config.stale_after is not None and self.clock - m.at > c.config.stale_after
            else None
        )
        if reason is not None:
            self._suppress(m, reason)
        return reason is not None

    def _suppress(self, m: DueMessage, reason: str) -> None:
        self.store.suppress(m.id, reason)
        log.info("message_suppressed", id=m.id, campaign=m.campaign, reason=reason)

    async def _withdrawn(self, m: DueMessage) -> bool:
        """A message that waited (quiet hours, retries) goes out only if the user still
        consents: read their current traits (from their shard). Traits that cannot be read
        now (a shard restarting) leave the message pending for the next round."""
        if self.traits_of is None or (m.reason != "quiet_hours" and not m.attempts):
            return False
        try:
            traits = await self.traits_of(m.user)
        except Exception as exc:
            log.info("consent_check_deferred", id=m.id, error=type(exc).__name__)
            return True
        if traits is not None and not unsubscribed(traits) and m.channel not in opted_out(traits):
            return False
        self._suppress(m, "consent")
        return True

    async def _deliver(self, cfg: ChannelConfig, channel: Channel, m: DueMessage) -> tuple[str, float] | None:
        """One attempt. ``(id, at)`` when delivered; otherwise the retry or dead letter is recorded."""
        p = msgpack.unpackb(m.payload, raw=False) if m.payload else {}
        at = self.clock
        msg = Message(
            id=m.id,
            campaign=m.campaign,
            variant=m.variant,
            segment=m.segment,
            user=m.user,
            channel=m.channel,
            transition=m.transition,
            at=at,
            body=p.get("body", ""),
            subject=p.get("subject", ""),
            to=p.get("to", ""),
            fields=tuple((p.get("fields") or {}).items()),
        )
        attempts = m.attempts + 1
        try:
            await asyncio.to_thread(channel.deliver, msg)
            return m.id, at
        except DeliveryError as exc:
            error, retryable = str(exc), exc.retryable
        except Exception as exc:  # a bug in a channel must not stop the worker: retry, and say so
            log.exception("channel_crashed", channel=cfg.name, id=m.id)
            error, retryable = f"{type(exc).__name__}: {exc}", True
        if retryable and attempts < cfg.max_attempts:
            wait = backoff(cfg, attempts)
            self.store.retry(m.id, time.time() + wait, error)
            log.warning(
                "delivery_failed",
                channel=cfg.name,
                id=m.id,
                attempt=attempts,
                retry_in=round(wait, 3),
                error=error,
            )
        else:
            self.store.dead(m.id, error, time.time())
            log.error("message_dead_lettered", channel=cfg.name, id=m.id, attempts=attempts, error=error)
        return None

    # ------------------------------------------------------------------ reports

    async def stats(self) -> dict[str, Any]:
        """The ``messages`` part of the ``stats`` op (see ``summarize``)."""
        return summarize(self.store.counts())

    async def report(self) -> list[dict[str, Any]]:
        """The ``campaigns`` op's answer (see ``actors.dispatch.report.campaign_report``)."""
        activated = {name: c.activated for name, c in self.core.campaigns.items()}
        return campaign_report(
            self.config.campaigns, activated, self.store.report(), self.store.conversions()
        )

    async def forget(self, user: str) -> int:
        """Erase ``user``'s messages from the outbox, the in-memory rules and local channel
        files (``forget``). Returns the outbox messages erased."""
        n = self.store.forget(user)
        self.core.forget(user)
        for channel in self._channels.values():
            await asyncio.to_thread(channel.forget, user)
        if not self._channels:  # not delivering (replay): local files are still ours to clean
            for cfg in self.config.channels:
                if cfg.kind == "file":
                    ch = open_channel(cfg)
                    await asyncio.to_thread(ch.forget, user)
                    ch.close()
        log.info("user_forgotten", messages=n)
        return n

    async def close(self) -> None:
        await self._stop_workers()
        self.store.close()
