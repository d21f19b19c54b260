"""No config text reaches the generated source (SPEC section 4: generated code is segd's own).

The model compiler binds every aggregate, segment and event name and every literal of the
config by reference; these tests give it names and strings that would break or hijack the
source if any were pasted into it (quotes, newlines, braces, code, and identifiers that are
also the generated code's own locals) and check that none appears in the source and that the
behaviour is the reference's, and that of the same config with harmless names.
"""

from __future__ import annotations

import msgpack
import pytest

from actors.compiled.engine import compiled
from actors.model import Model
from actors.records import Row
from actors.shard.core import ShardCore
from segd.config import parse_config

HOUR = 3600.0
T0 = 1_700_000_000.0

#: Strings that would change the program if pasted into Python source.
HOSTILE = [
    "'); __import__('os').system('echo pwned') #",
    '"""\nimport os\n"""',
    "\\x00{user}{now!r}",
    "}; out.append(1); {",
    "\n    return []\n",
]
#: Identifiers the generated code itself uses as locals or helpers: as config names they
#: must still mean the config's thing.
CLASHING = ["u", "out", "q_", "members", "d", "ev", "hit", "seq", "_k0", "_evaluate", "apply", "exec"]


def _config(agg_names: list[str], seg_names: list[str], event: str, literal: str) -> dict:
    a, b, c = agg_names[:3]
    aggs = {
        a: {"kind": "count", "event": event, "where": f"props.tag == {literal!r}"},
        b: {"kind": "distinct", "event": "*", "of": "props.tag", "within": "1h"},
        c: {"kind": "last_time", "event": event},
    }
    segs = {
        seg_names[0]: {"when": f"{a} >= 1"},
        seg_names[1]: {"when": f"{b} >= 2 or traits.note == {literal!r}"},
        seg_names[2]: {"when": f"exists({c}) and hours_since({c}) >= 1 and not segment('{seg_names[0]}')"},
        seg_names[3]: {"when": f"{literal!r} in [traits.note, 'x']", "group": "g", "priority": 0},
        seg_names[4]: {"when": f"segment('{seg_names[1]}')", "group": "g", "priority": 1},
    }
    return {"aggregates": aggs, "segments": segs}


def _model(cfg: dict) -> Model:
    return Model.compile(parse_config(cfg, label="hostile.toml"))


def _rows(event: str, literal: str) -> list[Row]:
    rows = []
    for i in range(1, 13):
        clock = T0 + i * 1200.0
        user = ["ann", "bob"][i % 2]
        if i % 5 == 0:
            body = msgpack.packb({"note": literal if i % 2 else "plain"})
            rows.append(Row(i, user, "identify", None, clock, clock, body))
        else:
            tag = literal if i % 3 else f"t{i}"
            rows.append(
                Row(i, user, "track", event if i % 4 else "other", clock, clock, msgpack.packb({"tag": tag}))
            )
    return rows


def _run(model: Model, rows: list[Row], reference: bool) -> list[tuple]:
    shard = ShardCore(model, reference=reference)
    out = shard.apply_batch(rows) + shard.advance(rows[-1].clock + 5 * HOUR)
    return [(t.segment, t.user, t.kind, t.at, t.seq) for t in out]


@pytest.mark.parametrize("literal", HOSTILE)
def test_hostile_strings_never_appear_in_the_source_and_behave_as_the_reference(literal):
    aggs = ["evil_count_q7", "evil_distinct_q7", "evil_last_q7"]
    segs = ["evil_seg_a", "evil_seg_b", "evil_seg_c", "evil_seg_d", "evil_seg_e"]
    model = _model(_config(aggs, segs, literal, literal))
    source = compiled(model).source
    for text in [literal, *aggs, *segs, "echo pwned", "import os"]:
        assert text not in source
    rows = _rows(literal, literal)
    got = _run(model, rows, reference=False)
    assert got and got == _run(model, rows, reference=True)


def test_names_that_clash_with_the_generated_code_mean_the_configs_things():
    plain_aggs, plain_segs = ["ca", "cb", "cc"], ["sa", "sb", "sc", "sd", "se"]
    aggs, segs = CLASHING[:3], CLASHING[3:8]
    rename = dict(zip(aggs + segs, plain_aggs + plain_segs, strict=True))
    hostile = _model(_config(aggs, segs, "view", "tag"))
    plain = _model(_config(plain_aggs, plain_segs, "view", "tag"))
    rows = _rows("view", "tag")
    got = _run(hostile, rows, reference=False)
    assert got == _run(hostile, rows, reference=True)
    assert [(rename[s], *rest) for s, *rest in got] == _run(plain, rows, reference=False)
    assert got, "the log must move users between segments"
