"""``Dispatcher`` as a Ray worker runs it (see ``segd.daemon.workers``)."""

from __future__ import annotations

from typing import Any

from actors.dispatch.shell import Dispatcher as _Shell
from segd import logs


class Dispatcher(_Shell):
    def __init__(self, *args: Any) -> None:
        logs.worker_setup()
        super().__init__(*args)
