"""bench.py's human report: the results table, each measure beside the physical limit
measured in the same run and the ratio, and the note under it saying what each limit is.

``print_table(r)`` takes the dict ``bench.run`` returns (what ``bench.py --json`` prints).
"""

from __future__ import annotations

import sys
from typing import Any

import bench_queries


def _eps(v: float) -> str:
    return f"{v:,.0f}/s"


def _ms(d: dict) -> str:
    return f"{d['p50_ms']:.1f} / {d['p95_ms']:.1f} / {d['p99_ms']:.1f} ms"


#: The hops of one event, in the order of ``hops``' breakdown (see the note under the table).
HOPS = ("to_commit", "commit", "router_wait", "shard_to_frame", "shards_answered", "record")


#: bench.py's table: (header, justify, min width, whether it may wrap). At 160 columns (a file or a pipe) the
#: numbers never wrap (a cut number is a wrong number); the measure, the limit and the goal
#: wrap onto a second line instead, and each keeps room for its text: Rich takes the width a
#: table lacks from the columns that may wrap, so with only the goal wrappable it shrank the
#: goal to nothing and cut the ratio to "rat…".
RESULT_COLUMNS: tuple[tuple[str, str, int, bool], ...] = (
    ("measure", "left", 34, True),
    ("result", "right", 0, False),
    ("physical limit", "right", 14, True),
    ("ratio", "right", 5, False),
    ("goal", "left", 12, True),
)


def results_table() -> Any:
    """An empty ``rich.table.Table`` with bench.py's columns (``RESULT_COLUMNS``), for rows
    of (measure, result, physical limit, ratio, goal) strings: every column readable at 160
    columns, and a measure's leading spaces (a sub-row's indent) kept when it wraps."""
    from rich.table import Table

    class ResultsTable(Table):
        def add_row(self, *cells: Any, **kw: Any) -> None:
            super().add_row(*(_keep_indent(c) for c in cells), **kw)

    t = ResultsTable()
    for header, justify, min_width, wrap in RESULT_COLUMNS:
        t.add_column(
            header,
            justify=justify,  # type: ignore[arg-type]
            min_width=min_width or None,
            no_wrap=not wrap,
            overflow="fold",
        )
    return t


def _keep_indent(cell: Any) -> Any:
    """A string cell's leading spaces as no-break spaces, which wrapping does not strip."""
    if isinstance(cell, str):
        body = cell.lstrip(" ")
        return "\u00a0" * (len(cell) - len(body)) + body
    return cell


def print_table(r: dict) -> None:
    """The human report: each measure, its physical limit measured in this run, the ratio."""
    from rich.console import Console

    m = r["machine"]
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(
        f"[bold]segd bench ({r['mode']}, {r['seconds']:.0f} s)[/bold]: {m['cores']} cores ({m['cpu']}), "
        f"{m['ram_gib']} GiB RAM, Python {m['python']}, Ray {m['ray']}, SQLite {m['sqlite']}, {m['os']}"
    )
    t = results_table()
    ing, fr, low, lim = r["ingest"], r["freshness"], r["freshness_low"], r["freshness_limit"]
    rp, mem = r["replay"], r["memory"]
    t.add_row(
        f"ingest -> durable ack, {ing['connections']} conn x {ing['batch']:,}, {r['shards']} shards",
        _eps(r["ingest_eps"]),
        f"{_eps(r['ingest_limit_eps'])} append",
        f"{r['ingest_ratio']:.2f}",
        ">= 70,000/s and 0.70",
    )
    t.add_row(
        f"  daemon CPU per event, all threads / loop; {ing['events_per_commit']:,.0f} ev/commit",
        f"{ing['daemon_cpu_us_per_event']:.1f} / {ing['loop_cpu_us_per_event']:.1f} us",
        "",
        "",
        "",
    )
    t.add_row(
        "  bench client CPU per event (its encoding: before the clock)",
        f"{ing['client_cpu_us_per_event']:.1f} us",
        f"encode {ing['encode_cpu_us_per_event']:.1f} us",
        "",
        "",
    )
    t.add_row(
        "  + apply (to sync)",
        _eps(r["ingest_applied_eps"]),
        "",
        f"{r['ingest_applied_eps'] / r['ingest_limit_eps']:.2f}",
        "",
    )
    for cell in r.get("ingest_matrix", {}).values():
        what = "track requests" if cell["batch"] == 1 else f"batches of {cell['batch']:,}"
        t.add_row(
            f"  ingest, {cell['connections']} conn x {what}",
            _eps(cell["eps"]),
            f"{cell['daemon_cpu_us_per_event']:.1f} / {cell['loop_cpu_us_per_event']:.1f} us CPU",
            f"{cell['eps'] / r['ingest_limit_eps']:.2f}",
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
    if "ray_floor" in r:
        t.add_row("  Ray call to an idle actor", _ms(r["ray_floor"]), "", "", "")
    for name, phase in (("unloaded", low), ("loaded", fr)):
        h = phase.get("hops_ms") or {}
        if h.get("samples"):
            t.add_row(
                f"  hops p50, {name} (ms)",
                " / ".join(f"{h.get(k, float('nan')):.1f}" for k in HOPS),
                "",
                "",
                "",
            )
    t.add_row(
        f"replay rebuild, {rp['events']:,} events",
        _eps(r["replay_eps"]),
        f"{_eps(r['replay_limit_eps'])} scan",
        f"{r['replay_ratio']:.2f}",
        "",
    )
    t.add_row(
        f"  whole segd replay, {rp['command_seconds']:.1f} s",
        _eps(rp["command_eps"]),
        "",
        f"{rp['command_eps'] / r['replay_limit_eps']:.2f}",
        ">= 0.50",  # DESIGN: the whole command, Ray start included, at half the raw scan
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
    if rss := mem.get("rss"):
        # The second, honest figure: the process's resident set (see scripts/bench_memory.py).
        for label, v in [("live", rss["live"])] + [("restored", v) for v in rss["sizes"].values()]:
            t.add_row(
                f"  shard RSS growth, {label}, {v['users']:,} users",
                f"{v['rss_bytes_per_user']:,} B/user",
                f"{v['rss_trimmed_bytes_per_user']:,} B trimmed",
                "",
                "",
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
        "by a subscriber. Hops: send -> commit done / of which the commit (stage, insert, fsync) / "
        "waiting for the router / the event's shard call -> frame read by the subscriber / of the "
        "batch, router -> every shard answered; and the "
        "managers' record, after the shards' answers, off that path. Ray floor: a call to an actor "
        "that does nothing, from another process, in this run. Matrix: the third column is "
        "the daemon's CPU time per event, all threads / the event loop's; ratio against the raw append. "
        "Scale-out: events/s until sync, ratio against 1 shard. segment at=: a page of "
        "1,000 members with T at 10/50/90% of a year of history and after it (dense: about half the users are "
        "members; sparse: a few dozen), beside a segments call (socket + one segment manager call)."
    )
