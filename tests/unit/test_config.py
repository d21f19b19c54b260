"""config.toml loading: every section, defaults, and errors that name file, table and key."""

import re
from pathlib import Path

import pytest

from segd.config import Address, load_config, parse_address, parse_config, parse_duration, parse_size
from segd.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def problems(raw):
    with pytest.raises(ConfigError) as exc:
        parse_config(raw, label="config.toml")
    return exc.value.problems


def test_default_config_file_loads():
    cfg = load_config(ROOT / "config.toml")
    assert {s.name for s in cfg.segments} >= {"electronics_fans", "bargain_hunters", "lapsed"}
    assert cfg.daemon.tick == 1.0 and cfg.daemon.max_frame == 4 << 20
    assert cfg.throttle.per_user[1].per == 86400


def test_missing_file_uses_nothing_silently():
    with pytest.raises(ConfigError) as exc:
        load_config("/nonexistent/config.toml")
    assert "file not found" in str(exc.value)


def test_embedded_defaults():
    cfg = load_config(None)
    assert cfg.daemon.clock == "wall" and cfg.ray.shards == 2 and cfg.segments == ()


@pytest.mark.parametrize(
    "text, seconds",
    [
        ("7d", 604800),
        ("1h", 3600),
        ("30s", 30),
        ("15m", 900),
        ("2w", 1209600),
        ("250ms", 0.25),
        ("1.5h", 5400),
        (45, 45),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["7x", "", "d7", "-1s", 0, True, "1 day"])
def test_bad_durations(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


def test_sizes():
    assert parse_size("4MiB") == 4 << 20 and parse_size("1KB") == 1000 and parse_size(512) == 512


@pytest.mark.parametrize(
    "text, address",
    [
        ("127.0.0.1:7433", ("127.0.0.1", 7433)),
        ("localhost:1", ("localhost", 1)),
        ("[::1]:65535", ("::1", 65535)),
        ("::1:7433", ("::1", 7433)),
    ],
)
def test_addresses(text, address):
    assert parse_address(text) == Address(*address)


@pytest.mark.parametrize(
    "text", ["", "7433", ":7433", "h:", "h:x", "h:+1", "h: 1", "h:\u00b2", "h:0", "h:65536", "[]:1", "[::1:1"]
)
def test_bad_addresses(text):
    with pytest.raises(ValueError, match=re.escape(repr(text))):
        parse_address(text)


def test_port_zero_only_where_the_caller_allows_it():
    assert parse_address("h:0", allow_port_zero=True) == ("h", 0)
    with pytest.raises(ValueError, match="from 0 to 65535"):
        parse_address("h:65536", allow_port_zero=True)


def test_misspelled_key_names_table_key_and_suggestion():
    [(f, table, msg)] = problems({"daemon": {"tikc": "1s"}})
    assert (f, table) == ("config.toml", "daemon")
    assert "unknown key 'tikc'" in msg and "did you mean 'tick'" in msg


def test_bad_duration_names_the_key():
    [(_, table, msg)] = problems({"aggregates": {"v": {"kind": "count", "within": "7x"}}})
    assert table == "aggregates.v" and "'within'" in msg and "7x" in msg


def test_every_problem_is_reported_at_once():
    found = problems(
        {
            "daemon": {"clock": "sundial", "tick": "soon"},
            "aggregates": {"a": {"kind": "sum"}, "b": {"kind": "count", "of": "props.x"}},
            "segments": {"s": {"description": "no rule"}},
            "channels": {"c": {"kind": "pigeon"}},
            "campaigns": {"k": {"segment": "nope", "channel": "c2", "template": "hi", "on": "later"}},
            "throttle": {
                "per_user": [{"max": 0, "per": "1h"}],
                "quiet_hours": {"start": "25:00", "end": "08:00"},
            },
        }
    )
    text = "\n".join(f"{t}: {m}" for _, t, m in found)
    for expected in [
        "daemon: 'clock'",
        "daemon: 'tick'",
        "aggregates.a: missing required key 'of'",
        "aggregates.b: 'of' is not used",
        "segments.s: missing required key 'when'",
        "channels.c: 'kind'",
        "campaigns.k: 'on'",
        "campaigns.k: 'segment' names an unknown",
        "campaigns.k: 'channel' names an unknown",
        "throttle.per_user[0]: 'max'",
        "throttle.quiet_hours: 'start'",
    ]:
        assert expected in text, expected


def test_wrong_types_are_named():
    [(_, table, msg)] = problems({"ray": {"shards": "two"}})
    assert table == "ray" and "'shards' must be a positive integer" in msg and "'two'" in msg


def test_tcp_needs_a_token():
    [(_, _, msg)] = problems({"daemon": {"tcp": "127.0.0.1:7433"}})
    assert "'token' is required" in msg


def test_http_is_off_by_default():
    http = parse_config({}).http
    assert (http.listen, http.write_keys, http.token) == ("", (), "")


def test_http_table_is_read():
    http = parse_config(
        {"http": {"listen": "127.0.0.1:8080", "write_keys": ["k1", "k2"], "client_timeout": "3s"}}
    ).http
    assert (http.listen, http.write_keys, http.client_timeout) == ("127.0.0.1:8080", ("k1", "k2"), 3.0)


@pytest.mark.parametrize("listen", ["0.0.0.0:8080", "10.1.2.3:8080", "example.com:8080", "[::]:8080"])
def test_http_listen_beyond_loopback_needs_a_token(listen):
    [(_, table, msg)] = problems({"http": {"listen": listen}})
    assert table == "http" and "'token' is required" in msg and repr(listen) in msg


@pytest.mark.parametrize("listen", ["127.0.0.1:8080", "127.9.9.9:0", "localhost:8080", "[::1]:8080"])
def test_http_on_loopback_needs_no_token(listen):
    assert parse_config({"http": {"listen": listen}}).http.listen == listen


def test_http_listen_beyond_loopback_with_a_token_is_accepted():
    http = parse_config({"http": {"listen": "0.0.0.0:8080", "token": "s3cret"}}).http
    assert http.token == "s3cret"


def test_http_listen_must_be_an_address():
    [(_, table, msg)] = problems({"http": {"listen": "8080"}})
    assert table == "http" and "'listen' must be 'host:port'" in msg


def test_http_write_keys_must_be_non_empty_strings():
    [(_, table, msg)] = problems({"http": {"write_keys": ["ok", "", 3]}})[:1]
    assert table == "http" and "'write_keys[1]' must be a non-empty string" in msg


def test_http_unknown_key_is_named():
    [(_, table, msg)] = problems({"http": {"writekeys": ["k"]}})
    assert table == "http" and "unknown key 'writekeys'" in msg and "write_keys" in msg


def test_an_aggregate_name_must_be_an_identifier():
    found = problems({"aggregates": {"7days": {"kind": "count"}}})
    assert any(t == "aggregates.7days" for _, t, _ in found)


def test_an_aggregate_name_must_not_be_a_reserved_word():
    found = problems({"aggregates": {"and": {"kind": "count"}}})
    assert any("reserved word" in m for _, _, m in found)


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    (tmp_path / "c.toml").write_text('[daemon]\ndata_dir = "state"\n')
    cfg = load_config(tmp_path / "c.toml")
    assert cfg.daemon.data_dir == tmp_path / "state"
    assert cfg.daemon.socket == tmp_path / "var/segd.sock"


def test_channels_check_fields_per_kind():
    found = problems({"channels": {"w": {"kind": "webhook", "path": "x"}, "m": {"kind": "smtp"}}})
    text = "\n".join(f"{t}: {m}" for _, t, m in found)
    assert "channels.w: unknown key 'path'" in text
    assert "channels.w: missing required key 'url'" in text
    assert "channels.m: missing required key 'host'" in text


def test_campaign_variants_and_goal():
    cfg = parse_config(
        {
            "segments": {"s": {"when": "true"}},
            "channels": {"f": {"kind": "file", "path": "m.jsonl"}},
            "campaigns": {
                "c": {
                    "segment": "s",
                    "channel": "f",
                    "template": "hi",
                    "holdout": 0.1,
                    "variants": [{"name": "a", "weight": 1}, {"name": "b", "weight": 3, "template": "yo"}],
                    "goal": {"event": "purchase", "within": "7d"},
                }
            },
        }
    )
    [c] = cfg.campaigns
    assert [v.name for v in c.variants] == ["a", "b"] and c.goal.within == 604800 and c.holdout == 0.1
