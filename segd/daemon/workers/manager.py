"""``SegmentManager`` as a Ray worker runs it (see ``segd.daemon.workers``)."""

from __future__ import annotations

from typing import Any

from actors.manager import SegmentManager as _Shell
from segd import logs


class SegmentManager(_Shell):
    def __init__(self, *args: Any) -> None:
        logs.worker_setup()
        super().__init__(*args)
