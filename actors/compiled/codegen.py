"""The model compiler: one Python module generated per model, specialised to it.

DESIGN "Making the fold fast". ``generate(model)`` writes the source of a module holding, for
the compiled config ``actors.model.Model``:

- one function per event name (and one for every other event) that folds exactly the
  aggregates listening to it, with their ``where``/``of`` inlined, and marks the segments
  that read them;
- ``_evaluate``: every segment's ``when`` inlined, in evaluation order, with its membership
  bit, dependants and exclusive group resolved at compile time;
- ``_fire``: one user deadline (windows due, time rules due), and the reschedule after it;
- ``apply`` / ``advance``: the user actor's two entry points.

The generated functions do exactly what the reference (``actors.user.UserActor`` with the
closures of ``segd.rules``) does, step by step: the same deadlines, the same evaluations at
the same instants, so the same transitions with the same ids; ``tests/unit/test_compiled_*``
hold them to it. The time analysis of a rule (``Compiled.next_change``) is not generated: the
reference closure is called on a context over the compiled state (``actors.compiled.engine``).

This module is the one place that hands text to Python's ``compile`` (and ``exec``s its code
object), and the text is segd's own: every name, string and number of the config is bound by
reference in the module's globals (``actors.compiled.expr``), so no config text can reach it.
"""

from __future__ import annotations

from typing import Any

from actors.compiled.expr import HELPERS
from actors.compiled.gen_events import EventsGen
from actors.compiled.timing import FALLBACK, lin_nc
from actors.model import Model

__all__ = ["Generated", "generate"]


class Generated:
    """The generated module: its ``source`` and the globals it ran with (``names``)."""

    def __init__(self, source: str, names: dict[str, Any]) -> None:
        self.source = source
        self.names = names

    def __getitem__(self, name: str) -> Any:
        return self.names[name]


class _Gen(EventsGen):
    """The whole module: ``gen_base`` (state, values), ``gen_segments`` (``_evaluate``),
    ``gen_time`` (deadlines, ``_fire``), ``gen_events`` (event functions, entry points)."""

    def module(self) -> str:
        o = self.out
        for seg in self.m.timed_segs:
            self.gen_nc(seg)
        self.gen_evaluate()
        self.gen_fire()
        self.gen_advance()
        events = sorted({a.config.event for a in self.m.aggs} - {"*"})
        names: dict[str, str] = {}
        for n, event in enumerate(events):
            fn = f"_ev{n}"
            self.gen_event(fn, self.m.by_event[event])
            names[fn] = self.e.const(event)
        self.gen_event("_ev_other", self.m.star)
        self.gen_identify()
        o("_EVENTS = {" + ", ".join(f"{k}: {fn}" for fn, k in names.items()) + "}")
        o("")
        self.gen_apply()
        self.gen_fold_rows()
        self.gen_new()
        self.gen_values()
        return o.text()


def generate(model: Model, runtime: dict[str, Any]) -> Generated:
    """Generate, compile and run the module of ``model``; ``runtime`` are the state helpers
    it calls (``_tw_fold``, ``_tr``, ``_nc_context``...: see ``actors.compiled.engine``)."""
    g = _Gen(model, runtime)
    source = g.module()
    names: dict[str, Any] = {"__name__": "segd_compiled_model", "__builtins__": __builtins__}
    names.update(HELPERS)
    names.update({"_lin": lin_nc, "_FB": FALLBACK})
    names.update(runtime)
    names.update(g.e.consts)
    code = compile(source, "<segd compiled model>", "exec")
    exec(code, names)  # segd's own text (see the module docstring), never the config's
    return Generated(source, names)
