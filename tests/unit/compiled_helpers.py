"""Random configs and logs for holding the compiled fold to the reference (test_compiled_*).

``configs()`` draws whole models: aggregates of every kind, lifetime and windowed, with
``where``/``of`` over props, context, the event name and (sometimes) other aggregates;
segments whose ``when`` mixes comparisons, arithmetic, ``in``, ``exists``, ``days_since``,
``hours_since``, ``now()``, traits, nested ``segment()`` and exclusive groups; nulls and type
mismatches come for free. ``logs()`` draws rows with non-decreasing clocks, late and future
event times, identifies that set and remove traits, and contexts.
"""

from __future__ import annotations

import math
from array import array

import msgpack
import msgspec
from hypothesis import assume
from hypothesis import strategies as st

from actors.aggregates.kind import unpack_arr
from actors.model import Model
from actors.records import Row
from segd.config import parse_config
from segd.errors import ConfigError
from segd.rules import Binary, RuleError, Unary, parse

HOUR = 3600.0
T0 = 1_700_000_000.0
KINDS = ["count", "sum", "avg", "min", "max", "first", "last", "first_time", "last_time", "distinct"]
WINDOWS = [None, None, "20m", "1h", "3h", "1d"]
EVENTS = ["view", "buy", "open"]
TIMED = {"first_time", "last_time"}

literals = st.one_of(
    st.integers(-3, 5).map(str),
    st.sampled_from(["0.5", "2.5", "1e3", "'a'", "'b'", '"x"', "true", "false", "null", "-1", "-0.5"]),
)
lists = st.lists(st.sampled_from(["1", "2.0", "'a'", "'b'", "null", "true", "[1]"]), max_size=3).map(
    lambda xs: "[" + ", ".join(xs) + "]"
)


def _expr(draw, atoms, depth: int) -> str:
    if depth <= 0 or draw(st.integers(0, 3)) == 0:
        return draw(st.one_of(atoms, literals))
    shape = draw(st.integers(0, 9))
    a = _expr(draw, atoms, depth - 1)
    if shape <= 3:
        op = draw(st.sampled_from(["==", "!=", "<", "<=", ">", ">="]))
        return f"({a} {op} {_expr(draw, atoms, depth - 1)})"
    if shape <= 5:
        op = draw(st.sampled_from(["and", "or"]))
        return f"({a}) {op} ({_expr(draw, atoms, depth - 1)})"
    if shape == 6:
        return f"(not ({a}))"
    if shape == 7:
        op = draw(st.sampled_from(["+", "-", "*", "/"]))
        return f"({a} {op} {_expr(draw, atoms, depth - 1)})"
    if shape == 8:
        op = draw(st.sampled_from(["in", "not in"]))
        return f"({a} {op} {draw(st.one_of(lists, atoms))})"
    return f"exists({a})"


@st.composite
def configs(draw, max_aggs: int = 5, max_segs: int = 6):
    """A (dict config, compiled Model) pair; see the module docstring."""
    n_aggs = draw(st.integers(1, max_aggs))
    aggs: dict[str, dict] = {}
    names = [f"ag{i}" for i in range(n_aggs)]
    for i, name in enumerate(names):
        kind = draw(st.sampled_from(KINDS))
        a: dict = {"kind": kind, "event": draw(st.sampled_from([*EVENTS, "*"]))}
        if kind not in ("count", "first_time", "last_time"):
            a["of"] = draw(
                st.sampled_from(
                    [
                        "props.x",
                        "props.y",
                        "props.s",
                        "props.x * 2",
                        "props.x + props.y",
                        "context.c",
                        "props.n.k",
                    ]
                )
            )
        if draw(st.booleans()):
            where_atoms = st.sampled_from(
                [
                    "props.x",
                    "props.s",
                    "event",
                    "context.c",
                    "props.y",
                    *names[:i],
                ]  # earlier aggs: deferred folds
            )
            a["where"] = _expr(draw, where_atoms, 2)
        within = draw(st.sampled_from(WINDOWS))
        if within:
            a["within"] = within
        aggs[name] = a
    times = [n for n in names if aggs[n]["kind"] in TIMED] or names[:1]
    segs: dict[str, dict] = {}
    n_segs = draw(st.integers(1, max_segs))
    for j in range(n_segs):
        time_atoms = [f"days_since({t})" for t in times] + [f"hours_since({t})" for t in times]
        atoms = st.sampled_from(
            names
            + time_atoms
            + ["now() - 1700000000", "traits.plan", "traits.n", "traits.o.k"]
            + [f"segment('sg{k}')" for k in range(j)]
        )
        # a boolean at the top: a time-dependent *number* as a whole rule changes at every
        # float, which the reference (rightly) follows float by float
        when = _expr(draw, atoms, 3)
        try:
            root = parse(when)
        except RuleError:
            assume(False)
        boolean = (isinstance(root, Binary) and root.op not in ("+", "-", "*", "/")) or (
            isinstance(root, Unary) and root.op == "not"
        )
        if not boolean:
            when = f"({when}) >= 1"
        s: dict = {"when": when}
        if draw(st.integers(0, 2)) == 0:
            s["group"] = draw(st.sampled_from(["g1", "g2"]))
            s["priority"] = draw(st.integers(0, 2))
        segs[f"sg{j}"] = s
    return _compiled({"aggregates": aggs, "segments": segs})


prop_values = st.one_of(
    st.integers(-5, 20),
    st.floats(-10, 50, allow_nan=False).map(lambda x: round(x, 2)),
    st.sampled_from([None, "a", "b", True, 0.0, -0.0, 1.0, [1], {"k": 1}, math.inf, math.nan]),
)


@st.composite
def logs(draw, max_rows: int = 40, users=("ann", "bob", "cyd")):
    """Rows with non-decreasing clocks (see the module docstring)."""
    n = draw(st.integers(1, max_rows))
    clock = T0
    rows = []
    for seq in range(1, n + 1):
        clock += draw(st.one_of(st.just(0.0), st.floats(0, 2 * HOUR), st.floats(0, 12 * HOUR)))
        user = draw(st.sampled_from(list(users)))
        if draw(st.integers(0, 5)) == 0:
            traits = draw(
                st.dictionaries(
                    st.sampled_from(["plan", "n", "o"]),
                    st.one_of(st.sampled_from(["vip", "free", None, 3, 2.5, {"k": 1}, {"k": "a"}])),
                    max_size=3,
                )
            )
            rows.append(Row(seq, user, "identify", None, clock, clock, msgpack.packb(traits)))
            continue
        event = draw(st.sampled_from(EVENTS + ["other"]))
        jitter = draw(st.one_of(st.just(0.0), st.floats(-30 * HOUR, 2 * HOUR)))
        props = {"x": draw(prop_values), "y": draw(prop_values), "s": draw(st.sampled_from(["a", "b", "c"]))}
        if draw(st.booleans()):
            props["n"] = {"k": draw(prop_values)}
        context = msgpack.packb({"c": draw(st.sampled_from(["a", "z", 1]))}) if draw(st.booleans()) else None
        rows.append(Row(seq, user, "track", event, clock + jitter, clock, msgpack.packb(props), context))
    return rows


# ---------------------------------------------------------------------- comparing states


def same(a, b) -> bool:
    """Equal values of equal types (NaN equals NaN, -0.0 differs from 0.0), recursively."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, msgspec.Struct):
        return same(msgspec.structs.asdict(a), msgspec.structs.asdict(b))
    return a == b


def canonical(model: Model, state: list, at: float) -> list:
    """What a user state (``to_state``) means from ``at`` on: traits, membership, the
    lifetime aggregates and the window entries still live at ``at``. Deadlines and the last
    evaluation instant are left out: the compiled fold may skip evaluations that change
    nothing (``actors.compiled.timing.count_marks``)."""
    _, traits, aggs, members, raw, last_seq, _deadline, _now, _tnext = state
    out = []
    for a, s in zip(model.aggs, aggs, strict=True):
        if not a.kind.windowed or s is None:
            # a lifetime distinct past a few values is a set: its list order is arbitrary
            out.append(sorted(s, key=repr) if a.kind.kind == "distinct" and s else s)
            continue
        w = a.kind.within
        if isinstance(s, (bytes, float)):
            times = unpack_arr(s) if isinstance(s, bytes) else array("d", [s])
            live = [t for t in times if t + w > at]
        else:
            times, vals = unpack_arr(s[0]), s[1]
            live = [[t, v] for t, v in zip(times, vals, strict=True) if t + w > at]
        out.append(live or None)
    return [traits, out, members, raw, last_seq]


@st.composite
def threshold_configs(draw):
    """Models whose windowed counts are read only through thresholds (``count_marks``), so
    the compiled fold skips the expiries that cross none; time rules in closed form."""
    aggs = {
        "c1": {"kind": "count", "event": "view", "within": draw(st.sampled_from(["20m", "1h", "3h"]))},
        "c2": {
            "kind": "distinct",
            "event": "*",
            "of": "props.s",
            "within": draw(st.sampled_from(["1h", "1d"])),
        },
        "c3": {"kind": "count", "event": "buy", "within": "1d", "where": "props.x > 2"},
        "seen": {"kind": "last_time"},
        "n": {"kind": "count", "event": "buy"},
    }
    marks = st.sampled_from([">=", ">", "<", "<=", "==", "!="])
    k = st.sampled_from(["0", "1", "2", "3", "2.5", "-1"])
    reads = st.sampled_from(["c1", "c2", "c3"])
    atoms = st.one_of(
        st.builds(lambda a, op, x: f"{a} {op} {x}", reads, marks, k),
        st.builds(lambda op, x, a: f"{x} {op} {a}", marks, k, reads),
        st.builds(lambda op, x: f"days_since(seen) {op} {x}", marks, st.sampled_from(["0.05", "0.3", "1"])),
        st.builds(lambda op, x: f"hours_since(seen) {op} {x}", marks, st.sampled_from(["1", "5"])),
        st.sampled_from(["n >= 1", "traits.plan == 'vip'"]),
    )
    segs: dict[str, dict] = {}
    for j in range(draw(st.integers(1, 6))):
        parts = draw(st.lists(atoms, min_size=1, max_size=3))
        when = f" {draw(st.sampled_from(['and', 'or']))} ".join(f"({p})" for p in parts)
        if j and draw(st.booleans()):
            when = f"({when}) and not segment('sg{draw(st.integers(0, j - 1))}')"
        s: dict = {"when": when}
        if draw(st.integers(0, 2)) == 0:
            s["group"] = "g"
            s["priority"] = draw(st.integers(0, 2))
        segs[f"sg{j}"] = s
    return _compiled({"aggregates": aggs, "segments": segs})


def _compiled(cfg: dict) -> tuple[dict, Model]:
    """The config and its Model; a config the compiler refuses is not an example."""
    try:
        model = Model.compile(parse_config(cfg, label="props.toml"))
    except ConfigError:
        assume(False)
    return cfg, model
