"""The records that flow through the pipeline, one shape each, from the socket to a message.

An event is validated into a ``NewEvent``, committed as a ``Row`` (and acknowledged with an
``Ack``), folded by its user's actor into ``Transition``s, which a shard returns in a
``ShardReply`` with the user's ``UserContext`` for campaign segments; the segment managers
record the transitions; a transition that fires a campaign travels as a ``Trigger`` (and a
goal event as a ``GoalEvent``) to the dispatch core, which decides a ``Decision``; the outbox
hands a pending one back as a ``DueMessage``, and a goal event that follows an ``Exposure``
becomes a ``Conversion``.

Every record but ``Ack`` is a msgspec ``Struct`` encoded as a msgpack array (``array_like``): that is
the one form a record takes as bytes, at the Ray boundary (``encode``/``decoder``), and it
decodes straight back into the same record. Measured here for a log row: building one costs
~60 ns (a NamedTuple ~350 ns), encoding ~35 ns (msgpack of a NamedTuple ~150 ns), decoding
about what ``msgpack.unpackb`` of the bare tuple costs. Field names are the same everywhere
they appear, including SPEC section 2's transition map.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

__all__ = [
    "Ack",
    "Conversion",
    "Decision",
    "DueMessage",
    "Exposure",
    "GoalEvent",
    "NewEvent",
    "PreviewPart",
    "Row",
    "ShardReply",
    "ShardSnapshot",
    "ShardStats",
    "SegmentPage",
    "Transition",
    "Trigger",
    "UserContext",
    "UserView",
    "decoder",
    "encode",
]

T = TypeVar("T")


class NewEvent(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """An event validated by a face (socket, HTTP), not yet in the log."""

    user: str
    type: str  # "track" | "identify"
    event: str | None  # None for identify
    ts: float | None  # None: the receive time, decided at append (see Clock)
    body: bytes  # props (track) or traits (identify): a msgpack map
    msg_id: str | None
    wall: float  # receive time, wall clock
    context: bytes | None = None  # where the event came from: a msgpack map, or None


class Row(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One event of the log as the user actors fold it."""

    seq: int  # log position
    user: str
    type: str  # "track" | "identify"
    event: str | None  # None for identify
    ts: float  # event time
    clock: float  # the engine clock when it was appended
    body: bytes | None  # msgpack props or traits
    context: bytes | None = None  # msgpack context map (SPEC section 2), or None


class Ack(msgspec.Struct, omit_defaults=True, frozen=True, gc=False):
    """What the log answers for one submitted event. The one record that is a map, not an
    array: it never crosses Ray, and it encodes as the ``batch`` answer's item (SPEC section
    2: ``{"seq": N}``, with ``"duplicate": true`` when so), so the socket answers a batch
    with the log's acks as they are, no answer object built per event."""

    seq: int
    duplicate: bool = False  # the msg_id was seen before: ``seq`` is the original's


class Transition(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A user entering or leaving a segment (SPEC section 2, "A transition T is a map")."""

    id: str
    segment: str
    user: str
    kind: str  # "enter" | "exit"
    at: float  # logical time of the change: the event clock, or the exact deadline
    seq: int  # log position that caused it (time-caused: the last one applied before)

    def to_map(self) -> dict[str, Any]:
        """The msgpack/JSON map of SPEC section 2."""
        return {
            "id": self.id,
            "segment": self.segment,
            "user": self.user,
            "kind": self.kind,
            "at": self.at,
            "seq": self.seq,
        }


class UserContext(msgspec.Struct, array_like=True, frozen=True):
    """A user's traits and aggregate values at a transition, for templates and consent."""

    traits: dict[str, Any]
    aggregates: dict[str, Any]


class Trigger(msgspec.Struct, array_like=True, frozen=True):
    """A transition that fires a campaign, with the user's context at that moment."""

    transition: Transition
    context: UserContext | None


class GoalEvent(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A track event named as some campaign's goal: it may convert a message."""

    user: str
    event: str
    ts: float
    seq: int


class ShardReply(msgspec.Struct, array_like=True, frozen=True):
    """A shard's answer to a state-changing call.

    ``ok`` False: the shard is not at the applied seq the caller expected (Ray restarted it,
    or it could not be reached): nothing was applied, the caller recovers it. ``contexts``
    holds, by transition id, the user's context for transitions of campaign segments.
    """

    ok: bool
    applied_seq: int
    transitions: list[Transition] = []
    contexts: dict[str, UserContext] = {}


class ShardSnapshot(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A shard's state as bytes, with the log position it includes."""

    applied_seq: int
    state: bytes


class ShardStats(msgspec.Struct, array_like=True, frozen=True, gc=False):
    users: int
    applied_seq: int
    clock: float


class UserView(msgspec.Struct, frozen=True):
    """The ``user`` op's answer (SPEC section 2)."""

    user: str
    traits: dict[str, Any]
    aggregates: dict[str, Any]
    segments: list[str]
    last_seq: int | None


class SegmentPage(msgspec.Struct, frozen=True):
    """The ``segment`` op's answer: one page of members sorted by user id."""

    size: int
    members: list[str]
    next: str | None


class PreviewPart(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One shard's answer to ``preview``: its users for whom an expression holds now.

    ``size`` counts them, ``sample`` holds the smallest of their ids (sorted, at most the
    number asked for), ``overlap`` maps each segment to how many of them are members."""

    size: int
    sample: list[str]
    overlap: dict[str, int]


class Decision(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What the dispatch core decided for one (campaign, transition): one outbox row."""

    id: str  # message id: a function of (campaign, transition id)
    campaign: str
    variant: str  # "" without variants; "holdout" for the holdout group
    segment: str
    user: str
    transition: str  # transition id
    at: float  # the transition's logical time
    decided: float  # engine clock at the decision
    due: float  # engine clock from which it may be delivered (quiet hours)
    channel: str  # "" when none could be used
    priority: int
    status: str  # pending | suppressed | holdout
    reason: str  # why suppressed, or "quiet_hours" for a deferred message
    payload: bytes | None  # msgpack {body, subject, to, fields}


class DueMessage(msgspec.Struct, frozen=True, gc=False):
    """A pending message whose time has come, as the outbox hands it to delivery."""

    id: str
    campaign: str
    variant: str
    segment: str
    user: str
    transition: str
    at: float
    channel: str
    attempts: int
    payload: bytes | None
    reason: str = ""  # "quiet_hours" for a deferred message


class Exposure(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A message (or holdout assignment) that a later goal event of its user may convert."""

    user: str
    campaign: str
    message: str  # message id
    variant: str
    at: float  # the transition's logical time: the goal window starts there


class Conversion(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A goal event that converted a message (or a holdout assignment)."""

    message: str
    campaign: str
    variant: str
    user: str
    ts: float
    seq: int


_ENCODER = msgspec.msgpack.Encoder()


def encode(value: object) -> bytes:
    """Records (and lists or maps of them) as msgpack: their one form as bytes."""
    return _ENCODER.encode(value)


def decoder(kind: type[T]) -> msgspec.msgpack.Decoder[T]:
    """A decoder that turns ``encode``'s bytes back into ``kind`` (e.g. ``list[Row]``)."""
    return msgspec.msgpack.Decoder(kind)
