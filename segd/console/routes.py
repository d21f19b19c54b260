"""The console's routes on an aiohttp application: ``GET /`` and every static asset.

``add_routes(app)`` registers one GET route per file, by exact path, so every
other path stays with the app (the JSON API, ingest, its JSON 404). Answers carry the
headers ``segd.console.assets`` fixes (type, ETag, caching, CSP); a matching
``If-None-Match`` is answered 304 with no body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from segd.console.assets import Asset, Assets


def add_routes(app: web.Application, assets: Assets | None = None) -> Assets:
    """Serve the console from ``app``; returns the asset table (loaded from the package
    unless given). Raises FileNotFoundError when the console's files are missing."""
    table = assets if assets is not None else Assets.load()
    for path in table.paths():
        asset = table.get(path)
        assert asset is not None  # paths() lists only what get() answers
        app.router.add_get(path, _handler(asset), allow_head=False)  # as every other route of the face
    return table


def _handler(asset: Asset) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    headers = asset.headers()

    async def serve(request: web.Request) -> web.StreamResponse:
        if asset.not_modified(request.headers.get("If-None-Match")):
            return web.Response(
                status=304, headers={"ETag": asset.etag, "Cache-Control": asset.cache_control}
            )
        return web.Response(body=asset.body, headers=headers)

    return serve
