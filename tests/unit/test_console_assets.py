"""The console's static files: what index.html and the modules reference exists, every asset
has a type and the right caching, the vendored Chart.js is the recorded one."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import pytest

from segd.console import STATIC, Assets
from segd.console.assets import IMMUTABLE, REVALIDATE

CONSOLE = STATIC.parent
RECORD = json.loads((CONSOLE / "vendor.json").read_text())


@pytest.fixture(scope="module")
def assets() -> Assets:
    return Assets.load()


def _own_files() -> list[Path]:
    return [p for p in STATIC.rglob("*") if p.is_file() and "vendor" not in p.parts]


def test_root_serves_index_html(assets):
    assert assets.get("/") is assets.get("/index.html")


def test_every_reference_in_index_html_is_served(assets):
    html = (STATIC / "index.html").read_text()
    refs = re.findall(r'(?:src|href)="(/[^"#]*)"', html)
    assert refs, "index.html references nothing"
    assert [r for r in refs if assets.get(r) is None] == []


def test_every_module_import_is_served(assets):
    missing = []
    for js in STATIC.glob("js/**/*.js"):
        for rel in re.findall(r"""^import .* from '(\.{1,2}/[^']+)';""", js.read_text(), re.M):
            url = "/" + (js.parent / rel).resolve().relative_to(STATIC).as_posix()
            if assets.get(url) is None:
                missing.append(f"{js.name}: {rel}")
    assert missing == []


def test_own_files_name_no_other_host():
    offenders = []
    for f in _own_files():
        text = f.read_text()
        for url in re.findall(r"https?://[^\s\"')]+", text):
            if url != "http://www.w3.org/2000/svg":  # an SVG namespace name, never fetched
                offenders.append(f"{f.name}: {url}")
    assert offenders == []


def test_vendored_files_are_cached_as_immutable(assets):
    vendored = [p for p in assets.paths() if p.startswith("/vendor/")]
    assert vendored and {assets.get(p).cache_control for p in vendored} == {IMMUTABLE}


def test_own_files_are_revalidated(assets):
    own = [p for p in assets.paths() if not p.startswith("/vendor/")]
    assert {assets.get(p).cache_control for p in own} == {REVALIDATE}


def test_javascript_is_served_as_javascript(assets):
    assert assets.get("/js/app.js").content_type == "text/javascript; charset=utf-8"


def test_every_asset_carries_the_content_security_policy(assets):
    assert all(
        "default-src 'self'" in assets.get(p).headers()["Content-Security-Policy"] for p in assets.paths()
    )


def test_a_matching_etag_is_not_modified(assets):
    a = assets.get("/style.css")
    assert a.not_modified(f'W/{a.etag}, "other"')


def test_another_etag_is_modified(assets):
    assert not assets.get("/style.css").not_modified('"0000"')


def test_vendored_files_match_their_recorded_hashes():
    lib = RECORD["chart.js"]
    got = {rel: hashlib.sha256((CONSOLE / rel).read_bytes()).hexdigest() for rel in lib["sha256"]}
    assert got == lib["sha256"]


def test_vendored_chart_js_is_the_recorded_version():
    lib = RECORD["chart.js"]
    [built] = [rel for rel in lib["files"].values() if rel.endswith(".js")]
    assert f"Chart.js v{lib['version']}\n" in (CONSOLE / built).read_text()[:200]


def test_index_html_loads_the_recorded_chart_js():
    [built] = [rel for rel in RECORD["chart.js"]["files"].values() if rel.endswith(".js")]
    assert f'src="/{built.removeprefix("static/")}"' in (STATIC / "index.html").read_text()


def test_the_licence_is_shipped_beside_chart_js():
    assert any(rel.endswith("LICENSE.md") for rel in RECORD["chart.js"]["files"].values())


def test_a_missing_console_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="console is not installed"):
        Assets.load(tmp_path)
