"""Credentials over HTTP: ingest write keys and the JSON API's Bearer token (SPEC section 8).

Keys and tokens are compared in constant time (``hmac.compare_digest``), and every
configured write key is compared, so the time taken says nothing about which key, or how
much of one, matched.
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping


def header_write_key(headers: Mapping[str, str]) -> str | None:
    """The write key a request carries in its headers: HTTP Basic (the key as the user name,
    any password) or ``X-Write-Key``; None when it carries neither."""
    basic = basic_user(headers.get("Authorization", ""))
    if basic is not None:
        return basic
    return headers.get("X-Write-Key") or None


def basic_user(authorization: str) -> str | None:
    """The user name of an ``Authorization: Basic ...`` header; None for any other header."""
    scheme, _, value = authorization.strip().partition(" ")
    if scheme.lower() != "basic" or not value.strip():
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded.partition(":")[0] or None


def key_accepted(candidate: str, keys: tuple[str, ...]) -> bool:
    """Whether ``candidate`` is one of ``keys``; no keys accept nothing."""
    given = candidate.encode()
    found = False
    for key in keys:
        found |= hmac.compare_digest(given, key.encode())
    return found


def bearer_accepted(authorization: str, token: str) -> bool:
    """Whether ``Authorization`` is ``Bearer TOKEN`` with the configured ``token``; with no
    token configured every request is accepted (``segd check`` allows that on loopback only)."""
    if not token:
        return True
    scheme, _, value = authorization.strip().partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode())
