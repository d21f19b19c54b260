"""Segment managers: membership, sizes, history, idempotent by transition id.

``SegmentManager`` hosts the logical manager of every segment given to it (the pool is
sized in ``segd.daemon.runtime``). It runs on the daemon's node because it keeps its state in
``data_dir/segments.db`` (see store/segments.py); the Ray options live in segd/runtime.py.
Its input is batches of transitions in the order the shards produced them; its output is
the subset not seen before, which the daemon fans out to subscribers and dispatchers.
"""

from __future__ import annotations

from pathlib import Path

import structlog

from actors.records import SegmentPage, Transition, decoder, encode
from segd.errors import Fenced
from store.segments import SegmentStore

log = structlog.get_logger("segd.segments")

_TRANSITIONS = decoder(list[Transition])


class SegmentManager:
    """Member sets and history of ``segments`` (name -> (description, fingerprint)).

    Segments whose stored rows were computed with another definition (or all of them, with
    ``rebuild``) are emptied at start-up, to be rebuilt by replaying the log.
    """

    def __init__(
        self,
        data_dir: Path,
        segments: dict[str, tuple[str, str]],
        rebuild: bool = False,
        owner: str | None = None,
    ) -> None:
        """``owner``: the data dir lock's token of the daemon or replay this manager works
        for; its writes are refused (Fenced) once another segd holds the lock."""
        # A rebuild (``segd replay``) commits without an fsync per round: the store is derived
        # and the replay rebuilds it; ``checkpoint`` makes it durable once, at the end.
        self.store = SegmentStore(data_dir, owner=owner, synchronous="normal" if rebuild else "full")
        self.segments = segments
        old = self.store.versions()
        now = {name: fp for name, (_, fp) in segments.items()}
        stale = sorted(s for s in set(old) | set(now) if rebuild or old.get(s) != now.get(s))
        if rebuild:  # every segment, from empty, through the bulk write path
            self.store.rebuild(now)
            log.info("segments_reset", segments=stale, reason="rebuild")
        elif stale:
            self.store.reset(stale, now)
            log.info("segments_reset", segments=stale, reason="new, changed or removed definitions")
        self.rebuilt = stale
        self._sizes = {name: 0 for name in segments}
        self._sizes.update({k: v for k, v in self.store.sizes().items() if k in segments})

    def reset_segments(self) -> list[str]:
        """Segments whose stored rows were dropped at start-up and must be rebuilt from the log."""
        return self.rebuilt

    def apply(self, transitions: bytes) -> bytes:
        """Record transitions (encoded ``list[Transition]``); return the ones not seen before,
        in order, encoded the same way."""
        try:
            new = self.store.apply(t for t in _TRANSITIONS.decode(transitions) if t.segment in self.segments)
        except Fenced as exc:  # this manager outlived its daemon or replay (kill -9)
            log.error("store_fenced", store=str(self.store.path), reason=str(exc))
            raise
        sizes = self._sizes
        for t in new:
            sizes[t.segment] += 1 if t.kind == "enter" else -1
        return encode(new)

    def checkpoint(self) -> None:
        """Make every recorded transition durable (the end of a rebuild)."""
        self.store.checkpoint()

    def forget(self, user: str) -> int:
        """Erase ``user``'s membership and history (``forget``); returns the segments left."""
        left = self.store.forget(user)
        for segment in left:
            if segment in self._sizes:
                self._sizes[segment] -= 1
        return len(left)

    def sizes(self) -> dict[str, int]:
        return dict(self._sizes)

    def page(
        self, segment: str, after: str | None, limit: int, at: float | None = None
    ) -> SegmentPage | None:
        """One page of members, now or (``at``) as they were at that logical time; None for a
        segment this manager does not host."""
        if segment not in self.segments:
            return None
        if at is not None:
            return self.store.members_at(segment, at, after, limit)
        members = self.store.page(segment, after, limit + 1)
        more = len(members) > limit
        del members[limit:]
        return SegmentPage(size=self._sizes[segment], members=members, next=members[-1] if more else None)

    def history(
        self, segment: str | None, user: str | None, since: float | None, until: float | None, limit: int
    ) -> list[Transition] | None:
        """Transitions of ``segment`` (or, without one, of every hosted segment) and/or of
        ``user``, with ``since <= at <= until``, in history order, at most ``limit``; None
        for a segment this manager does not host."""
        if segment is not None and segment not in self.segments:
            return None
        segments = [segment] if segment is not None else sorted(self.segments)
        return self.store.history(segments, user, since, until, limit)

    def size_points(
        self, segment: str, since: float, step: float, count: int
    ) -> list[tuple[float, int]] | None:
        """The segment's size at ``since + k*step`` for k < ``count``; None if not hosted."""
        if segment not in self.segments:
            return None
        return self.store.size_points(segment, since, step, count)
