"""Validation of the query ops of SPEC section 2: ``segment`` with ``at``, ``history`` by
segment and/or user, ``sizes``, ``preview``."""

from __future__ import annotations

import pytest

from segd.errors import ProtocolError
from segd.wire.protocol import MAX_POINTS, parse_request


def bad(frame: dict) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        parse_request(frame)
    return info.value


@pytest.mark.parametrize(
    "frame, field",
    [
        ({"op": "segment", "name": "s", "at": "yesterday"}, "at"),
        ({"op": "segment", "name": "s", "at": float("inf")}, "at"),
        ({"op": "segment", "name": "s", "at": True}, "at"),
        ({"op": "history"}, "segment"),
        ({"op": "history", "user": ""}, "user"),
        ({"op": "history", "user": "u", "since": "x"}, "since"),
        ({"op": "history", "user": "u", "until": float("nan")}, "until"),
        ({"op": "history", "user": "u", "limit": 0}, "limit"),
        ({"op": "history", "user": "u", "limit": 100_001}, "limit"),
        ({"op": "history", "user": "u", "users": "u"}, "users"),
        ({"op": "sizes", "since": 0, "until": 10, "step": 1}, "segment"),
        ({"op": "sizes", "segment": "s", "until": 10, "step": 1}, "since"),
        ({"op": "sizes", "segment": "s", "since": 0, "step": 1}, "until"),
        ({"op": "sizes", "segment": "s", "since": 0, "until": 10}, "step"),
        ({"op": "sizes", "segment": "s", "since": 0, "until": 10, "step": 0.5}, "step"),
        ({"op": "sizes", "segment": "s", "since": 0, "until": 10, "step": "1h"}, "step"),
        ({"op": "sizes", "segment": "s", "since": 10, "until": 0, "step": 1}, "until"),
        ({"op": "preview"}, "when"),
        ({"op": "preview", "when": ""}, "when"),
        ({"op": "preview", "when": 3}, "when"),
    ],
)
def test_a_bad_query_names_the_field(frame, field):
    err = bad(frame)
    assert err.code == "bad_request"
    assert f"'{field}'" in err.message


def test_segment_at_is_optional_and_a_float():
    assert parse_request({"op": "segment", "name": "s"}).args["at"] is None
    assert parse_request({"op": "segment", "name": "s", "at": 17}).args["at"] == 17.0


def test_history_needs_a_segment_or_a_user_and_nothing_else():
    by_user = parse_request({"op": "history", "user": "alice"}).args
    assert by_user == {"segment": None, "user": "alice", "since": None, "until": None, "limit": 10_000}
    both = parse_request({"op": "history", "segment": "s", "user": "alice", "since": 5, "limit": 3}).args
    assert (both["segment"], both["user"], both["since"], both["limit"]) == ("s", "alice", 5.0, 3)


def test_sizes_counts_the_points_from_since_to_until_inclusive():
    args = parse_request({"op": "sizes", "segment": "s", "since": 0, "until": 3600, "step": 60}).args
    assert args["count"] == 61
    args = parse_request({"op": "sizes", "segment": "s", "since": 0, "until": 3599, "step": 60}).args
    assert args["count"] == 60


def test_sizes_counts_a_last_point_that_lands_on_until_despite_float_rounding():
    since, step = 1_700_000_000.1, 0.1 * 3 + 1  # neither is exact in binary
    until = since + 7 * step
    assert (
        parse_request({"op": "sizes", "segment": "s", "since": since, "until": until, "step": step}).args[
            "count"
        ]
        == 8
    )


def test_sizes_allows_ten_thousand_points_and_refuses_one_more_naming_the_step():
    ok = {"op": "sizes", "segment": "s", "since": 0, "until": MAX_POINTS - 1, "step": 1}
    assert parse_request(ok).args["count"] == MAX_POINTS
    err = bad({**ok, "until": MAX_POINTS})
    assert err.code == "bad_request"
    assert "'step'" in err.message and "10,001 points" in err.message and "at least 2 s" in err.message


def test_sizes_at_times_where_a_step_no_longer_moves_the_float_is_refused_not_spun_on():
    # 1e300 + 60 == 1e300: every point is <= until, so there are more than MAX_POINTS of them
    # (schemathesis found the counting loop spinning forever on such a request)
    err = bad({"op": "sizes", "segment": "s", "since": 1e300, "until": 1e300, "step": 60})
    assert err.code == "bad_request" and "'step'" in err.message
    err = bad({"op": "sizes", "segment": "s", "since": -1.3e16, "until": 1.7976931348623155e308, "step": 1e7})
    assert err.code == "bad_request" and "'step'" in err.message


def test_preview_takes_the_expression_text_unchecked_by_the_protocol():
    assert parse_request({"op": "preview", "when": "views >"}).args == {"when": "views >"}
