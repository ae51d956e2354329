"""The broker loses the station's session (issue 5, docs/INTERFACE.md): restart without persistence,
failover to a standby that never knew the station. The station sends ``resync_request``;
HQ re-sends what is unacknowledged; nothing is alarmed twice, nothing lost."""
from __future__ import annotations

import signal
import time

import pytest

from helpers import HQ, ROOT, REGION, Mosquitto, station_config, wait_for
from faults.chaos import ChaosProxy, Dispatch, assert_clean

TOPIC = f"{ROOT}/region/{REGION}/complaints"


class TwoDesks:
    """HQ on the primary and on the standby broker; events judged together (dedup by id)."""

    def __init__(self, primary: HQ, standby: HQ) -> None:
        self.primary, self.standby = primary, standby

    @property
    def events(self):
        return self.primary.events + self.standby.events

    def of_type(self, t):
        return [e for e in self.events if e.get("type") == t]


@pytest.mark.broker
@pytest.mark.parametrize("primary_failure", ["refused", "accept-then-reset", "hung"])
def test_failover_to_standby_without_session_asks_for_resync(tmp_path, start_station, figures,
                                                             primary_failure):
    """The primary dies with a complaint in flight to the station; the station fails over to
    the regional standby, which has no session for it: ``resync_request`` there, HQ re-sends
    the unacknowledged complaints, the lost one is alarmed, the others not again.

    ``refused``: nothing listens any more. ``accept-then-reset``: a load balancer in front of
    a dead cluster accepts TCP and resets it. ``hung``: the primary accepts and never answers
    (SIGSTOP)."""
    primary = Mosquitto(tmp_path / "p").start()
    standby = Mosquitto(tmp_path / "s").start()
    front = ChaosProxy(primary.port).start()          # the station reaches the primary here
    hq_p, hq_s = HQ(primary.port), HQ(standby.port)
    try:
        for h in (hq_p, hq_s):
            wait_for(h.client.is_connected, 5)
        time.sleep(0.1)
        d_p, d_s = Dispatch(hq_p, TOPIC), Dispatch(hq_s, TOPIC)
        cfg = station_config(tmp_path, front.port,
                             broker={"failover": [f"127.0.0.1:{standby.port}"]})
        s = start_station(cfg)
        hq_p.wait_status(lambda d: d["state"] == "online")
        d_p.send("fo-1", wait=True)
        d_p.wait_alerted()

        front.stall()                     # the station's path hangs ...
        d_p.send("fo-2", wait=True)       # ... so fo-2 sits unacknowledged in the primary
        if primary_failure == "hung":
            assert primary.proc is not None
            primary.proc.send_signal(signal.SIGSTOP)
            front.stop()
            front = ChaosProxy(primary.port, port=front.port).start()
        else:
            primary.stop(signal.SIGKILL)
            front.stop()
            if primary_failure == "accept-then-reset":
                front = ChaosProxy(primary.port, port=front.port).start()   # upstream dead
        t0 = time.monotonic()
        hq_s.wait_status(lambda d: d["state"] == "online", timeout=40)
        failover_s = time.monotonic() - t0
        hq_s.wait_event("resync_request", timeout=10)
        d_s.sent = list(d_p.sent)         # HQ knows what it sent, on whichever broker
        d_s.answer_resyncs()
        d_s.wait_alerted(["fo-2"], timeout=20)
        wait_for(lambda: s.relay_on("beacon"), 5)
        s.press(0.1)
        d_s.wait_acked(["fo-1", "fo-2"], timeout=20)
        time.sleep(0.3)
        both = Dispatch(TwoDesks(hq_p, hq_s), TOPIC)
        both.sent = ["fo-1", "fo-2"]
        v = both.verdict()
        assert_clean(v, acked=2)
        figures.record(f"failover to standby ({primary_failure} primary)",
                       complaints=2, presses=1, lost=v["lost"], doubled=v["doubled"],
                       crashes=0, resync_requests=len(hq_s.of_type("resync_request")),
                       failover_s=round(failover_s, 1))
    finally:
        if primary.proc is not None and primary_failure == "hung":
            primary.proc.send_signal(signal.SIGCONT)
        hq_p.close()
        hq_s.close()
        front.stop()
        primary.stop()
        standby.stop()


def test_broker_restart_with_persistence_keeps_session_no_resync(tmp_path, start_station,
                                                                 persistent_broker,
                                                                 persistent_hq):
    """A clean broker restart with persistence keeps the session: no resync_request, and a
    complaint queued meanwhile is alarmed once."""
    broker, hq = persistent_broker, persistent_hq
    d = Dispatch(hq, TOPIC)
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d_: d_["state"] == "online")
    broker.stop()
    wait_for(lambda: not s.station.link.connected, 10)
    broker.start()
    wait_for(lambda: s.station.link.connected, 20)
    d.send("pr-1", wait=True)
    d.wait_alerted()
    time.sleep(0.5)
    assert hq.of_type("resync_request") == []
    assert_clean(d.verdict())
