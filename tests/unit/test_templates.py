"""Message templates: safe rendering and config-time checks."""

from __future__ import annotations

import pytest

from segd.config import parse_config
from segd.errors import ConfigError
from segd.templates import Template, TemplateError, check

VALUES = {
    "user": "alice",
    "campaign": "promo",
    "traits": {"first_name": "Alice", "address": {"city": "Lyon"}, "tags": ["a", "b"], "vip": True},
    "aggregates": {"spend": 120.0, "avg": 12.3456789, "n": 3},
}


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("Hi {traits.first_name}", "Hi Alice"),
        ("{ traits.first_name }!", "Alice!"),
        ("{traits.address.city}", "Lyon"),
        ("{spend} {aggregates.spend} {avg}", "120 120 12.345679"),
        ("{traits.tags} {traits.vip} {n}", "a, b true 3"),
        ("{{literal}} {user}", "{literal} alice"),
        ("{traits.missing}|{traits.first_name.x}|{nothing}", "||"),
    ],
)
def test_render(text, out):
    assert Template(text).render(VALUES) == out


def test_rendering_reaches_only_the_users_data():
    # attribute access and indexing are not syntax; a dotted path walks dicts only
    assert Template("{traits.first_name.__class__}").render(VALUES) == ""
    with pytest.raises(TemplateError, match="position 1"):
        Template("{traits.first_name.__class__.__init__[0]}")
    with pytest.raises(TemplateError, match="position 4"):
        Template("Hi {0!r}")


@pytest.mark.parametrize("text", ["Hi {traits.first_name", "Hi }", "{}"])
def test_syntax_errors_name_the_position(text):
    with pytest.raises(TemplateError, match="position"):
        Template(text)


def test_check_accepts_traits_aggregates_and_message_fields():
    assert check("{traits.x} {spend} {aggregates.spend} {user}", ["spend"]) == []


def test_check_rejects_names_that_can_never_have_a_value():
    [problem] = check("{sepnd}", ["spend"])
    assert "{sepnd} names nothing" in problem and "spend" in problem


def test_check_accepts_the_extra_names_a_channel_body_may_use():
    assert check("{body}", []) and not check("{body}", [], frozenset({"body"}))


def test_bad_templates_are_config_errors_naming_the_campaign():
    raw = {
        "aggregates": {"spend": {"kind": "sum", "event": "purchase", "of": "props.price"}},
        "segments": {"big": {"when": "spend > 100"}},
        "channels": {
            "out": {"kind": "file", "path": "m.jsonl"},
            "sms": {"kind": "http", "url": "http://x", "body": {"text": "{bdy}"}},
        },
        "campaigns": {
            "promo": {
                "segment": "big",
                "channel": "out",
                "template": "Hi {traits.name",
                "variants": [{"name": "a", "subject": "{spnd}"}],
            }
        },
    }
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    text = str(err.value)
    assert "campaigns.promo: 'template': position 4" in text
    assert "campaigns.promo: 'variants.a.subject': {spnd} names nothing" in text
    assert "channels.sms: 'body.text': {bdy} names nothing" in text
