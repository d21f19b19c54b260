"""Request bodies under a hard limit, gzip included, sans-IO.

Segment's limit is 500 KiB per request body *after* decompression. ``BodyLimit`` is fed
the body's chunks as they arrive and holds at most ``limit`` bytes of output at any time:
a gzip stream is inflated with ``max_length`` bounded by what is still allowed, so a gzip
bomb (a few KiB inflating to gigabytes) stops with 413 after at most ``limit + 1`` bytes of
output, never after inflating the whole thing.
"""

from __future__ import annotations

import zlib

from segd.http.errors import HttpError

MAX_BODY = 500 * 1024  # bytes, after decompression (Segment's limit)


class BodyLimit:
    """Collects one request body; ``encoding`` is the Content-Encoding (``""`` or ``gzip``).

    ``feed`` raises HttpError 413 as soon as the (decompressed) body passes ``limit``, or
    400 for a corrupt gzip stream; ``finish`` returns the body and raises 400 for a gzip
    stream that ended early. An unsupported encoding raises 415 at construction.
    """

    def __init__(self, encoding: str, limit: int = MAX_BODY) -> None:
        encoding = encoding.strip().lower()
        if encoding not in ("", "identity", "gzip", "x-gzip"):
            raise HttpError(
                "bad_request", f"Content-Encoding {encoding!r} is not supported (use gzip or none)", 415
            )
        self.limit = limit
        self._gzip = encoding in ("gzip", "x-gzip")
        self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS) if self._gzip else None
        self._out = bytearray()
        self._raw = 0  # raw bytes fed

    def feed(self, chunk: bytes) -> None:
        """Add the next raw chunk of the body."""
        self._raw += len(chunk)
        if self._inflate is None:
            self._out += chunk
            self._check()
            return
        data = chunk
        while data:
            try:
                self._out += self._inflate.decompress(data, self.limit + 1 - len(self._out))
            except zlib.error as exc:
                raise HttpError("bad_request", f"the gzip body is corrupt: {exc}") from exc
            self._check()
            if self._inflate.unconsumed_tail:
                data = self._inflate.unconsumed_tail
            elif self._inflate.eof and self._inflate.unused_data:
                # A second gzip member (concatenated streams are valid gzip).
                data = self._inflate.unused_data
                self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            else:
                data = b""

    def finish(self) -> bytes:
        """The whole body. Raises HttpError 400 if a gzip stream was cut short."""
        if self._inflate is not None and self._raw and not self._inflate.eof:
            raise HttpError("bad_request", "the gzip body ends before the end of its stream")
        return bytes(self._out)

    def _check(self) -> None:
        if len(self._out) > self.limit:
            raise HttpError(
                "bad_request",
                f"the request body exceeds {self.limit} bytes"
                + (" after decompression" if self._gzip else "")
                + " (Segment's limit); send smaller batches",
                413,
            )
