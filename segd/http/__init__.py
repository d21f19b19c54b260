"""The HTTP face (SPEC section 8): Segment-compatible ingest, the JSON API, health, OpenAPI.

One aiohttp server in the daemon's own event loop. It is a face like ``segd.wire``: the
daemon builds it with the op handlers (``segd.daemon.ops.Ops``) and the committer, so an
HTTP 200 means what a socket ``seq`` means (durable in the log) and the JSON API answers
exactly what the socket ops answer. Pure parts (message mapping, auth, body limits, the
OpenAPI document) know no asyncio; ``app`` and ``sse`` are the I/O shell.
"""
