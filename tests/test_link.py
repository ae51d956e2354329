"""The MQTT link: failover, backoff, callbacks that never kill paho's thread."""
from __future__ import annotations

import queue
import time

import pytest

from helpers import Mosquitto, free_port, wait_for
from station.config import BrokerAddress, BrokerConfig
from station.link import Connected, Inbound, Link
from station.protocol import Topics

TOPICS = Topics("polri/110", "st-link", "reg-a")


def make_link(broker: BrokerConfig, sink) -> Link:
    return Link(broker, TOPICS, client_id="st-link", sink=sink)


@pytest.mark.broker
def test_failover_to_the_next_broker_when_primary_unreachable(tmp_path):
    standby = Mosquitto(tmp_path / "standby").start()
    try:
        cfg = BrokerConfig("127.0.0.1", free_port(),
                           failover=(BrokerAddress("127.0.0.1", standby.port),),
                           reconnect_min_s=0.1, reconnect_max_s=0.5)
        q: queue.SimpleQueue = queue.SimpleQueue()
        link = make_link(cfg, q.put)
        link.start()
        try:
            assert link.wait_connected(10)
            ev = wait_for(lambda: next((x for x in _drain(q) if isinstance(x, Connected)), None),
                          5)
            assert ev.broker.port == standby.port
        finally:
            link.stop()
    finally:
        standby.stop()


def test_backoff_is_jittered_and_capped():
    cfg = BrokerConfig("127.0.0.1", 1, reconnect_min_s=0.5, reconnect_max_s=4.0)
    link = make_link(cfg, lambda x: None)
    delays = set()
    for failures in range(12):
        link._failures = failures
        link._set_delay(link._client)
        d = link._client._reconnect_min_delay
        assert d <= 4.0
        delays.add(round(d, 6))
    assert len(delays) > 6   # not a fixed doubling sequence shared by every station


def test_exception_in_sink_does_not_kill_the_network_thread(broker):
    got: list = []
    calls = [0]

    def sink(item):
        if isinstance(item, Inbound):
            calls[0] += 1
            if calls[0] == 1:
                raise RuntimeError("boom")
        got.append(item)

    cfg = BrokerConfig("127.0.0.1", broker.port)
    link = make_link(cfg, sink)
    link.start()
    try:
        assert link.wait_connected(5)
        time.sleep(0.1)
        for i in range(2):
            link.publish(TOPICS.complaints, b"x%d" % i)
        wait_for(lambda: [g for g in got if isinstance(g, Inbound)], 5,
                 what="the second message after the first raised")
        assert [g.payload for g in got if isinstance(g, Inbound)] == [b"x1"]
    finally:
        link.stop()


def _drain(q):
    out = []
    while True:
        try:
            out.append(q.get_nowait())
        except queue.Empty:
            return out


def test_socket_has_nagle_off(broker):
    """TCP_NODELAY on the station's socket: a small write (PUBACK, status) never holds back
    the next event until the broker's delayed ACK (bench/: 40 ms steps back to back)."""
    import socket

    link = make_link(BrokerConfig("127.0.0.1", broker.port), lambda item: None)
    link.start()
    try:
        assert link.wait_connected(5)
        sock = link._client.socket()
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        link.stop()
