"""The shard memory figures' second, honest half: RSS growth per user of a shard process.

tracemalloc (``benchlib.shard_memory``) counts the bytes Python's allocator hands out and
still holds; a process's resident set also holds what that leaves out: pymalloc arenas kept
after the transient objects of a fold or a restore are freed, the allocator's slack,
fragmentation. So each population is measured again in a fresh process (no tracemalloc,
whose own traces would swell the RSS), the way a shard worker holds it:

- ``live``: the bench's base population (loadgen events over 30 days) applied by a
  ``ShardCore`` in batches, as a shard applies them; RSS after minus before, per user;
- ``restored``: ``size`` users cloned from the base users' snapshot states (as
  ``shard_memory`` does) and restored by ``ShardCore.restore`` from the snapshot blob, as a
  restarted shard does, in a process of its own that reads the blob first (held throughout,
  so it is not counted); RSS after minus before, per user.

RSS is read from ``/proc/self/statm`` after a full ``gc.collect()``. Usage:
``python scripts/bench_memory.py all CONFIG SIZE... --base USERS EVENTS`` prints JSON
``{"live": {...}, "sizes": {SIZE: {...}}}``; each size runs in its own child process.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (HERE.parent, HERE):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from benchlib import T0, _rows, cloned_snapshot, live_shard  # noqa: E402

from actors.model import Model  # noqa: E402
from actors.records import Row  # noqa: E402
from actors.shard.core import ShardCore  # noqa: E402
from segd.config import load_config  # noqa: E402
from segd.demo.workload import DAY, workload  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss(trim: bool = False) -> int:
    """This process's resident set in bytes, after a full collection (and, with ``trim``,
    after glibc's ``malloc_trim(0)`` returned the free heap pages it can to the system)."""
    gc.collect()
    if trim:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def _live(model: Model, rows: list[Row]) -> tuple[ShardCore, int]:
    """Apply ``rows`` to a fresh ShardCore as a shard does; the core and its RSS growth."""
    before = rss()
    shard = live_shard(model, rows)
    return shard, rss() - before


def measure(config: Path, size: int | None, *, base_users: int, base_events: int, seed: int = 7) -> dict:
    """RSS growth per user: of the live base population (``size`` None), or of ``size``
    users restored from clones of its snapshot states; also after ``malloc_trim`` (what the
    process could give back: the rest is held by the users' objects and pymalloc's arenas)."""
    model = Model.compile(load_config(config))
    rows = list(_rows(workload(seed, base_users, base_events, T0, span=30 * DAY, user_prefix="m")))
    before = rss()
    shard, grown = _live(model, rows)
    if size is None:
        return {
            "users": shard.users,
            "rss_bytes_per_user": round(grown / shard.users),
            "rss_trimmed_bytes_per_user": round((rss(trim=True) - before) / shard.users),
        }
    base = shard.snapshot()
    del shard, rows
    blob = cloned_snapshot(model, base, size)
    del base
    # Restored in a process of its own: this one's arenas still hold the freed base shard and
    # the cloned states, which a restore here would fill without growing the RSS.
    with tempfile.NamedTemporaryFile(suffix=".snapshot") as f:
        f.write(blob)
        f.flush()
        done = subprocess.run(
            [sys.executable, __file__, "restore", str(config), str(size), "--blob", f.name],
            capture_output=True,
            text=True,
            check=True,
        )
    result: dict = json.loads(done.stdout)
    return result


def restored(config: Path, blob_path: Path) -> dict:
    """RSS growth per user of ``ShardCore.restore`` of the snapshot in ``blob_path``, in this
    fresh process (the blob is read first and held throughout, so it is not counted)."""
    model = Model.compile(load_config(config))
    blob = blob_path.read_bytes()
    before = rss()
    shard = ShardCore.restore(model, blob)
    grown = rss() - before
    trimmed = rss(trim=True) - before
    return {
        "users": shard.users,
        "rss_bytes_per_user": round(grown / shard.users),
        "rss_trimmed_bytes_per_user": round(trimmed / shard.users),
    }


def shard_rss(config: Path, sizes: list[int], *, base_users: int, base_events: int) -> dict:
    """``measure`` for the live population and each of ``sizes``, each in a fresh process."""

    def child(size: int | None) -> dict:
        args = [
            sys.executable,
            __file__,
            "one",
            str(config),
            str(size or 0),
            "--base",
            str(base_users),
            str(base_events),
        ]
        done = subprocess.run(args, capture_output=True, text=True, check=True)
        result: dict = json.loads(done.stdout)
        return result

    return {"live": child(None), "sizes": {str(s): child(s) for s in sizes}}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("what", choices=["all", "one", "restore"])
    p.add_argument("config", type=Path)
    p.add_argument("sizes", type=int, nargs="+")
    p.add_argument("--blob", type=Path, help="restore: the snapshot file to restore")
    p.add_argument("--base", type=int, nargs=2, metavar=("USERS", "EVENTS"), default=(2_000, 30_000))
    args = p.parse_args(argv)
    users, events = args.base
    if args.what == "restore":
        out = restored(args.config, args.blob)
    elif args.what == "one":
        out = measure(args.config, args.sizes[0] or None, base_users=users, base_events=events)
    else:
        out = shard_rss(args.config, args.sizes, base_users=users, base_events=events)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
