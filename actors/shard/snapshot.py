"""A shard snapshot's bytes: the one place their layout is written and read.

A snapshot is one msgpack map: ``format``, ``fingerprint``, ``applied_seq``, ``clock``, then
``users``, an array of ``[user, state]`` pairs (``state`` is the user's ``to_state()``). The
users come last so that a reader can check the head before it loads the first user, and so
that a writer can pack the head once it knows how many users follow: ``ShardCore.snapshot``
packs them all in one go, ``actors.shard.stepsnap`` over many calls and in another order.
Both go through ``Writer``; ``read`` reads either's bytes the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import msgpack

from segd.errors import SegdError

__all__ = ["FORMAT", "Head", "SnapshotMismatch", "Writer", "read"]

FORMAT = 1  # raise it when the layout or a user's state changes shape


class SnapshotMismatch(SegdError):
    """A shard snapshot cannot be used with this model (other fingerprint or format, or not a
    snapshot at all): rebuild the shard by replaying the log from the start."""


class Head(NamedTuple):
    """What a snapshot says besides its users: the model it was taken with and the log
    position (``applied_seq``) and shard clock it includes."""

    fingerprint: str
    applied_seq: int
    clock: float


class Writer:
    """Packs one snapshot: each user with ``user``, then everything with ``join``."""

    def __init__(self) -> None:
        self._packer = msgpack.Packer(use_bin_type=True)

    def user(self, user: str, state: Any) -> bytes:
        """One user's entry: ``state`` is its ``to_state()``."""
        entry: bytes = self._packer.pack([user, state])
        return entry

    def join(self, head: Head, users: list[bytes]) -> bytes:
        """The snapshot of ``head`` and ``users`` (entries from ``user``, in any order)."""
        packer = self._packer
        pack = packer.pack
        return b"".join(
            [
                packer.pack_map_header(5),
                pack("format"),
                pack(FORMAT),
                pack("fingerprint"),
                pack(head.fingerprint),
                pack("applied_seq"),
                pack(head.applied_seq),
                pack("clock"),
                pack(head.clock),
                pack("users"),
                packer.pack_array_header(len(users)),
                *users,
            ]
        )


def read(blob: bytes, fingerprint: str, into: dict[str, Any], load: Callable[[str, Any], Any]) -> Head:
    """Check ``blob``'s head against ``FORMAT`` and ``fingerprint``, then set ``into[user] =
    load(user, state)`` for each of its users; return its head.

    The users are decoded one by one from a streaming unpacker, never as one decoded
    document: a restored shard then holds in its resident set what a live one holds, not
    also the holes a million freed transient states leave in the allocator's arenas.

    Raises SnapshotMismatch for bytes that are not a map, another format or another
    fingerprint; whatever else msgpack or a malformed head raises, the caller translates.
    """
    unpacker = msgpack.Unpacker(raw=False, max_buffer_size=len(blob) + 1)
    unpacker.feed(blob)
    try:
        keys = unpacker.read_map_header()
    except Exception as exc:  # not a map, or no bytes at all
        raise SnapshotMismatch(f"not a shard snapshot: {exc}") from exc
    head: dict[str, Any] = {}
    checked = False
    for _ in range(keys):
        key = unpacker.unpack()
        if key != "users":
            head[key] = unpacker.unpack()
            continue
        _check(head, fingerprint)  # the writer puts the users last
        checked = True
        for _ in range(unpacker.read_array_header()):
            user, state = unpacker.unpack()
            into[user] = load(user, state)
    if not checked:
        _check(head, fingerprint)
    return Head(fingerprint=head["fingerprint"], applied_seq=head["applied_seq"], clock=head["clock"])


def _check(head: dict[str, Any], fingerprint: str) -> None:
    if head.get("format") != FORMAT:
        raise SnapshotMismatch(f"not a shard snapshot of format {FORMAT}")
    if head.get("fingerprint") != fingerprint:
        raise SnapshotMismatch(
            f"snapshot model fingerprint {head.get('fingerprint')!r} differs from the config's "
            f"{fingerprint!r} (aggregates or segments changed): rebuild from the log"
        )
