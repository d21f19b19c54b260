"""Fixtures for unit and integration tests: real local HTTP and SMTP servers for channels."""

from tests.servers import http_server, smtp_server  # noqa: F401  (pytest fixtures)
