"""Errors the HTTP face answers: a SPEC section 2 code, a message, and an HTTP status."""

from __future__ import annotations

from segd.errors import CodedError

#: The HTTP status for each SPEC section 2 error code (SPEC section 8: "a fitting HTTP status").
STATUS = {
    "bad_frame": 400,
    "bad_request": 400,
    "frame_too_large": 413,
    "unknown_op": 404,
    "unauthorized": 401,
    "not_found": 404,
    "overloaded": 429,
    "unavailable": 503,
    "internal": 500,
}


class HttpError(CodedError):
    """Answered as ``{"code", "message"}`` with ``status`` (``STATUS[code]`` unless given)."""

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(code, message)
        self.status = STATUS.get(code, 500) if status is None else status
