"""Segment evaluation order: every segment after the segments and groups it references.

``segment('x')`` in a ``when`` reads x's membership as already decided for this evaluation,
so x (and, if x is in a group, every member of that group) must be evaluated first. A
reference cycle is a config error (SPEC section 4).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping

from segd.rules.syntax import RuleError


def segment_order(refs: Mapping[str, Iterable[str]], groups: Mapping[str, str]) -> list[str]:
    """Every segment name in evaluation order: after everything it references.

    Referencing a member of group G means waiting for all of G (a group's membership is
    decided once all members are evaluated). Ties break by name, so the order is
    deterministic. Raises RuleError on a cycle, naming the segments along it.
    """
    refs = {s: sorted(set(r)) for s, r in refs.items()}
    names = set(refs) | set(groups) | {r for rs in refs.values() for r in rs}
    members: dict[str, list[str]] = {}
    for s in sorted(names):
        if groups.get(s):
            members.setdefault(groups[s], []).append(s)
    deps: dict[str, set[str]] = {s: set() for s in names}
    for s, rs in refs.items():
        for r in rs:
            deps[s].add(r)
            deps[s].update(members.get(groups.get(r, ""), ()))
    waiting = {s: len(d) for s, d in deps.items()}
    users: dict[str, list[str]] = {s: [] for s in names}
    for s, d in deps.items():
        for r in d:
            users[r].append(s)
    ready = [s for s, n in waiting.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        s = heapq.heappop(ready)
        order.append(s)
        for u in users[s]:
            waiting[u] -= 1
            if waiting[u] == 0:
                heapq.heappush(ready, u)
    if len(order) == len(names):
        return order
    # every segment left waits on another one left: walking dependencies must loop
    left = {s for s, n in waiting.items() if n > 0}
    path, seen = [min(left)], {}
    while path[-1] not in seen:
        seen[path[-1]] = len(path) - 1
        path.append(min(deps[path[-1]] & left))
    cycle = path[seen[path[-1]] : -1]
    start = cycle.index(min(cycle))
    cycle = cycle[start:] + cycle[:start]
    steps, notes = [cycle[0]], []
    for s, t in zip(cycle, cycle[1:] + cycle[:1], strict=True):
        steps.append(t)
        if t not in refs.get(s, ()):
            via = next(r for r in refs[s] if groups.get(r) and groups.get(r) == groups.get(t))
            notes.append(f"{s} references {via}, which is decided with {t} in group '{groups[t]}'")
    message = "segment reference cycle: " + " -> ".join(steps)
    if notes:
        message += " (" + "; ".join(notes) + ")"
    raise RuleError(table=f"segments.{cycle[0]}", key="when", column=1, message=message)
