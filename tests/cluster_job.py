"""A segd daemon on a 2-node ``ray.cluster_utils.Cluster``, run as a child process.

``python -m tests.cluster_job DATA_DIR EVENTS_JSON`` starts the cluster, runs a real daemon
joined to it, sends the events over the real socket, and prints one JSON object: where each
shard ran, the membership and the history of every segment.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import ray
from ray.cluster_utils import Cluster

from segd.client import AsyncClient
from segd.config import parse_config
from segd.daemon import Daemon
from segd.logs import configure


async def run(config_text: str, data: Path, events: list[dict], address: str) -> dict:
    import tomllib

    raw = tomllib.loads(config_text)
    raw.setdefault("daemon", {}).update({"data_dir": str(data), "socket": str(data / "s.sock")})
    raw["ray"] = {"address": address, "shards": 2}
    config = parse_config(raw, label="cluster")
    async with Daemon(config) as d:
        nodes = await asyncio.gather(*(d.runtime.shard_node(i) for i in range(d.runtime.n)))
        async with await AsyncClient.connect(config.daemon.socket) as c:
            await c.send_events(events, batch_size=200)
            await c.sync()
            out = {"nodes": nodes, "segments": {}}
            for s in config.segments:
                members = (await c.segment(s.name, limit=100_000))["members"]
                hist = (await c.history(s.name, 0))["transitions"]
                out["segments"][s.name] = [members, [[t["id"], t["user"], t["kind"], t["at"], t["seq"]]
                                                     for t in hist]]
    return out


def main() -> None:
    configure(json=True)
    data, config_file, events_file = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="segd-cluster",
             runtime_env={"worker_process_setup_hook": "segd.logs.worker_setup"}, logging_level="WARNING")
    try:
        result = asyncio.run(run(config_file.read_text(), data, json.loads(events_file.read_text()),
                                 cluster.address))
        result["cluster_nodes"] = len([n for n in ray.nodes() if n["Alive"]])
    finally:
        ray.shutdown()
        cluster.shutdown()
    print(json.dumps(result))


if __name__ == "__main__":
    main()
