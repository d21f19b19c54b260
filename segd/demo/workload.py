"""A realistic, deterministic workload for segd, streamed over the socket or written to a file.

The shop of the default ``config.toml``: users whose activity follows a Pareto law (a few
users make most events), each visit a session (``session_start``, views of products with a
category and a price, searches, add-to-carts, sometimes a purchase of the cart with a
discount), and ``identify`` calls with a profile (country, device, IANA timezone,
first_name, email, plan) on a user's first visit and now and then later.

As a module (``segd demo`` and ``scripts/bench.py`` reuse it):

- ``workload(seed, users, events, start_ts)`` yields exactly ``events`` batch items, each a
  ``batch`` op item: ``{"type": "track", "user", "event", "props", "ts", "msg_id"}`` or
  ``{"type": "identify", "user", "traits", "ts", "msg_id"}``. The same arguments give the
  same items. ``start_ts=None`` leaves ``ts`` out (the daemon stamps its receive time: live
  traffic, which fills the default wall-clock segments); a number spreads event times over
  ``span`` seconds from it (history, for ``clock = "event"``).
- ``stream(socket, items, connections=, rate=)`` sends items as pipelined ``batch``
  requests over several connections, a user's events always on the same connection (so
  each user's events reach the log in order), at ``rate`` events/s or flat out.
- ``write_items`` / ``read_items``: the same items as JSON lines, for replays.

Its command line is ``scripts/loadgen.py``::

    python scripts/loadgen.py --socket var/segd.sock --users 10000 --events 100000 \\
        --rate 10000 --connections 4 [--seed N] [--out FILE | --from FILE]

prints one line: events sent, seconds, events/s. ``msg_id`` is derived from the seed and
the item's index, so sending the same workload twice logs it once (the second run's items
are acknowledged as duplicates).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import random
import time
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from segd.errors import RemoteError
from segd.wire.client import AsyncClient

DAY = 86400.0
#: Event names; the default config.toml's aggregates read view, add_to_cart, purchase and "*".
EVENTS = ("session_start", "view", "search", "add_to_cart", "purchase")
#: category -> (median price, log-normal sigma)
CATEGORIES = {
    "electronics": (120.0, 0.9),
    "books": (15.0, 0.5),
    "fashion": (45.0, 0.6),
    "home": (60.0, 0.7),
    "garden": (35.0, 0.7),
    "toys": (25.0, 0.6),
    "sports": (50.0, 0.7),
    "beauty": (20.0, 0.5),
    "food": (12.0, 0.4),
}
_CATEGORY_NAMES = tuple(CATEGORIES)
#: country -> (weight, IANA timezones, currency)
COUNTRIES = {
    "US": (30, ("America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles"), "USD"),
    "DE": (12, ("Europe/Berlin",), "EUR"),
    "FR": (10, ("Europe/Paris",), "EUR"),
    "GB": (10, ("Europe/London",), "GBP"),
    "ES": (5, ("Europe/Madrid",), "EUR"),
    "IT": (5, ("Europe/Rome",), "EUR"),
    "NL": (4, ("Europe/Amsterdam",), "EUR"),
    "BR": (6, ("America/Sao_Paulo",), "BRL"),
    "IN": (7, ("Asia/Kolkata",), "INR"),
    "JP": (5, ("Asia/Tokyo",), "JPY"),
    "AU": (3, ("Australia/Sydney",), "AUD"),
    "CA": (3, ("America/Toronto", "America/Vancouver"), "CAD"),
}
_COUNTRY_NAMES = tuple(COUNTRIES)
_COUNTRY_WEIGHTS = tuple(itertools.accumulate(c[0] for c in COUNTRIES.values()))
DEVICES = (("ios", 35), ("android", 35), ("web", 30))
PLANS = (("free", 70), ("plus", 20), ("pro", 10))
FIRST_NAMES = (
    "Ada",
    "Alice",
    "Amir",
    "Ana",
    "Ben",
    "Carla",
    "Chen",
    "Chloe",
    "David",
    "Elena",
    "Emma",
    "Farid",
    "Grace",
    "Hana",
    "Hugo",
    "Ines",
    "Ivan",
    "Jonas",
    "Julia",
    "Kenji",
    "Lea",
    "Liam",
    "Lucas",
    "Maria",
    "Mateo",
    "Mia",
    "Noah",
    "Olga",
    "Omar",
    "Priya",
    "Sofia",
    "Yuki",
)
DISCOUNTS = (0, 0, 0, 5, 10, 20)
PARETO_ALPHA = 1.2  # 80/20-like activity
PARETO_CAP = 200.0  # the most active user is at most 200x the least: heavy users, no single bot

#: One ``batch`` op item (see the module docstring), as sent and as written to a file.
Item = dict[str, Any]
#: One step of a visit: ``(type, event, props_or_traits)``; ``event`` is None for identify.
_Step = tuple[str, str | None, dict[str, Any]]


def _pick(rng: random.Random, table: tuple[tuple[str, int], ...]) -> str:
    return rng.choices([n for n, _ in table], [w for _, w in table])[0]


def profile(seed: int, index: int) -> dict[str, str]:
    """The traits of user ``index``: a pure function of (seed, index), whatever the events."""
    rng = random.Random(seed * 1_000_003 + index)
    country = _COUNTRY_NAMES[bisect.bisect_right(_COUNTRY_WEIGHTS, rng.random() * _COUNTRY_WEIGHTS[-1])]
    _, zones, currency = COUNTRIES[country]
    name = rng.choice(FIRST_NAMES)
    return {
        "country": country,
        "timezone": rng.choice(zones),
        "device": _pick(rng, DEVICES),
        "first_name": name,
        "email": f"{name.lower()}.{index}@example.com",
        "plan": _pick(rng, PLANS),
        "currency": currency,
    }


def _session(
    rng: random.Random, prof: dict[str, str], favorites: tuple[str, ...], new: bool, seq: Iterator[int]
) -> Iterator[_Step]:
    """One visit: ``(type, event, props_or_traits)`` tuples."""
    if new:
        yield "identify", None, {k: v for k, v in prof.items() if k != "currency"}
    elif rng.random() < 0.03:  # a profile update: plan change or a new device
        yield (
            "identify",
            None,
            ({"plan": _pick(rng, PLANS)} if rng.random() < 0.5 else {"device": _pick(rng, DEVICES)}),
        )
    yield "track", "session_start", {"device": prof["device"], "country": prof["country"]}
    cart: list[float] = []
    for _ in range(1 + min(int(rng.expovariate(1 / 4)), 40)):
        category = rng.choice(favorites) if rng.random() < 0.7 else rng.choice(_CATEGORY_NAMES)
        if rng.random() < 0.12:
            yield "track", "search", {"query": category, "results": rng.randrange(0, 200)}
        median, sigma = CATEGORIES[category]
        price = round(rng.lognormvariate(0, sigma) * median, 2)
        product = f"{category[:3]}-{rng.randrange(2000):04d}"
        yield "track", "view", {"category": category, "price": price, "product_id": product}
        if rng.random() < 0.18:
            cart.append(price)
            yield (
                "track",
                "add_to_cart",
                {"category": category, "price": price, "product_id": product, "qty": 1},
            )
    if cart and rng.random() < 0.4:
        discount = rng.choice(DISCOUNTS)
        yield (
            "track",
            "purchase",
            {
                "price": round(sum(cart) * (100 - discount) / 100, 2),
                "discount": discount,
                "items": len(cart),
                "currency": prof["currency"],
                "order_id": f"o{next(seq)}",
            },
        )


def workload(
    seed: int = 1,
    users: int = 10_000,
    events: int = 100_000,
    start_ts: float | None = None,
    *,
    span: float = 30 * DAY,
    user_prefix: str = "u",
    msg_ids: bool = True,
) -> Iterator[Item]:
    """Exactly ``events`` batch items over up to ``users`` users (ids ``{user_prefix}0000042``).

    Deterministic: the same arguments give the same items. Sessions of different users
    interleave as on a real site. ``start_ts=None``: no ``ts`` (the daemon's receive time);
    else event times increase from ``start_ts`` over about ``span`` seconds. ``msg_id`` is
    ``lg-{seed}-{user_prefix}-{index}`` (unique per seed and prefix), or absent.
    """
    if users < 1 or events < 0:
        raise ValueError("users must be >= 1 and events >= 0")
    rng = random.Random(seed)
    width = max(7, len(str(users - 1)))
    cum = list(itertools.accumulate(min(rng.paretovariate(PARETO_ALPHA), PARETO_CAP) for _ in range(users)))
    total = cum[-1]
    seen: dict[int, tuple[dict[str, str], tuple[str, ...]]] = {}
    orders = itertools.count(1)
    live: list[tuple[str, Iterator[_Step]]] = []
    concurrent = max(1, min(users // 10, 64))
    gap = span / max(events, 1)
    ts = start_ts
    i = 0
    while i < events:
        if len(live) < concurrent:
            k = min(bisect.bisect_right(cum, rng.random() * total), users - 1)
            new = k not in seen
            if new:
                # Favorite categories: most views of a user go to one to three of them.
                seen[k] = (profile(seed, k), tuple(rng.sample(_CATEGORY_NAMES, rng.randint(1, 3))))
            prof, favorites = seen[k]
            live.append((f"{user_prefix}{k:0{width}d}", _session(rng, prof, favorites, new, orders)))
            continue
        j = rng.randrange(len(live))
        user, session = live[j]
        step = next(session, None)
        if step is None:
            live[j] = live[-1]
            live.pop()
            continue
        type_, event, data = step
        item: Item = {"type": type_, "user": user}
        if type_ == "track":
            item["event"] = event
            item["props"] = data
        else:
            item["traits"] = data
        if ts is not None:
            ts += rng.expovariate(1 / gap) if gap > 0 else 0.0
            item["ts"] = round(ts, 3)
        if msg_ids:
            item["msg_id"] = f"lg-{seed}-{user_prefix}-{i}"
        yield item
        i += 1


# ---------------------------------------------------------------------- files


def write_items(path: str | Path, items: Iterable[Item]) -> int:
    """Write items as JSON lines (floats round-trip exactly); returns how many."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for item in items:
            f.write(json.dumps(item, separators=(",", ":"), ensure_ascii=False))
            f.write("\n")
            n += 1
    return n


def read_items(path: str | Path) -> Iterator[Item]:
    """The items of a ``write_items`` file, in order, read lazily."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


# ---------------------------------------------------------------------- streaming


@dataclass
class StreamStats:
    """What ``stream`` did. ``seconds``: from the first send to the last acknowledgement."""

    sent: int = 0  # items acknowledged (logged, duplicate or refused)
    duplicates: int = 0  # acknowledged as already logged (same msg_id)
    errors: int = 0  # items refused (bad_request...)
    overloaded: int = 0  # whole batches refused with `overloaded`, then retried
    batches: int = 0
    seconds: float = 0.0
    first_error: str | None = None

    @property
    def eps(self) -> float:
        """Items acknowledged per second; 0.0 when no time was measured."""
        return self.sent / self.seconds if self.seconds > 0 else 0.0


#: ``on_ack(items, results, sent_at)``: a batch was acknowledged; ``sent_at`` is the
#: ``time.monotonic()`` just before it was written to the socket.
OnAck = Callable[[list[Item], list[dict[str, Any]], float], None]
#: One connection's batches, from ``_produce`` to ``_sender``; None ends the stream.
_Batches = asyncio.Queue[list[Item] | None]


async def stream(
    socket: str | Path,
    items: Iterable[Item],
    *,
    connections: int = 4,
    rate: float = 0.0,
    batch: int = 1000,
    window: int = 8,
    flush: float = 0.01,
    on_ack: OnAck | None = None,
    tcp: str | None = None,
    token: str | None = None,
) -> StreamStats:
    """Send ``items`` as ``batch`` requests over ``connections`` connections; wait for every ack.

    A user's items always go over the same connection, in order. Each connection keeps at
    most ``window`` batches in flight. ``rate`` > 0 paces the whole stream to that many
    events/s (what is due is sent every ``flush`` seconds, so batches are small); 0 sends
    flat out in batches of ``batch``. A batch refused as ``overloaded`` is retried after a
    pause; any other error (a lost connection...) is raised.
    """
    if connections < 1 or batch < 1 or window < 1:
        raise ValueError("connections, batch and window must be >= 1")
    stats = StreamStats()
    clients = [await AsyncClient.connect(socket, tcp=tcp, token=token) for _ in range(connections)]
    queues: list[_Batches] = [asyncio.Queue(maxsize=window) for _ in clients]
    tasks = [
        asyncio.create_task(_sender(c, q, window, stats, on_ack))
        for c, q in zip(clients, queues, strict=True)
    ]
    started = time.monotonic()
    try:
        tasks.append(asyncio.create_task(_produce(items, queues, rate, batch, flush)))
        await asyncio.gather(*tasks)
    finally:
        stats.seconds = time.monotonic() - started
        for t in tasks:
            t.cancel()
        for c in clients:
            await c.close()
    return stats


async def _produce(
    items: Iterable[Item], queues: list[_Batches], rate: float, batch: int, flush: float
) -> None:
    n = len(queues)
    bufs: list[list[Item]] = [[] for _ in range(n)]
    loop = asyncio.get_running_loop()
    step = max(1, int(rate * flush)) if rate > 0 else 0
    t0 = loop.time()
    for count, item in enumerate(items, 1):
        # Partition by user, as a fleet of producers keyed by user would: per-user order holds.
        i = zlib.crc32(item["user"].encode()) % n if n > 1 else 0
        buf = bufs[i]
        buf.append(item)
        if len(buf) >= batch:
            await queues[i].put(buf)
            bufs[i] = []
        if step and count % step == 0:
            for j, b in enumerate(bufs):
                if b:
                    await queues[j].put(b)
                    bufs[j] = []
            delay = t0 + count / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
    for j, b in enumerate(bufs):
        if b:
            await queues[j].put(b)
        await queues[j].put(None)


async def _sender(
    client: AsyncClient, queue: _Batches, window: int, stats: StreamStats, on_ack: OnAck | None
) -> None:
    slots = asyncio.Semaphore(window)
    pending: set[asyncio.Task[None]] = set()
    failed: list[BaseException] = []

    def done(task: asyncio.Task[None]) -> None:
        pending.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            failed.append(exc)

    async def one(chunk: list[Item]) -> None:
        try:
            while True:
                sent_at = time.monotonic()
                try:
                    reply = await client.batch(chunk)
                    break
                except RemoteError as exc:
                    if exc.code != "overloaded":
                        raise
                    stats.overloaded += 1
                    await asyncio.sleep(0.05)
            results = reply["results"]
            stats.batches += 1
            stats.sent += len(results)
            for r in results:
                if "error" in r:
                    stats.errors += 1
                    stats.first_error = stats.first_error or f"{r['error']['code']}: {r['error']['message']}"
                elif r.get("duplicate"):
                    stats.duplicates += 1
            if on_ack is not None:
                on_ack(chunk, results, sent_at)
        finally:
            slots.release()

    while (chunk := await queue.get()) is not None:
        await slots.acquire()
        if failed:  # a batch failed (lost connection...): stop, the caller sees why
            raise failed[0]
        task = asyncio.create_task(one(chunk))
        pending.add(task)
        task.add_done_callback(done)
    if pending:
        await asyncio.wait(pending)
    if failed:
        raise failed[0]
