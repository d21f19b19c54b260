"""The query ops over large states, for ``scripts/bench.py``: ``segment at=`` and ``sizes``
over a long transition history, and ``preview`` over many users.

- history: a ``segments.db`` holding ``per_user`` transitions for each of ``users`` users in
  each of two segments is written through ``store.segments.SegmentStore.apply`` in batches of
  1,000, as the segment manager records them (that rate is reported too), then a ``segd run``
  on it answers ``segment at=T`` (a page of 1,000 and the size) at several T, and ``sizes``
  with 100 and 10,000 points, through the socket, beside ``segments`` (socket + one call to
  the segment manager actor, the floor of any of them). ``dense``: stays of uniformly random
  length over a year (about half the users are members at any time); ``sparse``: stays of
  about an hour (a few dozen members at any time).
- preview: a ``segd run`` whose shards start from snapshots holding ``users`` users (the
  states of a loadgen population cloned under new ids, as the memory probe does), placed on
  their shards; ``preview`` of an expression over aggregates, traits and segments.

Nothing here prints; every function returns numbers (seconds, or milliseconds where named).
"""

from __future__ import annotations

import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import msgpack

HERE = Path(__file__).resolve().parent
for _p in (HERE.parent, HERE):  # segd's packages, and the sibling scripts, from a plain checkout
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import benchlib  # noqa: E402
from benchlib import _rows  # noqa: E402

from actors.model import Model  # noqa: E402
from actors.placement import shard_of  # noqa: E402
from actors.records import Transition  # noqa: E402
from actors.shard.core import ShardCore  # noqa: E402
from segd.config import load_config  # noqa: E402
from segd.demo.workload import DAY, workload  # noqa: E402
from segd.wire.client import Client  # noqa: E402
from store.segments import SegmentStore  # noqa: E402
from store.snapshots import Snapshot, SnapshotStore  # noqa: E402

T0 = 1_700_000_000.0
YEAR = 365 * DAY
PREVIEW_WHEN = "views_7d >= 3 or (exists(traits.email) and revenue >= 100 and not segment('high_value'))"


def history_config(run_dir: Path, address: str) -> tuple[Path, Path]:
    """A config whose two segments hold the synthetic history (their rules never run: the
    log stays empty). Returns (config path, socket)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    socket = run_dir / "segd.sock"
    path = run_dir / "config.toml"
    path.write_text(
        f'[daemon]\ndata_dir = "{run_dir / "data"}"\nsocket = "{socket}"\nclock = "event"\n\n'
        f'[ray]\naddress = "{address}"\nshards = 1\n\n'
        '[aggregates.n]\nkind = "count"\n\n'
        '[segments.dense]\nwhen = "n >= 1"\n\n[segments.sparse]\nwhen = "n >= 2"\n'
    )
    return path, socket


def _history(segment: str, users: int, per_user: int, seed: int) -> list[Transition]:
    rng = random.Random(seed)
    events: list[tuple[float, str, str]] = []
    for u in range(users):
        user = f"user{u:07d}"
        if segment == "dense":
            times = sorted(rng.uniform(T0, T0 + YEAR) for _ in range(per_user))
        else:
            times = sorted(
                t
                for s in (rng.uniform(T0, T0 + YEAR) for _ in range(per_user // 2))
                for t in (s, s + rng.expovariate(1 / 3600))
            )
        events += ((t, user, "enter" if j % 2 == 0 else "exit") for j, t in enumerate(times))
    events.sort()
    return [
        Transition(id=f"{segment}-{i:012d}", segment=segment, user=u, kind=k, at=t, seq=i + 1)
        for i, (t, u, k) in enumerate(events)
    ]


def build_history(config: Path, users: int, per_user: int, seed: int = 1) -> dict:
    """Write both segments' histories to the config's ``segments.db`` as the manager would;
    returns transitions written and the store's recording rate."""
    cfg = load_config(config)
    versions = Model.compile(cfg).segment_fingerprints
    store = SegmentStore(cfg.daemon.data_dir)
    store.reset([], versions)  # the manager then keeps the rows: they fit the config
    out: dict = {"users": users, "transitions_per_segment": users * per_user}
    seconds = 0.0
    for segment, s in (("dense", seed), ("sparse", seed + 1)):
        rows = _history(segment, users, per_user, s)
        started = time.perf_counter()
        for i in range(0, len(rows), 1000):
            store.apply(rows[i : i + 1000])
        seconds += time.perf_counter() - started
    store.close()
    out["record_tps"] = 2 * users * per_user / seconds
    return out


def _median_ms(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def history_latency(socket: Path, reps: int = 15) -> dict:
    """Median milliseconds of ``segment at=T`` (limit 1,000) at 10/50/90% of the year and after
    it, and of ``sizes`` over the year with 100 and 10,000 points, for both segments."""
    out: dict = {}
    with Client(socket, timeout=120) as c:
        for segment in ("dense", "sparse"):
            res: dict = {}
            for name, frac in (("10%", 0.1), ("50%", 0.5), ("90%", 0.9), ("end", 2.0)):
                at = T0 + frac * YEAR
                page = c.segment(segment, at=at, limit=1000)
                res[f"at_{name}_ms"] = _median_ms(
                    lambda at=at, s=segment: c.segment(s, at=at, limit=1000), reps
                )
                res[f"at_{name}_size"] = page["size"]
            for points in (100, 10_000):
                step = YEAR / (points - 1)
                res[f"sizes_{points}_ms"] = _median_ms(
                    lambda step=step, s=segment: c.sizes(s, T0, T0 + YEAR, step), max(3, reps // 3)
                )
            out[segment] = res
        # the floor of any segment query: socket + one call to the segment manager actor
        out["manager_rtt_ms"] = _median_ms(c.segments, reps)
    return out


def build_preview(config: Path, users: int, base_users: int, base_events: int, seed: int = 7) -> dict:
    """Snapshots for the config's shards holding ``users`` users, each on its own shard, with
    states cloned from a loadgen population applied to one ShardCore."""
    cfg = load_config(config)
    model = Model.compile(cfg)
    shard = ShardCore(model)
    rows = list(_rows(workload(seed, base_users, base_events, T0, span=30 * DAY, user_prefix="m")))
    for i in range(0, len(rows), 2000):
        shard.apply_batch(rows[i : i + 2000])
    base = msgpack.unpackb(shard.snapshot(), raw=False)
    states = [state for _, state in base["users"]]
    n = cfg.ray.shards
    parts: list[list[list]] = [[] for _ in range(n)]
    for j in range(users):
        user = f"p{j:07d}"
        parts[shard_of(user, n)].append([user, states[j % len(states)]])
    # Without recorded segment versions the daemon would rebuild every segment from the (empty)
    # log and drop these snapshots; membership rows are not needed by preview.
    store = SegmentStore(cfg.daemon.data_dir)
    store.reset([], model.segment_fingerprints)
    store.close()
    snapshots = SnapshotStore(cfg.daemon.data_dir)
    for i, part in enumerate(parts):
        blob = msgpack.packb({**base, "applied_seq": 0, "users": part}, use_bin_type=True)
        snapshots.put(Snapshot(i, n, model.fingerprint, 0, blob))
    snapshots.close()
    return {"users": users, "shards": n, "base_users": shard.users}


def preview_latency(socket: Path, reps: int = 3) -> dict:
    """Median seconds of ``preview`` of PREVIEW_WHEN, and its answer's size."""
    with Client(socket, timeout=600) as c:
        size = c.preview(PREVIEW_WHEN)["size"]
        seconds = _median_ms(lambda: c.preview(PREVIEW_WHEN), reps) / 1000
        users = c.stats()["users"]
    return {"seconds": seconds, "size": size, "users": users, "expression": PREVIEW_WHEN}


def phase(tmp: Path, address: str, plan: dict, out: dict, say: Callable[[str], None]) -> None:
    """bench.py's queries phase: ``out["history"]`` and ``out["preview"]``, each from its own
    ``segd run`` on a data dir prepared here."""
    config, sock = history_config(tmp / "history", address)
    say(f"history: {plan['history_users'] * 10:,} transitions in each of 2 segments, through the store")
    built = build_history(config, plan["history_users"], per_user=10)
    with benchlib.DaemonProcess(config, sock, tmp / "history" / "daemon.log"):
        say("history: segment at= and sizes latency")
        out["history"] = {**built, **history_latency(sock)}
    config, sock = benchlib.write_config(tmp / "preview", shards=2, address=address, clock="event")
    say(f"preview: {plan['preview_users']:,} users in snapshots of 2 shards")
    built = build_preview(config, plan["preview_users"], *plan["memory_base"])
    with benchlib.DaemonProcess(config, sock, tmp / "preview" / "daemon.log"):
        say("preview: latency")
        out["preview"] = {**built, **preview_latency(sock)}


def rows(r: dict) -> list[tuple[str, str, str, str, str]]:
    """bench.py's table rows for the phase: (measure, result, beside, ratio, goal)."""
    hist, pv = r["history"], r["preview"]
    out = []
    for segment in ("dense", "sparse"):
        h = hist[segment]
        out.append(
            (
                f"segment at=, {segment}, {hist['transitions_per_segment']:,} transitions",
                " / ".join(f"{h[f'at_{q}_ms']:.1f}" for q in ("10%", "50%", "90%", "end")) + " ms",
                f"{hist['manager_rtt_ms']:.1f} ms segments",
                "",
                "",
            )
        )
        out.append(
            (
                f"  sizes, 100 / 10,000 points, {segment}",
                f"{h['sizes_100_ms']:.1f} / {h['sizes_10000_ms']:.1f} ms",
                "",
                "",
                "",
            )
        )
    out.append(("  segment store records (1,000 a batch)", f"{hist['record_tps']:,.0f}/s", "", "", ""))
    out.append(
        (
            f"preview, {pv['users']:,} users, {pv['shards']} shards",
            f"{pv['seconds']:.2f} s",
            "",
            "",
            "seconds",
        )
    )
    return out
