"""Unit tests exercise pure cores: any attempt to start Ray is a bug in the test or the core."""

import pytest


@pytest.fixture(autouse=True)
def _no_ray(monkeypatch):
    try:
        import ray
    except ImportError:  # pragma: no cover - ray is a hard dependency
        return

    def refuse(*args, **kwargs):
        raise RuntimeError("unit tests must not start Ray; move this test to tests/integration/")

    monkeypatch.setattr(ray, "init", refuse)
