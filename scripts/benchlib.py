"""Building blocks of ``scripts/bench.py``: the bench config, a daemon subprocess, a private
Ray cluster, the physical limits (raw SQLite append, raw log scan) and the shard memory probe.

Nothing here prints; every function returns numbers. Times are ``time.perf_counter`` spans.
"""

from __future__ import annotations

import functools
import gc
import itertools
import math
import os
import platform
import re
import signal
import sqlite3
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import msgspec

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for _p in (ROOT, HERE):  # segd's packages, and the sibling scripts, from a plain checkout
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from bench_core import EXTRA_SEGMENTS, TARGET_SEGMENTS  # noqa: E402

from actors.model import Model  # noqa: E402
from actors.records import Row  # noqa: E402
from actors.shard.core import ShardCore  # noqa: E402
from actors.shard.snapshot import Writer  # noqa: E402
from actors.shard.snapshot import read as read_snapshot  # noqa: E402
from segd.config import load_config  # noqa: E402
from segd.demo.workload import DAY, workload  # noqa: E402
from segd.errors import ConnectError  # noqa: E402
from segd.wire.client import Client  # noqa: E402
from store import schema  # noqa: E402

T0 = 1_700_000_000.0
_INSERT = (
    "INSERT INTO events (seq, user, type, event, ts, clock, props, traits, msg_id) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
# The query EventLog.scan runs (store/eventlog.py), paged the same way.
_SCAN = (
    "SELECT seq, user, type, event, ts, clock, coalesce(props, traits) FROM events "
    "WHERE seq > ? ORDER BY seq LIMIT ?"
)


# ---------------------------------------------------------------------- the machine


def machine() -> dict:
    """Cores, RAM, CPU model, Python, Ray and SQLite versions of this machine."""
    import ray

    ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cores": os.cpu_count(),
        "ram_gib": round(ram / 2**30, 1),
        "cpu": cpu,
        "python": platform.python_version(),
        "ray": ray.__version__,
        "sqlite": sqlite3.sqlite_version,
        "os": f"{platform.system()} {platform.release()}",
    }


# ---------------------------------------------------------------------- the bench config


def config_text(
    data_dir: Path,
    socket: Path,
    *,
    shards: int,
    address: str,
    clock: str = "wall",
    base: Path = ROOT / "config.toml",
) -> str:
    """``base`` (the default config.toml: 10 aggregates, its segments, channels, campaigns)
    with our ``[daemon]`` and ``[ray]`` tables, topped up to TARGET_SEGMENTS segments with
    realistic rules over the same aggregates (scripts/bench_core.py's EXTRA_SEGMENTS)."""
    blocks = re.split(r"(?m)^(?=\[)", base.read_text())
    kept = [b for b in blocks if not re.match(r"\[(daemon|ray)\]", b)]
    existing = len(re.findall(r"(?m)^\[segments\.", base.read_text()))
    extra = [
        f'[segments.bench_{i}]\ndescription = "bench rule {i}"\nwhen = "{rule}"\n'
        for i, rule in enumerate(
            itertools.islice(itertools.cycle(EXTRA_SEGMENTS), max(0, TARGET_SEGMENTS - existing))
        )
    ]
    head = (
        f'[daemon]\ndata_dir = "{data_dir}"\nsocket = "{socket}"\nclock = "{clock}"\ntick = "1s"\n\n'
        f'[ray]\naddress = "{address}"\nshards = {shards}\n\n'
    )
    return head + "".join(kept).rstrip() + "\n\n" + "\n".join(extra)


def write_config(run_dir: Path, *, shards: int, address: str, clock: str = "wall") -> tuple[Path, Path]:
    """A bench config for a fresh data dir under ``run_dir``; returns (config path, socket)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    socket = run_dir / "segd.sock"
    path = run_dir / "config.toml"
    path.write_text(config_text(run_dir / "data", socket, shards=shards, address=address, clock=clock))
    return path, socket


# ---------------------------------------------------------------------- processes


class DaemonProcess:
    """``python -m segd run --config PATH`` as a child process, logging to ``log``.

    ``start`` returns once the socket answers ``ping``; ``stop`` sends SIGTERM (the daemon
    drains, snapshots and exits) and kills it if it has not exited within ``timeout``.
    """

    def __init__(self, config: Path, socket: Path, log: Path, env: dict[str, str] | None = None) -> None:
        self.config, self.socket, self.log = config, socket, log
        self.env = {**os.environ, **env} if env else None  # e.g. SEGD_LOG_LEVEL=debug for traces
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 180) -> DaemonProcess:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "segd", "run", "--config", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env=self.env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"segd run exited with {self.proc.returncode}; its log ({self.log}) ends:\n"
                    + self.log.read_text()[-3000:]
                )
            try:
                with Client(self.socket, timeout=10) as c:
                    c.ping()
                return self
            except ConnectError:
                time.sleep(0.05)
        self.stop(timeout=5)
        raise TimeoutError(f"segd did not answer on {self.socket} within {timeout} s (log: {self.log})")

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU time (user + system) the daemon has used so far: every thread, the event loop's."""
        assert self.proc is not None
        return process_cpu_seconds(self.proc.pid), loop_cpu_seconds(self.proc.pid)

    def stop(self, timeout: float = 120) -> int | None:
        """Drain and stop; returns the exit code (None if it had to be killed)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return None if proc is None else proc.returncode
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            return None

    def __enter__(self) -> DaemonProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class PrivateCluster:
    """A ``ray.cluster_utils.Cluster`` only this bench and its children use.

    ``RAY_TMPDIR`` must point at a private directory before it starts: the cluster records
    its address in ``$RAY_TMPDIR/ray/ray_current_cluster``, where a plain ``ray.init()``
    elsewhere on the machine would otherwise find it and join it.
    """

    def __init__(self, num_cpus: int) -> None:
        if "RAY_TMPDIR" not in os.environ:
            raise RuntimeError("set RAY_TMPDIR to a private directory before starting the bench cluster")
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(
            initialize_head=True, head_node_args={"num_cpus": num_cpus, "include_dashboard": False}
        )

    @property
    def address(self) -> str:
        return self.cluster.address

    @property
    def nodes(self) -> int:
        return len(self.cluster.list_all_nodes())

    def add_node(self, num_cpus: int = 1) -> None:
        self.cluster.add_node(num_cpus=num_cpus)
        self.cluster.wait_for_nodes()

    def shutdown(self) -> None:
        self.cluster.shutdown()


def run_replay(config: Path, log: Path, timeout: float = 1800) -> dict:
    """``python -m segd replay --config PATH`` (daemon stopped). Returns its summary plus
    ``rebuild_seconds``: from its ``recovery_started`` log line (actors up, snapshots
    dropped) to ``recovery_done`` (the log routed through the shards, transitions recorded,
    timers fired), i.e. without starting Ray workers; and ``process_seconds``: the whole
    command, Python start-up included."""
    import json
    from datetime import datetime

    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "segd", "replay", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    elapsed = time.perf_counter() - started
    log.write_text(done.stderr)
    if done.returncode != 0:
        raise RuntimeError(f"segd replay exited with {done.returncode}:\n{done.stderr[-3000:]}")
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    summary["process_seconds"] = elapsed
    stamps = {}
    for line in done.stderr.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") in ("recovery_started", "recovery_done"):
            stamps[entry["event"]] = datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00"))
    if len(stamps) == 2:
        summary["rebuild_seconds"] = (stamps["recovery_done"] - stamps["recovery_started"]).total_seconds()
    return summary


def _cpu(stat: Path) -> float:
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread) of process ``pid`` so far, from /proc."""
    return _cpu(Path(f"/proc/{pid}/stat"))


def loop_cpu_seconds(pid: int) -> float:
    """CPU time of process ``pid``'s main thread (the daemon's event loop) so far."""
    return _cpu(Path(f"/proc/{pid}/task/{pid}/stat"))


def log_events(log: Path, names: Iterable[str]) -> list[dict]:
    """The JSON log lines of ``log`` whose ``event`` is one of ``names`` (a daemon's log)."""
    import json

    wanted = set(names)
    out = []
    for line in log.read_text().splitlines():
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and entry.get("event") in wanted:
            out.append(entry)
    return out


# ---------------------------------------------------------------------- physical limits


def _log_rows(path: Path, items: list[dict]) -> tuple[sqlite3.Connection, list[tuple]]:
    """A fresh log file with the log's own schema and durability (store/schema.py: WAL,
    synchronous=FULL, the msg_id index), and ``items`` as its INSERT parameters."""
    db = schema.open_db(path, synchronous="full")
    schema.ensure_meta(db, path)
    schema.create_events(db)
    now = time.time()
    params = []
    for seq, it in enumerate(items, 1):
        track = it["type"] == "track"
        body = msgpack.packb(it.get("props" if track else "traits") or {}, use_bin_type=True)
        params.append(
            (
                seq,
                it["user"],
                it["type"],
                it.get("event"),
                it.get("ts", now),
                now,
                body if track else None,
                None if track else body,
                it.get("msg_id"),
            )
        )
    return db.conn, params


def _commit(conn: sqlite3.Connection, params: list[tuple]) -> None:
    conn.execute("BEGIN")
    conn.executemany(_INSERT, params)
    conn.execute("COMMIT")


def raw_append(path: Path, items: list[dict], txn: int) -> tuple[int, float]:
    """Append ``items`` to a fresh log file (see ``_log_rows``), ``txn`` rows per transaction.
    Rows are built and msgpack-packed before the clock starts: this is the disk's and
    SQLite's limit, not the daemon's. Returns (rows, seconds)."""
    conn, params = _log_rows(path, items)
    started = time.perf_counter()
    for i in range(0, len(params), txn):
        _commit(conn, params[i : i + txn])
    seconds = time.perf_counter() - started
    conn.close()
    return len(params), seconds


def raw_commit_latency(path: Path, items: list[dict], txn: int, commits: int = 200) -> list[float]:
    """Milliseconds of each of ``commits`` durable transactions of ``txn`` rows, one after
    the other into a fresh log file: the floor under any event -> transition latency."""
    conn, params = _log_rows(path, items[: txn * commits])
    out = []
    for i in range(0, len(params), txn):
        started = time.perf_counter()
        _commit(conn, params[i : i + txn])
        out.append((time.perf_counter() - started) * 1000)
    conn.close()
    return sorted(out)


class _Echo:
    def ping(self) -> None:
        return None


def ray_round_trips(address: str, calls: int = 300) -> list[float]:
    """Milliseconds of each of ``calls`` calls, one after the other, to a Ray actor that does
    nothing, from this process, on the cluster at ``address``: the floor under each Ray hop
    (router -> shard) of an event. Sorted."""
    import ray

    ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        echo = ray.remote(_Echo).options(num_cpus=0).remote()
        ray.get(echo.ping.remote())
        out = []
        for _ in range(calls):
            started = time.perf_counter()
            ray.get(echo.ping.remote())
            out.append((time.perf_counter() - started) * 1000)
            time.sleep(0.002)
        ray.kill(echo)
    finally:
        ray.shutdown()
    return sorted(out)


def raw_scan(path: Path, page: int = 20_000) -> tuple[int, float]:
    """Read the whole log in seq order as EventLog.scan does (same query and paging, read-only
    connection) and msgpack-decode every props/traits body. Returns (rows, seconds)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    unpack = msgpack.unpackb
    started = time.perf_counter()
    n, after = 0, 0
    while chunk := conn.execute(_SCAN, (after, page)).fetchall():
        for r in chunk:
            if r[6]:
                unpack(r[6], raw=False)
        n += len(chunk)
        after = chunk[-1][0]
    seconds = time.perf_counter() - started
    conn.close()
    return n, seconds


# ---------------------------------------------------------------------- shard memory


def _rows(items: Iterable[dict]) -> Iterator[Row]:
    """Log rows as the router ships them (event clock: the clock is the watermark)."""
    clock = float("-inf")
    for seq, it in enumerate(items, 1):
        track = it["type"] == "track"
        clock = max(clock, it["ts"])
        body = msgpack.packb(it.get("props" if track else "traits") or {}, use_bin_type=True)
        yield Row(seq, it["user"], it["type"], it.get("event"), it["ts"], clock, body)


def _traced(fn) -> tuple[object, int]:
    """Run ``fn()`` under tracemalloc; return its result and the bytes it left allocated."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        result = fn()
        gc.collect()
        return result, tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def live_shard(model: Model, rows: list[Row], batch: int = 2000) -> ShardCore:
    """A fresh ShardCore that applied ``rows`` as a shard does: in batches of ``batch``, each
    row with a fresh user id str, as after Ray's deserialization (the shard keeps the first
    one per user as its key, which a memory figure must count)."""
    shard = ShardCore(model)
    for i in range(0, len(rows), batch):
        shard.apply_batch(
            [msgspec.structs.replace(r, user=r.user.encode().decode()) for r in rows[i : i + batch]]
        )
    return shard


def cloned_snapshot(model: Model, blob: bytes, size: int) -> bytes:
    """A snapshot of ``size`` users cloned, in turn, from the users' states in snapshot
    ``blob`` under new ids (``c0000000``, ...), with ``blob``'s head: a population with the
    same distribution of states, without ``size`` users' worth of apply time."""
    states: dict[str, Any] = {}
    head = read_snapshot(blob, model.fingerprint, states, lambda user, state: state)
    pool = list(states.values())
    del states
    width = max(7, len(str(size - 1)))
    writer = Writer()
    return writer.join(head, [writer.user(f"c{j:0{width}d}", pool[j % len(pool)]) for j in range(size)])


def shard_memory(
    config: Path, sizes: Iterable[int], *, base_users: int, base_events: int, seed: int = 7, batch: int = 2000
) -> dict:
    """Bytes per user held by one ShardCore with the bench model, measured with tracemalloc.

    A base population (``base_events`` loadgen events over 30 days for up to ``base_users``
    users) is applied live; that gives ``live`` bytes per user. Populations of each of
    ``sizes`` users are then made by cloning the base users' snapshot states under new ids
    (same distribution of states, not 1M users' worth of apply time) and measured after
    ``ShardCore.restore``, as a shard holds them after a restart. Snapshot bytes per user
    are the snapshot blob's length divided by its users.
    """
    model = Model.compile(load_config(config))
    rows = list(_rows(workload(seed, base_users, base_events, T0, span=30 * DAY, user_prefix="m")))
    shard, live_bytes = _traced(functools.partial(live_shard, model, rows, batch))
    blob = shard.snapshot()
    out = {
        "base_users": shard.users,
        "base_events": base_events,
        "live_bytes_per_user": round(live_bytes / shard.users),
        "live_snapshot_bytes_per_user": round(len(blob) / shard.users),
        "sizes": {},
    }
    del shard, rows
    base = blob
    for size in sizes:
        blob = cloned_snapshot(model, base, size)
        restored, used = _traced(lambda b=blob: ShardCore.restore(model, b))
        assert restored.users == size
        out["sizes"][size] = {
            "bytes_per_user": round(used / size),
            "snapshot_bytes_per_user": round(len(blob) / size),
        }
        del restored, blob
        gc.collect()
    return out


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of a sorted list (``q`` in 0..100); NaN when empty."""
    if not values:
        return float("nan")
    return values[min(len(values), max(1, math.ceil(q / 100 * len(values)))) - 1]


def main(argv: list[str] | None = None) -> int:
    """``python scripts/benchlib.py memory CONFIG SIZE... --base USERS EVENTS``: run
    ``shard_memory`` in its own process (bench.py overlaps it with Ray's start-up) and print
    its result as JSON."""
    import argparse
    import json

    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("what", choices=["memory"])
    p.add_argument("config", type=Path)
    p.add_argument("sizes", type=int, nargs="+")
    p.add_argument("--base", type=int, nargs=2, metavar=("USERS", "EVENTS"), default=(2_000, 30_000))
    args = p.parse_args(argv)
    print(
        json.dumps(shard_memory(args.config, args.sizes, base_users=args.base[0], base_events=args.base[1]))
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
