"""The rig for the fault tests (tests/integration/test_faults_*.py): real ``segd run``
processes in their own process group with their own local Ray, acknowledged events kept
to be checked against the log, and a small filesystem that fills up on demand.

A fault the machine cannot create (no right to mount a filesystem or make a cgroup) is never
a pass: ``cannot_create`` skips with the reason, or fails when ``SEGD_REQUIRE_FAULTS=1``
(set it where the faults must be proven, as on CI, which runs as root).
"""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from actors.placement import shard_of
from segd.errors import ConnectError
from segd.wire.client import Client
from tests.helpers import wait_until

#: Two segments over one windowless count: enough for membership and snapshots to matter.
MODEL = """
[aggregates.views]
kind = "count"
event = "view"

[segments.viewers]
description = "Viewed something"
when = "views >= 1"

[segments.regulars]
description = "Viewed three times or more"
when = "views >= 3"
"""


def cannot_create(fault: str, why: str) -> None:
    """Stop a test whose fault cannot be made here: a skip naming the reason (never a pass),
    or a failure when SEGD_REQUIRE_FAULTS=1."""
    message = f"could not create the fault ({fault}) on this machine: {why}"
    if os.environ.get("SEGD_REQUIRE_FAULTS") == "1":
        pytest.fail(message)
    pytest.skip(message)


def fault_config(
    tmp_path: Path, *, data_dir: Path | None = None, daemon: str = "", own_ray: bool = True
) -> Path:
    """A config under ``tmp_path``; ``own_ray`` starts a local Ray for the daemon (the
    faults involve Ray's own processes), else it joins the test session's Ray."""
    data = data_dir or tmp_path / "data"
    sock = Path("/tmp") / f"segd-fault-{uuid.uuid4().hex[:10]}.sock"
    address = "" if own_ray else os.environ.get("SEGD_TEST_RAY_ADDRESS", "")
    path = tmp_path / "config.toml"
    tmp_path.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f'[daemon]\ndata_dir = "{data}"\nsocket = "{sock}"\nsnapshot_every = 1000000\n'
        + textwrap.dedent(daemon)
        + f'\n[ray]\naddress = "{address}"\nshards = 2\nnum_cpus = 2\n'
        + MODEL
    )
    return path


def session_processes(sid: int) -> list[psutil.Process]:
    """Every live (not zombie) process of the session ``sid``, its leader included."""
    found = []
    for p in psutil.process_iter():
        try:
            if os.getsid(p.pid) == sid and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except (psutil.Error, ProcessLookupError):
            continue
    return found


class Daemon:
    """One ``segd run`` child, in a new session and process group of its own (as a shell's
    job control or systemd would start it); its stderr goes to ``log``."""

    def __init__(self, config: Path, *, preexec: Callable[[], None] | None = None) -> None:
        from segd.config import load_config

        self.config = config
        cfg = load_config(config)
        self.socket = cfg.daemon.socket
        self.data_dir = cfg.daemon.data_dir
        self.log = config.parent / f"daemon-{uuid.uuid4().hex[:6]}.log"
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "segd", "run", "--config", str(config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=preexec,
            )
        self.pid = self.proc.pid

    def wait_ready(self, timeout: float = 120) -> Daemon:
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"segd run exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with Client(self.socket, timeout=5) as c:
                    c.ping()
            except ConnectError:
                return False
            return True

        wait_until(answers, timeout, what=lambda: f"segd run to answer a ping; its log:\n{self.tail()}")
        return self

    def client(self, timeout: float = 30) -> Client:
        return Client(self.socket, timeout=timeout)

    def tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:]

    def events(self) -> list[dict[str, Any]]:
        """The daemon's structured log lines (JSON: its stderr is not a terminal)."""
        out = []
        for line in self.log.read_text(errors="replace").splitlines():
            start = line.find("{")  # Ray prefixes worker lines with "(UserShard pid=...)"
            if start < 0:
                continue
            try:
                doc = json.loads(line[start:])
            except json.JSONDecodeError:
                continue
            if isinstance(doc, dict) and "event" in doc:
                out.append(doc)
        return out

    def session_processes(self) -> list[psutil.Process]:
        """Every live process of the daemon's session but the daemon: Ray's, whatever their
        process group (Ray's workers make groups of their own)."""
        return [p for p in session_processes(self.pid) if p.pid != self.pid]

    def terminate(self, timeout: float = 120) -> None:
        """SIGTERM, as systemd stops it: asserts it drains and exits 0 within ``timeout``."""
        os.kill(self.pid, signal.SIGTERM)
        assert self.proc.wait(timeout) == 0, self.tail()

    def exit_code(self, timeout: float = 120) -> int:
        """For a start that must fail: the code it exits with by itself within ``timeout``;
        whatever happens, its session is ended (``stop_now``)."""
        try:
            return self.proc.wait(timeout)
        finally:
            self.stop_now()

    def stop_now(self) -> None:
        """Teardown: whatever state it is in, end it and its session (SIGKILL)."""
        for p in self.session_processes():
            try:
                p.kill()
            except psutil.Error:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(30)


class Acked:
    """Events acknowledged by a daemon (msg_id -> seq), to be found in the log afterwards."""

    def __init__(self) -> None:
        self.seqs: dict[str, int] = {}

    def send(self, c: Client, events: list[dict[str, Any]]) -> None:
        for e, r in zip(events, c.batch(events)["results"], strict=True):
            if "seq" in r:
                self.seqs[e["msg_id"]] = r["seq"]

    def missing_from(self, data_dir: Path) -> list[str]:
        """msg_ids acknowledged but not in the log at their seq."""
        conn = sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True)
        try:
            rows = dict(conn.execute("SELECT msg_id, seq FROM events WHERE msg_id IS NOT NULL"))
        finally:
            conn.close()
        return [m for m, seq in self.seqs.items() if rows.get(m) != seq]


def views(prefix: str, n: int, users: int = 200) -> list[dict[str, Any]]:
    """``n`` view events over ``users`` users, each with a unique msg_id."""
    return [
        {"type": "track", "user": f"u{i % users}", "event": "view", "msg_id": f"{prefix}-{i}"}
        for i in range(n)
    ]


def new_users(k: int) -> list[dict[str, Any]]:
    """Views by 20 users never seen before (batch ``k``): each enters a segment, so the
    segment store must grow."""
    return [
        {"type": "track", "user": f"n{k}-{i}", "event": "view", "msg_id": f"new{k}-{i}"} for i in range(20)
    ]


def segments_on(tmp_path: Path, fs: SmallFs) -> Path:
    """A data dir under ``tmp_path`` whose ``segments.db`` (and the WAL SQLite keeps beside
    the link's target) lives on ``fs``: the log keeps working while the derived store fills."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "segments.db").symlink_to(fs.path / "segments.db")
    return data


def warm(d: Daemon, acked: Acked) -> None:
    """200 views by 50 users, applied: every later view of theirs changes no membership."""
    with d.client() as c:
        acked.send(c, views("warm", 200, users=50))
        c.sync()


def fill_until_the_store_fails(d: Daemon, c: Client, acked: Acked, fs: SmallFs) -> None:
    """Fill ``fs`` (where segments.db lives, see ``segments_on``), send 20 batches of new
    users, who enter segments so segments.db must grow and cannot, and wait until the daemon
    logs the commit refused for a full disk (``cannot_create`` if it never does)."""
    fs.fill()
    for k in range(20):
        acked.send(c, new_users(k))

    def store_full() -> bool:
        return any("database or disk is full" in str(e) for e in d.events())

    try:
        wait_until(store_full, 60, what="segments.db to fail to commit")
    except AssertionError:
        cannot_create("a segment store that cannot commit", "no commit failed:\n" + d.tail(1500))


def last_seq_per_shard(data_dir: Path, shards: int) -> dict[int, int]:
    """Each shard's last event in the log: what its shutdown snapshot must include."""
    conn = sqlite3.connect(f"file:{data_dir / 'events.db'}?mode=ro", uri=True)
    try:
        last: dict[int, int] = {}
        for user, seq in conn.execute("SELECT user, max(seq) FROM events GROUP BY user"):
            i = shard_of(user, shards)
            last[i] = max(last.get(i, 0), seq)
    finally:
        conn.close()
    return last


def snapshots(data_dir: Path) -> dict[int, tuple[int, float, bytes]]:
    """shard -> (seq, taken, state) as stored in snapshots.db."""
    conn = sqlite3.connect(f"file:{data_dir / 'snapshots.db'}?mode=ro", uri=True)
    try:
        return {
            s: (seq, taken, state)
            for s, seq, taken, state in conn.execute("SELECT shard, seq, taken, state FROM snapshots")
        }
    finally:
        conn.close()


# ---------------------------------------------------------------------- a small filesystem


class SmallFs:
    """A tmpfs of ``size`` bytes mounted at ``path``; ``fill()`` takes every free byte with a
    filler file, ``free()`` deletes it. Unmounted by ``close``."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.filler = path / "filler"
        path.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0755", "tmpfs", str(path)],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            cannot_create("a full disk", f"mount -t tmpfs failed: {done.stderr.strip() or done.returncode}")

    def free_bytes(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def fill(self) -> None:
        """Write the filler until the filesystem refuses: ENOSPC, checked."""
        with open(self.filler, "ab", buffering=0) as f:
            chunk = b"\0" * 65536
            while True:
                try:
                    f.write(chunk if self.free_bytes() >= len(chunk) else b"\0" * max(self.free_bytes(), 1))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    break
        assert self.free_bytes() == 0, f"{self.path} still has {self.free_bytes()} bytes free"

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)

    def close(self) -> None:
        subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)


# ---------------------------------------------------------------------- a control group


class ControlGroup:
    """A cgroup (v1 ``pids`` hierarchy, the one writable here) to start a daemon in, so a test
    can signal every process of it as systemd's ``KillMode=control-group`` does."""

    ROOT = Path("/sys/fs/cgroup/pids")

    def __init__(self) -> None:
        self.path = self.ROOT / f"segd-test-{uuid.uuid4().hex[:8]}"
        try:
            self.path.mkdir()
        except OSError as exc:
            cannot_create("a control group", f"mkdir {self.path}: {exc.strerror}")

    def join(self) -> None:
        """preexec_fn: move the child about to exec into this group (its children follow)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def pids(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def signal_all(self, sig: signal.Signals) -> int:
        """What systemd does on stop: ``sig`` to every process in the group; how many."""
        n = 0
        for pid in self.pids():
            try:
                os.kill(pid, sig)
                n += 1
            except ProcessLookupError:
                pass
        return n

    def close(self) -> None:
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        wait_until(lambda: not self.pids(), 30, what=f"{self.path} to empty")
        self.path.rmdir()
