"""An exception forced inside a callback (issue 5, docs/BEHAVIOUR.md §3): paho's network thread dies
silently on one, so none may escape. The failing message is refused with ``rejected`` (and
PUBACKed: left unacknowledged it would hold one of the broker's in-flight slots until the next
reconnect — twenty of them and no complaint reaches the room); the next message is handled."""
from __future__ import annotations

import threading
import time
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from helpers import ROOT, REGION, station_config, wait_for
from faults.chaos import Dispatch, assert_clean

TOPIC = f"{ROOT}/region/{REGION}/complaints"
FAILURES = 25          # more than mosquitto's 20 in-flight messages per client


def _flaky(times: int, real, exc: Exception | None = None):
    left = [times]

    def call(*args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise exc or RuntimeError("injected fault")
        return real(*args, **kwargs)
    call.left = left  # type: ignore[attr-defined]
    return call


def test_exception_translating_a_paho_message(broker, hq, proxy, tmp_path, start_station,
                                              figures):
    """The link's paho callback: translating the message (here its receive timestamp)
    raises."""
    d = Dispatch(hq, TOPIC)
    s = start_station(station_config(tmp_path, proxy.port))
    hq.wait_status(lambda doc: doc["state"] == "online")
    getter = _flaky(FAILURES, s.station.link._clock)
    s.station.link._clock = getter
    for i in range(FAILURES):
        d.send(f"cb-bad-{i:02d}", wait=True)
    wait_for(lambda: getter.left[0] == 0, 10, what="every injected failure used")
    d.send("cb-good", priority="urgent", wait=True)
    hq.wait_event("alerting", complaint_id="cb-good", timeout=5)
    rejected = hq.wait_event("rejected", count=FAILURES, timeout=5)
    assert all(r["reason"] == "malformed" and "internal error" in r["detail"]
               for r in rejected)
    assert s.relay_on("beacon")
    # Refused means PUBACKed: after a reconnect the broker re-delivers none of them.
    proxy.reset()
    wait_for(lambda: s.station.link.connected, 15)
    time.sleep(1.0)
    # An alerting in flight at the reset is re-sent with its event_id (HQ dedups on it).
    alerts = {e["event_id"]: e["complaint_id"] for e in hq.of_type("alerting")}
    assert list(alerts.values()) == ["cb-good"]
    figures.record("exception in the paho message callback",
                   messages=FAILURES + 1, injected_exceptions=FAILURES,
                   rejected=len(hq.of_type("rejected")), next_message_handled=1, crashes=0)


def test_exception_in_the_service_parse(broker, hq, tmp_path, start_station, monkeypatch,
                                        figures):
    """The service's side: ``parse_complaint`` raises."""
    from station import service
    d = Dispatch(hq, TOPIC)
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda doc: doc["state"] == "online")
    monkeypatch.setattr(service, "parse_complaint", _flaky(FAILURES, service.parse_complaint))
    for i in range(FAILURES):
        d.send(f"sp-bad-{i:02d}")
    d.send("sp-good", priority="urgent", wait=True)
    hq.wait_event("alerting", complaint_id="sp-good", timeout=5)
    rejected = hq.wait_event("rejected", count=FAILURES, timeout=5)
    assert all("internal error" in r["detail"] for r in rejected)
    assert s.relay_on("beacon")
    s.press(0.08)
    d.wait_acked(["sp-good"])
    assert [e["complaint_id"] for e in hq.of_type("alerting")] == ["sp-good"]
    figures.record("exception in the service's complaint parser",
                   messages=FAILURES + 1, injected_exceptions=FAILURES,
                   rejected=len(hq.of_type("rejected")), next_message_handled=1, crashes=0)


def test_exception_in_a_gpio_callback(broker, hq, tmp_path, start_station, monkeypatch,
                                      figures):
    """The button's side: the edge callback raises once; the edge is dropped and logged, the
    next press acknowledges."""
    from station.service import Station
    d = Dispatch(hq, TOPIC)
    monkeypatch.setattr(Station, "_edge_button", _flaky(2, Station._edge_button))
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda doc: doc["state"] == "online")
    d.send("gp-1", wait=True)
    d.wait_alerted()
    s.press(0.08)                      # both edges of this press raise
    time.sleep(0.2)
    s.press(0.08)
    d.wait_acked(timeout=5)
    assert not s.relay_on("beacon")
    v = d.verdict()
    assert_clean(v, acked=1)
    figures.record("exception in the button callback", presses=2, injected_exceptions=2,
                   acked_by_next_press=1, crashes=0)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
def test_paho_network_thread_death_is_noticed(broker, hq, tmp_path, start_station,
                                              monkeypatch, figures):
    """An exception inside paho itself (outside any callback of ours) ends its network
    thread silently: ``connected`` still says True and nothing arrives any more. The station
    notices within a loop round, raises an ``mqtt_thread`` fault and stops reporting the
    link's progress, so systemd's watchdog (WatchdogSec) restarts the service. The siren keeps
    working meanwhile."""
    beats: list[tuple[float, str]] = []
    d = Dispatch(hq, TOPIC)
    # wake_s: the loop's idle round (5 s in production) made short to keep the test short
    s = start_station(station_config(tmp_path, broker.port), wake_s=0.5,
                      on_progress=lambda part: beats.append((time.monotonic(), part)))
    hq.wait_status(lambda doc: doc["state"] == "online")
    d.send("pt-1", wait=True)
    d.wait_alerted()
    # Only the station's paho thread meets the fault: HQ's and the dispatcher's clients in this
    # process read message topics too, and one of them took the single failure now and then.
    paho_thread, real_topic, left = s.station.link._thread, mqtt.MQTTMessage.topic.fget, [1]

    def getter(message: mqtt.MQTTMessage) -> Any:
        if left[0] and threading.current_thread() is paho_thread:
            left[0] -= 1
            raise RuntimeError("injected fault")
        return real_topic(message)
    monkeypatch.setattr(mqtt.MQTTMessage, "topic", property(getter))   # paho reads it first
    d.send("pt-poison", wait=True)
    wait_for(lambda: not s.station.link.alive, 5, what="paho's thread dead")
    assert s.station.link.connected     # the lie docs/FIELD-GUIDE.md §1 describes
    t_dead = time.monotonic()
    wait_for(lambda: "mqtt_thread" in s.station.machine.faults, 3, what="mqtt_thread fault")
    noticed = time.monotonic() - t_dead
    time.sleep(1.5)
    recent = {part for t, part in beats if t > t_dead + 1.0}
    assert "loop" in recent and "link" not in recent        # the watchdog will fire
    s.press(0.08)
    wait_for(lambda: not s.relay_on("beacon"), 1, what="the button still works")
    figures.record("paho network thread killed by an exception inside paho",
                   noticed_after_s=round(noticed, 2), link_progress_stopped=1,
                   relays_still_work=1, crashes=0)
