"""The three-node RabbitMQ cluster of ``config/rabbitmq/local-cluster.sh`` driven from tests, and
an HQ client that lives through node kills (a persistent 3.1.1 session, rotating over nodes).

    cluster = LocalCluster(tmp_dir).start()      # fails the test (never skips) if it cannot boot
    cluster.addresses                             # ["127.0.0.1:p1", "127.0.0.1:p2", ...]
    cluster.kill(1); cluster.node_start(1)
    cluster.leader_of("mqtt-subscription-<client id>qos1")  # → 1, 2 or 3
    cluster.move_tracker_leader(3)                # the MQTT client-id tracker's Raft leader
    cluster.stop()
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from helpers import NO_BROKER_ENV, REGION, ROOT, wait_for

SCRIPT = Path(__file__).resolve().parents[2] / "config" / "rabbitmq" / "local-cluster.sh"


class LocalCluster:
    """``local-cluster.sh`` on a directory of the test's own (its own node names and ports)."""

    def __init__(self, workdir: Path) -> None:
        self.dir = workdir
        self.addresses: list[str] = []
        self.boot_s = 0.0

    def _run(self, *args: str, timeout: float = 180.0) -> str:
        done = subprocess.run([str(SCRIPT), *args], capture_output=True, text=True,
                              timeout=timeout)
        if done.returncode != 0:
            pytest.fail(f"local-cluster.sh {' '.join(args)} failed ({done.returncode}):\n"
                        f"{done.stderr[-3000:]}", pytrace=False)
        return done.stdout

    def start(self) -> LocalCluster:
        """Boot (or restart) all three nodes; a cluster that cannot start FAILS the test."""
        if os.environ.get(NO_BROKER_ENV):
            pytest.fail(f"{NO_BROKER_ENV} is set (make test-fast) but this test starts a "
                        "RabbitMQ cluster", pytrace=False)
        t0 = time.monotonic()
        out = self._run("start", str(self.dir))
        self.boot_s = time.monotonic() - t0
        self.addresses = [line for line in out.split() if line]
        assert len(self.addresses) == 3, out
        return self

    def port(self, node: int) -> int:
        return int(self.addresses[node - 1].rsplit(":", 1)[1])

    def node_of_port(self, port: int) -> int:
        return [self.port(n) for n in (1, 2, 3)].index(port) + 1

    def kill(self, node: int) -> None:
        self._run("node-kill", str(self.dir), str(node))

    def node_start(self, *nodes: int) -> None:
        """Start the nodes together; returns once each accepts MQTT."""
        self._run("node-start", str(self.dir), *map(str, nodes))

    def status(self) -> dict[int, bool]:
        out = self._run("status", str(self.dir))
        return {int(f[0][1:]): f[1] == "running" for f in (ln.split() for ln in out.splitlines())}

    def ctl(self, node: int, *args: str) -> str:
        return self._run("ctl", str(self.dir), str(node), *args, timeout=60)

    def leader_of(self, queue: str, via: int) -> int:
        """The node (1-3) holding the leader of quorum ``queue``, asked of node ``via``."""
        out = self.ctl(via, "list_queues", "--quiet", "--no-table-headers", "name", "leader")
        for line in out.splitlines():
            fields = line.split()
            if len(fields) == 2 and fields[0] == queue:
                return int(re.search(r"-n(\d)@", fields[1]).group(1))  # type: ignore[union-attr]
        raise AssertionError(f"queue {queue} not found:\n{out}")

    def node_name(self, node: int) -> str:
        prefix = (self.dir / "cluster.env").read_text().split("PREFIX=")[1].split()[0]
        return f"{prefix}-n{node}@localhost"

    def tracker_leader(self, via: int) -> int:
        """The node (1-3) holding the leader of the MQTT plugin's client-id tracker (the Raft
        cluster ``mqtt_node``), asked of node ``via``."""
        out = self.ctl(via, "eval", "case ra:members({mqtt_node, node()}, 5000) of "
                                    "{ok, _, {_, Leader}} -> Leader; Other -> Other end.")
        found = re.search(r"-n(\d)@localhost'?\s*$", out.strip())
        assert found, f"no tracker leader known to node {via}: {out}"
        return int(found.group(1))

    def move_tracker_leader(self, to: int) -> None:
        """Hand the client-id tracker's leadership to node ``to`` (a drill's worst case: its
        leader on a node about to be lost)."""
        leader = self.tracker_leader(via=to)
        if leader != to:
            self.ctl(leader, "eval", "ra:transfer_leadership({mqtt_node, node()}, "
                                     f"{{mqtt_node, '{self.node_name(to)}'}}).")
        wait_for(lambda: self.tracker_leader(via=to) == to, 15, interval=0.5,
                 what=f"the client-id tracker's leader on node {to}")

    def stop(self) -> None:
        subprocess.run([str(SCRIPT), "stop", str(self.dir)], capture_output=True, timeout=120)


class ClusterHQ:
    """HQ dispatch + the monitoring desk as one MQTT 3.1.1 client with a persistent session
    (its events queue is a quorum queue, so it survives a node kill), moving to the next node
    when its node goes away. Collects events, status and presence of every station."""

    def __init__(self, addresses: list[str], client_id: str, prefer: int = 0) -> None:
        self.addresses = addresses
        self._index = prefer
        self.events: list[dict[str, Any]] = []
        self.status: dict[str, dict[str, Any]] = {}
        self.presence: dict[str, dict[str, Any]] = {}
        self.received_at: dict[str, float] = {}
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                                  protocol=mqtt.MQTTv311, clean_session=False)
        self.client.on_connect = self._on_connect
        self.client.on_connect_fail = lambda c, u: self._rotate()
        self.client.on_disconnect = lambda c, u, f, r, p: self._rotate()
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(0.2, 1.0)
        self._connect()
        self.client.loop_start()
        wait_for(self.client.is_connected, 20, what="HQ connected to the cluster")

    def _connect(self) -> None:
        host, port = self.addresses[self._index].rsplit(":", 1)
        self.client.connect_async(host, int(port), keepalive=5)

    def _rotate(self) -> None:
        self._index = (self._index + 1) % len(self.addresses)
        self._connect()

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        if not reason.is_failure:
            c.subscribe([(f"{ROOT}/station/+/events", 1), (f"{ROOT}/station/+/status", 1),
                         (f"{ROOT}/station/+/presence", 1)])

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        doc = json.loads(msg.payload) if msg.payload else {}
        leaf, station = msg.topic.split("/")[-1], msg.topic.split("/")[-2]
        with self._lock:
            if leaf == "events":
                self.events.append(doc)
                self.received_at.setdefault(doc.get("event_id"), time.monotonic())
            elif leaf == "status":
                self.status[station] = doc
            elif leaf == "presence":
                self.presence[station] = doc

    def of_type(self, type_: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e.get("type") == type_]

    def wait_status(self, station: str, predicate: Callable[[dict[str, Any]], bool],
                    timeout: float = 20.0) -> dict[str, Any]:
        def ok() -> dict[str, Any] | None:
            with self._lock:
                doc = self.status.get(station)
            return doc if doc is not None and predicate(doc) else None
        return wait_for(ok, timeout, what=f"status of {station}")

    def publish(self, topic: str, payload: bytes) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=1)

    def complaint(self, cid: str, region: str = REGION) -> mqtt.MQTTMessageInfo:
        from station.protocol import complaint_payload
        return self.publish(f"{ROOT}/region/{region}/complaints",
                            complaint_payload(complaint_id=cid, region=region))

    def close(self) -> None:
        self.client.on_disconnect = None
        self.client.disconnect()
        self.client.loop_stop()
