"""``forget``: a user's data leaves every file under data_dir; everyone else is untouched."""

from __future__ import annotations

import json

import pytest

from segd.daemon.replay import replay
from segd.errors import RemoteError
from segd.wire.client import Client
from tests.helpers import split_daemon

T0 = 1_700_000_000.0
SECRETS = [b"Zebulon-Q7", b"zq7@secret.example", b"MARKER-PROP-91"]

CONFIG = """
[daemon]
clock = "event"
snapshot_every = 5

[aggregates.views]
kind = "count"
event = "view"

[aggregates.last_note]
kind = "last"
event = "view"
of = "props.note"

[segments.fans]
when = "views >= 2"

[segments.noted]
when = "exists(last_note)"

[channels.out]
kind = "file"
path = "DATA/messages.jsonl"

[campaigns.hello]
segment = "fans"
channel = "out"
template = "Hi {traits.first_name} <{traits.email}>, about {last_note}"

[campaigns.bye]
segment = "fans"
on = "exit"
channel = "out"
template = "Bye {traits.first_name}"
"""


def start(daemon_factory, tmp_path):
    rest, keys = split_daemon(CONFIG.replace("DATA", str(tmp_path / "run" / "data")))
    return daemon_factory(rest, daemon=keys, sub="run")


def feed(c: Client, user: str, name: str, note: str, t: float = T0) -> None:
    c.identify(user, {"first_name": name, "email": f"{name.lower()}@example.com"}, ts=t)
    for i in range(3):
        c.track(user, "view", {"note": note}, ts=t + i)


def files_containing(root, needles: list[bytes]) -> dict[str, list[bytes]]:
    found = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            hits = [n for n in needles if n in data]
            if hits:
                found[str(path.relative_to(root))] = hits
    return found


def test_forget_erases_every_trace_and_keeps_others_deterministic(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path)
    data = d.config.daemon.data_dir
    with Client(d.socket) as c:
        feed(c, "other", "Olga", "plain note")
        c.identify("victim", {"first_name": "Zebulon-Q7", "email": "zq7@secret.example"}, ts=T0)
        for i in range(3):
            c.track("victim", "view", {"note": "MARKER-PROP-91"}, ts=T0 + 10 + i)
        feed(c, "third", "Tom", "another", T0 + 20)
        c.sync()
        lines = data / "messages.jsonl"
        before = {s: c.history(s, 0)["transitions"] for s in ("fans", "noted")}
        assert any(t["user"] == "victim" for t in before["fans"])
        assert files_containing(data, SECRETS)  # the secrets are on disk before

        r = c.forget("victim")
        assert r["events"] == 4 and r["segments"] == 2 and r["seq"] == 12

        with pytest.raises(RemoteError) as err:
            c.user("victim")
        assert err.value.code == "not_found"
        sizes = {s["name"]: s["size"] for s in c.segments()["segments"]}
        assert sizes == {"fans": 2, "noted": 2}
        after = {s: c.history(s, 0)["transitions"] for s in before}
        assert after == {s: [t for t in ts if t["user"] != "victim"] for s, ts in before.items()}
        assert c.stats()["events"] == 8
        c.track("other", "view", {"note": "later"}, ts=T0 + 100)  # the daemon keeps serving
        c.sync()
        users_messaged = [json.loads(x)["user"] for x in lines.read_text().splitlines()]
        assert "victim" not in users_messaged and sorted(set(users_messaged)) == ["other", "third"]
        kept = {s: c.history(s, 0)["transitions"] for s in before}
    d.stop()
    assert files_containing(data, SECRETS) == {}

    replay(d.config)
    d = start(daemon_factory, tmp_path)
    with Client(d.socket) as c:
        assert {s: c.history(s, 0)["transitions"] for s in before} == kept
        with pytest.raises(RemoteError):
            c.user("victim")
    d.stop()
    assert files_containing(data, SECRETS) == {}


def test_forgetting_an_unknown_user_erases_nothing(daemon_factory, tmp_path):
    d = start(daemon_factory, tmp_path)
    with Client(d.socket) as c:
        feed(c, "other", "Olga", "x")
        assert c.forget("nobody") == {"seq": 4, "events": 0, "segments": 0}
        assert c.user("other")["segments"] == ["fans", "noted"]
