"""What the SDK tests send, and what segd must then hold for each user.

One plan for every SDK: per user an identify, some tracks, a page, a group and an alias,
so every Segment call type is exercised with the SDK's own batching. ``expected_user``
is the ``user`` op's answer those messages must produce (tests.http_helpers.MODEL).
"""

from __future__ import annotations

from typing import Any

Call = tuple[str, dict[str, Any]]  # (SDK method, keyword arguments in Python SDK terms)


def calls(prefix: str, users: int) -> list[Call]:
    """The plan: Python SDK method names and keyword arguments, in sending order."""
    out: list[Call] = []
    for i in range(users):
        user = f"{prefix}{i}"
        out.append(("identify", {"user_id": user, "traits": {"plan": "pro" if i % 2 else "free", "n": i}}))
        for _ in range(i % 3 + 1):
            out.append(("track", {"user_id": user, "event": "view", "properties": {"price": i}}))
        out.append(
            (
                "page",
                {"user_id": user, "name": f"Page{i}", "category": "Docs", "properties": {"path": f"/p/{i}"}},
            )
        )
        out.append(
            ("group", {"user_id": user, "group_id": "acme" if i % 2 else "other", "traits": {"seats": i}})
        )
        out.append(("alias", {"previous_id": f"anon-{i}", "user_id": user}))
    return out


def view_calls(user: str, n: int, *, users: int = 0) -> list[Call]:
    """``n`` tracks of ``view`` with message ids ``{user}-{i}``: all by ``user``, or spread
    over ``users`` users ``{user}{i % users}``."""
    return [
        (
            "track",
            {
                "user_id": f"{user}{i % users}" if users else user,
                "event": "view",
                "message_id": f"{user}-{i}",
            },
        )
        for i in range(n)
    ]


def expected_user(prefix: str, i: int) -> dict[str, Any]:
    """The ``user`` op's answer after ``calls(prefix, ...)`` (``last_seq`` aside)."""
    views = i % 3 + 1
    group = "acme" if i % 2 else "other"
    return {
        "user": f"{prefix}{i}",
        "traits": {"plan": "pro" if i % 2 else "free", "n": i, "group_id": group, "group": {"seats": i}},
        "aggregates": {
            "views": views,
            "last_price": i,
            "pages": 1,
            "last_page": f"Page{i}",
            "screens": 0,
            "aliases": f"anon-{i}",
        },
        "segments": sorted(["viewers"] * (views >= 2) + ["in_group"] * (group == "acme")),
    }


_NODE_KEYS = {
    "user_id": "userId",
    "group_id": "groupId",
    "previous_id": "previousId",
    "message_id": "messageId",
}


def node_messages(plan: list[Call]) -> list[dict[str, Any]]:
    """The plan as @segment/analytics-node calls: ``{"call": method, "params": {...}}``."""
    return [{"call": m, "params": {_NODE_KEYS.get(k, k): v for k, v in kw.items()}} for m, kw in plan]
