"""Segment managers fence their commits by the data-dir lock holder (issue 16 item 5).

A ``segd replay`` killed with -9 leaves its Ray workers running for a while; once another
process holds the data-dir lock, their commits must be refused. The second holder here is
a real process that takes the real lock (the token is the holder's pid).
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.manager import SegmentManager
from actors.records import Transition, encode
from store.datadir import DataDirLock, Fenced
from store.segments import SegmentStore

ROOT = Path(__file__).resolve().parents[2]
SEGMENTS = {"vip": ("very important", "fp1")}


def enter(user: str, seq: int) -> bytes:
    return encode([Transition(f"t{seq}", "vip", user, "enter", 1.0 * seq, seq)])


def members(data_dir: Path) -> dict[str, int]:
    store = SegmentStore(data_dir)
    try:
        return store.sizes()
    finally:
        store.close()


@pytest.fixture
def other_holder(tmp_path: Path) -> Iterator[subprocess.Popen[str]]:
    """A process that takes the lock of ``tmp_path`` once told to (a line on stdin), says
    ``held``, and keeps it until its stdin closes."""
    code = (
        "import sys\nfrom store.datadir import DataDirLock\n"
        f"sys.stdin.readline()\nlock = DataDirLock({str(tmp_path)!r}).acquire()\n"
        "print('held', flush=True)\nsys.stdin.read()\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    yield proc
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(timeout=30)


def take_over(proc: subprocess.Popen[str]) -> None:
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write("go\n")
    proc.stdin.flush()
    assert proc.stdout.readline().strip() == "held"


def test_a_manager_commits_while_its_process_holds_the_lock(tmp_path):
    with DataDirLock(tmp_path) as lock:
        manager = SegmentManager(tmp_path, SEGMENTS, rebuild=True, holder=lock.token)
        manager.apply(enter("alice", 1))
    assert members(tmp_path) == {"vip": 1}


def test_a_manager_cannot_commit_once_the_lock_has_a_new_holder(tmp_path, other_holder):
    lock = DataDirLock(tmp_path).acquire()
    manager = SegmentManager(tmp_path, SEGMENTS, rebuild=True, holder=lock.token)
    manager.apply(enter("alice", 1))
    lock.release()  # as when the holder is killed -9: the kernel drops its flock
    take_over(other_holder)
    with pytest.raises(Fenced, match=r"is now held by \d+, not \d+: write refused"):
        manager.apply(enter("bob", 2))
    assert members(tmp_path) == {"vip": 1}  # bob's enter was rolled back


def test_an_unfenced_manager_commits_whatever_holds_the_lock(tmp_path, other_holder):
    manager = SegmentManager(tmp_path, SEGMENTS, rebuild=True)
    take_over(other_holder)
    manager.apply(enter("alice", 1))
    assert members(tmp_path) == {"vip": 1}
