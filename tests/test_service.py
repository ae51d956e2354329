"""End to end against a real mosquitto: HQ → station → relays → button → HQ (issue 2)."""
from __future__ import annotations

import time
import uuid

import pytest

from helpers import REGION, ROOT, STATION, HQ, Mosquitto, station_config, wait_for
from station.store import Store

ENVELOPE = {"v", "type", "event_id", "seq", "station", "region", "at", "clock_synced"}


def test_complaint_sounds_siren_and_beacon_and_reports_alerting(broker, hq, tmp_path,
                                                               start_station):
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d: d["state"] == "online")
    assert not s.relay_on("siren") and s.pin("siren").state == 1  # active-low: high = off
    sent = hq.complaint("110-20261127-000001", priority="emergency")
    wait_for(lambda: s.relay_on("siren") and s.relay_on("beacon"), 5, what="relays on")
    assert s.pin("siren").state == 0  # active-low relay energised by driving low
    ev = hq.wait_event("alerting")[0]
    assert ENVELOPE <= set(ev)
    assert ev["v"] == 1 and ev["station"] == STATION and ev["region"] == REGION
    assert ev["complaint_id"] == "110-20261127-000001" and ev["priority"] == "emergency"
    assert 0 <= ev["relay_latency_ms"] < 1000
    assert uuid.UUID(ev["event_id"]) and ev["at"].endswith("Z")
    st = hq.wait_status(lambda d: d["alarms"]["active"] == 1 and d["outputs"]["siren"])
    assert st["outputs"]["beacon"] is True and st["button"] == "released"
    upstream_ms = (hq.received_at[ev["event_id"]] - sent) * 1000
    assert upstream_ms < 5000
    print(f"\nrelay latency (message in → relay on): {ev['relay_latency_ms']} ms; "
          f"complaint published → alerting received: {upstream_ms:.2f} ms")


def test_button_press_acks_and_switches_off_bounce_does_not(broker, hq, tmp_path,
                                                            start_station):
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d: d["state"] == "online")
    hq.complaint("c-1", priority="urgent")
    wait_for(lambda: s.relay_on("beacon"), 5)
    button = s.pin("button")
    button.drive_low()          # a bounce: 10 ms < 50 ms debounce
    time.sleep(0.01)
    button.drive_high()
    time.sleep(0.3)
    assert hq.of_type("ack") == [] and s.relay_on("beacon")
    s.press(0.1)
    ack = hq.wait_event("ack")[0]
    assert ack["complaint_id"] == "c-1" and ack["method"] == "button"
    assert ack["ack_latency_ms"] > 0 and "by" not in ack
    assert not s.relay_on("siren") and not s.relay_on("beacon")
    alert = hq.of_type("alerting")[0]
    assert ack["seq"] == alert["seq"] + 1


def test_history_keeps_the_alerting_relay_latency_after_the_ack(broker, hq, tmp_path,
                                                               start_station):
    """An audit trail: the history's relay_latency_ms is the alerting event's, forever (an ack
    or an escalation once overwrote it with another figure)."""
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d: d["state"] == "online")

    def stored() -> float | None:
        with Store(s.config.storage.path, readonly=True) as store:
            row = store.alarm("lat-1")
        return None if row is None else row.relay_latency_ms

    hq.complaint("lat-1", priority="urgent")
    alert = hq.wait_event("alerting", complaint_id="lat-1")[0]
    assert alert["relay_latency_ms"] is not None
    wait_for(lambda: stored() is not None, 5, what="alarm row stored")
    assert stored() == alert["relay_latency_ms"]
    s.press(0.1)
    hq.wait_event("ack", complaint_id="lat-1")
    wait_for(lambda: _acked(s.config.storage.path, "lat-1"), 5, what="ack stored")
    assert stored() == alert["relay_latency_ms"]


def _acked(path, cid: str) -> bool:
    with Store(path, readonly=True) as store:
        row = store.alarm(cid)
    return row is not None and row.state == "acked"


def test_local_views_read_the_observer_and_the_view_not_the_loop(broker, hq, tmp_path,
                                                                start_station):
    """A local display (the demo) gets the station's events from its observer and a frozen
    view; it never holds the machine, the outbox or the link."""
    seen: list[dict] = []
    s = start_station(station_config(tmp_path, broker.port), on_event=seen.append)
    hq.wait_status(lambda d: d["state"] == "online")
    idle = s.station.view()
    assert idle.link_up and idle.alarms == () and idle.siren is None and not idle.beacon
    hq.complaint("view-1", priority="emergency")
    alert = hq.wait_event("alerting", complaint_id="view-1")[0]
    assert [e["event_id"] for e in seen if e["type"] == "alerting"] == [alert["event_id"]]
    v = s.station.view()
    assert [a["complaint_id"] for a in v.alarms] == ["view-1"]
    assert v.siren is not None and v.beacon and v.button == "released"
    with pytest.raises(AttributeError):
        v.beacon = False                        # frozen: a copy, not the station's state
    assert not hasattr(s.station, "last_events")


def test_duplicates_and_bad_messages_never_alarm(broker, hq, tmp_path, start_station):
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d: d["state"] == "online")
    hq.complaint("dup-1")
    hq.wait_event("alerting")
    s.press(0.1)
    hq.wait_event("ack")
    hq.complaint("dup-1")                       # QoS 1 redelivery / replay
    bad = [
        (b'{"v":1,"id":"x-1","region":"jabar-bandung"}', "wrong_region"),
        (b'{"v":1,"id":"x-2",', "malformed"),
        (b'{"v":1,"id":"x-3","region":"' + REGION.encode() + b'","summary":"'
         + b"a" * 17000 + b'"}', "too_large"),
        (b'{"v":9,"id":"x-4","region":"' + REGION.encode() + b'"}', "unsupported_version"),
        (b'{"v":1,"id":5,"region":"' + REGION.encode() + b'"}', "schema"),
    ]
    for payload, _ in bad:
        hq.complaint("", raw=payload)
    rejected = hq.wait_event("rejected", count=len(bad))
    assert [r["reason"] for r in rejected] == [reason for _, reason in bad]
    assert rejected[0]["complaint_id"] == "x-1" and len(rejected[0]["payload_sha256"]) == 64
    time.sleep(0.3)
    assert len(hq.of_type("alerting")) == 1
    assert not s.relay_on("siren") and not s.relay_on("beacon")
    assert s.pin("siren").state == 1 and all(  # the siren never went on again
        st.state == 1 for st in s.pin("siren").states[-1:])
    assert all("Ibu Sari" not in raw.decode(errors="replace") for _, raw in hq.raw)


def test_duplicates_known_before_a_restart_are_refused_without_reading_new_ids(
        broker, hq, tmp_path, start_station):
    cfg = station_config(tmp_path, broker.port)
    first = start_station(cfg)
    hq.wait_status(lambda d: d["state"] == "online")
    hq.complaint("before-1")
    hq.wait_event("alerting", complaint_id="before-1")
    first.press(0.1)
    hq.wait_event("ack", complaint_id="before-1")
    first.stop()
    s = start_station(cfg)
    hq.wait_status(lambda d: d["state"] == "online" and d["boot_id"] == s.station.boot_id)
    wait_for(lambda: s.station._seen.before is not None, what="stored ids loaded")
    lookups: list[str] = []
    is_seen = s.station.store.is_seen
    s.station.store.is_seen = lambda cid: lookups.append(cid) or is_seen(cid)
    hq.complaint("before-1")                    # HQ re-sends after the restart
    hq.complaint("after-1")
    hq.wait_event("alerting", complaint_id="after-1")
    assert [e["complaint_id"] for e in hq.of_type("alerting")] == ["before-1", "after-1"]
    assert lookups == ["before-1"]              # a new id is known new without the disk


def test_kill_with_unacked_alarm_resumes_and_status_shows_it(broker, hq, tmp_path,
                                                             station_process):
    cfg = station_config(tmp_path, broker.port)
    p = station_process(cfg).start()
    first = hq.wait_status(lambda d: d["state"] == "online")
    hq.complaint("kill-1", priority="urgent")
    hq.wait_event("alerting")
    hq.wait_status(lambda d: d["alarms"]["active"] == 1)
    p.kill()
    offline = hq.wait_presence(lambda d: d["state"] == "offline", timeout=20)
    assert offline["reason"] == "lost" and offline["boot_id"] == first["boot_id"]
    # The will went to presence: the last health document still shows the alarm.
    last = hq.status[STATION]
    assert last["state"] == "online" and last["alarms"]["active"] == 1
    assert last["boot_id"] == first["boot_id"]
    p.start()
    back = hq.wait_status(lambda d: d["state"] == "online" and d["boot_id"] != first["boot_id"])
    assert back["alarms"]["active"] == 1 and back["outputs"]["siren"] is True
    assert back["outputs"]["beacon"] is True and back["session"] > first["session"]
    assert len(hq.of_type("alerting")) == 1    # resumed, not re-alarmed
    seqs = [e["seq"] for e in hq.events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


@pytest.mark.broker
def test_ack_during_broker_outage_arrives_once(tmp_path, start_station):
    broker = Mosquitto(tmp_path / "b", persistence=True).start()
    hq = HQ(broker.port, persistent=True)
    try:
        wait_for(hq.client.is_connected, 5)
        time.sleep(0.05)
        s = start_station(station_config(tmp_path, broker.port))
        hq.wait_status(lambda d: d["state"] == "online")
        hq.complaint("out-1")
        hq.wait_event("alerting")
        broker.stop()
        wait_for(lambda: not s.station.link.connected, 10, what="station sees broker down")
        s.press(0.1)
        wait_for(lambda: not s.relay_on("beacon"), 5, what="relays off without broker")
        broker.start()
        ack = hq.wait_event("ack", timeout=20)[0]
        assert ack["complaint_id"] == "out-1"
        time.sleep(1.0)
        assert len(hq.of_type("ack")) == 1
        wait_for(lambda: s.station.outbox.pending == 0, 5, what="outbox drained")
    finally:
        hq.close()
        broker.stop()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_complaints_while_station_down_are_alarmed_once(broker, hq, tmp_path, station_process,
                                                        protocol):
    cfg = station_config(tmp_path, broker.port, protocol=protocol)
    p = station_process(cfg).start()
    hq.wait_status(lambda d: d["state"] == "online")
    assert p.terminate() == 0
    hq.wait_presence(lambda d: d["state"] == "offline" and d["reason"] == "shutdown")
    for i in range(5):
        hq.complaint(f"queued-{i}")
    p.start()
    alerts = hq.wait_event("alerting", count=5, timeout=20)
    time.sleep(0.5)
    ids = [a["complaint_id"] for a in hq.of_type("alerting")]
    assert sorted(ids) == [f"queued-{i}" for i in range(5)]
    assert len(alerts) == 5 and not hq.of_type("resync_request")


def test_presence_birth_will_and_clean_stop_leave_the_health_document(broker, hq, tmp_path,
                                                                        station_process):
    cfg = station_config(tmp_path, broker.port)
    p = station_process(cfg).start()
    online = hq.wait_presence(lambda d: d["state"] == "online")
    assert set(online) == {"v", "station", "region", "state", "boot_id", "session", "at"}
    health = hq.wait_status(lambda d: d["boot_id"] == online["boot_id"])
    assert health["session"] == online["session"] and health["version"]
    assert {k: health[k] for k in ("complaints", "acks", "rejected", "reconnects")} == \
        {"complaints": 0, "acks": 0, "rejected": 0, "reconnects": 0}
    p.kill()
    will = hq.wait_presence(lambda d: d["state"] == "offline", timeout=20)
    assert will == {"v": 1, "station": STATION, "region": REGION, "state": "offline",
                    "reason": "lost", "boot_id": online["boot_id"],
                    "session": online["session"]}          # no "at": the desk's receive time
    assert hq.status[STATION]["state"] == "online"         # the will never overwrote it
    assert all(d["state"] == "online" for d in hq.status_log)
    p.start()
    again = hq.wait_presence(lambda d: d["state"] == "online" and d["boot_id"] != will["boot_id"])
    assert p.terminate() == 0
    bye = hq.wait_presence(lambda d: d["state"] == "offline" and d["reason"] == "shutdown")
    assert bye["boot_id"] == again["boot_id"] and bye["session"] == again["session"]
    assert "at" in bye


def test_status_counters_since_start(broker, hq, tmp_path, start_station):
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_presence(lambda d: d["state"] == "online")
    hq.complaint("count-1")
    hq.complaint("count-1")                      # a duplicate is not counted again
    hq.complaint("", raw=b"{not json")
    hq.wait_event("alerting", complaint_id="count-1")
    s.press(0.1)
    hq.wait_event("ack", complaint_id="count-1")
    hq.command("status", cmd_id="count-status")
    st = hq.wait_status(lambda d: d["acks"] == 1 and d["rejected"] == 1)
    assert st["complaints"] == 1 and st["reconnects"] == 0


def test_end_to_end_over_mqtt_311(broker, hq, tmp_path, start_station):
    s = start_station(station_config(tmp_path, broker.port, protocol="3.1.1"))
    hq.wait_status(lambda d: d["state"] == "online")
    hq.complaint("v311-1", priority="normal")
    hq.wait_event("alerting", complaint_id="v311-1")
    wait_for(lambda: s.relay_on("siren"), 5)
    s.press(0.1)
    hq.wait_event("ack", complaint_id="v311-1")
    assert not s.relay_on("beacon")


def test_session_lost_sends_resync_request(broker, hq, tmp_path, start_station):
    start_station(station_config(tmp_path, broker.port,
                                 broker={"reconnect_min_s": 1.0, "reconnect_max_s": 2.0}))
    hq.wait_status(lambda d: d["state"] == "online")
    # A broker restart without persistence loses every session.
    broker.stop()
    broker.start()
    req = hq.wait_event("resync_request", timeout=20)[0]
    assert req["since"] is None or req["since"].endswith("Z")


def test_remote_commands(broker, hq, tmp_path, start_station):
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d: d["state"] == "online")
    hq.command("test", cmd_id="t-1", seconds=1)
    res = hq.wait_event("cmd_result", cmd_id="t-1")[0]
    assert res["ok"] is True and res["cmd"] == "test"
    hq.wait_event("selftest", timeout=10)
    hq.complaint("cmd-1", priority="emergency")
    hq.wait_event("alerting")
    hq.command("test", cmd_id="t-2")
    assert hq.wait_event("cmd_result", cmd_id="t-2")[0]["ok"] is False
    hq.command("silence", cmd_id="s-1")
    assert hq.wait_event("cmd_result", cmd_id="s-1")[0]["ok"] is True
    wait_for(lambda: not s.relay_on("siren") and s.relay_on("beacon"), 5)
    hq.command("frobnicate", cmd_id="x-1")
    assert hq.wait_event("cmd_result", cmd_id="x-1")[0]["ok"] is False
    hq.command("ack", cmd_id="a-1", by="desk-3")
    ack = hq.wait_event("ack")[0]
    assert ack["method"] == "remote" and ack["by"] == "desk-3"
    wait_for(lambda: not s.relay_on("beacon"), 5)
    hq.complaint("cmd-2")
    hq.wait_event("alerting", complaint_id="cmd-2")
    hq.command("ack", cmd_id="r-1", retain=True)   # MQTT 5: seen as retained even live
    res = hq.wait_event("cmd_result", cmd_id="r-1")[0]
    assert res["ok"] is False and "retained" in res["detail"]
    assert hq.wait_event("rejected")[0]["cmd_id"] == "r-1"
    assert s.relay_on("beacon") and len(hq.of_type("ack")) == 1


def test_retained_command_is_not_replayed_at_restart(broker, hq, tmp_path, start_station):
    hq.command("ack", cmd_id="old-ack", retain=True)     # left on the broker by mistake
    cfg = station_config(tmp_path, broker.port, protocol="3.1.1")
    s = start_station(cfg)
    res = hq.wait_event("cmd_result", cmd_id="old-ack")[0]
    assert res["ok"] is False and "retained" in res["detail"]
    hq.complaint("ret-1")
    hq.wait_event("alerting")
    s.stop()
    s = start_station(cfg)                                # re-subscribing replays it
    hq.wait_event("cmd_result", count=2, cmd_id="old-ack")
    time.sleep(0.3)
    assert s.relay_on("beacon") and hq.of_type("ack") == []


def test_refused_command_result_names_the_cmd_it_read(broker, hq, tmp_path, start_station):
    """``cmd_result.cmd`` is null only when the command could not be read (docs/INTERFACE.md
    §4.2): a retained ``ack`` or a ``test`` with bad args is refused under its own name."""
    start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda d: d["state"] == "online")
    hq.command("test", cmd_id="bad-args", seconds=60)
    res = hq.wait_event("cmd_result", cmd_id="bad-args")[0]
    assert (res["ok"], res["cmd"]) == (False, "test")
    hq.command("ack", cmd_id="kept", retain=True)
    res = hq.wait_event("cmd_result", cmd_id="kept")[0]
    assert (res["ok"], res["cmd"]) == (False, "ack")
    hq.client.publish(f"{ROOT}/station/{STATION}/cmd", b'{"v":1,"cmd_id":"no-cmd","cmd":7}',
                      qos=1).wait_for_publish(5)
    assert hq.wait_event("cmd_result", cmd_id="no-cmd")[0]["cmd"] is None
    hq.client.publish(f"{ROOT}/station/{STATION}/cmd", b"", qos=1, retain=True)  # tidy up
