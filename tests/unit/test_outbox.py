"""The durable outbox on a real SQLite file: idempotent decisions, claim-then-send."""

from __future__ import annotations

from actors.records import Conversion, Decision
from store.outbox import OutboxStore

T0 = 1_700_000_000.0


def row(
    mid: str, user: str = "alice", due: float = T0, status: str = "pending", channel: str = "out"
) -> Decision:
    return Decision(
        id=mid,
        campaign="promo",
        variant="",
        segment="fans",
        user=user,
        transition=f"t-{mid}",
        at=T0,
        decided=T0,
        due=due,
        channel=channel,
        priority=0,
        status=status,
        reason="",
        payload=b"\x80",
    )


def messages(store: OutboxStore) -> list[dict]:
    """Every message row as a dict, in decision order."""
    cur = store.conn.execute("SELECT * FROM messages ORDER BY rowid")
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def test_record_inserts_each_message_id_once(tmp_path):
    store = OutboxStore(tmp_path)
    assert [r.id for r in store.record([row("a"), row("b")])] == ["a", "b"]
    assert [r.id for r in store.record([row("b"), row("c")])] == ["c"]


def test_known_answers_which_ids_are_recorded(tmp_path):
    store = OutboxStore(tmp_path)
    store.record([row("a"), row("b")])
    store.record([row("b"), row("c")])
    assert store.known(["a", "c", "z"]) == {"a", "c"}


def mixed(tmp_path) -> OutboxStore:
    """Pending a (due T0) and b (due T0 + 10) on "out", c on another channel, d suppressed."""
    store = OutboxStore(tmp_path)
    store.record(
        [row("a", due=T0), row("b", due=T0 + 10), row("c", channel="other"), row("d", status="suppressed")]
    )
    return store


def test_due_respects_clock_channel_and_status(tmp_path):
    store = mixed(tmp_path)
    assert [m.id for m in store.due("out", T0, wall=0, limit=10)] == ["a"]
    assert [m.id for m in store.due("out", T0 + 10, wall=0, limit=10)] == ["a", "b"]


def test_a_retried_message_is_not_due_before_its_retry_time(tmp_path):
    store = mixed(tmp_path)
    store.retry("a", next_try=100.0, error="boom")
    assert [m.id for m in store.due("out", T0 + 10, wall=50, limit=10)] == ["b"]
    assert store.next_retry("out", T0 + 10) == 100.0


def test_a_claim_survives_a_crash_and_is_retried_under_the_same_id(tmp_path):
    store = OutboxStore(tmp_path)
    store.record([row("a")])
    store.claim(["a"])
    store.close()  # "crash" between claim and delivery
    again = OutboxStore(tmp_path)
    assert again.due("out", T0, 0, 10) == []
    assert again.release_claims() == 1
    [m] = again.due("out", T0, 0, 10)
    assert (m.id, m.attempts) == ("a", 1)
    again.claim(["a"])
    again.sent([("a", T0 + 1)])
    [msg] = messages(again)
    assert (msg["status"], msg["attempts"], msg["sent_at"]) == ("sent", 2, T0 + 1)


def test_dead_letters_keep_the_last_error(tmp_path):
    store = OutboxStore(tmp_path)
    store.record([row("a")])
    store.claim(["a"])
    store.dead("a", "HTTP 500", at=5.0)
    [(status, reason, n)] = [(*k, v) for k, v in store.counts().items()]
    assert (status, n) == ("dead", 1)
    dl = store.conn.execute("SELECT id, attempts, error FROM dead_letters").fetchall()
    assert dl == [("a", 1, "HTTP 500")]


def test_activation_is_kept_while_the_key_is_unchanged(tmp_path):
    store = OutboxStore(tmp_path)
    assert store.activations({"promo": "k1"}, now=10.0) == {"promo": 10.0}
    assert store.activations({"promo": "k1", "new": "k"}, now=20.0) == {"promo": 10.0, "new": 20.0}
    assert store.activations({"promo": "k2"}, now=30.0) == {"promo": 30.0}
    assert store.activations({"new": "k"}, now=40.0) == {"new": 40.0}  # removed, then re-added: new


def test_conversions_count_once_per_message(tmp_path):
    store = OutboxStore(tmp_path)
    first = Conversion(message="a", campaign="promo", variant="v1", user="alice", ts=T0, seq=5)
    again = Conversion(message="a", campaign="promo", variant="v1", user="alice", ts=T0 + 1, seq=6)
    assert store.convert([first, again]) == 1
    assert store.conversions() == {("promo", "v1"): 1}
