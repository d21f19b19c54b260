"""The ``segd`` command line (SPEC section 6).

Exit codes: 0 ok, 1 a user error (bad config, bad arguments, not found), 2 cannot connect,
3 internal error.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from segd import __version__, logs
from segd.cli_text import caret, history_text, members_text, parse_step, parse_time, preview_text, sizes_text
from segd.config import Config, load_config
from segd.errors import ConfigError, ConnectError, RemoteError, SegdError

if TYPE_CHECKING:  # the client is imported lazily, by the commands that talk to a daemon
    from segd.wire.client import Client

EXIT_OK, EXIT_USER, EXIT_CONNECT, EXIT_INTERNAL = 0, 1, 2, 3
DEFAULT_CONFIG = Path("config.toml")
_TIME = "seconds since the epoch, or ISO 8601 such as 2024-05-01T12:00:00Z (UTC unless an offset is given)"
_USER_CODES = {"bad_request", "not_found", "unknown_op", "bad_frame", "unauthorized", "frame_too_large"}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code 2 means "cannot connect" here
        self.print_usage(sys.stderr)
        self.exit(EXIT_USER, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The ``segd`` parser: one subcommand per entry of ``_COMMANDS``; bad arguments exit 1."""
    common = _Parser(add_help=False)
    common.add_argument(
        "--config",
        type=Path,
        default=None,
        help="config file (default ./config.toml; embedded defaults if absent)",
    )
    client = _Parser(add_help=False)
    client.add_argument("--socket", type=Path, default=None, help="daemon socket (default: from config)")
    client.add_argument("--json", action="store_true", help="print JSON")

    parser = _Parser(prog="segd", description="Real-time user segmentation daemon.")
    parser.add_argument("--version", action="version", version=f"segd {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    sub.add_parser("run", parents=[common], help="run the daemon in the foreground")
    sub.add_parser("check", parents=[common], help="validate the config")

    p = sub.add_parser("send", parents=[common, client], help="send one track event")
    p.add_argument("event")
    p.add_argument("--user", required=True)
    p.add_argument(
        "--prop",
        action="append",
        default=[],
        metavar="K=V",
        help='an event property; V is parsed as JSON when it can be (42, true, "x")',
    )
    p.add_argument("--ts", type=float, default=None, help="event time, seconds since the epoch")
    p.add_argument("--msg-id", default=None, help="idempotency key")
    p.add_argument(
        "--context",
        action="append",
        default=[],
        metavar="K=V",
        help="where the event came from (locale, device, campaign...); V parsed as JSON when it can be",
    )

    p = sub.add_parser("identify", parents=[common, client], help="set traits of a user")
    p.add_argument("--user", required=True)
    p.add_argument(
        "traits", nargs="+", metavar="K=V", help="V parsed as JSON when it can be; 'k=null' removes k"
    )
    p.add_argument("--ts", type=float, default=None)
    p.add_argument("--msg-id", default=None)
    p.add_argument("--context", action="append", default=[], metavar="K=V", help="as for send")

    sub.add_parser("stats", parents=[common, client], help="daemon statistics")
    p = sub.add_parser(
        "forget",
        parents=[common, client],
        help="erase a user: events, state, history, messages (no message is sent)",
    )
    p.add_argument("user")
    sub.add_parser(
        "campaigns",
        parents=[common, client],
        help="per campaign and variant: sent, suppressed, conversions, conversion rate",
    )

    p = sub.add_parser("user", parents=[common, client], help="a user's traits, aggregates and segments")
    p.add_argument("user")
    sub.add_parser("segments", parents=[common, client], help="every segment with its size")
    p = sub.add_parser(
        "segment", parents=[common, client], help="members of a segment, now or at a past time"
    )
    p.add_argument("name")
    p.add_argument("--limit", type=int, default=1000)
    p.add_argument("--after", default=None, help="user id cursor (from the previous page's 'next')")
    p.add_argument("--at", type=parse_time, default=None, metavar="T", help=f"members at this time ({_TIME})")
    p = sub.add_parser("history", parents=[common, client], help="transitions of a segment and/or a user")
    p.add_argument("--segment", default=None)
    p.add_argument("--user", default=None)
    p.add_argument("--since", type=parse_time, default=None, metavar="T", help=_TIME)
    p.add_argument("--until", type=parse_time, default=None, metavar="T", help=_TIME)
    p.add_argument("--limit", type=int, default=None, help="at most this many (default 10,000)")
    p = sub.add_parser("sizes", parents=[common, client], help="a segment's size at regular points in time")
    p.add_argument("segment")
    p.add_argument("--since", type=parse_time, required=True, metavar="T", help=_TIME)
    p.add_argument("--until", type=parse_time, required=True, metavar="T", help=_TIME)
    p.add_argument(
        "--step", type=parse_step, required=True, help="30s, 1h, 1d or seconds (at most 10,000 points)"
    )
    p = sub.add_parser(
        "preview",
        parents=[common, client],
        help="how many users an expression holds for now, changing nothing",
    )
    p.add_argument("expression", metavar="EXPR", help="an expression as in a segment's 'when'")
    p = sub.add_parser("subscribe", parents=[common, client], help="print transitions as JSON lines")
    p.add_argument("segments", nargs="*", metavar="NAME", help="segments to follow (default: all)")

    p = sub.add_parser("replay", parents=[common], help="rebuild every derived store from the log, offline")
    p.add_argument("--until", type=int, default=None, metavar="SEQ", help="stop at this log position")
    p.add_argument(
        "--no-dispatch",
        action="store_true",
        help="send no messages (dispatch is never "
        "repeated by a replay either way: the outbox remembers every message id)",
    )
    p = sub.add_parser(
        "demo",
        parents=[common],
        help="run segd on a temporary data dir with a live shop "
        "workload: segments filling, messages going out",
    )
    p.add_argument("--seconds", type=float, default=None, help="stop after this long and print a summary")
    p.add_argument("--rate", type=float, default=1000.0, help="events per second (default 1000)")
    p.add_argument("--users", type=int, default=5000, help="distinct users in the workload (default 5000)")
    p.add_argument("--ray-address", default=None, help=argparse.SUPPRESS)  # tests: join their Ray
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one ``segd`` command (``argv`` defaults to ``sys.argv[1:]``); returns the exit code.

    segd's own errors become a message on stderr and an exit code (see the module docstring);
    Ctrl-C exits 0.
    """
    args = build_parser().parse_args(argv)
    logs.configure()
    try:
        config = _config(args.config)
        return _COMMANDS[args.command](args, config)
    except ConfigError as exc:
        for f, t, m in exc.problems:
            print(f"{f}: {t}: {m}", file=sys.stderr)
        return EXIT_USER
    except ConnectError as exc:
        print(f"segd: {exc}", file=sys.stderr)
        return EXIT_CONNECT
    except RemoteError as exc:
        print(f"segd: {exc.code}: {exc.message}", file=sys.stderr)
        return EXIT_USER if exc.code in _USER_CODES else EXIT_INTERNAL
    except SegdError as exc:
        print(f"segd: {exc}", file=sys.stderr)
        return EXIT_INTERNAL
    except KeyboardInterrupt:
        return EXIT_OK


def _config(path: Path | None) -> Config:
    if path is None:
        return load_config(DEFAULT_CONFIG) if DEFAULT_CONFIG.exists() else load_config(None)
    return load_config(path)


def _client(args: argparse.Namespace, config: Config) -> Client:
    from segd.wire.client import Client

    return Client(args.socket or config.daemon.socket)


def _show(args: argparse.Namespace, result: Any, text: str) -> None:
    print(json.dumps(result, sort_keys=True) if args.json else text)


def _kv(items: list[str], what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise RemoteError("bad_request", f"{what} {item!r} must look like key=value")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out


def cmd_run(args: argparse.Namespace, config: Config) -> int:
    """``segd run``: the daemon in the foreground until it is stopped; its exit code."""
    from segd.daemon.lifecycle import run_daemon

    return run_daemon(config)


def cmd_check(args: argparse.Namespace, config: Config) -> int:
    """``segd check``: compile the config and print what it holds; ConfigError names each bad
    expression."""
    from actors.model import Model

    Model.compile(config)  # raises ConfigError naming each bad expression
    print(
        f"{config.label}: ok: {len(config.aggregates)} aggregates, {len(config.segments)} segments, "
        f"{len(config.channels)} channels, {len(config.campaigns)} campaigns"
    )
    return EXIT_OK


def _logged(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords ``send`` and ``identify`` share: ``ts``, ``msg_id`` and the
    ``--context`` pairs (None when there are none)."""
    return {"ts": args.ts, "msg_id": args.msg_id, "context": _kv(args.context, "--context") or None}


def cmd_send(args: argparse.Namespace, config: Config) -> int:
    """``segd send``: log one track event; prints its seq."""
    with _client(args, config) as c:
        r = c.track(args.user, args.event, _kv(args.prop, "--prop"), **_logged(args))
    _show(args, r, f"seq {r['seq']}" + (" (duplicate)" if r.get("duplicate") else ""))
    return EXIT_OK


def cmd_identify(args: argparse.Namespace, config: Config) -> int:
    """``segd identify``: set traits of a user; prints the event's seq."""
    with _client(args, config) as c:
        r = c.identify(args.user, _kv(args.traits, "trait"), **_logged(args))
    _show(args, r, f"seq {r['seq']}" + (" (duplicate)" if r.get("duplicate") else ""))
    return EXIT_OK


def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    """``segd stats``: the daemon's statistics, as JSON or a table of dotted keys."""
    with _client(args, config) as c:
        r = c.stats()
    if args.json:
        _show(args, r, "")
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table("metric", "value", title="segd stats", show_lines=False)
    for key, value in _flatten(r):
        table.add_row(
            key, f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
        )
    Console().print(table)
    return EXIT_OK


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """Nested maps as dotted keys (``messages.suppressed.consent``); lists of maps by index."""
    if isinstance(value, dict):
        return [kv for k, v in value.items() for kv in _flatten(v, f"{prefix}.{k}" if prefix else str(k))]
    if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        return [kv for i, v in enumerate(value) for kv in _flatten(v, f"{prefix}[{i}]")]
    return [(prefix, value)]


def cmd_demo(args: argparse.Namespace, config: Config) -> int:
    """``segd demo``: the live demo on a temporary data dir, then a summary (needs a config file)."""
    import asyncio
    import os

    from segd.demo.live import run_demo

    if config.path is None:
        print(
            "segd demo: needs a config with segments and campaigns: run it where config.toml is, "
            "or pass --config",
            file=sys.stderr,
        )
        return EXIT_USER
    os.environ.setdefault("SEGD_LOG_LEVEL", "warning")  # the live view is the output; Ray workers inherit
    logs.configure(os.environ["SEGD_LOG_LEVEL"])
    summary = asyncio.run(
        run_demo(
            config.path, seconds=args.seconds, rate=args.rate, users=args.users, ray_address=args.ray_address
        )
    )
    m = summary["messages"]
    print(
        f"\n{summary['events']:,} events from {summary['users']:,} users, "
        f"{summary['transitions']:,} transitions; messages: {m['sent']:,} sent, {m['pending']:,} pending "
        f"({m['deferred']:,} deferred by quiet hours), {sum(m['suppressed'].values()):,} suppressed "
        f"{json.dumps(m['suppressed'], sort_keys=True)}, {m['holdout']:,} held out"
    )
    for name, size in sorted(summary["segments"].items()):
        print(f"  {name:<24} {size:>7,}")
    return EXIT_OK


def cmd_forget(args: argparse.Namespace, config: Config) -> int:
    """``segd forget``: erase a user; prints how many events went and segments it left."""
    with _client(args, config) as c:
        r = c.forget(args.user)
    _show(args, r, f"forgot {args.user}: {r['events']} events erased, left {r['segments']} segments")
    return EXIT_OK


def cmd_campaigns(args: argparse.Namespace, config: Config) -> int:
    """``segd campaigns``: one line per campaign and variant."""
    with _client(args, config) as c:
        r = c.campaigns()
    head = (
        f"{'campaign':<20} {'variant':<10} {'assigned':>8} {'sent':>7} {'pending':>7} {'suppressed':>10} "
        f"{'dead':>5} {'conv':>6} {'rate':>7}"
    )
    lines = [head]
    for camp in r["campaigns"]:
        for v in camp["variants"]:
            rate = "-" if v["conversion_rate"] is None else f"{v['conversion_rate']:.2%}"
            lines.append(
                f"{camp['campaign']:<20} {v['variant'] or '-':<10} {v['assigned']:>8} {v['sent']:>7} "
                f"{v['pending']:>7} {sum(v['suppressed'].values()):>10} {v['dead']:>5} "
                f"{v['conversions']:>6} {rate:>7}"
            )
    _show(args, r, "\n".join(lines))
    return EXIT_OK


def cmd_user(args: argparse.Namespace, config: Config) -> int:
    """``segd user``: a user's traits, aggregates and segments."""
    with _client(args, config) as c:
        r = c.user(args.user)
    text = (
        [
            f"user      {r['user']}  (last seq {r['last_seq']})",
            f"segments  {', '.join(r['segments']) or '-'}",
            "traits",
        ]
        + [f"  {k} = {json.dumps(v)}" for k, v in sorted(r["traits"].items())]
        + ["aggregates"]
        + [f"  {k} = {json.dumps(v)}" for k, v in sorted(r["aggregates"].items())]
    )
    _show(args, r, "\n".join(text))
    return EXIT_OK


def cmd_segments(args: argparse.Namespace, config: Config) -> int:
    """``segd segments``: every segment with its size and description."""
    with _client(args, config) as c:
        r = c.segments()
    rows = r["segments"]
    width = max((len(s["name"]) for s in rows), default=4)
    _show(
        args,
        r,
        "\n".join(
            [f"{'name':<{width}}  {'size':>9}  description"]
            + [f"{s['name']:<{width}}  {s['size']:>9}  {s['description']}" for s in rows]
        ),
    )
    return EXIT_OK


def cmd_segment(args: argparse.Namespace, config: Config) -> int:
    """``segd segment``: one page of a segment's members (now, or ``--at`` a past time), with
    the cursor for the next."""
    with _client(args, config) as c:
        r = c.segment(args.name, limit=args.limit, after=args.after, at=args.at)
    _show(args, r, members_text(args.name, r, args.at))
    return EXIT_OK


def cmd_history(args: argparse.Namespace, config: Config) -> int:
    """``segd history``: transitions of ``--segment`` and/or ``--user``, one per line."""
    if args.segment is None and args.user is None:
        print("segd history: give --segment, --user or both", file=sys.stderr)
        return EXIT_USER
    with _client(args, config) as c:
        r = c.history(args.segment, args.since, args.until, user=args.user, limit=args.limit)
    _show(args, r, history_text(r["transitions"]))
    return EXIT_OK


def cmd_sizes(args: argparse.Namespace, config: Config) -> int:
    """``segd sizes``: a segment's size at each step from ``--since`` to ``--until``."""
    with _client(args, config) as c:
        r = c.sizes(args.segment, args.since, args.until, args.step)
    _show(args, r, sizes_text(r["points"]))
    return EXIT_OK


def cmd_preview(args: argparse.Namespace, config: Config) -> int:
    """``segd preview``: how many users an expression holds for, a sample, the overlap with
    each segment; an invalid expression is shown with a caret under the column at fault."""
    with _client(args, config) as c:
        try:
            r = c.preview(args.expression)
        except RemoteError as exc:
            if exc.code == "bad_request" and (mark := caret(args.expression, exc.message)) and not args.json:
                print(mark, file=sys.stderr)
            raise
    _show(args, r, preview_text(r))
    return EXIT_OK


def cmd_subscribe(args: argparse.Namespace, config: Config) -> int:
    """``segd subscribe``: print transitions as JSON lines until the daemon closes."""
    from segd.wire.client import Client

    with Client(args.socket or config.daemon.socket, timeout=None) as c:
        for t in c.subscribe(args.segments or "*"):
            print(json.dumps(t, sort_keys=True), flush=True)
    return EXIT_OK


def cmd_replay(args: argparse.Namespace, config: Config) -> int:
    """``segd replay``: rebuild every derived store from the log, offline; prints the summary."""
    from segd.daemon.replay import replay

    bar = _ProgressBar()
    summary = replay(config, until=args.until, progress=bar.update, dispatch=not args.no_dispatch)
    bar.close()
    print(json.dumps(summary, sort_keys=True))
    return EXIT_OK


class _ProgressBar:
    """A progress bar on stderr when it is a terminal; silent otherwise."""

    def __init__(self) -> None:
        self.progress = None
        if sys.stderr.isatty():
            from rich.progress import Progress

            self.progress = Progress(transient=True)
            self.progress.start()
            self.task = self.progress.add_task("replaying the log", total=None)

    def update(self, done: int, total: int) -> None:
        if self.progress is not None:
            self.progress.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()


_COMMANDS = {
    "run": cmd_run,
    "check": cmd_check,
    "send": cmd_send,
    "identify": cmd_identify,
    "stats": cmd_stats,
    "campaigns": cmd_campaigns,
    "forget": cmd_forget,
    "demo": cmd_demo,
    "user": cmd_user,
    "segments": cmd_segments,
    "segment": cmd_segment,
    "history": cmd_history,
    "sizes": cmd_sizes,
    "preview": cmd_preview,
    "subscribe": cmd_subscribe,
    "replay": cmd_replay,
}
