"""Micro-benchmark of the pure user-actor core: one ShardCore, no Ray, no I/O.

Feeds synthetic log rows (views with categories and prices, carts, purchases, identifies)
for many users through ``ShardCore.apply_batch`` with the default config.toml model, topped
up to 20 segments, and reports:

- events/s through ``apply_batch`` (bodies pre-packed: msgpack decode is included, as in a
  shard; building the rows is not);
- bytes per user: Python heap allocated by the shard after all users exist, minus before,
  divided by users (tracemalloc, in a second, untimed pass);
- snapshot bytes per user, and bytes per user of a shard restored from that snapshot
  (tracemalloc; restored must not be bigger than live);
- the heavy case: ``--heavy-users`` users holding ``--heavy-events`` events each inside the
  30-day windows (the same generator, late and out-of-order times included), in events per
  CPU-second beside the light run's: a user with 10^5 events must cost per event what a
  light user does (``heavy_ratio`` near 1 or above).

Usage: python scripts/bench_core.py [--events N] [--users U] [--batch B] [--heavy-users H]
       [--heavy-events E] [--json]
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import itertools
import json
import random
import sys
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path

import msgpack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from actors.model import Model  # noqa: E402
from actors.records import Row  # noqa: E402
from actors.shard.core import ShardCore  # noqa: E402
from segd.config import SegmentConfig, load_config  # noqa: E402

DAY = 86400.0
T0 = 1_700_000_000.0
TARGET_SEGMENTS = 20
CATEGORIES = ["electronics", "books", "garden", "toys", "fashion", "sports", "food", "beauty"]
# Realistic extra rules over the default aggregates, used to reach TARGET_SEGMENTS.
EXTRA_SEGMENTS = [
    "views_7d >= 10",
    "revenue >= 100 and revenue < 500",
    "traits.plan == 'pro'",
    "categories_30d >= 5",
    "carts_1d >= 3",
    "exists(last_purchase_at) and days_since(last_purchase_at) < 7",
    "purchases >= 5",
    "segment('electronics_fans') and segment('high_value')",
    "traits.country == 'DE' and views_7d >= 1",
    "discounted_purchases_30d >= 1 and purchases_30d >= 2",
    "exists(traits.email) and not segment('high_value')",
]


def build_model(config_path: Path) -> Model:
    """The config's model, with synthetic segments added up to TARGET_SEGMENTS."""
    config = load_config(config_path)
    missing = max(0, TARGET_SEGMENTS - len(config.segments))
    extra = tuple(
        SegmentConfig(name=f"bench_{i}", when=EXTRA_SEGMENTS[i % len(EXTRA_SEGMENTS)]) for i in range(missing)
    )
    return Model.compile(dataclasses.replace(config, segments=config.segments + extra))


def make_rows(n: int, users: int, days: float, seed: int) -> Iterator[tuple]:
    """n log rows over ``days`` of clock time; ~2% of events arrive late or out of order."""
    rng = random.Random(seed)
    step = days * DAY / n
    clock = T0
    for seq in range(1, n + 1):
        clock += rng.expovariate(1 / step)
        user = f"user-{rng.randrange(users):06d}"  # a new str per row, as after deserialization
        ts = clock - (rng.uniform(0, 2 * DAY) if rng.random() < 0.02 else rng.uniform(0, 2))
        r = rng.random()
        if r < 0.70:
            body = {"category": rng.choice(CATEGORIES), "price": round(rng.uniform(5, 400), 2)}
            yield Row(seq, user, "track", "view", ts, clock, msgpack.packb(body))
        elif r < 0.85:
            body = {"category": rng.choice(CATEGORIES), "price": round(rng.uniform(5, 400), 2), "qty": 1}
            yield Row(seq, user, "track", "add_to_cart", ts, clock, msgpack.packb(body))
        elif r < 0.90:
            body = {
                "price": round(rng.uniform(10, 600), 2),
                "discount": rng.choice([0, 0, 0, 5, 10, 20]),
                "order_id": f"o{seq}",
            }
            yield Row(seq, user, "track", "purchase", ts, clock, msgpack.packb(body))
        else:
            body = {
                "first_name": rng.choice(["Ann", "Bob", "Cyd", "Dee"]),
                "email": f"{user}@example.com",
                "plan": rng.choice(["free", "pro", None]),
                "country": rng.choice(["DE", "FR", "US"]),
            }
            yield Row(seq, user, "identify", None, ts, clock, msgpack.packb(body))


def batches(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    it = iter(rows)
    while batch := list(itertools.islice(it, size)):
        yield batch


def feed(model: Model, batched: Iterable[list[Row]]) -> tuple[ShardCore, int]:
    """Apply every batch to a new shard; return it and the number of transitions."""
    shard = ShardCore(model)
    transitions = 0
    for batch in batched:
        transitions += len(shard.apply_batch(batch))
    return shard, transitions


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=200_000)
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--days", type=float, default=30.0, help="clock span of the synthetic log")
    p.add_argument("--batch", type=int, default=2_000, help="rows per apply_batch call")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--config", type=Path, default=ROOT / "config.toml")
    p.add_argument("--heavy-users", type=int, default=3, help="users of the heavy case (0: skip it)")
    p.add_argument("--heavy-events", type=int, default=100_000, help="events per heavy user")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)

    model = build_model(args.config)
    prepared = list(batches(make_rows(args.events, args.users, args.days, args.seed), args.batch))

    gc.collect()
    start, cpu_start = time.perf_counter(), time.process_time()
    shard, transitions = feed(model, prepared)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    blob = shard.snapshot()
    snapshot = len(blob)
    users = shard.users
    del shard, prepared

    # Second pass for memory: tracemalloc slows allocation, so it is not timed. Rows are made
    # batch by batch inside the traced region and dropped after use, so what stays allocated
    # is what the shard keeps (user ids, states, the deadline heap), as in a real shard.
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    mem_shard, _ = feed(model, batches(make_rows(args.events, args.users, args.days, args.seed), args.batch))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    del mem_shard
    gc.collect()
    before_restore = tracemalloc.get_traced_memory()[0]
    restored = ShardCore.restore(model, blob)
    gc.collect()
    after_restore = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert restored.users == users
    del restored, blob

    heavy: dict[str, int | float] = {}
    if args.heavy_users:
        n = args.heavy_users * args.heavy_events
        prepared = list(batches(make_rows(n, args.heavy_users, args.days, args.seed), args.batch))
        gc.collect()
        cpu_start = time.process_time()
        _, heavy_transitions = feed(model, prepared)
        heavy_cpu = time.process_time() - cpu_start
        del prepared
        heavy = {
            "heavy_users": args.heavy_users,
            "heavy_events_per_user": args.heavy_events,
            "heavy_events_per_cpu_s": round(n / heavy_cpu),
            "heavy_transitions": heavy_transitions,
            "heavy_ratio": round((n / heavy_cpu) / (args.events / cpu), 2),
        }

    result = {
        "events": args.events,
        "users": users,
        "segments": len(model.segs),
        "aggregates": len(model.aggs),
        "seconds": round(elapsed, 3),
        "events_per_s": round(args.events / elapsed),
        # CPU time: steadier than wall time on a shared machine
        "events_per_cpu_s": round(args.events / cpu),
        "transitions": transitions,
        "bytes_per_user": round((after - before) / users),
        "snapshot_bytes_per_user": round(snapshot / users),
        "restored_bytes_per_user": round((after_restore - before_restore) / users),
        **heavy,
    }
    if args.json:
        print(json.dumps(result))
    else:
        width = max(map(len, result))
        for key, value in result.items():
            print(
                f"{key:<{width}}  {value:>12,}" if isinstance(value, int) else f"{key:<{width}}  {value:>12}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
