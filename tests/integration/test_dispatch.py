"""Dispatch end to end: real daemon, real Ray, real outbox file, real HTTP and SMTP servers."""

from __future__ import annotations

import email
import email.policy
import json
import signal
import sqlite3
from datetime import datetime
from zoneinfo import ZoneInfo

import psutil
import pytest

from segd.config import load_config
from segd.daemon.replay import replay
from segd.wire.client import Client
from tests.helpers import (
    DaemonThread,
    make_config,
    split_daemon,
    start_subprocess_daemon,
    wait_until,
    write_config,
)

T0 = 1_700_000_000.0
DAY = 86400.0

BASE = """
[daemon]
clock = "event"

[aggregates.views]
kind = "count"
event = "view"

[aggregates.spend]
kind = "sum"
event = "purchase"
of = "props.price"

[segments.fans]
description = "Two views or more"
when = "views >= 2"
"""


def file_channel(tmp_path, name: str = "out") -> str:
    return f'\n[channels.{name}]\nkind = "file"\npath = "{tmp_path / "messages.jsonl"}"\n'


HELLO = """
[campaigns.hello]
segment = "fans"
channel = "out"
template = "Hi {traits.first_name}, {views} views"
"""


def start(daemon_factory, config: str, sub: str = ""):
    rest, keys = split_daemon(config)
    return daemon_factory(rest, daemon=keys, sub=sub)


def lines(tmp_path) -> list[dict]:
    path = tmp_path / "messages.jsonl"
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def fan(c: Client, user: str, ts: float = T0, **traits) -> None:
    if traits:
        c.identify(user, traits, ts=ts)
    c.track(user, "view", ts=ts)
    c.track(user, "view", ts=ts + 1)


def outbox(d) -> list[dict]:
    conn = sqlite3.connect(d.config.daemon.data_dir / "outbox.db")
    conn.row_factory = sqlite3.Row
    rows = [dict(r) for r in conn.execute("SELECT * FROM messages ORDER BY rowid")]
    conn.close()
    return rows


def start_shared(tmp, config: str) -> DaemonThread:
    """A daemon for a class-scoped fixture (daemon_factory is per test). Class scope, not module
    scope: the kill -9 test below waits until no dispatcher process is left."""
    rest, keys = split_daemon(config)
    return DaemonThread(make_config(tmp, rest, daemon=keys)).start()


@pytest.fixture(scope="class")
def delivered(tmp_path_factory, ray_session):
    """(the daemon, the one message in its file) for TestOneDeliveredMessage."""
    tmp = tmp_path_factory.mktemp("delivered")
    d = start_shared(tmp, BASE + file_channel(tmp) + HELLO)
    try:
        with Client(d.socket) as c:
            fan(c, "alice", first_name="Alice")
            c.sync()
            [msg] = wait_until(lambda: lines(tmp), 30, what="a delivered message")
        yield d, msg
    finally:
        d.stop()


class TestOneDeliveredMessage:
    """alice becomes a fan; the hello campaign writes one message to the file channel."""

    def test_a_campaign_delivers_a_rendered_message_to_the_file_channel(self, delivered):
        _, msg = delivered
        assert list(msg) == ["id", "campaign", "segment", "user", "channel", "transition", "at", "body"]
        assert (msg["campaign"], msg["segment"], msg["user"], msg["channel"]) == (
            "hello",
            "fans",
            "alice",
            "out",
        )
        assert msg["body"] == "Hi Alice, 2 views" and msg["at"] == T0 + 1

    def test_the_message_names_the_transition_that_caused_it(self, delivered):
        d, msg = delivered
        with Client(d.socket) as c:
            [t] = c.history("fans", 0)["transitions"]
        assert msg["transition"] == t["id"]

    def test_stats_and_the_campaign_report_count_the_sent_message(self, delivered):
        d, _ = delivered
        with Client(d.socket) as c:
            wait_until(lambda: c.stats()["messages"]["sent"] == 1, 30, what="stats to count the message")
            [camp] = c.campaigns()["campaigns"]
            assert camp["campaign"] == "hello" and camp["variants"][0]["sent"] == 1


def test_a_new_campaign_never_messages_users_for_their_past(daemon_factory, tmp_path):
    d = start(daemon_factory, BASE + file_channel(tmp_path), sub="run")
    with Client(d.socket) as c:
        fan(c, "old", T0)
        c.sync()
    d.stop()
    d = start(daemon_factory, BASE + file_channel(tmp_path) + HELLO, sub="run")
    with Client(d.socket) as c:
        fan(c, "new", T0 + 100)
        c.sync()
        wait_until(lambda: lines(tmp_path), 30, what="the new user's message")
        assert [m["user"] for m in lines(tmp_path)] == ["new"]
        assert [r["user"] for r in outbox(d)] == ["new"]


def test_restarts_and_replays_never_send_a_message_twice(daemon_factory, tmp_path):
    config = BASE + file_channel(tmp_path) + HELLO
    d = start(daemon_factory, config, sub="run")
    with Client(d.socket) as c:
        for i in range(20):
            fan(c, f"u{i}", T0 + i)
        c.sync()
        wait_until(lambda: len(lines(tmp_path)) == 20, 30, what="20 messages")
    d.stop()
    summary = replay(d.config)
    assert summary["segments"]["fans"] == 20
    d = start(daemon_factory, config, sub="run")
    with Client(d.socket) as c:
        c.sync()
        messages = c.stats()["messages"]
        assert (messages["sent"], messages["pending"]) == (20, 0)  # nothing left that could go out
    assert len({m["id"] for m in lines(tmp_path)}) == len(lines(tmp_path)) == 20
    assert len(outbox(d)) == 20


def webhook(url: str, name: str = "hook", **extra) -> str:
    more = "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    return f'\n[channels.{name}]\nkind = "webhook"\nurl = "{url}"\nbackoff = "50ms"\n{more}'


def campaign(name: str, channel: str, **extra) -> str:
    more = "".join(f"{k} = {json.dumps(v)}\n" for k, v in extra.items())
    return f'\n[campaigns.{name}]\nsegment = "fans"\nchannel = "{channel}"\ntemplate = "Hi {{user}}"\n{more}'


def test_a_failing_webhook_is_retried_with_the_same_idempotency_key(daemon_factory, http_server):
    d = start(daemon_factory, BASE + webhook(http_server.base + "/flaky") + campaign("ping", "hook"))
    with Client(d.socket) as c:
        fan(c, "alice")
        c.sync()
        wait_until(lambda: c.stats()["messages"]["sent"] == 1, 30, what="the retried delivery")
    first, second = http_server.requests
    assert first["headers"]["idempotency-key"] == second["headers"]["idempotency-key"] == first["json"]["id"]
    [row] = outbox(d)
    assert (row["status"], row["attempts"], row["last_error"]) == ("sent", 2, None)


def test_a_message_that_keeps_failing_is_dead_lettered(daemon_factory, http_server):
    d = start(
        daemon_factory,
        BASE + webhook(http_server.base + "/status/503", max_attempts=3) + campaign("ping", "hook"),
    )
    with Client(d.socket) as c:
        fan(c, "alice")
        c.sync()
        wait_until(lambda: c.stats()["messages"]["failed"]["dead_letter"] == 1, 30, what="a dead letter")
    assert len(http_server.requests) == 3
    conn = sqlite3.connect(d.config.daemon.data_dir / "outbox.db")
    [(attempts, error)] = conn.execute("SELECT attempts, error FROM dead_letters").fetchall()
    assert attempts == 3 and "503" in error


def test_a_hanging_channel_blocks_neither_ingestion_nor_other_channels(daemon_factory, tmp_path, http_server):
    config = (
        BASE
        + webhook(http_server.base + "/slow", timeout="30s")
        + file_channel(tmp_path)
        + campaign("slow", "hook")
        + campaign("fast", "out")
    )
    d = start(daemon_factory, config)
    with Client(d.socket) as c:
        fan(c, "alice")
        c.sync()
        wait_until(lambda: http_server.requests, 30, what="the webhook to be called")
        wait_until(lambda: lines(tmp_path), 30, what="the file channel to deliver meanwhile")
        for i in range(200):
            c.track(f"u{i}", "view", ts=T0 + 10)
        assert c.sync()["seq"] == 202
        assert c.stats()["messages"]["sent"] == 1  # the webhook is still hanging
        http_server.release.set()
        wait_until(lambda: c.stats()["messages"]["sent"] == 2, 30, what="the webhook to finish")


def test_http_provider_and_smtp_channels_deliver_by_preference(daemon_factory, http_server, smtp_server):
    box, ctl = smtp_server()
    config = (
        BASE
        + f"""
[channels.sms]
kind = "http"
url = "{http_server.base}/sms"
headers = {{ Authorization = "Bearer s3cret" }}
body = {{ to = "{{to}}", text = "{{body}}", ref = "{{id}}" }}

[channels.email]
kind = "smtp"
host = "127.0.0.1"
port = {ctl.port}
sender = "shop@example.com"

[campaigns.hello]
segment = "fans"
channel = "preferred"
fallback = ["email"]
template = "Hi {{traits.first_name}}"
subject = "Welcome, {{traits.first_name}}"
"""
    )
    d = start(daemon_factory, config)
    with Client(d.socket) as c:
        fan(
            c, "ann", first_name="Ann", preferred_channel="sms", phone="+33600000000", email="ann@example.com"
        )
        fan(c, "bob", first_name="Bob", email="bob@example.com")
        c.sync()
        wait_until(lambda: c.stats()["messages"]["sent"] == 2, 30, what="both deliveries")
    [req] = http_server.requests
    assert req["headers"]["authorization"] == "Bearer s3cret"
    assert req["json"]["to"] == "+33600000000" and req["json"]["text"] == "Hi Ann"
    assert req["headers"]["idempotency-key"] == req["json"]["ref"]
    [env] = box.envelopes
    mail = email.message_from_bytes(env.original_content, policy=email.policy.default)
    assert env.rcpt_tos == ["bob@example.com"] and mail["Subject"] == "Welcome, Bob"
    assert mail.get_content().strip() == "Hi Bob"


def start_quiet_nights(daemon_factory, tmp_path):
    """A daemon with the hello campaign to a file channel and quiet hours 21:00-08:00."""
    quiet = '\n[throttle]\nquiet_hours = { start = "21:00", end = "08:00" }\n'
    return start(daemon_factory, BASE + file_channel(tmp_path) + HELLO + quiet)


def test_quiet_hours_defer_delivery_until_the_engine_clock_passes_their_end(daemon_factory, tmp_path):
    paris = ZoneInfo("Europe/Paris")
    night = datetime(2026, 3, 28, 23, 0, tzinfo=paris).timestamp()  # the DST night
    morning = datetime(2026, 3, 29, 8, 0, tzinfo=paris).timestamp()
    d = start_quiet_nights(daemon_factory, tmp_path)
    with Client(d.socket) as c:
        fan(c, "alice", night, timezone="Europe/Paris", first_name="Alice")
        c.sync()
        [row] = outbox(d)
        assert (row["status"], row["reason"], row["due"]) == ("pending", "quiet_hours", morning)
        assert c.stats()["messages"]["deferred"] == 1
        c.track("someone", "ping", ts=morning - 1)
        c.sync()
        assert lines(tmp_path) == []
        c.track("someone", "ping", ts=morning)
        c.sync()
        [msg] = wait_until(lambda: lines(tmp_path), 30, what="the deferred message")
        assert msg["user"] == "alice" and msg["at"] == morning


PROMO = """
[campaigns.promo]
segment = "fans"
channel = "out"
template = "base"
holdout = 0.2
variants = [{ name = "a", weight = 1, template = "A" }, { name = "b", weight = 1, template = "B" }]
goal = { event = "purchase", within = "1d" }
"""


@pytest.fixture(scope="class")
def promo(tmp_path_factory, ray_session):
    """(the dir holding messages.jsonl, the campaign report by variant) for
    TestVariantsHoldoutAndGoals."""
    tmp = tmp_path_factory.mktemp("promo")
    d = start_shared(tmp, BASE + file_channel(tmp) + PROMO)
    try:
        with Client(d.socket) as c:
            for i in range(60):
                fan(c, f"u{i}", T0)
            for i in range(0, 60, 3):  # every third user buys within the day
                c.track(f"u{i}", "purchase", {"price": 10}, ts=T0 + 3600)
            c.track("u1", "purchase", {"price": 10}, ts=T0 + 2 * DAY)  # too late to count
            c.sync()
            [camp] = c.campaigns()["campaigns"]
        yield tmp, {v["variant"]: v for v in camp["variants"]}
    finally:
        d.stop()


class TestVariantsHoldoutAndGoals:
    """60 fans of a campaign with two variants and a 20% holdout; every third buys within the
    day, u1 also buys too late. The campaign report is read once, right after sync."""

    def test_users_are_split_between_the_variants_and_a_holdout_that_gets_nothing(self, promo):
        _, by = promo
        assert set(by) == {"holdout", "a", "b"}
        assert sum(v["assigned"] for v in by.values()) == 60 and by["holdout"]["sent"] == 0

    def test_goal_events_within_the_window_are_conversions(self, promo):
        _, by = promo
        assert sum(v["conversions"] for v in by.values()) == 20

    def test_the_conversion_rate_is_conversions_per_assigned_user(self, promo):
        _, by = promo
        for v in by.values():
            assert v["conversion_rate"] == round(v["conversions"] / v["assigned"], 6)

    def test_each_variant_delivers_its_own_template(self, promo):
        tmp, by = promo
        wait_until(lambda: len(lines(tmp)) == 60 - by["holdout"]["assigned"], 30, what="variant messages")
        assert {m["body"] for m in lines(tmp)} == {"A", "B"}


def dispatcher_processes() -> list:
    """Live Ray worker processes hosting a Dispatcher (Ray titles them ``ray::Dispatcher...``)."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if cmd and cmd[0].startswith("ray::Dispatcher"):
            found.append(p)
    return found


def test_kill_9_between_claim_and_delivery_retries_the_same_message(tmp_path, http_server):
    rest, keys = split_daemon(
        BASE + webhook(http_server.base + "/slow", timeout="60s") + campaign("ping", "hook")
    )
    path = write_config(tmp_path, rest, daemon=keys)
    config = load_config(path)
    proc = start_subprocess_daemon(path, config.daemon.socket)
    try:
        with Client(config.daemon.socket) as c:
            fan(c, "alice")
            c.sync()
        wait_until(lambda: http_server.requests, 30, what="the delivery to start")
        conn = sqlite3.connect(config.daemon.data_dir / "outbox.db")
        assert conn.execute("SELECT status, attempts FROM messages").fetchall() == [("claimed", 1)]
        conn.close()
        assert dispatcher_processes()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        # Ray kills the dead daemon's actors (fate sharing); let the provider recover only
        # then, so the old dispatcher cannot finish its delivery
        wait_until(lambda: not dispatcher_processes(), 30, what="the killed daemon's dispatcher to die")
        http_server.release.set()
        proc = start_subprocess_daemon(path, config.daemon.socket)
        with Client(config.daemon.socket) as c:
            wait_until(lambda: c.stats()["messages"]["sent"] == 1, 30, what="the retried delivery")
    finally:
        proc.kill()
        proc.wait(30)
    conn = sqlite3.connect(config.daemon.data_dir / "outbox.db")
    [(mid, status, attempts)] = conn.execute("SELECT id, status, attempts FROM messages").fetchall()
    assert status == "sent" and attempts == 2
    keys_seen = {r["headers"]["idempotency-key"] for r in http_server.requests}
    assert keys_seen == {mid} and len(http_server.requests) >= 2


def test_sighup_reload_applies_campaigns_channels_and_throttle_only(daemon_factory, tmp_path):
    config = BASE + file_channel(tmp_path) + HELLO
    d = start(daemon_factory, config, sub="run")
    with Client(d.socket) as c:
        fan(c, "early", T0)
        c.sync()
        rest, keys = split_daemon(
            config.replace("views >= 2", "views >= 5")
            + campaign("second", "out")
            + '\n[throttle]\nper_user = [{ max = 5, per = "1h" }]\n'
        )
        write_config(tmp_path / "run", rest, daemon=keys)
        assert d.run(d.daemon.reload()) is True
        assert [x.name for x in d.daemon.config.campaigns] == ["hello", "second"]
        assert d.daemon.config.segments[0].when == "views >= 2"  # segments need a restart
        fan(c, "late", T0 + 10)
        c.sync()
        wait_until(lambda: len(lines(tmp_path)) == 3, 30, what="three messages")
        assert sorted((m["user"], m["campaign"]) for m in lines(tmp_path)) == [
            ("early", "hello"),
            ("late", "hello"),
            ("late", "second"),
        ]
        write_config(tmp_path / "run", rest.replace('kind = "count"', 'kind = "bogus"'), daemon=keys)
        assert d.run(d.daemon.reload()) is False  # errors change nothing
        fan(c, "later", T0 + 20)
        c.sync()
        wait_until(lambda: len(lines(tmp_path)) == 5, 30, what="both campaigns still firing")


def test_a_user_who_unsubscribes_while_a_message_waits_out_quiet_hours_gets_nothing(daemon_factory, tmp_path):
    paris = ZoneInfo("Europe/Paris")
    night = datetime(2026, 6, 1, 23, 0, tzinfo=paris).timestamp()
    morning = datetime(2026, 6, 2, 8, 0, tzinfo=paris).timestamp()
    d = start_quiet_nights(daemon_factory, tmp_path)
    with Client(d.socket) as c:
        fan(c, "alice", night, timezone="Europe/Paris")
        fan(c, "bob", night, timezone="Europe/Paris")
        c.sync()
        c.identify("alice", {"unsubscribed": True}, ts=night + 60)
        c.track("someone", "ping", ts=morning)
        c.sync()
        wait_until(lambda: lines(tmp_path), 30, what="bob's deferred message")
        wait_until(
            lambda: c.stats()["messages"]["suppressed"].get("consent") == 1, 30, what="alice's withdrawal"
        )
    assert [m["user"] for m in lines(tmp_path)] == ["bob"]


def test_a_crash_after_the_file_write_leaves_no_duplicate_line(daemon_factory, tmp_path):
    config = BASE + file_channel(tmp_path) + HELLO
    d = start(daemon_factory, config, sub="run")
    with Client(d.socket) as c:
        fan(c, "alice")
        c.sync()
        wait_until(lambda: c.stats()["messages"]["sent"] == 1, 30, what="the delivery")
    d.stop()
    # What a kill -9 between the write and the outbox's 'sent' leaves behind:
    conn = sqlite3.connect(d.config.daemon.data_dir / "outbox.db")
    with conn:
        conn.execute("UPDATE messages SET status = 'claimed', sent_at = NULL")
    conn.close()
    d = start(daemon_factory, config, sub="run")
    wait_until(lambda: outbox(d)[0]["status"] == "sent", 30, what="the claim to be settled")
    [row] = outbox(d)
    assert row["attempts"] == 1  # found in the file, not sent again
    assert [m["user"] for m in lines(tmp_path)] == ["alice"]
