"""``[daemon] backlog``: the listen backlog of the daemon's sockets (issue 16)."""

from __future__ import annotations

import pytest

from segd.config import parse_config
from segd.errors import ConfigError


def test_backlog_defaults_to_1024():
    assert parse_config({}).daemon.backlog == 1024


def test_backlog_is_read():
    assert parse_config({"daemon": {"backlog": 4096}}).daemon.backlog == 4096


def test_a_backlog_that_is_not_positive_names_the_key():
    with pytest.raises(ConfigError) as exc:
        parse_config({"daemon": {"backlog": 0}})
    assert exc.value.problems == [("<config>", "daemon", "'backlog' must be a positive integer, got 0")]
