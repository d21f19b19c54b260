"""The console's files over HTTP: served at the root, revalidated by ETag; the data they read
needs the token when one is set."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from tests.integration.console.conftest import Shop


def test_assets_are_revalidated_by_etag(shop: Shop):
    with urllib.request.urlopen(shop.url + "/js/app.js", timeout=10) as resp:
        etag = resp.headers["ETag"]
        assert resp.headers["Content-Type"].startswith("text/javascript") and etag
    req = urllib.request.Request(shop.url + "/js/app.js", headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(req, timeout=10)
    assert exc.value.code == 304


def test_the_console_is_served_at_the_root(shop: Shop):
    with urllib.request.urlopen(shop.url + "/", timeout=10) as resp:
        assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
        assert b'<script type="module" src="/js/app.js">' in resp.read()


def test_the_api_refuses_a_request_without_the_token(locked: Shop):
    with pytest.raises(urllib.error.HTTPError) as exc:
        locked.api("/api/segments")
    assert exc.value.code == 401
