"""The broker dies, restarts, hangs (issue 5): the station keeps alarming, resubscribes, loses
nothing, and its acks arrive once the path is back. Real mosquitto, real station, mock GPIO."""
from __future__ import annotations

import signal
import time

import pytest

from helpers import HQ, ROOT, REGION, Mosquitto, station_config, wait_for
from faults.chaos import ChaosProxy, Dispatch, assert_clean, wait_broker_saved

TOPIC = f"{ROOT}/region/{REGION}/complaints"


def _relays_off_within(s, seconds: float) -> float:
    t0 = time.monotonic()
    s.press(0.08)
    wait_for(lambda: not s.relay_on("beacon") and not s.relay_on("siren"), seconds,
             interval=0.002, what="relays off after the press")
    return time.monotonic() - t0 - 0.08


@pytest.mark.broker
def test_broker_sigkill_without_persistence(tmp_path, start_station, figures):
    """The broker forgets everything: the station asks HQ to re-send (resync_request),
    alarms nothing twice, and its acks made while the broker was dead arrive."""
    broker = Mosquitto(tmp_path / "b").start()
    proxy = ChaosProxy(broker.port).start()
    hq = HQ(broker.port)
    try:
        wait_for(hq.client.is_connected, 5)
        time.sleep(0.1)
        hq_ = Dispatch(hq, TOPIC)
        s = start_station(station_config(tmp_path, proxy.port))
        hq.wait_status(lambda d: d["state"] == "online")
        for i in range(3):
            hq_.send(f"nk-{i}", wait=True)
        hq_.wait_alerted()
        assert s.relay_on("siren") and s.relay_on("beacon")

        broker.stop(signal.SIGKILL)
        proxy.refuse()   # the station comes back after HQ has resubscribed
        wait_for(lambda: not s.station.link.connected, 15, what="station sees the broker gone")
        assert s.relay_on("beacon")                       # still alarming
        off_s = _relays_off_within(s, 0.5)               # the button works without a broker
        broker.start()
        wait_for(hq.client.is_connected, 10)
        time.sleep(0.3)
        proxy.admit()
        hq.wait_event("resync_request", timeout=20)
        hq_.wait_acked([f"nk-{i}" for i in range(3)])
        hq_.send("nk-after", wait=True)                  # resubscribed on the new broker
        hq_.wait_alerted()
        s.press(0.1)
        hq_.wait_acked()
        wait_for(lambda: s.station.outbox.pending == 0, 10, what="outbox drained")
        time.sleep(0.3)
        v = hq_.verdict()
        assert_clean(v, acked=4)
        figures.record("broker SIGKILL, no persistence", complaints=v["complaints"], presses=2,
                       lost=v["lost"], doubled=v["doubled"], crashes=0,
                       resync_requests=len(hq.of_type("resync_request")),
                       resent_complaints=v["resent_complaints"],
                       press_to_relays_off_ms=round(off_s * 1000, 1))
    finally:
        hq.close()
        proxy.stop()
        broker.stop()


def test_broker_sigkill_with_persistence(tmp_path, start_station, persistent_broker,
                                         persistent_hq, figures):
    """The broker keeps sessions on disk (autosave 1 s): complaints queued for the offline
    station survive the broker's SIGKILL, the session is still there (no resync), an ack
    made while the broker was dead arrives once."""
    broker, hq = persistent_broker, persistent_hq
    hq_ = Dispatch(hq, TOPIC)
    cfg = station_config(tmp_path, broker.port)
    s = start_station(cfg)
    hq.wait_status(lambda d: d["state"] == "online")
    hq_.send("pk-live", wait=True)
    hq_.wait_alerted()
    wait_broker_saved(broker)         # both sessions are on disk

    broker.stop(signal.SIGKILL)
    wait_for(lambda: not s.station.link.connected, 15, what="station sees the broker gone")
    off_s = _relays_off_within(s, 0.5)
    broker.start()
    hq_.wait_acked(["pk-live"])

    s.stop()                                               # station offline ...
    hq.wait_presence(lambda d: d["state"] == "offline")
    for i in range(5):
        hq_.send(f"pk-queued-{i}", wait=True)              # ... complaints queue at the broker
    wait_broker_saved(broker)                              # autosave (1 s) wrote them
    broker.stop(signal.SIGKILL)
    broker.start()
    s = start_station(cfg)
    hq_.wait_alerted()
    s.press(0.1)
    hq_.wait_acked()
    wait_for(lambda: s.station.outbox.pending == 0, 10, what="outbox drained")
    time.sleep(0.3)
    v = hq_.verdict()
    assert_clean(v, acked=6)
    assert hq.of_type("resync_request") == []              # the session survived
    figures.record("broker SIGKILL, persistence (autosave 1 s)", complaints=v["complaints"],
                   presses=2, lost=v["lost"], doubled=v["doubled"], crashes=0,
                   resync_requests=0, press_to_relays_off_ms=round(off_s * 1000, 1))


@pytest.mark.broker
@pytest.mark.slow
def test_broker_autosave_interval_decides_what_a_sigkill_loses(tmp_path, start_station,
                                                               figures):
    """Why HQ's broker needs a short ``autosave_interval`` (docs/FIELD-GUIDE.md §4.1): with
    mosquitto's
    1800 s default, a complaint queued for an offline station after the last save is lost on
    a broker SIGKILL while the station's session survives — the station cannot notice (no
    resync_request); only HQ's own re-send of unacknowledged complaints recovers it. With
    autosave 1 s nothing is lost."""
    lost = {}
    for autosave in (1800, 1):
        broker = Mosquitto(tmp_path / f"b{autosave}", persistence=True,
                           extra=f"autosave_interval {autosave}")
        broker.start()
        hq = HQ(broker.port, persistent=True)
        try:
            wait_for(hq.client.is_connected, 5)
            time.sleep(0.1)
            hq_ = Dispatch(hq, TOPIC)
            (tmp_path / f"s{autosave}").mkdir()
            cfg = station_config(tmp_path / f"s{autosave}", broker.port)
            s = start_station(cfg)
            hq.wait_status(lambda d: d["state"] == "online")
            s.stop()
            broker.stop()                   # a clean broker restart saves the session ...
            broker.start()
            wait_for(hq.client.is_connected, 10)
            time.sleep(0.2)
            hq_.send(f"as-{autosave}", wait=True)        # ... then a complaint queues
            if autosave == 1:
                wait_broker_saved(broker)
            else:
                time.sleep(2.5)                          # no save comes for 30 minutes
            broker.stop(signal.SIGKILL)
            broker.start()
            s = start_station(cfg)
            wait_for(lambda: s.station.link.connected, 10)
            time.sleep(2.0)
            hq_.answer_resyncs()
            time.sleep(0.5)
            lost[autosave] = len(set(hq_.sent) - hq_.alerted())
            assert hq.of_type("resync_request") == []    # the session itself survived
            s.stop()
        finally:
            hq.close()
            broker.stop()
    assert lost == {1800: 1, 1: 0}
    figures.record("broker SIGKILL, autosave_interval 1800 vs 1", complaints=2,
                   lost_with_1800=lost[1800], lost_with_1=lost[1], resync_requests=0)


@pytest.mark.slow
def test_broker_paused_black_hole(tmp_path, start_station, persistent_broker, persistent_hq,
                                  figures):
    """SIGSTOP: TCP still accepts, nothing answers. Relays keep time, the station notices
    within 1.5 × keepalive, and after SIGCONT everything arrives once."""
    broker, hq = persistent_broker, persistent_hq
    hq_ = Dispatch(hq, TOPIC)
    s = start_station(station_config(tmp_path, broker.port,
                                     alarm={"siren_max_s": 3.0}))
    hq.wait_status(lambda d: d["state"] == "online")
    hq_.send("bh-1", priority="emergency", wait=True)
    hq_.wait_alerted()
    t_alarm = time.monotonic()

    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        # The maximum on-time still ends the siren on time, with the broker hung.
        wait_for(lambda: not s.relay_on("siren"), 6, interval=0.005, what="siren max on-time")
        escalated_after = time.monotonic() - t_alarm
        assert s.relay_on("beacon")
        off_s = _relays_off_within(s, 0.5)
        hq_.send("bh-during")                            # sits in the paused broker's socket
        t_stop = time.monotonic()
        wait_for(lambda: not s.station.link.connected, 20, what="station notices the hang")
        noticed_s = time.monotonic() - t_stop
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    hq_.wait_alerted(timeout=30)
    s.press(0.1)
    hq_.wait_acked(timeout=30)
    wait_for(lambda: s.station.outbox.pending == 0, 10, what="outbox drained")
    time.sleep(0.3)
    v = hq_.verdict()
    assert_clean(v, acked=2)
    assert len(hq.of_type("escalated")) == 1
    assert 2.5 <= escalated_after < 4.0
    figures.record("broker SIGSTOP/SIGCONT (black hole)", complaints=v["complaints"],
                   presses=2, lost=v["lost"], doubled=v["doubled"], crashes=0,
                   siren_max_3s_ended_after_s=round(escalated_after, 2),
                   press_to_relays_off_ms=round(off_s * 1000, 1),
                   hang_noticed_after_s=round(noticed_s, 1))
