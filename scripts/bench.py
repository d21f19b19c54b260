"""segd benchmarks against the physical limits of this machine (DESIGN.md "Performance targets").

One run measures, side by side, on temporary data dirs with the bench config (the default
config.toml's 10 aggregates and its segments, topped up to 20 segments):

- ingest: events/s from the socket to the durable ack (``--connections`` connections,
  pipelined ``batch`` requests of ``--batch`` events, flat out), against a plain sqlite3
  append of the same rows into a fresh log file with the same schema and durability (WAL,
  synchronous=FULL), ``--batch`` rows per transaction. Also ingest+apply: until ``sync``.
- HTTP ingest (scripts/bench_http.py): the same daemon's Segment-compatible ingest, by the
  Python SDK with its default batching and by raw clients posting 500-message batches,
  beside the socket figure, with the daemon's CPU-seconds per 1,000 events for each.
- freshness: event -> transition latency at ``--rate`` events/s (default 10,000), and again
  unloaded at ``--low-rate`` (default 1,000): from just before the batch holding the event
  is written to the socket (the load generator flushes what is due every 10 ms) to the
  moment a ``subscribe "*"`` connection, read by its own thread, receives the transition
  frame it caused. The daemon sends that frame once the segment manager has recorded the
  transition, so this is one hop after the manager: it includes group commit, routing,
  the shard, the manager and the fan-out to subscribers. Every transition whose ``seq`` is
  an event of the phase is a sample (enters and exits). Events carry no ``ts`` (live
  traffic) and the daemon runs ``clock = "wall"``. Above the daemon's apply throughput
  the latency is queueing and grows with the length of the run.
- replay: events/s rebuilt from the log by ``segd replay`` on the stopped daemon's data
  dir (from its ``recovery_started`` to its ``recovery_done`` log line: Ray worker start-up
  excluded; the whole command is shown too), against a raw scan of the same log (SELECT
  in seq order, paged as EventLog.scan does, plus msgpack decoding of every body).
- memory: bytes per user in one ``ShardCore`` with the bench model (tracemalloc): live for
  a loadgen population, then for 10^5 and 10^6 users (10^4 and 10^5 with ``--quick``)
  cloned from its snapshot states and restored; snapshot bytes per user beside them.
- scale-out: ingest+apply events/s (first send to ``sync``) with 1, 2, 4 shards, and with
  shards on a 2-node ``ray.cluster_utils.Cluster``.
- queries (scripts/bench_queries.py): ``segment at=`` and ``sizes`` latency over a history of
  10^6 transitions per segment (10^5 with ``--quick``), beside a ``segments`` call; the
  segment store's recording rate; ``preview`` over 10^6 users (10^5) in 2 shards.

All daemons run as ``python -m segd run`` subprocesses joined to one private Ray cluster
started by the bench (so Ray starts once), and everything is stopped at the end.

Usage: python scripts/bench.py [--quick] [--json] [--shards N] [--rate EPS] [--low-rate EPS]
       [--connections N] [--batch N] [--window N] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import socket as socketlib
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
for _p in (HERE.parent, HERE):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

import bench_http  # noqa: E402
import bench_queries  # noqa: E402
import benchlib  # noqa: E402

from segd.demo.workload import stream, workload  # noqa: E402
from segd.errors import ConnectError  # noqa: E402
from segd.wire.client import AsyncClient, Client  # noqa: E402

#: Sizes per mode. Full mode takes several minutes on 2 cores; quick stays under 2.
PLANS = {
    "quick": {
        "events": 40_000,
        "users": 20_000,
        "fresh_seconds": 2.5,
        "calm_seconds": 2.0,
        "memory_sizes": (10_000, 100_000),
        "memory_base": (1_000, 12_000),
        "scale_shards": (1, 2),
        "cluster_shards": (2,),
        "cluster_events": 20_000,
        "history_users": 10_000,
        "preview_users": 100_000,
    },
    "full": {
        "events": 300_000,
        "users": 100_000,
        "fresh_seconds": 20.0,
        "calm_seconds": 10.0,
        "memory_sizes": (100_000, 1_000_000),
        "memory_base": (10_000, 150_000),
        "scale_shards": (1, 2, 4),
        "cluster_shards": (2, 4),
        "cluster_events": 300_000,
        "history_users": 100_000,
        "preview_users": 1_000_000,
    },
}


_T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"bench [{time.perf_counter() - _T0:5.1f} s]: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- phases


async def _send_and_sync(sock: Path, items: list[dict], args: argparse.Namespace) -> dict:
    """Flat-out ingest; returns ack and ack+apply (until sync) rates and the daemon's stats."""
    started = time.perf_counter()
    st = await stream(sock, items, connections=args.connections, batch=args.batch, window=args.window)
    async with await AsyncClient.connect(sock) as c:
        await c.sync()
        applied = time.perf_counter() - started
        stats = await c.stats()
    if st.errors or st.sent != len(items):
        raise RuntimeError(
            f"ingest: {st.sent} of {len(items)} acknowledged, {st.errors} refused: {st.first_error}"
        )
    return {
        "events": st.sent,
        "ack_seconds": st.seconds,
        "ack_eps": st.eps,
        "overloaded": st.overloaded,
        "applied_seconds": applied,
        "applied_eps": st.sent / applied,
        "commits": stats["commits"],
        "commit_ms_avg": stats["commit_ms_avg"],
        "events_per_commit": st.sent / max(stats["commits"], 1),
        "users": stats["users"],
        "segments": stats["segments"],
    }


class Subscriber(threading.Thread):
    """A ``subscribe "*"`` connection in its own thread, so receive times are taken as frames
    arrive, not when the load generator's event loop gets around to them."""

    def __init__(self, sock: Path) -> None:
        super().__init__(name="bench-subscriber", daemon=True)
        self.client = Client(sock, timeout=30)
        self.ready = threading.Event()  # the daemon acknowledged the subscription
        self.received: list[tuple[int, str, float]] = []  # (seq, kind, monotonic receive time)

    def run(self) -> None:
        now = time.monotonic
        [ack] = self.client.pipeline([{"op": "subscribe", "segments": "*"}])
        if not ack.get("ok"):
            raise RuntimeError(f"subscribe refused: {ack}")
        self.client.sock.settimeout(None)
        self.ready.set()
        try:
            while True:
                frame = self.client.recv()
                if "transition" in frame:
                    t = frame["transition"]
                    self.received.append((t["seq"], t["kind"], now()))
        except ConnectError:
            return  # closed by close()

    def close(self) -> None:
        try:
            self.client.sock.shutdown(socketlib.SHUT_RDWR)  # wakes the blocked recv
        except OSError:
            pass
        self.join(10)
        self.client.close()


async def _freshness(sock: Path, items: list[dict], rate: float, args: argparse.Namespace) -> dict:
    sub = Subscriber(sock)
    sub.start()
    if not await asyncio.to_thread(sub.ready.wait, 30):
        raise RuntimeError("the subscribe connection was not acknowledged within 30 s")
    sent_at: dict[int, float] = {}

    def on_ack(chunk: list[dict], results: list[dict], at: float) -> None:
        for r in results:
            if "seq" in r:
                sent_at[r["seq"]] = at

    st = await stream(
        sock,
        items,
        connections=args.connections,
        rate=rate,
        batch=args.batch,
        window=args.window,
        on_ack=on_ack,
    )
    async with await AsyncClient.connect(sock) as c:
        await c.sync()
    await asyncio.sleep(0.5)  # the last frames are on their way to the subscriber
    sub.close()
    lat = sorted((recv - sent_at[seq]) * 1000 for seq, _, recv in sub.received if seq in sent_at)
    enters = sum(1 for seq, kind, _ in sub.received if seq in sent_at and kind == "enter")
    return {
        "offered_eps": rate,
        "achieved_eps": st.eps,
        "events": st.sent,
        "samples": len(lat),
        "enters": enters,
        "p50_ms": benchlib.percentile(lat, 50),
        "p95_ms": benchlib.percentile(lat, 95),
        "p99_ms": benchlib.percentile(lat, 99),
        "max_ms": lat[-1] if lat else float("nan"),
    }


def main_daemon(
    tmp: Path, address: str, items: list[dict], plan: dict, args: argparse.Namespace, out: dict
) -> None:
    """Ingest, then freshness, on one daemon; then replay its log."""
    say(f"raw append limit: {len(items)} rows, {args.batch} per transaction")
    n, seconds = benchlib.raw_append(tmp / "raw" / "events.db", items, args.batch)
    out["ingest_limit_eps"] = n / seconds
    # Freshness floor: the commit of what one connection sends per 10 ms flush at --rate.
    txn = max(1, int(args.rate * 0.01 / args.connections))
    commits = benchlib.raw_commit_latency(tmp / "raw" / "latency.db", items, txn)
    out["freshness_limit"] = {
        "rows_per_commit": txn,
        **{f"p{q}_ms": benchlib.percentile(commits, q) for q in (50, 95, 99)},
    }

    config, sock = benchlib.write_config(tmp / "main", shards=args.shards, address=address)
    http_url = bench_http.enable(config)
    fresh = list(workload(12, plan["users"], int(args.rate * plan["fresh_seconds"]), None, user_prefix="f"))
    calm = list(workload(14, plan["users"], int(args.low_rate * plan["calm_seconds"]), None, user_prefix="c"))
    with benchlib.DaemonProcess(config, sock, tmp / "main" / "daemon.log") as daemon:
        say(f"ingest: {len(items)} events, {args.connections} connections, batches of {args.batch}")
        pid, cpu = (
            daemon.proc.pid if daemon.proc else None,
            bench_http.cpu_seconds(daemon.proc.pid if daemon.proc else None),
        )
        ingest = asyncio.run(_send_and_sync(sock, items, args))
        ingest["daemon_cpu_ms_per_1000"] = 1e6 * (bench_http.cpu_seconds(pid) - cpu) / ingest["events"]
        out["ingest_eps"], out["ingest_applied_eps"] = ingest["ack_eps"], ingest["applied_eps"]
        out["ingest"] = ingest
        http_items = list(workload(13, plan["users"], plan["events"], None, user_prefix="h"))
        say(f"http ingest: {len(http_items) // 2} events by the Python SDK, the rest in 500-message batches")
        out["http"] = bench_http.run(pid, http_url, sock, http_items, args.connections)
        say(f"freshness: {len(calm)} events at {args.low_rate:,.0f} events/s (unloaded)")
        out["freshness_low"] = asyncio.run(_freshness(sock, calm, args.low_rate, args))
        say(f"freshness: {len(fresh)} events at {args.rate:,.0f} events/s")
        fresh_result = asyncio.run(_freshness(sock, fresh, args.rate, args))
        out["freshness"] = fresh_result
        out.update({k: fresh_result[k] for k in ("p50_ms", "p95_ms", "p99_ms")})
        with Client(sock) as c:
            live_sizes = c.stats()["segments"]
        if daemon.stop() != 0:
            raise RuntimeError(f"the daemon did not stop cleanly (see {tmp / 'main' / 'daemon.log'})")

    say("replay: raw scan, then segd replay")
    rows, seconds = benchlib.raw_scan(tmp / "main" / "data" / "events.db")
    out["replay_limit_eps"] = rows / seconds
    summary = benchlib.run_replay(config, tmp / "main" / "replay.log")
    rebuild = summary.get("rebuild_seconds", summary["seconds"])
    out["replay_eps"] = summary["replayed"] / rebuild
    out["replay"] = {
        "events": summary["replayed"],
        "log_rows": rows,
        "rebuild_seconds": rebuild,
        "command_seconds": summary["seconds"],
        "process_seconds": summary["process_seconds"],
        "command_eps": summary["replayed"] / summary["seconds"],
        "phases": summary.get("phases", {}),
        "segments_match_live": summary["segments"] == live_sizes,
    }


def scale_run(
    tmp: Path, name: str, address: str, shards: int, items: list[dict], args: argparse.Namespace
) -> float:
    """Ingest + apply events/s (first send to ``sync``) of a fresh daemon with ``shards``."""
    config, sock = benchlib.write_config(tmp / name, shards=shards, address=address)
    with benchlib.DaemonProcess(config, sock, tmp / name / "daemon.log"):
        return asyncio.run(_send_and_sync(sock, items, args))["applied_eps"]


def run(args: argparse.Namespace, tmp: Path) -> dict:
    plan = PLANS["quick" if args.quick else "full"]
    out: dict = {
        "mode": "quick" if args.quick else "full",
        "machine": benchlib.machine(),
        "shards": args.shards,
    }
    started = time.perf_counter()

    # The memory probe is deterministic (tracemalloc counts bytes, not time), so it runs in
    # its own process while Ray starts; the timed phases wait for it to finish.
    base_users, base_events = plan["memory_base"]
    say(f"memory: shard core, {base_events} events for {base_users} users, then {plan['memory_sizes']} users")
    config, _ = benchlib.write_config(tmp / "model", shards=1, address="")
    probe = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "benchlib.py"),
            "memory",
            str(config),
            *map(str, plan["memory_sizes"]),
            "--base",
            str(base_users),
            str(base_events),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    cluster = None
    try:
        say("starting a private Ray cluster")
        cluster = benchlib.PrivateCluster(num_cpus=os.cpu_count() or 1)
        items = list(workload(11, plan["users"], plan["events"], None, user_prefix="u"))
        mem_out, _ = probe.communicate()
        if probe.returncode != 0:
            raise RuntimeError(f"the memory probe failed with exit code {probe.returncode}")
        mem = out["memory"] = json.loads(mem_out)
        largest = mem["sizes"][max(mem["sizes"], key=int)]
        out["bytes_per_user"] = largest["bytes_per_user"]
        out["snapshot_bytes_per_user"] = largest["snapshot_bytes_per_user"]

        main_daemon(tmp, cluster.address, items, plan, args, out)
        bench_queries.phase(tmp, cluster.address, plan, out, say)
        # Every scale-out run sends the ingest phase's workload: the main daemon is one point.
        out["scale_out"] = {}
        for shards in plan["scale_shards"]:
            if shards == args.shards:
                out["scale_out"][str(shards)] = out["ingest_applied_eps"]
                continue
            say(f"scale-out: {shards} shard(s), {len(items)} events")
            out["scale_out"][str(shards)] = scale_run(
                tmp, f"scale{shards}", cluster.address, shards, items, args
            )
        cluster.add_node(num_cpus=1)
        out["cluster"] = {"nodes": cluster.nodes}
        some = items[: plan["cluster_events"]]
        for shards in plan["cluster_shards"]:
            say(f"cluster: {cluster.nodes} nodes, {shards} shards, {len(some)} events")
            out["cluster"][str(shards)] = scale_run(
                tmp, f"cluster{shards}", cluster.address, shards, some, args
            )
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
        if cluster is not None:
            say("stopping the Ray cluster")
            cluster.shutdown()
    out["scale_out"] = dict(sorted(out["scale_out"].items(), key=lambda kv: int(kv[0])))
    out["ingest_ratio"] = out["ingest_eps"] / out["ingest_limit_eps"]
    out["replay_ratio"] = out["replay_eps"] / out["replay_limit_eps"]
    out["seconds"] = time.perf_counter() - started
    return out


# ---------------------------------------------------------------------- output


def _eps(v: float) -> str:
    return f"{v:,.0f}/s"


def _ms(d: dict) -> str:
    return f"{d['p50_ms']:.1f} / {d['p95_ms']:.1f} / {d['p99_ms']:.1f} ms"


def print_table(r: dict) -> None:
    """The human report: each measure, its physical limit measured in this run, the ratio."""
    from rich.console import Console
    from rich.table import Table

    m = r["machine"]
    console = Console(width=None if sys.stdout.isatty() else 132)
    console.print(
        f"[bold]segd bench ({r['mode']}, {r['seconds']:.0f} s)[/bold]: {m['cores']} cores ({m['cpu']}), "
        f"{m['ram_gib']} GiB RAM, Python {m['python']}, Ray {m['ray']}, SQLite {m['sqlite']}, {m['os']}"
    )
    t = Table()
    for col, just in (
        ("measure", "left"),
        ("result", "right"),
        ("physical limit", "right"),
        ("ratio", "right"),
        ("goal", "left"),
    ):
        t.add_column(col, justify=just, no_wrap=col != "goal")
    ing, fr, low, lim = r["ingest"], r["freshness"], r["freshness_low"], r["freshness_limit"]
    rp, mem = r["replay"], r["memory"]
    t.add_row(
        f"ingest -> durable ack, {r['shards']} shards",
        _eps(r["ingest_eps"]),
        f"{_eps(r['ingest_limit_eps'])} append",
        f"{r['ingest_ratio']:.2f}",
        ">= 50,000/s and 0.70",
    )
    t.add_row(
        f"  + apply (to sync); {ing['events_per_commit']:,.0f} ev/commit",
        _eps(r["ingest_applied_eps"]),
        "",
        f"{r['ingest_applied_eps'] / r['ingest_limit_eps']:.2f}",
        "",
    )
    for key, label in (("sdk", "Python SDK defaults"), ("batch500", "500-message batches")):
        h = r["http"][key]
        t.add_row(
            f"HTTP ingest, {label}",
            _eps(h["eps"]),
            f"{_eps(r['ingest_eps'])} socket",
            f"{h['eps'] / r['ingest_eps']:.2f}",
            f"daemon CPU {h['daemon_cpu_ms_per_1000']:.0f} ms/1k ev (socket {ing['daemon_cpu_ms_per_1000']:.0f})",
        )
    t.add_row(
        f"freshness p50/95/99 @ {fr['achieved_eps']:,.0f} ev/s",
        _ms(fr),
        f"{_ms(lim)} commit",
        f"{r['p50_ms'] / lim['p50_ms']:.0f}x",
        "p50 <= 5, p99 <= 50",
    )
    t.add_row(
        f"  @ {low['achieved_eps']:,.0f} ev/s (unloaded)",
        _ms(low),
        "",
        f"{low['p50_ms'] / lim['p50_ms']:.0f}x",
        "",
    )
    t.add_row(
        f"replay rebuild, {rp['events']:,} events",
        _eps(r["replay_eps"]),
        f"{_eps(r['replay_limit_eps'])} scan",
        f"{r['replay_ratio']:.2f}",
        ">= 0.70",
    )
    t.add_row(
        f"  whole segd replay, {rp['command_seconds']:.1f} s",
        _eps(rp["command_eps"]),
        "",
        f"{rp['command_eps'] / r['replay_limit_eps']:.2f}",
        "",
    )
    if ph := rp.get("phases"):
        t.add_row(
            "  where its time went",
            f"ray {ph.get('ray', 0):.1f} + workers {ph.get('actors', 0):.1f} s",
            f"route {ph.get('route', 0):.1f} + end {ph.get('snapshot', 0) + ph.get('shutdown', 0):.1f} s",
            "",
            "",
        )
    t.add_row(
        f"memory, live shard, {mem['base_users']:,} users",
        f"{mem['live_bytes_per_user']:,} B/user",
        f"{mem['live_snapshot_bytes_per_user']:,} B snapshot",
        "",
        "<= 1,024 B",
    )
    for size, v in mem["sizes"].items():
        t.add_row(
            f"memory, restored, {int(size):,} users",
            f"{v['bytes_per_user']:,} B/user",
            f"{v['snapshot_bytes_per_user']:,} B snapshot",
            "",
            "<= 1,024 B",
        )
    for row in bench_queries.rows(r):
        t.add_row(*row)
    one = r["scale_out"].get("1")
    for shards, eps in r["scale_out"].items():
        t.add_row(
            f"scale-out, {shards} shard(s), 1 node", _eps(eps), "", f"{eps / one:.2f}x" if one else "", ""
        )
    for shards, eps in r["cluster"].items():
        if shards != "nodes":
            t.add_row(
                f"scale-out, {shards} shards, {r['cluster']['nodes']} nodes",
                _eps(eps),
                "",
                f"{eps / one:.2f}x" if one else "",
                "",
            )
    console.print(t)
    console.print(
        f"Limits are measured in this run: a raw SQLite append ({r['ingest']['events']:,} rows, same "
        "schema, WAL, synchronous=FULL, --batch rows per transaction), the durable commit of "
        f"{lim['rows_per_commit']} rows (one connection's 10 ms at the offered rate), a raw scan + "
        "msgpack decode of the log. Freshness: batch written to the socket -> transition frame read "
        "by a subscriber. Scale-out: events/s until sync, ratio against 1 shard. segment at=: a page of "
        "1,000 members with T at 10/50/90% of a year of history and after it (dense: about half the users are "
        "members; sparse: a few dozen), beside a segments call (socket + one segment manager call)."
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes: under 2 minutes on 2 cores")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--shards", type=int, default=2, help="[ray] shards of the ingest/freshness daemon")
    p.add_argument("--rate", type=float, default=10_000, help="offered events/s for freshness")
    p.add_argument("--low-rate", type=float, default=1_000, help="offered events/s for unloaded freshness")
    p.add_argument("--connections", type=int, default=4)
    p.add_argument("--batch", type=int, default=1000, help="events per batch request and per raw transaction")
    p.add_argument("--window", type=int, default=8, help="batches in flight per connection")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory (logs, data dirs)")
    args = p.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="sb-", dir="/tmp"))  # short: Unix socket paths are limited
    (tmp / "ray").mkdir()
    # Ray records the cluster's address under $RAY_TMPDIR: keep ours private (PrivateCluster).
    os.environ["RAY_TMPDIR"] = str(tmp / "ray")
    try:
        result = run(args, tmp)
    finally:
        if args.keep:
            say(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.json:
        print(json.dumps(result, default=str))
    else:
        print_table(result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
