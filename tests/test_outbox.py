"""Durable delivery (docs/BEHAVIOUR.md §3): the outbox survives restarts and is re-sent in seq order
with the same event ids."""
from __future__ import annotations

import json

import pytest

from helpers import HQ, Mosquitto, station_config, wait_for
from station.store import Store


@pytest.mark.broker
def test_outbox_resent_after_restart_in_seq_order_same_event_ids(tmp_path, start_station):
    broker = Mosquitto(tmp_path / "b", persistence=True).start()
    hq = HQ(broker.port, persistent=True)
    try:
        wait_for(hq.client.is_connected, 5)
        cfg = station_config(tmp_path, broker.port)
        s = start_station(cfg)
        hq.wait_status(lambda d: d["state"] == "online")
        for i in range(3):
            hq.complaint(f"ob-{i}")
        hq.wait_event("alerting", count=3)
        broker.stop()
        wait_for(lambda: not s.station.link.connected, 10)
        s.press(0.1)                                  # three acks, broker down
        wait_for(lambda: s.station.outbox.pending >= 3, 5, what="acks in the outbox")
        s.stop()                                      # station down with acks undelivered
        with Store(s.config.storage.path) as store:
            rows = store.outbox_rows()
        stored = [(r.seq, r.event_id) for r in rows if r.type == "ack"]
        assert len(stored) == 3
        broker.start()
        s2 = start_station(cfg)
        acks = hq.wait_event("ack", count=3, timeout=20)
        got = [(a["seq"], a["event_id"]) for a in acks[:3]]
        assert got == stored                          # same ids, seq order
        assert sorted(a["complaint_id"] for a in acks[:3]) == ["ob-0", "ob-1", "ob-2"]
        wait_for(lambda: s2.station.outbox.pending == 0, 5, what="outbox drained")
        assert json.loads(json.dumps(acks[0]))["v"] == 1
    finally:
        hq.close()
        broker.stop()


def test_pending_counts_what_the_bound_dropped(tmp_path):
    """With the broker away past the outbox bound, the oldest events are dropped: the
    status's ``outbox_pending`` is what is really waiting, not every event ever queued."""
    import time as _time

    from station.outbox import Outbox, Write
    from station.protocol import event

    class Link:                       # the outbox's publisher, never connected here
        connected = False

        def publish(self, topic, payload, *, qos=1, retain=False):
            raise AssertionError("nothing is sent while the link is down")

        def ack(self, mid, qos, generation):
            return False

    path = tmp_path / "state.db"
    ob = Outbox(lambda: Store(path, outbox_max=100), Link(), "t")
    ob.start()
    try:
        for k in range(3):
            ob.submit(Write(events=[event("cmd_result", {"cmd_id": f"c{k}-{i}", "ok": True},
                                          station="s", region="r", wall=_time.time(),
                                          clock_synced=True) for i in range(60)]))
        wait_for(lambda: ob.idle.is_set() and ob._jobs.empty(), 5, what="writes done")
        with Store(path, readonly=True) as s:
            assert s.outbox_count() == 100
        assert ob.pending == 100
    finally:
        ob.stop()
