"""A segd daemon on a 2-node ``ray.cluster_utils.Cluster``, run as a child process.

``python -m tests.cluster_job DATA_DIR CONFIG EVENTS_JSON [kill]`` starts the cluster, runs a
real daemon joined to it, sends the events over the real socket, and prints one JSON object:
where each shard ran, the membership and the history of every segment. With ``kill``, the
worker node is killed (``remove_node``, not graceful) after half of the events; the rest
are sent while Ray moves its shard to the head node.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from segd.config import parse_config
from segd.daemon.lifecycle import Daemon
from segd.logs import configure
from segd.wire.client import AsyncClient


async def run(config_text: str, data: Path, events: list[dict], address: str, kill=None) -> dict:
    import tomllib

    raw = tomllib.loads(config_text)
    raw.setdefault("daemon", {}).update({"data_dir": str(data), "socket": str(data / "s.sock")})
    raw["ray"] = {"address": address, "shards": 2}
    config = parse_config(raw, label="cluster")
    async with Daemon(config) as d:
        nodes = await asyncio.gather(*(_node_of(s) for s in d.runtime.shards))
        async with await AsyncClient.connect(config.daemon.socket) as c:
            half = len(events) // 2 if kill else len(events)
            await c.send_events(events[:half], batch_size=200)
            await c.sync()
            out = {"nodes": nodes, "segments": {}}
            if kill:
                dead = kill()
                await c.send_events(events[half:], batch_size=200)
                await c.sync()
                out["nodes_after"] = await _moved_off(d, c, dead)
                out["recoveries"] = (await c.stats())["recoveries"]
            for s in config.segments:
                members = (await c.segment(s.name, limit=100_000))["members"]
                hist = (await c.history(s.name, 0))["transitions"]
                out["segments"][s.name] = [
                    members,
                    [[t["id"], t["user"], t["kind"], t["at"], t["seq"]] for t in hist],
                ]
    return out


def _node_of(actor) -> object:
    """The node an actor runs on, asked inside the actor itself."""
    return actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id())


async def _moved_off(d: Daemon, c: AsyncClient, dead: str, timeout: float = 120) -> list[str]:
    """The shards' nodes once none is on the ``dead`` node. The killed node's actors may
    answer for a moment after ``remove_node``; each ``sync`` lets the router notice their
    death and recover them elsewhere."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        await c.sync()
        nodes = await asyncio.gather(*(_node_of(s) for s in d.runtime.shards), return_exceptions=True)
        if all(isinstance(n, str) and n != dead for n in nodes):
            return nodes
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError(f"shards still on the dead node or unreachable: {nodes}")
        await asyncio.sleep(0.5)


def main() -> None:
    configure(json=True)
    data, config_file, events_file = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    worker = cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()

    def kill() -> str:
        cluster.remove_node(worker, allow_graceful=False)
        return worker.node_id

    kill = kill if sys.argv[4:] == ["kill"] else None
    ray.init(
        address=cluster.address,
        namespace="segd-cluster",
        runtime_env={"worker_process_setup_hook": "segd.logs.worker_setup"},
        logging_level="WARNING",
    )
    try:
        result = asyncio.run(
            run(config_file.read_text(), data, json.loads(events_file.read_text()), cluster.address, kill)
        )
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
