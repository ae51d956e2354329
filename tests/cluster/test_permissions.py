"""The reference identities and permissions (``config/rabbitmq/setup-permissions.sh``) applied
to the test cluster: the same rules as the mosquitto ACL. A station publishes only its own
events/status/presence and reads only its region's complaints and its own cmd topic; HQ
publishes complaints; the desk reads the stations and publishes commands. RabbitMQ 3.10 answers
a refused SUBSCRIBE with 0x80 and a refused PUBLISH by closing the connection."""
from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from cluster.cluster import SCRIPT, LocalCluster
from helpers import wait_for

pytestmark = pytest.mark.slow

SETUP = SCRIPT.parent / "setup-permissions.sh"
VHOST = "polri110"
R = "polri/110"
A, A_REGION = "prabumulih-1", "sumsel-prabumulih"
B, B_REGION = "lahat-1", "sumsel-lahat"


class Client:
    """A 3.1.1 client logged in as ``user`` (password ``pw-<user>``) in the reference vhost."""

    def __init__(self, cluster: LocalCluster, user: str, client_id: str,
                 password: str | None = None) -> None:
        self.got: list[tuple[str, bytes]] = []
        self.refused_connect: str | None = None
        self.connected = threading.Event()
        self.closed = threading.Event()
        self.suback: list[Any] = []
        self.c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                             protocol=mqtt.MQTTv311, clean_session=False)
        self.c.username_pw_set(f"{VHOST}:{user}", password or f"pw-{user}")
        self.c.on_connect = self._on_connect
        self.c.on_disconnect = lambda c, u, f, r, p: self.closed.set()
        self.c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        self.c.on_subscribe = lambda c, u, mid, reasons, p: self.suback.extend(reasons)
        self.c.connect("127.0.0.1", cluster.port(1), keepalive=10)
        self.c.loop_start()
        wait_for(lambda: self.connected.is_set() or self.closed.is_set(), 15,
                 what=f"{user} CONNACK")

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, p: Any) -> None:
        if reason.is_failure:
            self.refused_connect = str(reason)
        else:
            self.connected.set()

    def subscribe(self, topic: str) -> bool:
        """True when granted (SUBACK QoS 1), False when refused (0x80)."""
        n = len(self.suback)
        self.c.subscribe(topic, 1)
        wait_for(lambda: len(self.suback) > n or self.closed.is_set(), 10, what="SUBACK")
        return len(self.suback) > n and not self.suback[n].is_failure

    def publish_refused(self, topic: str, payload: bytes = b"{}") -> bool:
        """Publish QoS 1: False when PUBACKed with the connection open, True when the broker
        closed the connection instead (RabbitMQ 3.10's answer to an unauthorised publish)."""
        info = self.c.publish(topic, payload, qos=1)
        wait_for(lambda: info.is_published() or self.closed.is_set(), 10, what="PUBACK or close")
        time.sleep(0.2)
        return self.closed.is_set()

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


@pytest.fixture(scope="module")
def identities(cluster: LocalCluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("identities")
    (d / "stations.txt").write_text(f"# station region\n{A} {A_REGION}\n{B} {B_REGION}\n")
    pw = d / "passwords"
    pw.mkdir()
    for user in (A, B, "hq-dispatch", "national-desk"):
        (pw / f"{user}.password").write_text(f"pw-{user}\n")
    env = {"RABBITMQCTL": f"{SCRIPT} ctl {cluster.dir} 1", "PATH": "/usr/bin:/bin"}
    for _ in range(2):                      # idempotent: a second run changes nothing
        done = subprocess.run([str(SETUP), str(d / "stations.txt"), str(pw)], env=env,
                              capture_output=True, text=True, timeout=180)
        assert done.returncode == 0, done.stderr
    assert "2 station(s)" in done.stdout
    return d


def test_a_station_reads_its_region_and_cmd_only(cluster, identities):
    a = Client(cluster, A, A)
    try:
        assert a.connected.is_set()
        assert a.subscribe(f"{R}/region/{A_REGION}/complaints")
        assert a.subscribe(f"{R}/station/{A}/cmd")
        assert not a.subscribe(f"{R}/region/{B_REGION}/complaints")
        assert not a.subscribe(f"{R}/station/{B}/cmd")
        assert not a.subscribe(f"{R}/station/+/status")
    finally:
        a.close()


def test_a_station_publishes_its_own_topics_only(cluster, identities):
    hq = Client(cluster, "hq-dispatch", "hq-acl")
    desk = Client(cluster, "national-desk", "desk-acl")
    try:
        assert hq.subscribe(f"{R}/station/+/events")
        assert desk.subscribe(f"{R}/station/+/status")
        assert desk.subscribe(f"{R}/station/+/presence")
        a = Client(cluster, A, A)
        for leaf in ("events", "status", "presence"):
            assert not a.publish_refused(f"{R}/station/{A}/{leaf}", b'{"ok":1}')
        a.close()
        wait_for(lambda: len(hq.got) == 1 and len(desk.got) == 2, 10, what="deliveries")
        for topic in (f"{R}/station/{B}/events", f"{R}/region/{A_REGION}/complaints",
                      f"{R}/station/{B}/cmd"):
            a = Client(cluster, A, A)
            assert a.publish_refused(topic), f"{A} may publish on {topic}"
            a.close()
        time.sleep(0.3)
        assert len(hq.got) == 1 and len(desk.got) == 2
    finally:
        hq.close()
        desk.close()


def test_hq_publishes_complaints_and_the_desk_commands(cluster, identities):
    a = Client(cluster, A, A)
    try:
        assert a.subscribe(f"{R}/region/{A_REGION}/complaints")
        assert a.subscribe(f"{R}/station/{A}/cmd")
        hq = Client(cluster, "hq-dispatch", "hq-acl")
        assert not hq.publish_refused(f"{R}/region/{A_REGION}/complaints", b'{"c":1}')
        assert not hq.subscribe(f"{R}/station/+/status")     # HQ reads events only
        hq.close()
        desk = Client(cluster, "national-desk", "desk-acl")
        assert not desk.publish_refused(f"{R}/station/{A}/cmd", b'{"cmd":1}')
        desk.close()
        wait_for(lambda: len(a.got) == 2, 10, what="complaint and command delivered")
        for user, cid, topic in (("hq-dispatch", "hq-acl", f"{R}/station/{A}/cmd"),
                                 ("national-desk", "desk-acl",
                                  f"{R}/region/{A_REGION}/complaints")):
            c = Client(cluster, user, cid)
            assert c.publish_refused(topic), f"{user} may publish on {topic}"
            c.close()
    finally:
        a.close()


def test_no_login_without_the_password_nor_another_stations_session(cluster, identities):
    wrong = Client(cluster, A, A, password="guess")
    assert wrong.refused_connect is not None
    wrong.close()
    # Station A's login with station B's client id would take over B's session queue.
    thief = Client(cluster, A, B)
    try:
        refused = thief.refused_connect is not None or thief.closed.is_set() or \
            not thief.subscribe(f"{R}/region/{A_REGION}/complaints")
        assert refused, "a station opened another station's session"
    finally:
        thief.close()
