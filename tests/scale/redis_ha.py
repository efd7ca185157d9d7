"""Real highly available Redis setups on loopback: a 3-master/3-replica Redis Cluster, and one
master with one replica watched by three sentinels (``redis-server --sentinel``)."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from tests.redis_fixture import REDIS_SERVER, command, free_port, wait_for

REDIS_CLI = str(Path(REDIS_SERVER).with_name("redis-cli"))


class Node:
    """One redis-server process (cluster node, master, replica or sentinel)."""

    def __init__(self, directory: Path, *, bus: bool = False) -> None:
        self.port = free_port(with_bus=bus)
        self.dir = directory / str(self.port)
        self.dir.mkdir()
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, *extra: str, sentinel_conf: str | None = None) -> Node:
        args = [REDIS_SERVER]
        if sentinel_conf is not None:
            conf = self.dir / "sentinel.conf"
            conf.write_text(sentinel_conf)
            args += [str(conf), "--sentinel"]
        else:
            args += ["--save", "", "--appendonly", "no"]
        args += ["--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir), *extra]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(self.answers_ping, what=f"redis-server on port {self.port}", process=self.process)
        return self

    def answers_ping(self) -> bool:
        return command(self.port, "PING").startswith(b"+PONG")

    def info(self, section: str) -> str:
        return command(self.port, "INFO", section).decode(errors="replace")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.kill()


class RedisCluster:
    """Six nodes, ``redis-cli --cluster create --cluster-replicas 1``; ready when every node
    sees every slot covered and every replica is in sync."""

    def __init__(self, node_timeout_ms: int = 1000) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="redis-cluster-")
        self.nodes = [Node(Path(self._tmp.name), bus=True) for _ in range(6)]
        self._timeout = node_timeout_ms

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.nodes[0].port}"

    def start(self) -> RedisCluster:
        for node in self.nodes:
            node.start(
                "--cluster-enabled", "yes",
                "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self._timeout),
            )  # fmt: skip
        addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
        subprocess.run(
            [
                REDIS_CLI,
                "--cluster",
                "create",
                *addresses,
                "--cluster-replicas",
                "1",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        wait_for(self.healthy, 30, "redis cluster")
        return self

    def healthy(self) -> bool:
        live = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
        for node in live:
            info = command(node.port, "CLUSTER", "INFO").decode()
            if "cluster_state:ok" not in info or "cluster_slots_ok:16384" not in info:
                return False
            replication = node.info("replication")
            if "role:slave" in replication and "master_link_status:up" not in replication:
                return False
        return True

    def masters(self) -> list[Node]:
        live = [n for n in self.nodes if n.process is not None and n.process.poll() is None]
        return [n for n in live if "role:master" in n.info("replication")]

    def master_of(self, key: str) -> Node:
        slot = int(command(self.nodes[0].port, "CLUSTER", "KEYSLOT", key).split(b"\r\n")[0][1:])
        for node in self.nodes:
            if node.process is None or node.process.poll() is not None:
                continue
            if "role:master" not in node.info("replication"):
                continue
            owner = _slot_owner(node.port, slot)
            if owner == node.port:
                return node
        raise RuntimeError(f"no live master holds slot {slot}")

    def close(self) -> None:
        for node in self.nodes:
            node.stop()
        self._tmp.cleanup()


def _slot_owner(port: int, slot: int) -> int | None:
    """The port of the node that ``port`` believes serves ``slot`` (from CLUSTER NODES)."""
    for line in command(port, "CLUSTER", "NODES").decode().splitlines():
        fields = line.split()
        if len(fields) < 8 or "master" not in fields[2] or "fail" in fields[2]:
            continue
        for part in fields[8:]:
            low, _, high = part.partition("-")
            if low.isdigit() and int(low) <= slot <= int(high or low):
                return int(fields[1].split("@")[0].rsplit(":", 1)[1])
    return None


class SentinelSetup:
    """One master, one replica, three sentinels (quorum 2) watching ``MASTER_NAME``."""

    MASTER_NAME = "gwmaster"

    def __init__(self) -> None:
        self._tmp = tempfile.TemporaryDirectory(prefix="redis-sentinel-")
        root = Path(self._tmp.name)
        self.master, self.replica = Node(root), Node(root)
        self.sentinels = [Node(root) for _ in range(3)]

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> SentinelSetup:
        self.master.start()
        self.replica.start("--replicaof", "127.0.0.1", str(self.master.port))
        wait_for(lambda: "master_link_status:up" in self.replica.info("replication"))
        conf = (
            f"sentinel monitor {self.MASTER_NAME} 127.0.0.1 {self.master.port} 2\n"
            f"sentinel down-after-milliseconds {self.MASTER_NAME} 1000\n"
            f"sentinel failover-timeout {self.MASTER_NAME} 3000\n"
            f"sentinel parallel-syncs {self.MASTER_NAME} 1\n"
        )
        for sentinel in self.sentinels:
            sentinel.start(sentinel_conf=conf)
        wait_for(self._sentinels_agree, 20, "sentinels")
        return self

    def _sentinels_agree(self) -> bool:
        for sentinel in self.sentinels:
            info = sentinel.info("sentinel")
            if "sentinels=3" not in info or "slaves=1" not in info:
                return False
        return True

    def current_master_port(self) -> int:
        reply = command(
            self.sentinels[0].port, "SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.MASTER_NAME
        ).decode()
        return int(reply.split("\r\n")[-2])

    def close(self) -> None:
        for node in [*self.sentinels, self.replica, self.master]:
            node.stop()
        self._tmp.cleanup()
