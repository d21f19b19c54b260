"""segd benchmarks against the physical limits of this machine (DESIGN.md "Performance targets").

One run measures, side by side, on temporary data dirs with the bench config (the default
config.toml's 10 aggregates and its segments, topped up to 20 segments):

- ingest: events/s from the socket to the durable ack (``--ingest-connections`` connections,
  default 2, pipelined ``batch`` requests of ``--batch`` events, flat out, ``--window`` in
  flight per connection), by a client that costs the shared cores as little as a service's
  would: its frames (the bytes ``AsyncClient.batch`` writes) are encoded before the clock
  starts, and it reads the answers with a typed decoder, checking every item for an error and
  counting acks exactly (``segd.wire.client.encode_batches``/``send_prepared``); its own CPU
  per event is reported beside the daemon's. The scale-out runs use it too; the ingest
  matrix, freshness and loadgen use the real ``AsyncClient``. Against a plain
  sqlite3 append of the same rows into a fresh log file with the same schema and durability
  (WAL, synchronous=FULL), ``--batch`` rows per transaction. Also ingest+apply: until
  ``sync``, and the daemon's CPU time per event (all its threads), which is robust to other
  load on the machine. Then, on a daemon of its own, every combination of 1, 2 and 8
  connections with batches of 1 (one ``track``/``identify`` request per event), 100 and
  1,000 events, each connection keeping ``--window`` requests in flight, each cell applied
  (``sync``) before the next starts.
- HTTP ingest (scripts/bench_http.py): the same daemon's Segment-compatible ingest, by the
  Python SDK with its default batching and by raw clients posting 500-message batches,
  beside the socket figure, with the daemon's CPU-seconds per 1,000 events for each.
- freshness: event -> transition latency at ``--rate`` events/s (default 10,000), and again
  unloaded at ``--low-rate`` (default 1,000): from just before the batch holding the event
  is written to the socket (the load generator flushes what is due every 10 ms) to the
  moment a ``subscribe "*"`` connection, read by its own thread, receives the transition
  frame it caused. The daemon sends that frame once the segment manager has recorded the
  transition, so this is one hop after the manager: it includes group commit, routing,
  the shard and the fan-out to subscribers (the daemon sends the frame as soon as the shard
  answers; the segment manager records it meanwhile). Every transition whose ``seq`` is
  an event of the phase is a sample (enters and exits). Events carry no ``ts`` (live
  traffic) and the daemon runs ``clock = "wall"``. Above the daemon's apply throughput
  the latency is queueing and grows with the length of the run. The daemon runs with
  ``SEGD_LOG_LEVEL=debug``, so each batch's hops (``batch_committed``, ``batch_routed``: when
  its commit returned, how long it waited for the router, the shards' answer, the managers'
  record) are in its log; joined with the send and receive times (one monotonic clock for
  every process) they give each sample's breakdown, reported as medians.
- replay: events/s rebuilt from the log by ``segd replay`` on the stopped daemon's data
  dir (from its ``recovery_started`` to its ``recovery_done`` log line: Ray worker start-up
  excluded; the whole command is shown too), against a raw scan of the same log (SELECT
  in seq order, paged as EventLog.scan does, plus msgpack decoding of every body).
- memory: bytes per user in one ``ShardCore`` with the bench model (tracemalloc): live for
  a loadgen population, then for 10^5 and 10^6 users (10^4 and 10^5 with ``--quick``)
  cloned from its snapshot states and restored; snapshot bytes per user beside them. Then
  the same populations' RSS growth per user in fresh processes without tracemalloc
  (scripts/bench_memory.py): what a shard process really holds, allocator slack included.
- scale-out: ingest+apply events/s (first send to ``sync``) with 1, 2, 4 shards, and with
  shards on a 2-node ``ray.cluster_utils.Cluster``.
- queries (scripts/bench_queries.py): ``segment at=`` and ``sizes`` latency over a history of
  10^6 transitions per segment (10^5 with ``--quick``), beside a ``segments`` call; the
  segment store's recording rate; ``preview`` over 10^6 users (10^5) in 2 shards.

All daemons run as ``python -m segd run`` subprocesses joined to one private Ray cluster
started by the bench (so Ray starts once), and everything is stopped at the end.

Usage: python scripts/bench.py [--quick] [--json] [--shards N] [--rate EPS] [--low-rate EPS]
       [--connections N] [--ingest-connections N] [--batch N] [--window N] [--keep]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import shutil
import socket as socketlib
import statistics
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
import bench_ingest  # noqa: E402
import bench_queries  # noqa: E402
import benchlib  # noqa: E402
from bench_report import HOPS, print_table  # noqa: E402

from segd.demo.workload import stream, workload  # noqa: E402
from segd.errors import ConnectError  # noqa: E402
from segd.wire.client import AsyncClient, Client  # noqa: E402

#: Sizes per mode. Full mode takes several minutes on 2 cores; quick stays under 2.
#: ``cell_events``: events per cell of the ingest matrix, by batch size.
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
        "cell_events": {1: 4_000, 100: 20_000, 1000: 60_000},
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
        "cell_events": {1: 20_000, 100: 100_000, 1000: 300_000},
        "history_users": 100_000,
        "preview_users": 1_000_000,
    },
}


_T0 = time.perf_counter()


def say(msg: str) -> None:
    print(f"bench [{time.perf_counter() - _T0:5.1f} s]: {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------- phases


def ingest_matrix(tmp: Path, address: str, plan: dict, args: argparse.Namespace) -> dict:
    """Ingest to the durable ack for 1, 2, 8 connections x batches of 1, 100, 1,000, on a
    daemon of its own; each cell is applied (``sync``) before the next one starts."""
    config, sock = benchlib.write_config(tmp / "matrix", shards=args.shards, address=address)
    cells: dict[str, dict] = {}
    with benchlib.DaemonProcess(config, sock, tmp / "matrix" / "daemon.log") as daemon:
        for batch in (1, 100, 1000):
            for connections in (1, 2, 8):
                n = plan["cell_events"][batch]
                items = list(workload(20, plan["users"], n, None, user_prefix=f"x{connections}b{batch}-"))
                say(f"ingest matrix: {connections} connection(s), batches of {batch}, {n} events")
                cpu, loop = daemon.cpu_seconds()
                acked, seconds = asyncio.run(
                    bench_ingest.flat_out(sock, items, connections, batch, args.window)
                )
                cpu_after, loop_after = daemon.cpu_seconds()
                with Client(sock, timeout=600) as c:
                    c.sync()
                cells[f"{connections}x{batch}"] = {
                    "connections": connections,
                    "batch": batch,
                    "events": acked,
                    "seconds": seconds,
                    "eps": acked / seconds,
                    "daemon_cpu_us_per_event": (cpu_after - cpu) / acked * 1e6,
                    "loop_cpu_us_per_event": (loop_after - loop) / acked * 1e6,
                }
    return cells


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
    first: dict[int, float] = {}  # the first frame each sampled event caused
    for seq, _, recv in sub.received:
        if seq in sent_at and seq not in first:
            first[seq] = recv
    return {
        "samples_at": {seq: (sent_at[seq], recv) for seq, recv in first.items()},
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


def hops(samples: dict[int, tuple[float, float]], traces: list[dict]) -> dict[str, float]:
    """Median milliseconds of each hop of the sampled events (seq -> (sent, first frame
    received)), joined with the daemon's ``batch_committed``/``batch_routed`` lines by seq:
    send -> its group's commit returned (socket, decode, waiting for the group, the group's
    commit, of which ``commit`` is the stage + insert + fsync), -> the router takes its
    batch, -> the frame is read by the subscriber (the event's shard call, the transitions
    published when that shard answers, the socket); and, beside that path, the managers'
    record after every shard answered."""
    routed = sorted((t["first_seq"], t) for t in traces if t["event"] == "batch_routed")
    commits = sorted((t["seq"], t) for t in traces if t["event"] == "batch_committed")
    starts, ends = [r[0] for r in routed], [c[0] for c in commits]
    parts: dict[str, list[float]] = {k: [] for k in HOPS}
    for seq, (sent, received) in samples.items():
        i = bisect.bisect_right(starts, seq) - 1
        j = bisect.bisect_left(ends, seq)
        if i < 0 or j >= len(commits) or not routed[i][1]["first_seq"] <= seq <= routed[i][1]["last_seq"]:
            continue
        t, c = routed[i][1], commits[j][1]
        parts["to_commit"].append((c["at"] - sent) * 1000)
        parts["commit"].append(c["ms"])
        parts["router_wait"].append((t["started"] - c["at"]) * 1000)
        # Each shard's transitions go out as soon as that shard answers: this hop is the
        # event's shard call plus the write to the subscriber and its read.
        parts["shard_to_frame"].append((received - t["started"]) * 1000)
        # Of the batch: every shard it went to answered (the event's own shard may answer first).
        parts["shards_answered"].append((t["applied"] - t["started"]) * 1000)
        parts["record"].append((t["recorded"] - t["applied"]) * 1000)
    out = {k: statistics.median(v) for k, v in parts.items() if v}
    out["samples"] = len(parts["shard_to_frame"])
    return out


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
    trips = benchlib.ray_round_trips(address)
    out["ray_floor"] = {f"p{q}_ms": benchlib.percentile(trips, q) for q in (50, 95, 99)}

    config, sock = benchlib.write_config(tmp / "main", shards=args.shards, address=address)
    http_url = bench_http.enable(config)
    fresh = list(workload(12, plan["users"], int(args.rate * plan["fresh_seconds"]), None, user_prefix="f"))
    calm = list(workload(14, plan["users"], int(args.low_rate * plan["calm_seconds"]), None, user_prefix="c"))
    log = tmp / "main" / "daemon.log"
    with benchlib.DaemonProcess(config, sock, log, env={"SEGD_LOG_LEVEL": "debug"}) as daemon:
        conns = args.ingest_connections
        say(f"ingest: {len(items)} events, {conns} connections, batches of {args.batch}")
        cpu, loop = daemon.cpu_seconds()
        ingest = asyncio.run(bench_ingest.send_and_sync(sock, items, args, connections=conns))
        ingest["connections"], ingest["batch"] = conns, args.batch
        cpu_after, loop_after = daemon.cpu_seconds()
        ingest["daemon_cpu_us_per_event"] = (cpu_after - cpu) / ingest["events"] * 1e6
        ingest["loop_cpu_us_per_event"] = (loop_after - loop) / ingest["events"] * 1e6
        ingest["daemon_cpu_ms_per_1000"] = ingest["daemon_cpu_us_per_event"]  # us/event = ms/1,000 events
        pid = daemon.proc.pid if daemon.proc else None
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
        traces = benchlib.log_events(log, ("batch_committed", "batch_routed"))
        for phase in (out["freshness_low"], fresh_result):
            phase["hops_ms"] = hops(phase.pop("samples_at"), traces)
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
        return asyncio.run(bench_ingest.send_and_sync(sock, items, args))["applied_eps"]


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
    probes = [
        subprocess.Popen(
            [
                sys.executable,
                str(HERE / script),
                what,
                str(config),
                *map(str, plan["memory_sizes"]),
                "--base",
                str(base_users),
                str(base_events),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        # tracemalloc's bytes, then the RSS probe (bench_memory.py: fresh processes, no tracemalloc)
        for script, what in (("benchlib.py", "memory"), ("bench_memory.py", "all"))
    ]
    probe, rss_probe = probes
    cluster = None
    try:
        say("starting a private Ray cluster")
        cluster = benchlib.PrivateCluster(num_cpus=os.cpu_count() or 1)
        items = list(workload(11, plan["users"], plan["events"], None, user_prefix="u"))
        mem_out, _ = probe.communicate()
        if probe.returncode != 0:
            raise RuntimeError(f"the memory probe failed with exit code {probe.returncode}")
        mem = out["memory"] = json.loads(mem_out)
        rss_out, _ = rss_probe.communicate()
        if rss_probe.returncode != 0:
            raise RuntimeError(f"the RSS probe failed with exit code {rss_probe.returncode}")
        mem["rss"] = json.loads(rss_out)
        largest = mem["sizes"][max(mem["sizes"], key=int)]
        out["bytes_per_user"] = largest["bytes_per_user"]
        out["snapshot_bytes_per_user"] = largest["snapshot_bytes_per_user"]

        main_daemon(tmp, cluster.address, items, plan, args, out)
        out["ingest_matrix"] = ingest_matrix(tmp, cluster.address, plan, args)
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
        for p in probes:
            if p.poll() is None:
                p.kill()
                p.wait()
        if cluster is not None:
            say("stopping the Ray cluster")
            cluster.shutdown()
    out["scale_out"] = dict(sorted(out["scale_out"].items(), key=lambda kv: int(kv[0])))
    out["ingest_ratio"] = out["ingest_eps"] / out["ingest_limit_eps"]
    out["replay_ratio"] = out["replay_eps"] / out["replay_limit_eps"]
    out["seconds"] = time.perf_counter() - started
    return out


# ---------------------------------------------------------------------- output


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes: under 2 minutes on 2 cores")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    p.add_argument("--shards", type=int, default=2, help="[ray] shards of the ingest/freshness daemon")
    p.add_argument("--rate", type=float, default=10_000, help="offered events/s for freshness")
    p.add_argument("--low-rate", type=float, default=1_000, help="offered events/s for unloaded freshness")
    p.add_argument("--connections", type=int, default=4, help="connections for freshness and scale-out")
    p.add_argument("--ingest-connections", type=int, default=2, help="connections of the headline ingest")
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
