"""Channels against real local servers: an HTTP server in a thread and an aiosmtpd controller."""

from __future__ import annotations

import email
import email.policy
import json
import os
import socket
import time
from email.utils import parsedate_to_datetime

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword

from actors.dispatch.channels import (
    Channel,
    DeliveryError,
    FileChannel,
    HttpChannel,
    Message,
    SmtpChannel,
    TokenBucket,
    WebhookChannel,
    open_channel,
)
from segd.config import ChannelConfig

SPEC_KEYS = ["id", "campaign", "segment", "user", "channel", "transition", "at", "body"]


def make_msg(**kw) -> Message:
    base = dict(
        id="m-0001",
        campaign="win_back",
        variant="",
        segment="lapsed",
        user="u1",
        channel="out",
        transition="t-42",
        at=1_700_000_000.5,
        body="Hi Ana, we saved your cart",
    )
    base.update(kw)
    return Message(**base)


def free_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def webhook(url: str, **kw) -> WebhookChannel:
    ch = open_channel(
        ChannelConfig(name="hook", kind="webhook", url=url, timeout=kw.pop("timeout", 2.0), **kw)
    )
    assert isinstance(ch, WebhookChannel)
    return ch


def smtp(ctl_port: int, **kw) -> SmtpChannel:
    cfg = ChannelConfig(
        name="mail",
        kind="smtp",
        host="127.0.0.1",
        port=ctl_port,
        sender=kw.pop("sender", "segd <noreply@example.com>"),
        timeout=kw.pop("timeout", 2.0),
        **kw,
    )
    ch = open_channel(cfg)
    assert isinstance(ch, SmtpChannel)
    return ch


def parse(envelope) -> email.message.EmailMessage:
    return email.message_from_bytes(envelope.original_content, policy=email.policy.default)


# ---------------------------------------------------------------------------- message, factory


def test_to_map_holds_every_field_and_is_json_able():
    msg = make_msg(subject="S", to="a@b.c", fields=(("to", "+100"), ("text", "hi")))
    m = msg.to_map()
    assert set(m) == {
        "id",
        "campaign",
        "variant",
        "segment",
        "user",
        "channel",
        "transition",
        "at",
        "body",
        "subject",
        "to",
        "fields",
    }
    assert m["fields"] == {"to": "+100", "text": "hi"}
    assert json.loads(json.dumps(m)) == m


def test_open_channel_picks_the_class_by_kind(tmp_path):
    kinds = {"file": FileChannel, "webhook": WebhookChannel, "http": HttpChannel, "smtp": SmtpChannel}
    for kind, cls in kinds.items():
        ch = open_channel(ChannelConfig(name=kind, kind=kind, path=tmp_path / "x.jsonl", url="http://h/"))
        assert type(ch) is cls and isinstance(ch, Channel)
        assert (ch.name, ch.kind) == (kind, kind)
        ch.close()


def test_open_channel_refuses_an_unknown_kind():
    with pytest.raises(ValueError, match="unknown kind 'pigeon'"):
        open_channel(ChannelConfig(name="p", kind="pigeon"))


# ---------------------------------------------------------------------------- file


def test_file_appends_one_json_line_per_message_with_spec_keys(tmp_path):
    path = tmp_path / "deep" / "dir" / "messages.jsonl"
    ch = open_channel(ChannelConfig(name="out", kind="file", path=path))
    ch.deliver(make_msg(id="m1", body='Grüße, 東京 👋 "quoted"\nline two'))
    ch.deliver(make_msg(id="m2", user="u2"))
    ch.close()
    text = path.read_text(encoding="utf-8")
    assert "Grüße, 東京 👋" in text  # ensure_ascii=False
    lines = text.splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert list(first) == SPEC_KEYS and list(second) == SPEC_KEYS
    assert first["body"] == 'Grüße, 東京 👋 "quoted"\nline two'
    assert (first["id"], second["id"], second["user"], second["at"]) == ("m1", "m2", "u2", 1_700_000_000.5)


def test_file_keeps_unicode_line_separators_inside_one_line(tmp_path):
    path = tmp_path / "m.jsonl"
    ch = open_channel(ChannelConfig(name="out", kind="file", path=path))
    ch.deliver(make_msg(body="a\u2028b\u2029c"))
    ch.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 1 and json.loads(lines[0])["body"] == "a\u2028b\u2029c"


def test_file_reopens_after_the_file_is_rotated_away(tmp_path):
    path = tmp_path / "m.jsonl"
    ch = open_channel(ChannelConfig(name="out", kind="file", path=path))
    ch.deliver(make_msg(id="m1"))
    os.rename(path, tmp_path / "m.jsonl.1")
    ch.deliver(make_msg(id="m2"))
    ch.close()
    assert [json.loads(x)["id"] for x in path.read_text().splitlines()] == ["m2"]
    assert [json.loads(x)["id"] for x in (tmp_path / "m.jsonl.1").read_text().splitlines()] == ["m1"]


def test_file_starts_a_new_line_after_a_torn_write(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_text('{"id": "m0"}\n{"id": "tor', encoding="utf-8")
    ch = open_channel(ChannelConfig(name="out", kind="file", path=path))
    ch.deliver(make_msg(id="m1"))
    ch.close()
    lines = path.read_text().splitlines()
    assert lines[1] == '{"id": "tor' and json.loads(lines[2])["id"] == "m1"


def test_file_os_error_is_retryable_and_names_the_channel(tmp_path):
    ch = open_channel(ChannelConfig(name="out", kind="file", path=tmp_path))  # a directory
    with pytest.raises(DeliveryError, match=r"channel 'out' \(file\)") as err:
        ch.deliver(make_msg())
    assert err.value.retryable
    ch.close()


# ---------------------------------------------------------------------------- webhook


def test_webhook_posts_the_message_as_json_with_idempotency_key_and_headers(http_server):
    ch = webhook(http_server.base + "/hook", headers=(("Authorization", "Bearer s3cret"), ("X-Trace", "t1")))
    msg = make_msg(variant="B", subject="Sub", to="ana@example.com", body="Olá ✓")
    ch.deliver(msg)
    [req] = http_server.requests
    assert (req["method"], req["path"]) == ("POST", "/hook")
    assert req["headers"]["idempotency-key"] == msg.id
    assert req["headers"]["content-type"] == "application/json"
    assert req["headers"]["authorization"] == "Bearer s3cret"
    assert req["headers"]["x-trace"] == "t1"
    assert req["json"] == msg.to_map()


def test_webhook_500_is_retryable_then_the_retry_delivers(http_server):
    ch = webhook(http_server.base + "/flaky")
    msg = make_msg()
    with pytest.raises(DeliveryError) as err:
        ch.deliver(msg)
    assert err.value.retryable
    assert "500" in str(err.value) and "try later" in str(err.value)
    ch.deliver(msg)
    assert [r["headers"]["idempotency-key"] for r in http_server.requests] == [msg.id, msg.id]


@pytest.mark.parametrize(
    "status,retryable",
    [
        (408, True),
        (425, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (400, False),
        (401, False),
        (403, False),
        (404, False),
        (422, False),
    ],
)
def test_webhook_status_classification(http_server, status, retryable):
    ch = webhook(f"{http_server.base}/status/{status}")
    with pytest.raises(DeliveryError) as err:
        ch.deliver(make_msg())
    assert err.value.retryable is retryable


def test_webhook_error_names_channel_status_url_and_a_body_excerpt(http_server):
    url = f"{http_server.base}/status/400"
    with pytest.raises(DeliveryError) as err:
        webhook(url).deliver(make_msg())
    text = str(err.value)
    assert text.startswith("channel 'hook' (webhook): ")
    assert "400" in text and url in text
    assert "x" * 200 in text and "x" * 201 not in text


def test_webhook_redirect_is_not_followed_and_not_retryable(http_server):
    with pytest.raises(DeliveryError, match="302") as err:
        webhook(http_server.base + "/redirect").deliver(make_msg())
    assert not err.value.retryable
    assert [r["path"] for r in http_server.requests] == ["/redirect"]


def test_webhook_timeout_is_retryable_and_bounded(http_server):
    ch = webhook(http_server.base + "/slow", timeout=0.5)
    start = time.monotonic()
    with pytest.raises(DeliveryError, match="timed out") as err:
        ch.deliver(make_msg())
    elapsed = time.monotonic() - start
    assert err.value.retryable
    assert 0.4 <= elapsed < 2.0


def test_webhook_connection_refused_is_retryable():
    with pytest.raises(DeliveryError, match=r"channel 'hook' \(webhook\)") as err:
        webhook(f"http://127.0.0.1:{free_port()}/hook", timeout=1.0).deliver(make_msg())
    assert err.value.retryable


# ---------------------------------------------------------------------------- http


def test_http_sends_rendered_fields_with_the_configured_method(http_server):
    cfg = ChannelConfig(
        name="sms",
        kind="http",
        url=http_server.base + "/v1/sms",
        method="PUT",
        headers=(("Authorization", "Basic abc"),),
        timeout=2.0,
    )
    ch = open_channel(cfg)
    msg = make_msg(to="+15551234", fields=(("to", "+15551234"), ("text", "Hi Ana"), ("from", "SEGD")))
    ch.deliver(msg)
    [req] = http_server.requests
    assert (req["method"], req["path"]) == ("PUT", "/v1/sms")
    assert req["json"] == {"to": "+15551234", "text": "Hi Ana", "from": "SEGD"}
    assert req["headers"]["authorization"] == "Basic abc"
    assert req["headers"]["idempotency-key"] == msg.id


def test_http_without_fields_sends_the_whole_message(http_server):
    ch = open_channel(ChannelConfig(name="push", kind="http", url=http_server.base + "/push", timeout=2.0))
    msg = make_msg(to="tok-1")
    ch.deliver(msg)
    [req] = http_server.requests
    assert req["method"] == "POST" and req["json"] == msg.to_map()


def test_http_4xx_is_not_retryable_and_names_the_channel(http_server):
    ch = open_channel(
        ChannelConfig(name="sms", kind="http", url=http_server.base + "/status/422", timeout=2.0)
    )
    with pytest.raises(DeliveryError, match=r"^channel 'sms' \(http\): POST .* answered 422") as err:
        ch.deliver(make_msg(fields=(("to", "x"),)))
    assert not err.value.retryable


# ---------------------------------------------------------------------------- smtp


def test_smtp_sends_a_mime_mail(smtp_server):
    box, ctl = smtp_server()
    msg = make_msg(id="m-77", subject="Your cart misses you", to="ana@example.com", body="Olá Ana — 🛒")
    smtp(ctl.port).deliver(msg)
    [env] = box.envelopes
    assert env.mail_from == "noreply@example.com" and env.rcpt_tos == ["ana@example.com"]
    mail = parse(env)
    assert mail["From"] == "segd <noreply@example.com>"
    assert mail["To"] == "ana@example.com"
    assert mail["Subject"] == "Your cart misses you"
    assert mail["Message-ID"] == "<m-77@segd>"
    assert parsedate_to_datetime(mail["Date"]).timestamp() == int(msg.at)
    assert mail.get_content_type() == "text/plain" and mail.get_content_charset() == "utf-8"
    assert mail.get_content().rstrip("\r\n") == "Olá Ana — 🛒"


def test_smtp_message_id_escapes_characters_not_allowed_there(smtp_server):
    box, ctl = smtp_server()
    smtp(ctl.port).deliver(make_msg(id="win_back:t 42=x", to="ana@example.com"))
    assert parse(box.envelopes[0])["Message-ID"] == "<win_back=3At=2042=3Dx@segd>"


def test_smtp_subject_defaults_to_the_campaign_name(smtp_server):
    box, ctl = smtp_server()
    smtp(ctl.port).deliver(make_msg(to="ana@example.com"))
    assert parse(box.envelopes[0])["Subject"] == "win_back"


def test_smtp_without_recipient_is_not_retryable_and_sends_nothing(smtp_server):
    box, ctl = smtp_server()
    with pytest.raises(DeliveryError, match=r"channel 'mail' \(smtp\).*no recipient") as err:
        smtp(ctl.port).deliver(make_msg(to=""))
    assert not err.value.retryable
    assert box.envelopes == []


def login_checker(seen: list):
    def authenticator(server, session, envelope, mechanism, auth_data):
        assert isinstance(auth_data, LoginPassword)
        seen.append((mechanism, auth_data.login, auth_data.password))
        ok = auth_data.login == b"segd" and auth_data.password == b"hunter2"
        return AuthResult(success=ok, handled=False)  # handled=False: aiosmtpd answers 235/535

    return authenticator


def test_smtp_logs_in_when_a_username_is_set(smtp_server):
    seen: list = []
    box, ctl = smtp_server(authenticator=login_checker(seen), auth_require_tls=False)
    smtp(ctl.port, username="segd", password="hunter2").deliver(make_msg(to="ana@example.com"))
    assert [(login, pw) for _, login, pw in seen] == [(b"segd", b"hunter2")]
    assert len(box.envelopes) == 1


def test_smtp_wrong_password_is_not_retryable(smtp_server):
    seen: list = []
    box, ctl = smtp_server(authenticator=login_checker(seen), auth_require_tls=False)
    with pytest.raises(DeliveryError, match="535") as err:
        smtp(ctl.port, username="segd", password="wrong").deliver(make_msg(to="ana@example.com"))
    assert not err.value.retryable
    assert seen and box.envelopes == []


@pytest.mark.parametrize("rcpt,retryable", [("gone@example.com", False), ("full@example.com", True)])
def test_smtp_refused_recipient_5xx_is_final_4xx_is_retryable(smtp_server, rcpt, retryable):
    box, ctl = smtp_server()
    with pytest.raises(DeliveryError, match=rcpt) as err:
        smtp(ctl.port).deliver(make_msg(to=rcpt))
    assert err.value.retryable is retryable
    assert box.envelopes == []


def test_smtp_starttls_unsupported_by_server_is_not_retryable(smtp_server):
    box, ctl = smtp_server()
    with pytest.raises(DeliveryError, match="does not support") as err:
        smtp(ctl.port, starttls=True).deliver(make_msg(to="ana@example.com"))
    assert not err.value.retryable
    assert box.envelopes == []


def test_smtp_silent_server_times_out_retryably_and_bounded():
    with socket.socket() as listener:  # accepts TCP connections (backlog) but never greets
        listener.bind(("127.0.0.1", 0))
        listener.listen(4)
        ch = smtp(listener.getsockname()[1], timeout=0.3)
        start = time.monotonic()
        with pytest.raises(DeliveryError, match="timed out") as err:
            ch.deliver(make_msg(to="ana@example.com"))
        assert err.value.retryable
        assert time.monotonic() - start < 2.0


def test_smtp_connection_refused_is_retryable():
    with pytest.raises(DeliveryError, match=r"channel 'mail' \(smtp\)") as err:
        smtp(free_port(), timeout=1.0).deliver(make_msg(to="ana@example.com"))
    assert err.value.retryable


# ---------------------------------------------------------------------------- token bucket


def test_bucket_allows_a_burst_then_says_how_long_to_wait():
    b = TokenBucket(rate=2, burst=3, now=100.0)
    assert [b.take(100.0) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take(100.0) == pytest.approx(0.5)
    assert b.take(100.2) == pytest.approx(0.3)  # a refused take consumes nothing
    assert b.take(100.5) == 0.0
    assert b.take(100.5) == pytest.approx(0.5)


def test_bucket_respects_the_rate_over_a_simulated_second():
    b = TokenBucket(rate=10, burst=1, now=0.0)
    t, grants = 0.0, []
    while t <= 1.0 + 1e-6:
        wait = b.take(t)
        if wait == 0.0:
            grants.append(t)
        else:
            t += wait
    assert len(grants) == 11  # t = 0.0, 0.1, ..., 1.0
    assert all(b - a == pytest.approx(0.1) for a, b in zip(grants, grants[1:], strict=False))


def test_bucket_does_not_hoard_beyond_its_burst():
    b = TokenBucket(rate=1, burst=2, now=0.0)
    assert [b.take(1000.0) for _ in range(3)] == [0.0, 0.0, pytest.approx(1.0)]


def test_bucket_default_burst_is_max_of_one_and_rate():
    assert TokenBucket(0.5).burst == 1.0 and TokenBucket(5).burst == 5.0


def test_bucket_rejects_nonsense():
    with pytest.raises(ValueError):
        TokenBucket(0)
    with pytest.raises(ValueError):
        TokenBucket(1, burst=0.5)
