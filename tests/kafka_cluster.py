"""Three Apache Kafka KRaft nodes on loopback, for the tests that kill a broker mid-run.

Each node is broker and controller (a three-voter quorum), topics default to replication
factor 3 with ``min.insync.replicas=2``, so acks=all writes go on while any one node is down.
The same layout as docker-compose.cluster.yml.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from edgemnist.kafka import wait_for_broker
from edgemnist.kafka.settings import KafkaSettings
from edgemnist.testing.brokers import KAFKA_VERSION, ApacheKafka, KafkaStartFailed, random_cluster_id

__all__ = ["ClusterNode", "KafkaCluster"]


class ClusterNode(ApacheKafka):
    """One node of a :class:`KafkaCluster`: its own ports and data, the cluster's id and voters."""

    def __init__(self, node_id: int, cluster_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.node_id = node_id
        self.cluster_id = cluster_id
        self.voters = ""

    def _props(self) -> dict[str, str]:
        props = super()._props()
        del props["controller.quorum.bootstrap.servers"]
        props.update({
            "node.id": str(self.node_id),
            "controller.quorum.voters": self.voters,
            "default.replication.factor": "3",
            "min.insync.replicas": "2",
            "num.partitions": "2",
            "offsets.topic.replication.factor": "3",
            "transaction.state.log.replication.factor": "3",
            "transaction.state.log.min.isr": "2",
            "share.coordinator.state.topic.replication.factor": "3",
            "share.coordinator.state.topic.min.isr": "2",
            "unclean.leader.election.enable": "false",
        })  # fmt: skip
        return props

    def _format_args(self) -> list[str]:
        return ["-t", self.cluster_id]  # static voters: no --standalone / --initial-controllers


class KafkaCluster:
    """Three :class:`ClusterNode` s; ``kill(n)`` and ``restart(n)`` one while the others serve."""

    kind = f"Apache Kafka {KAFKA_VERSION}, three KRaft nodes (replication 3, min.insync.replicas 2)"

    def __init__(self, size: int = 3, heap: str = "384m", start_timeout: float = 240.0) -> None:
        cluster_id = random_cluster_id()
        self.nodes = {n: ClusterNode(n, cluster_id, heap=heap, start_timeout=start_timeout)
                      for n in range(1, size + 1)}  # fmt: skip
        voters = ",".join(f"{n}@127.0.0.1:{node.controller_port}" for n, node in self.nodes.items())
        for node in self.nodes.values():
            node.voters = voters
        self.start_timeout = start_timeout
        self.startup_seconds: float | None = None

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(node.bootstrap_servers for node in self.nodes.values())

    @property
    def workdirs(self) -> list[Path]:
        return [node.workdir for node in self.nodes.values()]

    def settings(self) -> KafkaSettings:
        return KafkaSettings(bootstrap_servers=tuple(self.bootstrap_servers.split(",")))

    def start(self) -> KafkaCluster:
        """Launch every node, then wait until each serves metadata naming all of them."""
        began = time.monotonic()
        for node in self.nodes.values():
            node.launch()
        for node in self.nodes.values():
            node._wait_ready(began)
        self.wait_for_brokers(len(self.nodes), self.start_timeout - (time.monotonic() - began))
        self.startup_seconds = time.monotonic() - began
        return self

    def wait_for_brokers(self, count: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        wait_for_broker(self.settings(), max(1.0, timeout))
        while time.monotonic() < deadline:
            with self._admin() as admin:
                if len(admin.describe_cluster()["brokers"]) >= count:
                    return
            time.sleep(0.5)
        raise KafkaStartFailed(f"fewer than {count} brokers registered within {timeout:.0f} s")

    def kill(self, node_id: int) -> None:
        self.nodes[node_id].kill()

    def restart(self, node_id: int) -> None:
        self.nodes[node_id].start()
        self.wait_for_brokers(len(self.nodes), self.start_timeout)

    def close(self) -> None:
        for node in self.nodes.values():
            node.close()

    # ----- topics and leaders (kafka-python's admin, test-side only) -----------------------------

    def _admin(self) -> Any:
        from kafka.admin import KafkaAdminClient

        class _Closing(KafkaAdminClient):  # type: ignore[misc]
            def __enter__(self) -> Any:
                return self

            def __exit__(self, *exc: object) -> None:
                self.close()

        return _Closing(bootstrap_servers=self.bootstrap_servers.split(","), bootstrap_timeout_ms=30_000)

    def create_topic(self, name: str, partitions: int, leader: int) -> None:
        """A topic whose every partition has `leader` as preferred leader and all nodes as replicas."""
        others = [n for n in self.nodes if n != leader]
        replicas = {p: [leader, *(others[p % 2 :] + others[: p % 2])] for p in range(partitions)}
        with self._admin() as admin:
            admin.create_topics({name: {"assignments": replicas}})
        deadline = time.monotonic() + 60
        while self.leaders(name) != {p: leader for p in range(partitions)}:
            if time.monotonic() > deadline:
                raise AssertionError(f"{name}: leaders {self.leaders(name)}, wanted {leader} everywhere")
            time.sleep(0.2)

    def _partitions(self, topic: str, timeout: float = 60.0) -> list[dict[str, Any]]:
        """describe_topics, retried: right after a kill the client may still ask the dead node."""
        import kafka.errors as kerrors

        deadline = time.monotonic() + timeout
        while True:
            try:
                with self._admin() as admin:
                    [described] = admin.describe_topics([topic])
                return list(described.get("partitions", []))
            except kerrors.KafkaError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)

    def leaders(self, topic: str) -> dict[int, int]:
        """partition -> id of the node leading it now (-1: no leader)."""
        return {p["partition_index"]: p["leader_id"] for p in self._partitions(topic)}

    def in_sync(self, topic: str) -> dict[int, list[int]]:
        """partition -> the replicas in sync now."""
        return {p["partition_index"]: sorted(p["isr_nodes"]) for p in self._partitions(topic)}
