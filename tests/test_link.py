"""The MQTT link: failover, backoff, callbacks that never kill paho's thread."""
from __future__ import annotations

import queue
import time

import pytest

from helpers import Mosquitto, free_port, wait_for
from station.config import BrokerAddress, BrokerConfig
from station.link import Connected, Inbound, Link, Unreachable
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


@pytest.mark.broker
def test_unreachable_once_every_address_failed_then_connected(tmp_path):
    """A cluster without a majority: every address fails → one ``Unreachable`` (not one per
    attempt); the next CONNACK comes as ``Connected`` and a new outage is told again."""
    later = Mosquitto(tmp_path / "later", port=free_port())
    cfg = BrokerConfig("127.0.0.1", free_port(),
                       failover=(BrokerAddress("127.0.0.1", later.port),),
                       reconnect_min_s=0.05, reconnect_max_s=0.1)
    q: queue.SimpleQueue = queue.SimpleQueue()
    link = make_link(cfg, q.put)
    link.start()
    seen: list = []
    try:
        wait_for(lambda: seen.extend(_drain(q)) or
                 (sum(isinstance(x, Connected) for x in seen) == 0 and link._failed_in_row >= 6),
                 10, what="six failed attempts")
        told = [x for x in seen if isinstance(x, Unreachable)]
        assert len(told) == 1 and [a.port for a in told[0].tried] == [cfg.port, later.port]
        later.start()
        assert link.wait_connected(10)
        wait_for(lambda: seen.extend(_drain(q)) or any(isinstance(x, Connected) for x in seen),
                 5, what="Connected")
        later.stop()
        wait_for(lambda: seen.extend(_drain(q)) or
                 sum(isinstance(x, Unreachable) for x in seen) == 2, 10,
                 what="a second Unreachable for the second outage")
    finally:
        link.stop()
        later.stop()


def test_a_broker_that_confirms_nothing_is_dropped(broker):
    """A minority RabbitMQ node keeps the connection and answers pings but PUBACKs nothing:
    once a publish waits past max(10 s, 2 × keepalive) the link drops the connection and
    paho reconnects (the service calls ``check_confirmations`` from its loop)."""
    from faults.chaos import ChaosProxy
    from station.link import Disconnected
    proxy = ChaosProxy(broker.port).start()
    now = [1000.0]
    q: queue.SimpleQueue = queue.SimpleQueue()
    cfg = BrokerConfig("127.0.0.1", proxy.port, keepalive=5, reconnect_min_s=0.05,
                       reconnect_max_s=0.1)
    link = Link(cfg, TOPICS, client_id="st-link", sink=q.put)
    link._confirm_clock = lambda: now[0]
    link.start()
    seen: list = []
    try:
        assert link.wait_connected(10)
        link.publish(TOPICS.status, b"{}")            # confirmed at once: nothing overdue
        wait_for(lambda: not link._unconfirmed, 5, what="PUBACK")
        now[0] += 60
        assert not link.check_confirmations()
        proxy.stall()
        link.publish(TOPICS.status, b"{}")
        now[0] += 9.9
        assert not link.check_confirmations(), "not yet overdue"
        now[0] += 0.2
        assert link.check_confirmations()
        proxy.resume()
        wait_for(lambda: seen.extend(_drain(q)) or
                 (any(isinstance(x, Disconnected) for x in seen) and
                 sum(isinstance(x, Connected) for x in seen) == 2), 10,
                 what="dropped and connected again")
        wait_for(lambda: not link._unconfirmed, 5, what="the publish confirmed after all")
    finally:
        link.stop()
        proxy.stop()


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


def test_quick_ack_is_set_once_per_read_of_the_socket(broker, monkeypatch):
    """TCP_QUICKACK after each read of the socket (every packet it found ACKed at once), not
    once per packet: a burst's wake-up reads tens of packets (bench/: a fifth of paho's
    thread went to the system call per packet)."""
    import paho.mqtt.client as mqtt

    from station import link as link_module
    reads: list[int] = []
    acks: list[int] = []
    plain_read = link_module._Client.loop_read
    monkeypatch.setattr(link_module._Client, "loop_read",
                        lambda self, max_packets=1: reads.append(1) or plain_read(self))
    monkeypatch.setattr(link_module, "_ack_segment_now", lambda client: acks.append(1))
    q: queue.SimpleQueue = queue.SimpleQueue()
    link = make_link(BrokerConfig("127.0.0.1", broker.port), q.put)
    link.start()
    hq = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="hq-quickack")
    try:
        assert link.wait_connected(5)
        wait_for(lambda: link._client.socket() is not None, 5, what="a socket")
        hq.connect("127.0.0.1", broker.port)
        hq.loop_start()
        for i in range(15):     # under the broker's window of unacknowledged messages (20)
            hq.publish(TOPICS.complaints, b'{"n": %d}' % i, qos=1)
        got: list = []
        wait_for(lambda: got.extend(_drain(q)) or
                 sum(isinstance(x, Inbound) for x in got) >= 15, 10, what="15 messages")
    finally:
        hq.loop_stop()
        hq.disconnect()
        link.stop()
    assert acks and len(acks) == len(reads)


def test_paho_packet_lines_cost_nothing_unless_debug_is_on(monkeypatch):
    import logging

    import paho.mqtt.client as mqtt

    from station import link as link_module
    client = link_module._Client(mqtt.CallbackAPIVersion.VERSION2, client_id="quiet")
    client.enable_logger(link_module._PAHO_LOG)
    calls: list[tuple] = []
    monkeypatch.setattr(link_module._PAHO_LOG, "log", lambda *a, **k: calls.append(a))
    monkeypatch.setattr(link_module._PAHO_LOG, "level", logging.INFO)
    link_module._PAHO_LOG.manager._clear_cache()
    client._easy_log(mqtt.MQTT_LOG_DEBUG, "Received PUBACK (Mid: %d)", 1)
    assert calls == []
    client._easy_log(mqtt.MQTT_LOG_WARNING, "trouble %s", "x")
    assert calls == [(logging.WARNING, "trouble %s", "x")]
    monkeypatch.setattr(link_module._PAHO_LOG, "level", logging.DEBUG)
    link_module._PAHO_LOG.manager._clear_cache()
    client._easy_log(mqtt.MQTT_LOG_DEBUG, "Received PUBACK (Mid: %d)", 2)
    assert calls[-1] == (logging.DEBUG, "Received PUBACK (Mid: %d)", 2)
    link_module._PAHO_LOG.manager._clear_cache()
