"""segd's web console: static files (HTML, the app's JavaScript modules, a style sheet and a
vendored Chart.js) that read only the JSON API (SPEC section 8, "Console").

- ``STATIC``: the directory of the files, installed with the package;
- ``Assets``: those files by URL path with their headers (pure, no framework);
- ``segd.console.routes.add_routes(app)``: mounts them on the HTTP face's aiohttp app
  (imported from there, so importing this package needs no aiohttp).
"""

from segd.console.assets import STATIC, Asset, Assets

__all__ = ["STATIC", "Asset", "Assets"]
