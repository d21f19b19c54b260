"""Stream a realistic shop workload into segd, or write it to a file (``segd.demo.workload``).

    python scripts/loadgen.py --socket var/segd.sock --users 10000 --events 100000 \\
        --rate 10000 --connections 4 [--seed N] [--out FILE | --from FILE]

prints one line: events sent, seconds, events/s. The generator itself lives in the package
(``segd.demo.workload``) so that ``segd demo`` and ``scripts/bench.py`` share it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout without `pip install -e`
    sys.path.insert(0, str(ROOT))

from segd.demo.workload import DAY, read_items, stream, workload, write_items  # noqa: E402

__all__ = ["DAY", "read_items", "stream", "workload", "write_items"]

# ---------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="loadgen.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--socket", default="var/segd.sock", help="daemon socket (default var/segd.sock)")
    p.add_argument("--users", type=int, default=10_000)
    p.add_argument("--events", type=int, default=100_000, help="items to generate (tracks and identifies)")
    p.add_argument("--rate", type=float, default=0.0, help="target events/s; 0 = flat out (default)")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--batch", type=int, default=1000, help="items per batch request (at most 10,000)")
    p.add_argument("--window", type=int, default=8, help="batches in flight per connection")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument(
        "--start-ts",
        default="live",
        metavar="TS|live",
        help="event time of the first event (seconds since the epoch), or 'live' (default): "
        "no ts, the daemon stamps its receive time",
    )
    p.add_argument(
        "--span",
        type=float,
        default=30 * DAY,
        help="seconds of event time the workload covers when --start-ts is a time (default 30 days)",
    )
    p.add_argument("--user-prefix", default="u", help="user ids are PREFIX0000042 (default 'u')")
    group = p.add_mutually_exclusive_group()
    group.add_argument(
        "--out", type=Path, help="write the workload to FILE (JSON lines) instead of sending it"
    )
    group.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="FILE",
        help="send the items of FILE (written by --out) instead of generating them",
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start_ts = None if args.start_ts == "live" else float(args.start_ts)
    items = (
        read_items(args.source)
        if args.source
        else workload(
            args.seed, args.users, args.events, start_ts, span=args.span, user_prefix=args.user_prefix
        )
    )
    if args.out:
        started = time.monotonic()
        n = write_items(args.out, items)
        seconds = time.monotonic() - started
        summary = {"written": n, "file": str(args.out), "seconds": round(seconds, 3)}
        print(json.dumps(summary) if args.json else f"wrote {n} events to {args.out} in {seconds:.2f} s")
        return 0
    from segd.errors import ConnectError

    try:
        stats = asyncio.run(
            stream(
                args.socket,
                items,
                connections=args.connections,
                rate=args.rate,
                batch=args.batch,
                window=args.window,
            )
        )
    except ConnectError as exc:
        print(f"loadgen: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({**asdict(stats), "seconds": round(stats.seconds, 3), "eps": round(stats.eps)}))
    else:
        extra = f"; {stats.duplicates} duplicates" if stats.duplicates else ""
        extra += f"; {stats.errors} refused ({stats.first_error})" if stats.errors else ""
        extra += f"; {stats.overloaded} overloaded retries" if stats.overloaded else ""
        print(
            f"sent {stats.sent} events in {stats.seconds:.2f} s: {stats.eps:,.0f} events/s "
            f"over {args.connections} connections{extra}"
        )
    return 1 if stats.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
