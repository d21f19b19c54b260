"""An event's ``context`` (SPEC section 2): accepted, validated, logged, readable in where/of."""

from __future__ import annotations

import sqlite3

import msgpack
import pytest

from actors.model import Model
from actors.records import NewEvent, Row
from actors.shard.core import ShardCore
from segd.clock import Clock
from segd.config import parse_config
from segd.errors import ConfigError, ProtocolError
from segd.wire.protocol import parse_request
from store import schema
from store.eventlog import EventLog

T0 = 1_700_000_000.0


def request(**fields):
    return parse_request({"op": "track", "user": "alice", "event": "view", **fields})


def test_track_and_identify_accept_a_context_map():
    ev = request(context={"locale": "fr-FR", "device": {"os": "ios"}}).args["event"]
    assert ev.context == {"locale": "fr-FR", "device": {"os": "ios"}}
    who = parse_request({"op": "identify", "user": "a", "traits": {}, "context": {"ip": "10.0.0.1"}})
    assert who.args["event"].context == {"ip": "10.0.0.1"}


def test_an_event_without_context_has_none():
    assert request().args["event"].context is None


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ("fr", "'context' must be a map, got string"),
        (
            {"a": b"\x00"},
            "'context.a' has a value of unsupported type binary (expected string, number, boolean, nil, "
            "list or map)",
        ),
        ({"k" * 257: 1}, "'context' has a key of 257 characters; at most 256"),
    ],
)
def test_a_bad_context_is_refused_naming_the_field(context, message):
    with pytest.raises(ProtocolError) as exc:
        request(context=context)
    assert (exc.value.code, exc.value.message) == ("bad_request", message)


def test_a_context_nested_too_deep_is_refused():
    deep: dict = {"x": 1}
    for _ in range(8):
        deep = {"x": deep}
    with pytest.raises(ProtocolError, match="'context.x.x.x.x.x.x.x.x' is nested deeper than 8 levels"):
        request(context=deep)


def test_a_batch_item_context_error_names_the_item():
    req = parse_request(
        {"op": "batch", "events": [{"type": "track", "user": "a", "event": "v", "context": [1]}]}
    )
    [err] = req.args["events"]
    assert isinstance(err, ProtocolError) and err.message == "'events[0].context' must be a map, got list"


def event(context: dict | None) -> NewEvent:
    return NewEvent(
        user="u",
        type="track",
        event="view",
        ts=None,
        body=msgpack.packb({}),
        msg_id=None,
        wall=T0,
        context=msgpack.packb(context) if context is not None else None,
    )


def test_the_log_keeps_the_context_as_msgpack_or_null(tmp_path):
    log = EventLog(tmp_path)
    log.stage([event({"locale": "de"}), event(None)], Clock("wall"))
    log.commit()
    stored = (
        sqlite3.connect(tmp_path / "events.db").execute("SELECT context FROM events ORDER BY seq").fetchall()
    )
    assert [msgpack.unpackb(c) if c else c for (c,) in stored] == [{"locale": "de"}, None]
    [rows] = list(log.scan())
    assert [r.context for r in rows] == [msgpack.packb({"locale": "de"}), None]


def test_a_version_1_log_gains_the_context_column_and_keeps_its_rows(tmp_path):
    path = tmp_path / "events.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
    conn.execute("INSERT INTO meta VALUES ('schema_version', '1')")
    conn.execute(
        "CREATE TABLE events (seq INTEGER PRIMARY KEY, user TEXT NOT NULL, type TEXT NOT NULL, event TEXT, "
        "ts FLOAT NOT NULL, clock FLOAT NOT NULL, props BLOB, traits BLOB, msg_id TEXT)"
    )
    conn.execute("INSERT INTO events VALUES (1, 'u', 'track', 'view', 1.0, 1.0, NULL, NULL, NULL)")
    conn.commit()
    conn.close()
    log = EventLog(tmp_path)
    [rows] = list(log.scan())
    assert [(r.seq, r.user, r.context) for r in rows] == [(1, "u", None)]
    version = log.conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert int(version) == schema.SCHEMA_VERSION


CONFIG = {
    "aggregates": {
        "views_fr": {"kind": "count", "event": "view", "where": "context.locale == 'fr-FR'"},
        "oses": {"kind": "distinct", "event": "view", "of": "context.device.os"},
    },
    "segments": {"french": {"when": "views_fr >= 1"}},
}


def row(seq: int, context: dict | None) -> Row:
    return Row(
        seq=seq,
        user="a",
        type="track",
        event="view",
        ts=T0 + seq,
        clock=T0 + seq,
        body=msgpack.packb({}),
        context=msgpack.packb(context) if context is not None else None,
    )


def test_where_and_of_read_the_events_context():
    shard = ShardCore(Model.compile(parse_config(CONFIG)))
    out = shard.apply_batch(
        [
            row(1, {"locale": "de-DE", "device": {"os": "android"}}),
            row(2, None),
            row(3, {"locale": "fr-FR", "device": {"os": "ios"}}),
        ]
    )
    assert [(t.segment, t.kind, t.seq) for t in out] == [("french", "enter", 3)]
    view = shard.user("a")
    assert view.aggregates == {"views_fr": 1, "oses": 2}


def test_the_user_view_does_not_carry_the_context():
    shard = ShardCore(Model.compile(parse_config(CONFIG)))
    shard.apply_batch([row(1, {"locale": "fr-FR"})])
    view = shard.user("a")
    assert "context" not in view.__struct_fields__ and "fr-FR" not in repr(view)


def test_context_is_refused_in_a_segment_rule():
    config = {**CONFIG, "segments": {"french": {"when": "context.locale == 'fr-FR'"}}}
    with pytest.raises(
        ConfigError,
        match=r"segments.french: 'when' at column 1: context\.\* is only allowed in 'where' and 'of'",
    ):
        Model.compile(parse_config(config))


def test_context_cannot_name_an_aggregate():
    with pytest.raises(ConfigError, match="reserved word"):
        parse_config({"aggregates": {"context": {"kind": "count"}}})
