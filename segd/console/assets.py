"""The console's static files as a table of immutable assets, with their HTTP headers.

Pure: reads the files under ``STATIC`` once (``Assets.load``), then answers lookups by URL
path. No framework here: ``segd.console.routes`` adapts it to the HTTP app.

Caching contract:

- A file under ``vendor/NAME-VERSION/`` never changes under its name (updating the library
  means a new folder, see ``scripts/vendor_console.py``), so it is served ``immutable`` for a
  year.
- Every other file (index.html, the app's modules, the style sheet) is served ``no-cache``
  with a strong ETag: the browser revalidates on each load and gets a 304 while the file is
  the same, so an upgraded segd is seen at the next reload, never a mix of old and new
  modules.

Every answer also carries a Content-Security-Policy that lets the page talk to segd only
(``default-src 'self'``): a script or style from elsewhere, or a request to another host,
is refused by the browser itself.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Final

STATIC: Final = Path(__file__).parent / "static"

#: Content types by file suffix; a file with another suffix is not served.
CONTENT_TYPES: Final = MappingProxyType(
    {
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        ".png": "image/png",
        ".md": "text/markdown; charset=utf-8",
    }
)

#: Sent with every asset. ``connect-src 'self'`` covers fetch and the event stream; Chart.js
#: sets canvas sizes through the CSSOM, which ``style-src 'self'`` allows.
SECURITY_HEADERS: Final = MappingProxyType(
    {
        "Content-Security-Policy": (
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
    }
)

IMMUTABLE: Final = "public, max-age=31536000, immutable"
REVALIDATE: Final = "no-cache"


@dataclass(frozen=True, slots=True)
class Asset:
    """One servable file: its URL path (``/js/app.js``), bytes, type, ETag and caching."""

    path: str
    body: bytes
    content_type: str
    etag: str  # quoted, as the header carries it
    cache_control: str

    def headers(self) -> dict[str, str]:
        """Every header of a 200 (or 304) answer for this asset, Content-Length aside."""
        return {
            "Content-Type": self.content_type,
            "ETag": self.etag,
            "Cache-Control": self.cache_control,
            **SECURITY_HEADERS,
        }

    def not_modified(self, if_none_match: str | None) -> bool:
        """Whether a request's ``If-None-Match`` already names this version (RFC 9110 weak
        comparison: ``W/`` prefixes are ignored, ``*`` matches)."""
        if not if_none_match:
            return False
        tags = {t.strip().removeprefix("W/") for t in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


class Assets:
    """The console's files by URL path; ``/`` is ``index.html``."""

    def __init__(self, assets: dict[str, Asset]) -> None:
        self._by_path = assets

    @classmethod
    def load(cls, root: Path = STATIC) -> Assets:
        """Read every file under ``root`` whose suffix is in ``CONTENT_TYPES``.

        Raises FileNotFoundError when ``root`` has no ``index.html`` (a broken install)."""
        if not (root / "index.html").is_file():
            raise FileNotFoundError(f"{root / 'index.html'}: the console is not installed")
        found: dict[str, Asset] = {}
        for file in sorted(root.rglob("*")):
            ctype = CONTENT_TYPES.get(file.suffix)
            if ctype is None or not file.is_file():
                continue
            rel = file.relative_to(root).as_posix()
            body = file.read_bytes()
            found["/" + rel] = Asset(
                path="/" + rel,
                body=body,
                content_type=ctype,
                etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
                cache_control=IMMUTABLE if rel.startswith("vendor/") else REVALIDATE,
            )
        found["/"] = found["/index.html"]
        return cls(found)

    def get(self, path: str) -> Asset | None:
        """The asset served at URL ``path``, or None."""
        return self._by_path.get(path)

    def paths(self) -> list[str]:
        """Every URL path served, sorted (``/`` first)."""
        return sorted(self._by_path)
