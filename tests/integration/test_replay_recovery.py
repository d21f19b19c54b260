"""A shard that Ray restarts in the middle of ``segd replay`` is recovered from the log by the
replay's own loop (``segd.daemon.rebuild``), and the rebuilt history is exactly the one a
replay without the restart builds. Real Ray (the session's), real stores, in-process replay."""

from __future__ import annotations

import threading

import ray

from segd.config import load_config
from segd.daemon import rebuild
from segd.daemon.replay import replay
from tests.faults import fault_config
from tests.helpers import wait_until
from tests.integration.test_faults_replay import history, write_log


def _shards() -> set[str]:
    return {a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if "-shard-" in a["name"]}


def test_a_shard_restarted_during_a_replay_is_recovered_and_the_history_is_unchanged(
    tmp_path, monkeypatch, capfd
):
    monkeypatch.setattr(rebuild, "CHUNK", 1000)  # 40 chunks: the restart lands mid-route
    config = load_config(fault_config(tmp_path, own_ray=False))
    data = tmp_path / "data"
    write_log(data)
    replay(config)
    expected = history(data)
    assert len(expected) > 3000

    before = _shards()
    folding = threading.Event()
    done: list[dict] = []
    worker = threading.Thread(
        target=lambda: done.append(replay(config, progress=lambda n, total: folding.set())), daemon=True
    )
    worker.start()
    assert folding.wait(180), "the replay never started folding"
    (name,) = [n for n in _shards() - before if n.endswith("-shard-0")]
    ray.kill(ray.get_actor(name, namespace=ray.get_runtime_context().namespace), no_restart=False)
    wait_until(lambda: not worker.is_alive(), 300, what="the replay to finish after the restart")
    assert done and done[0]["replayed"] == 40_000
    out, err = capfd.readouterr()
    assert "shard_recovered" in out + err
    assert history(data) == expected
