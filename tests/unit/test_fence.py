"""Fencing the derived stores by the data dir lock's holder, on real SQLite files: once a
new segd holds the lock and has opened a store, a worker of the earlier holder (still
running after a ``kill -9`` of its daemon or replay) can no longer write to it."""

from __future__ import annotations

import pytest

from actors.records import Transition
from segd.errors import Fenced
from store.datadir import DataDirLock, holder_token
from store.outbox import OutboxStore
from store.segments import SegmentStore
from tests.unit.test_outbox import row


def tr(user: str, seq: int) -> Transition:
    return Transition(id=f"s:{user}:{seq}", segment="s", user=user, kind="enter", at=float(seq), seq=seq)


def ids(store: SegmentStore) -> list[str]:
    return [r[0] for r in store.conn.execute("SELECT id FROM transitions ORDER BY id")]


def test_the_lock_records_a_new_token_at_every_acquire(tmp_path):
    with DataDirLock(tmp_path) as first:
        assert holder_token(tmp_path) == first.token
    with DataDirLock(tmp_path) as second:
        assert holder_token(tmp_path) == second.token != first.token
        pid = int((tmp_path / "segd.lock").read_text().split()[0])  # line 1 is still the pid
        assert pid > 0


def test_a_segment_store_of_the_old_holder_is_refused_once_the_new_one_opened(tmp_path):
    first = DataDirLock(tmp_path).acquire()
    old = SegmentStore(tmp_path, owner=first.token)
    assert [t.id for t in old.apply([tr("a", 1)])] == ["s:a:1"]
    first.release()  # as the kernel does when its process is killed
    with DataDirLock(tmp_path) as second:
        new = SegmentStore(tmp_path, owner=second.token)
        with pytest.raises(Fenced, match="segment store commit refused"):
            old.apply([tr("b", 2)])
        assert ids(new) == ["s:a:1"]  # nothing of the refused commit
        assert [t.id for t in new.apply([tr("c", 3)])] == ["s:c:3"]
        with pytest.raises(Fenced):
            old.forget("a")
        assert ids(new) == ["s:a:1", "s:c:3"]


def test_a_worker_restarted_for_a_gone_holder_cannot_even_open_the_store(tmp_path):
    first = DataDirLock(tmp_path).acquire()
    first.release()
    with DataDirLock(tmp_path), pytest.raises(Fenced, match="opening .*segments.db refused"):
        SegmentStore(tmp_path, owner=first.token)


def test_an_outbox_of_the_old_holder_records_and_claims_nothing(tmp_path):
    first = DataDirLock(tmp_path).acquire()
    old = OutboxStore(tmp_path, owner=first.token)
    assert [d.id for d in old.record([row("m1")])] == ["m1"]
    first.release()
    with DataDirLock(tmp_path) as second:
        new = OutboxStore(tmp_path, owner=second.token)
        with pytest.raises(Fenced, match="outbox write refused"):
            old.record([row("m2")])
        assert [r[0] for r in new.conn.execute("SELECT id FROM messages")] == ["m1"]
        assert [d.id for d in new.record([row("m3")])] == ["m3"]


def test_stores_opened_without_an_owner_are_not_fenced(tmp_path):
    """Tools and tests that open a store directly (no daemon) write as before."""
    with DataDirLock(tmp_path):
        assert [t.id for t in SegmentStore(tmp_path).apply([tr("a", 1)])] == ["s:a:1"]
