"""The model compiler's events: one function per event name, ``_identify``, ``apply``, ``new``, values.

An event function folds exactly the aggregates listening to its event name, ``where``/``of``
inlined, marks the segments that read what changed (a count's step of one marks its
time-independent readers only when it crosses one of their thresholds:
``actors.compiled.steps``), evaluates them and recomputes the deadline.
"""

from __future__ import annotations

from actors.compiled.expr import Scope
from actors.compiled.gen_base import TIME_KINDS, keys_slot
from actors.compiled.gen_time import TimeGen
from actors.model import AggDef
from segd.rules import Aggregate, Binary, Call, ListExpr, Node, Unary, parse

__all__ = ["EventsGen"]


#: ``fold_rows``' loop over log rows; the lines marked ``# full`` decode the row's context
#: and note its transitions, and ``_fold_plain`` is the same loop without them.
_ROW_LOOP = """
for row in rows:
    seq = row.seq
    rclock = row.clock
    body = row.body
    u = users.get(row.user)
    if u is None:
        u = users[row.user] = new(row.user)
    before = u.deadline
    data = unpack(body) if body else None
    context = unpack(row.context) if contexts and row.context else None  # full
    if note is not None:  # full
        n0 = len(out)  # full
    clock = float(rclock)
    if before is not None and before <= clock:
        while u.deadline is not None and u.deadline <= clock:
            _fire(u, u.deadline, out)
    if clock < u.now:
        clock = u.now
    rtype = row.type
    if rtype == 'track':
        event = row.event
        ts = row.ts
        _EVENTS.get(event, _ev_other)(u, seq, event, clock if ts is None else float(ts), clock,
            _EMPTY if data is None else data, {context}, out)
    elif rtype == 'identify':
        _identify(u, seq, clock, data, out)
    else:
        _bad_type(rtype)
    if note is not None and len(out) > n0:  # full
        note(u, out[n0:], rclock)  # full
    after = u.deadline
    if after is not None and after != before:
        push(after, u.user)
    if seq > applied:
        applied = seq
    if rclock > top:
        top = rclock
return applied, top
"""


def _row_loop(*, full: bool) -> str:
    """``_ROW_LOOP`` for ``fold_rows`` (``full``) or ``_fold_plain``."""
    lines = [
        line.removesuffix("  # full")
        for line in _ROW_LOOP.split("\n")
        if full or not line.endswith("  # full")
    ]
    context = "_EMPTY if context is None else context" if full else "_EMPTY"
    return "\n".join(lines).replace("{context}", context)


class EventsGen(TimeGen):
    """Writes the entry points and the event functions."""

    always = False  # an event function's folds mark some segment unconditionally
    top = 0  # the depth of an event function's body

    def gen_event(self, fn: str, aggs: tuple[AggDef, ...]) -> None:
        """``fn(u, seq, event, ts, clock, props, ctx, out)``: fold ``aggs`` (those listening to
        the event name), evaluate what they mark, recompute the deadline.

        The segments the folds may mark (and their dependants), unless that is every segment,
        are evaluated inline in flag mode (``SegmentsGen.inline_evaluation``); a user's
        first event marks every segment: the whole ``_evaluate``."""
        m, o = self.m, self.out
        # the segments this event's folds may mark
        mask = 0
        for a in aggs:
            mask |= a.seg_mask
        own = 0 < self.reach(mask) != m.all_mask
        self.flagged = own
        self.always = False
        o(f"def {fn}(u, seq, event, ts, clock, props, ctx, out):")
        with o.block():
            self.top = o.depth
            # the windows whose next change the folds may move
            folded = [(a, f"f{a.index}") for a in aggs if a.timed]
            if own:
                o("fresh = u.last_seq is None")
                o(self.flag_init(mask, [flag for _, flag in folded]))
            else:
                o(f"d = {m.all_mask} if u.last_seq is None else 0")
                if folded:
                    o(" = ".join(flag for _, flag in folded) + " = False")
            if aggs:
                o("traits = u.traits")
                read = sorted({self.agg_index[n] for a in aggs for n in _where_aggs(a)})
                if read:
                    o(" = ".join(f"p{i}" for i in read) + " = _U")
                scope = Scope(
                    self.lazy("p", "clock"), now="clock", props="props", context="ctx", event="event"
                )
                deferred = m.where_reads_aggs
                for a in aggs:
                    self.gen_match(a, scope, deferred)
                if deferred:
                    for a in aggs:
                        o(f"if ok{a.index}:")
                        with o.block():
                            self.gen_fold(a, f"x{a.index}" if a.config.of is not None else "None")
            o("u.last_seq = seq")
            o("u.now = clock")
            if own:
                self.flagged = False
                o("if fresh:")
                with o.block():
                    o(f"ev = _evaluate(u, {m.all_mask}, clock, seq, 'e', out)")
                    self.gen_reschedule("clock", folded, full=False)
                self.flagged = True
                o("else:" if self.always else "elif mk_:")
                with o.block():
                    self.inline_evaluation(mask, "clock", "seq", "e")
                    self.gen_reschedule("clock", folded, full=False, flags=mask)
                self.flagged = False
            else:
                o("if d:")
                with o.block():
                    o("ev = _evaluate(u, d, clock, seq, 'e', out)")
                    self.gen_reschedule("clock", folded, full=False)
            if folded and not (own and self.always):
                o(f"elif {' or '.join(flag for _, flag in folded)}:")
                with o.block():
                    # nothing evaluated: no time rule's next change moves
                    self.gen_reschedule("clock", folded, full=False, evaluated=False)
        o("")

    def mark(self, mask: int, more: str = "") -> str:
        """``SegmentsGen.mark``, noting a mark made at an event function's top level (not
        under any condition): then some segment is always marked."""
        if self.flagged and self.out.depth == self.top:
            self.always = True
        return super().mark(mask, more)

    def gen_match(self, a: AggDef, scope: Scope, deferred: bool) -> None:
        """``where`` then ``of`` of one aggregate; fold at once unless ``deferred``."""
        o, i = self.out, a.index
        cfg = a.config
        if deferred:
            o(f"ok{i} = False")
        if cfg.where is not None:
            o(f"if {self.e.expr(parse(cfg.where), scope)}:")
            o.depth += 1
        value = "None"
        if cfg.of is not None:
            value = f"x{i}"
            o(f"{value} = {self.e.expr(parse(cfg.of), scope)}")
        if deferred:
            o(f"ok{i} = True")
        else:
            self.gen_fold(a, value)
        step = self.steps.get(i)
        if step is not None:
            if step.keep:
                o(self.mark(step.keep))
        elif a.seg_mask:
            o(self.mark(a.seg_mask))
        if a.timed and (deferred or not self.folds_flag(a)):
            o(f"f{i} = True")
        if cfg.where is not None:
            o.depth -= 1

    def folds_flag(self, a: AggDef) -> bool:
        """Does ``gen_fold`` set ``a``'s flag ``f{i}`` itself (the window's next change to be
        recomputed), leaving it unset where the fold cannot move the user's deadline?"""
        return a.timed and a.kind.windowed and (a.kind.kind in TIME_KINDS or a.kind.kind == "distinct")

    def emit_moved(self, a: AggDef, n: str | None, *force: str) -> None:
        """``f{i} = True`` unless the fold appended an entry that leaves the window's next
        change where it was or later: the user's deadline, never later than that next
        change, then stays the minimum, so recomputing it changes nothing. That holds for a
        started entry appended last (``ts <= clock``, no ``force`` condition): the oldest
        entry is the same, and a count read through marks steps from ``n`` to ``n + 1``
        (``n`` None: an entry replaced, the count the same) without crossing one (the m-th
        oldest entry then becomes the (m+1)-th; see ``windows.count_deadline``)."""
        if not a.timed:
            return
        o, i = self.out, a.index
        tests = list(force)
        cross = self.deadline_crossings.get(i)
        if n is not None and cross:
            tests.append(f"{n} in {self.e.const(cross)}")
        if not tests:
            return
        o(f"if {' or '.join(tests)}:")
        with o.block():
            o(f"f{i} = True")

    def flag(self, a: AggDef) -> None:
        """``f{i} = True``: the fold may move the window's next change anywhere."""
        if a.timed:
            self.out(f"f{a.index} = True")

    def gen_fold(self, a: AggDef, value: str) -> None:
        """Fold the accepted event (``value`` its ``of``, or None) into ``a``'s state slot."""
        o, i = self.out, a.index
        kind, st = a.kind.kind, f"u.a{i}"
        if not a.kind.windowed:
            if kind == "count":
                o(f"s = {st}")
                o(f"{st} = 1 if s is None else s + 1")
                self.emit_step(i, "(0 if s is None else s)")
            elif kind in ("first_time", "last_time"):
                cmp = ">" if kind == "last_time" else "<"
                o(f"s = {st}")
                o(f"if s is None or ts {cmp} s:")
                with o.block():
                    o(f"{st} = ts")
            else:
                o(f"{st} = {self.kinds[i]}.fold({st}, ts, {value}, clock)")
            return
        w = self.w[i]
        if kind in TIME_KINDS:
            # inline: a first entry, a second one, or an append that expires nothing
            # the count before the fold, where it is known: every entry live, the new one
            # too unless it is in the future
            o(f"s = {st}")
            o("if s is None:")
            with o.block():
                o(f"{st} = ts if ts + {w} > clock else None")
                self.emit_step(i, 0, "ts > clock")
                self.flag(a)
            o(f"elif type(s) is _array and ts >= s[-1] and s[0] + {w} > clock and len(s) < _BIG:")
            with o.block():
                # exact size (windows.tw_fold); _one is the module's one-entry scratch array
                o("_one[0] = ts")
                o(f"{st} = s + _one")
                self.emit_step(i, "len(s)", "ts > clock")
                self.emit_moved(a, "len(s)", "ts > clock")
            o(f"elif type(s) is float and s + {w} > clock and ts + {w} > clock:")
            with o.block():
                o(f"{st} = _array('d', (s, ts) if ts >= s else (ts, s))")
                self.emit_step(i, 1, "ts > clock", "s > clock")
                self.flag(a)
            o("else:")
            with o.block():
                # tw_fold prunes, then inserts: an array's entries are all live after it
                if i in self.steps:
                    o(f"{st} = r_ = _tw_fold(s, ts, {w}, clock)")
                    self.emit_step(
                        i,
                        "len(r_) - 1",
                        f"ts + {w} <= clock",
                        "ts > clock",
                        "type(r_) is not _array",
                        "r_[-1] > clock",
                    )
                else:
                    o(f"{st} = _tw_fold(s, ts, {w}, clock)")
                self.flag(a)
            return
        if kind == "distinct":
            keys = keys_slot(st)
            o(f"if ts + {w} <= clock or {value} is None:")
            with o.block():
                o(f"if {st} is not None:")
                with o.block():
                    o(f"{st}, {keys} = _dw_prune({st}, {keys}, {w}, clock)")
                self.emit_step(i, None)
                self.flag(a)
            o("else:")
            with o.block():
                self.emit_distinct_fold(a, st, keys, value, w)
            return
        accept = f"_is_number({value})" if kind in ("sum", "avg", "min", "max") else f"{value} is not None"
        o.code(f"""
            s = {st}
            if ts + {w} <= clock or not ({accept}):
                if s is not None:
                    {st} = _vw_prune(s, clock)
            else:
                if s is None:
                    s = {st} = _new_vw({self.e.const(kind)}, {w})
                s.fold(ts, {value}, clock)
        """)

    def emit_step(self, i: int, n: str | int | None, *force: str) -> None:
        """Set the bits of the readers aggregate ``i``'s fold may leave unchanged (its
        ``Step.skip``): always when ``n`` is None (the count before the fold unknown), else
        when the step from ``n`` (source, or a number known here) crosses, or one of the
        ``force`` conditions holds. Nothing for an aggregate without a step plan."""
        step = self.steps.get(i)
        if step is None:
            return
        o = self.out
        tests = list(force)
        if n is None or (type(n) is int and n in step.crossing):
            tests = []
        elif type(n) is str and step.crossing:
            tests.append(f"{n} in {self.e.const(step.crossing)}")
        elif not tests:
            return
        if tests:
            o(f"if {' or '.join(tests)}:")
            with o.block():
                o(self.mark(step.skip))
        else:
            o(self.mark(step.skip))

    def emit_distinct_fold(self, a: AggDef, st: str, keys: str, value: str, w: str) -> None:
        """Fold an accepted value into a distinct window: ``dw_fold``'s clean fast path
        inline (a small window whose keys are each there once, nothing expiring, the new
        entry last: it replaces its key's one occurrence), ``_dw_fold`` otherwise."""
        o, i = self.out, a.index
        o(f"k_ = _intern({value}) if type({value}) is str and len({value}) <= _SKM else _dkey({value})")
        o(f"s = {st}")
        o(f"q_ = {keys}")
        o(
            f"if type(s) is _array and type(q_) is tuple and s[-1] <= ts <= clock "
            f"and s[0] + {w} > clock and len(s) < _DW_SMALL:"
        )
        with o.block():
            o("if k_ in q_:")
            with o.block():
                # the key moves to ts: the count stays the same. In place, at the same size
                # (a del then an append within an array's allocation reallocate nothing):
                # the window's array is this user's own.
                o("i_ = q_.index(k_)")
                o("if i_ == len(q_) - 1:")
                with o.block():
                    o("s[-1] = ts")
                o("else:")
                with o.block():
                    o("del s[i_]")
                    o("s.append(ts)")
                    o(f"{keys} = q_[:i_] + q_[i_ + 1 :] + (k_,)")
                self.emit_moved(a, None)
            o("else:")
            with o.block():
                self.emit_step(i, "len(q_)")
                self.emit_moved(a, "len(q_)")
                o("_one[0] = ts")
                o(f"{st} = s + _one")
                o(f"{keys} = q_ + (k_,)")
        o("else:")
        with o.block():
            o(f"{st}, {keys} = _dw_fold(s, q_, ts, k_, {w}, clock)")
            self.emit_step(i, None)
            self.flag(a)

    def gen_identify(self) -> None:
        """``_identify(u, seq, clock, data, out)``: merge traits, evaluate their readers."""
        m, o = self.m, self.out
        o("def _identify(u, seq, clock, data, out):")
        with o.block():
            o(f"d = {m.all_mask} if u.last_seq is None else 0")
            o("if data:")
            with o.block():
                o("d |= _merge_traits(u, data)")
            o("u.last_seq = seq")
            o("u.now = clock")
            o("if d:")
            with o.block():
                o("ev = _evaluate(u, d, clock, seq, 'e', out)")
                self.gen_reschedule("clock", [], full=False)
        o("")

    def gen_apply(self) -> None:
        """``apply``: the user actor's entry point for one log row (``UserActor.apply``)."""
        self.out.code("""
            def apply(u, seq, type, event, ts, clock, data, context=None):
                clock = float(clock)
                out = advance(u, clock) if u.deadline is not None and u.deadline <= clock else []
                if clock < u.now:
                    clock = u.now
                if type == 'track':
                    _EVENTS.get(event, _ev_other)(u, seq, event, clock if ts is None else float(ts), clock,
                        _EMPTY if data is None else data, _EMPTY if context is None else context, out)
                elif type == 'identify':
                    _identify(u, seq, clock, data, out)
                else:
                    _bad_type(type)
                return out
        """)
        self.out("")

    def gen_fold_rows(self) -> None:
        """``fold_rows``: ``ShardCore.apply_batch``'s loop over log rows with ``apply`` inlined
        (the same steps in the same order: decode, fire what is due, fold), calling the event
        functions directly (``_fold_plain`` when no rule reads a context and no transition is
        noted: the same loop without those steps); and ``fire_due``, ``advance`` into a
        shared ``out``."""
        self.out.code("""
            def fold_rows(rows, users, push, unpack, contexts, note, out, applied, top):
                if note is None and not contexts:
                    return _fold_plain(rows, users, push, unpack, out, applied, top)
        """)
        with self.out.block():
            self.out.code(_row_loop(full=True))
        self.out("")
        self.out.code("""
            def _fold_plain(rows, users, push, unpack, out, applied, top):
                # fold_rows without contexts or note: the same steps
        """)
        with self.out.block():
            self.out.code(_row_loop(full=False))
        self.out("")
        self.out.code("""
            def fire_due(u, clock, out):
                while u.deadline is not None and u.deadline <= clock:
                    _fire(u, u.deadline, out)
                return u.deadline
        """)
        self.out("")

    def gen_new(self) -> None:
        """``new(user)``: a user never seen, every slot at its empty value."""
        m, o = self.m, self.out
        o("def new(user):")
        with o.block():
            o("u = _new_user(_User)")
            o("u.user = user")
            o("u.traits = None")
            o("u.members = 0")
            o("u.last_seq = None")
            o("u.deadline = None")
            o("u.now = -_INF")
            if m.groups:
                o("u.raw = 0")
            for seg in m.timed_segs:
                o(f"u.t{seg.timed_slot} = _INF")
            for a in m.aggs:
                o(f"u.a{a.index} = None")
                if a.kind.windowed and a.kind.kind == "distinct":
                    o(f"u.b{a.index} = None")
            o("return u")
        o("")

    def gen_values(self) -> None:
        """``VALUES``: per aggregate, its value at ``now`` from a user's state."""
        o = self.out
        for a in self.m.aggs:
            o(f"def _val{a.index}(u, now):")
            with o.block():
                o(f"return {self.value_of(a, f'u.a{a.index}', 'now')}")
            o("")
        o("VALUES = (" + "".join(f"_val{a.index}, " for a in self.m.aggs) + ")")


def _where_aggs(a: AggDef) -> list[str]:
    """Aggregates read by ``a``'s where/of (empty unless the model's where_reads_aggs)."""
    names: list[str] = []
    for text in (a.config.where, a.config.of):
        if text is not None:
            names += _names_in(parse(text))
    return names


def _names_in(node: Node) -> list[str]:
    """Every aggregate name referenced in ``node``."""
    match node:
        case Aggregate(name=name):
            return [name]
        case ListExpr(items=kids) | Call(args=kids):
            return [n for k in kids for n in _names_in(k)]
        case Unary(operand=x):
            return _names_in(x)
        case Binary(left=a, right=b):
            return _names_in(a) + _names_in(b)
    return []
