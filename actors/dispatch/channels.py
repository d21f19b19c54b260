"""Channels: the delivery side of the dispatcher (SPEC section 5).

Contract:

- ``open_channel(cfg)`` returns a ``Channel`` for ``cfg.kind`` (``file``, ``webhook``, ``http``,
  ``smtp``). ``Channel.deliver(msg)`` delivers one rendered ``Message`` or raises
  ``DeliveryError``; it blocks (the dispatcher runs it in a thread) and every network
  operation is bounded by ``cfg.timeout`` seconds. ``DeliveryError.retryable`` tells the
  dispatcher whether a later attempt can help; when it is False the message is dead-lettered
  at once. No other exception escapes ``deliver`` except on a bug.
- A channel may be used from several threads at once. ``close()`` releases what it holds and
  may be called more than once.
- Delivery is at-least-once per call: a timeout after the receiver got the message is a
  retryable failure, so webhook and http requests carry ``Idempotency-Key: <msg.id>`` and
  mail carries ``Message-ID: <msg.id@segd>`` for receivers to drop duplicates.
- ``TokenBucket`` is the per-channel rate limit; the caller injects the clock.

Only the standard library is used: no channel keeps a network connection between messages.
"""

from __future__ import annotations

import json
import os
import re
import smtplib
import ssl
import threading
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from email.message import EmailMessage
from email.utils import formatdate
from http.client import HTTPException, HTTPMessage
from typing import IO, Any

from segd.config import ChannelConfig
from segd.errors import SegdError

# Answers worth retrying: the receiver is overloaded, slow or broken for now.
RETRYABLE_STATUS = frozenset({408, 425, 429})
_BODY_EXCERPT = 200
_MAX_RESPONSE = 64 * 1024
_FILE_KEYS = ("id", "campaign", "segment", "user", "channel", "transition", "at", "body")
_MSGID_BAD = re.compile(r"[^A-Za-z0-9!#$%&'*+\-/?^_`{|}~.]")  # atext without "=", the escape


#: How far back from the end of a file channel ``delivered`` looks for message ids.
TAIL_BYTES = 1 << 20


class DeliveryError(SegdError):
    """A delivery attempt failed.

    ``retryable`` False means retrying cannot help (e.g. HTTP 400/401/403/404/422, SMTP 5xx,
    no recipient address): dead-letter at once.
    """

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        self.retryable = retryable
        super().__init__(message)


@dataclass(frozen=True)
class Message:
    """One rendered message, ready for a channel. All text already rendered by the dispatcher.

    ``id`` is stable across attempts (Idempotency-Key / Message-ID); ``at`` is the delivery
    time on the engine clock in epoch seconds; ``variant`` is "" for campaigns without
    variants; ``to`` is "" when the user has no address; ``fields`` are the http channel's
    provider body fields.
    """

    id: str
    campaign: str
    variant: str
    segment: str
    user: str
    channel: str
    transition: str
    at: float
    body: str
    subject: str = ""
    to: str = ""
    fields: tuple[tuple[str, str], ...] = ()

    def to_map(self) -> dict[str, Any]:
        """All fields as a JSON-able dict; ``fields`` becomes a dict."""
        out = asdict(self)
        out["fields"] = dict(self.fields)
        return out


class Channel:
    """Base of every channel: ``deliver`` one message at a time, ``close`` when done."""

    def __init__(self, config: ChannelConfig) -> None:
        self.config = config
        self.name = config.name
        self.kind = config.kind

    def deliver(self, msg: Message) -> None:
        """Deliver ``msg``; blocking, each network operation bounded by ``config.timeout``.

        Raises ``DeliveryError`` (``retryable`` says whether another attempt can help).
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release held resources; idempotent."""

    def delivered(self, ids: set[str]) -> set[str]:
        """Which of ``ids`` this channel can prove it already delivered (after a crash between
        delivery and the outbox's 'sent'). Only the file channel can look; others say none."""
        return set()

    def forget(self, user: str) -> int:
        """Erase what this channel keeps of ``user`` locally (the file channel's lines); the
        messages already handed to a remote service are beyond reach. Returns how many."""
        return 0

    def error(self, what: str, *, retryable: bool = True) -> DeliveryError:
        """A ``DeliveryError`` whose message names this channel."""
        return DeliveryError(f"channel {self.name!r} ({self.kind}): {what}", retryable=retryable)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


class FileChannel(Channel):
    """Appends one JSON line per message to ``config.path`` (SPEC's keys, in SPEC's order).

    Each line is flushed and fsynced before ``deliver`` returns, so a delivered message
    survives a crash. The file stays open between deliveries and is reopened after an error
    or when the path no longer names the open file (rotated or removed).
    """

    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        if config.path is None:
            raise ValueError(f"channel {config.name!r} (file): no path")
        self.path = config.path
        self._lock = threading.Lock()
        self._fh: IO[str] | None = None

    def deliver(self, msg: Message) -> None:
        record = {k: getattr(msg, k) for k in _FILE_KEYS}
        line = json.dumps(record, ensure_ascii=False, sort_keys=False) + "\n"
        # Readers that split on every Unicode line break (str.splitlines) must still see one line.
        line = line.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
        try:
            line.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise self.error(f"message {msg.id} is not valid text: {exc}", retryable=False) from exc
        with self._lock:
            try:
                fh = self._open()
                fh.write(line)
                fh.flush()
                os.fsync(fh.fileno())
            except OSError as exc:
                self._drop()
                raise self.error(f"cannot append to {self.path}: {exc}") from exc

    def delivered(self, ids: set[str]) -> set[str]:
        """The ``ids`` among the file's last lines (a crash leaves at most the last few
        deliveries unmarked in the outbox; the tail is enough and stays cheap)."""
        if not ids or not self.path.exists():
            return set()
        with self._lock, open(self.path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - TAIL_BYTES))
            tail = fh.read().split(b"\n")
        found = set()
        for line in tail:
            try:
                mid = json.loads(line).get("id")
            except (ValueError, AttributeError):
                continue
            if mid in ids:
                found.add(mid)
        return found

    def forget(self, user: str) -> int:
        """Rewrite the file without ``user``'s messages (``forget``); returns how many went.
        Atomic: a new file replaces the old one, which is then reopened for appends."""
        with self._lock:
            self._drop()
            if not self.path.exists():
                return 0
            kept, gone = [], 0
            with open(self.path, encoding="utf-8", newline="\n") as fh:
                for line in fh:
                    try:
                        mine = json.loads(line).get("user") == user
                    except (ValueError, AttributeError):
                        mine = False
                    if mine:
                        gone += 1
                    else:
                        kept.append(line)
            if gone:
                tmp = self.path.with_name(self.path.name + ".forget")
                with open(tmp, "w", encoding="utf-8", newline="\n") as out:
                    out.writelines(kept)
                    out.flush()
                    os.fsync(out.fileno())
                os.replace(tmp, self.path)
            return gone

    def _open(self) -> IO[str]:
        fh = self._fh
        if fh is not None:
            try:
                if os.stat(self.path).st_ino == os.fstat(fh.fileno()).st_ino:
                    return fh
            except OSError:
                pass
            self._drop()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a", encoding="utf-8", newline="\n")  # noqa: SIM115 - kept open
        try:
            # A write torn by an earlier crash or error must not swallow the next line.
            end = fh.tell()
            if end > 0:
                with open(self.path, "rb") as raw:
                    raw.seek(end - 1)
                    if raw.read(1) != b"\n":
                        fh.write("\n")
        except BaseException:
            fh.close()
            raise
        self._fh = fh
        return fh

    def _drop(self) -> None:
        fh, self._fh = self._fh, None
        if fh is not None:
            try:
                fh.close()
            except OSError:
                pass

    def close(self) -> None:
        with self._lock:
            self._drop()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # A redirect turns a POST into a GET without its body: report it instead of following it.
    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: HTTPMessage,
        newurl: str,
    ) -> urllib.request.Request | None:
        return None


def retryable_status(status: int) -> bool:
    """Whether an HTTP answer with ``status`` may succeed on a later attempt (408/425/429/5xx)."""
    return status in RETRYABLE_STATUS or status >= 500


class WebhookChannel(Channel):
    """POSTs ``msg.to_map()`` as JSON to ``config.url``; 2xx means delivered.

    Headers: ``config.headers`` plus ``Content-Type: application/json`` and
    ``Idempotency-Key: <msg.id>``. 408, 425, 429, 5xx, timeouts and connection errors are
    retryable; redirects and other 4xx are not. The standard ``*_proxy`` environment
    variables apply.
    """

    def __init__(self, config: ChannelConfig) -> None:
        super().__init__(config)
        self._opener = urllib.request.build_opener(_NoRedirect)

    def deliver(self, msg: Message) -> None:
        self.request("POST", msg.to_map(), msg.id)

    def request(self, method: str, payload: dict[str, Any], key: str) -> None:
        """Send ``payload`` as JSON with ``method``; raise ``DeliveryError`` unless 2xx."""
        url = self.config.url
        headers = {"User-Agent": "segd"}
        headers.update(self.config.headers)
        headers["Content-Type"] = "application/json"
        headers["Idempotency-Key"] = key
        try:
            data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
            req = urllib.request.Request(url, data=data, headers=headers, method=method)
            with self._opener.open(req, timeout=self.config.timeout) as resp:
                resp.read(_MAX_RESPONSE)
        except urllib.error.HTTPError as exc:
            raise self.error(
                f"{method} {url} answered {exc.code}: {_excerpt(exc)!r}", retryable=retryable_status(exc.code)
            ) from exc
        except urllib.error.URLError as exc:  # connect failed: refused, unresolvable, timed out
            if isinstance(exc.reason, TimeoutError):
                raise self.error(f"{method} {url} timed out after {self.config.timeout}s") from exc
            raise self.error(f"{method} {url} failed: {exc.reason}") from exc
        except TimeoutError as exc:
            raise self.error(f"{method} {url} timed out after {self.config.timeout}s") from exc
        except (OSError, HTTPException) as exc:
            raise self.error(f"{method} {url} failed: {type(exc).__name__}: {exc}") from exc
        except ValueError as exc:  # malformed URL or header, unencodable text: retrying cannot help
            raise self.error(f"{method} {url} cannot be sent: {exc}", retryable=False) from exc


def _excerpt(exc: urllib.error.HTTPError) -> str:
    try:
        raw = exc.read(_BODY_EXCERPT * 4) or b""
    except (OSError, HTTPException):
        return ""
    finally:
        exc.close()
    return raw.decode("utf-8", "replace")[:_BODY_EXCERPT]


class HttpChannel(WebhookChannel):
    """Calls a provider API (SMS, push): ``config.method`` to ``config.url``.

    The JSON body is ``dict(msg.fields)`` when the dispatcher rendered provider fields, else
    ``msg.to_map()``. Headers and status classification are the webhook's.
    """

    def deliver(self, msg: Message) -> None:
        payload = dict(msg.fields) if msg.fields else msg.to_map()
        self.request((self.config.method or "POST").upper(), payload, msg.id)


class SmtpChannel(Channel):
    """Sends each message as a text/plain UTF-8 mail over a fresh SMTP connection.

    From ``config.sender``, To ``msg.to``, Subject ``msg.subject`` or the campaign name,
    Message-ID ``<msg.id@segd>``, Date ``msg.at``. Implicit TLS when ``config.ssl``, STARTTLS
    when ``config.starttls`` (both verify the server with the system's CA store), SMTP AUTH
    when ``config.username`` is set. No recipient, SMTP 5xx answers and missing server features
    are not retryable; 4xx answers, disconnects, timeouts and socket errors are.
    """

    def compose(self, msg: Message) -> EmailMessage:
        """The MIME message sent for ``msg``."""
        mail = EmailMessage()
        mail["From"] = self.config.sender
        mail["To"] = msg.to
        mail["Subject"] = msg.subject or msg.campaign
        mail["Message-ID"] = f"<{message_id_local(msg.id)}@segd>"
        mail["Date"] = formatdate(msg.at, usegmt=True)
        # Quoted-printable keeps non-ASCII text safe through servers without 8BITMIME.
        mail.set_content(msg.body, charset="utf-8", cte=None if msg.body.isascii() else "quoted-printable")
        return mail

    def deliver(self, msg: Message) -> None:
        if not msg.to:
            raise self.error(f"message {msg.id} has no recipient address", retryable=False)
        cfg = self.config
        where = f"{cfg.host}:{cfg.port}"
        try:
            mail = self.compose(msg)
        except (ValueError, TypeError) as exc:
            raise self.error(f"cannot compose message {msg.id}: {exc}", retryable=False) from exc
        conn: smtplib.SMTP | None = None
        try:
            if cfg.ssl:
                conn = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context()
                )
            else:
                conn = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            if cfg.starttls:
                conn.starttls(context=ssl.create_default_context())
            if cfg.username:
                conn.login(cfg.username, cfg.password)
            conn.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            codes = [code for code, _ in exc.recipients.values()]
            raise self.error(
                f"{where} refused recipient {msg.to!r}: {exc.recipients}",
                retryable=not codes or any(c < 500 for c in codes),
            ) from exc
        except smtplib.SMTPResponseException as exc:
            text = (
                exc.smtp_error.decode("utf-8", "replace")
                if isinstance(exc.smtp_error, bytes)
                else str(exc.smtp_error)
            )
            raise self.error(
                f"{where} answered {exc.smtp_code} {text} ({type(exc).__name__})",
                retryable=not 500 <= exc.smtp_code < 600,
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise self.error(
                f"{where} does not support what the config asks: {exc}", retryable=False
            ) from exc
        except TimeoutError as exc:
            raise self.error(f"{where} timed out after {cfg.timeout}s") from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise self.error(f"{where} failed: {type(exc).__name__}: {exc}") from exc
        else:
            _quit(conn)
        finally:
            if conn is not None:
                conn.close()


def message_id_local(msg_id: str) -> str:
    """``msg_id`` as the left part of a Message-ID: characters RFC 5322 forbids there become
    ``=XX`` (UTF-8 bytes in hex), so distinct ids stay distinct."""
    return _MSGID_BAD.sub(
        lambda m: "".join(f"={b:02X}" for b in m.group().encode("utf-8", "replace")), msg_id
    )


def _quit(conn: smtplib.SMTP | None) -> None:
    # The mail is accepted; a failing QUIT must not turn that into a retry (and a duplicate).
    if conn is None:
        return
    try:
        conn.quit()
    except (smtplib.SMTPException, OSError):
        pass


_KINDS: dict[str, type[Channel]] = {
    "file": FileChannel,
    "webhook": WebhookChannel,
    "http": HttpChannel,
    "smtp": SmtpChannel,
}


def open_channel(cfg: ChannelConfig) -> Channel:
    """The channel for ``cfg.kind``; ``ValueError`` for an unknown kind (config.py checks)."""
    try:
        cls = _KINDS[cfg.kind]
    except KeyError:
        raise ValueError(
            f"channel {cfg.name!r}: unknown kind {cfg.kind!r}, expected one of {', '.join(_KINDS)}"
        ) from None
    return cls(cfg)


class TokenBucket:
    """Rate limit ``rate`` tokens/s with burst ``burst`` (default max(1, rate)); time injected.

    The bucket starts full at time ``now``. Time that runs backwards adds no tokens.
    """

    def __init__(self, rate: float, burst: float | None = None, now: float = 0.0) -> None:
        if not rate > 0:
            raise ValueError(f"rate must be a positive number of tokens per second, got {rate!r}")
        self.rate = float(rate)
        self.burst = max(1.0, self.rate) if burst is None else float(burst)
        if not self.burst >= 1:
            raise ValueError(f"burst must be at least 1, got {burst!r}")
        self.tokens = self.burst
        self.stamp = now

    def take(self, now: float) -> float:
        """Take one token if available and return 0.0; else return seconds until one is available (take nothing)."""
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now
        # The tolerance absorbs float error: 10 steps of 0.1 s at 10/s must yield 10 tokens.
        if self.tokens >= 1.0 - 1e-9:
            self.tokens = max(0.0, self.tokens - 1.0)
            return 0.0
        return (1.0 - self.tokens) / self.rate
