"""The monitoring desk: ``monitor --once --json`` against a real mosquitto with 50 stations (a
real station process killed by SIGKILL → its last will; one stale), late wills, ack latency,
rendering, and 2,000 stations."""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Iterator

import pytest
from rich.console import Console

from helpers import HQ, STATION, Mosquitto, station_config, wait_for
from station.desk.clients import connected, make_client
from station.desk.monitor import Desk, Subscription, is_late_will, plain_table, render_table
from station.protocol import PresenceDoc, encode, rfc3339

ROOT = "polri/110"


def status(station: str, *, at: float | None = None, interval_s: float = 30, alarms: int = 0,
           oldest: float | None = None, faults: list[str] | None = None, boot_id: str = "b-1",
           session: int = 1, outbox: int = 0, synced: bool = True) -> dict[str, Any]:
    return {"v": 1, "station": station, "region": f"region-{station[-1]}", "state": "online",
            "at": rfc3339(time.time() if at is None else at), "version": "0.1.0",
            "interval_s": interval_s, "alarms": {"active": alarms, "oldest_unacked_s": oldest},
            "outputs": {"siren": alarms > 0, "beacon": alarms > 0}, "button": "released",
            "outbox_pending": outbox, "faults": faults or [], "host": {"clock_synced": synced},
            "boot_id": boot_id, "session": session}


def will(station: str, *, boot_id: str = "b-1", session: int = 1,
         reason: str = "lost") -> dict[str, Any]:
    return {"v": 1, "station": station, "region": f"region-{station[-1]}", "state": "offline",
            "reason": reason, "boot_id": boot_id, "session": session}


def birth(station: str, *, boot_id: str = "b-1", session: int = 1) -> dict[str, Any]:
    return {"v": 1, "station": station, "region": f"region-{station[-1]}", "state": "online",
            "boot_id": boot_id, "session": session, "at": rfc3339(time.time())}


def topic_of(doc: dict[str, Any]) -> str:
    """Health documents go to status, births and wills to presence."""
    leaf = "status" if "alarms" in doc else "presence"
    return f"{ROOT}/station/{doc['station']}/{leaf}"


@pytest.fixture
def publisher(broker: Mosquitto) -> Iterator[Any]:
    client = make_client()
    with connected(client, "127.0.0.1", broker.port):
        yield client


def publish_all(client: Any, docs: list[dict[str, Any]], retain: bool = True) -> None:
    infos = [client.publish(topic_of(d), encode(d), qos=1, retain=retain) for d in docs]
    for info in infos:
        info.wait_for_publish(10)


def monitor_once(broker: Mosquitto, *extra: str) -> tuple[dict[str, Any], float]:
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "station.cli", "monitor", "--broker", broker.address,
         "--once", "--json", *extra], capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout), elapsed


def by_station(snapshot: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["station"]: row for row in snapshot["stations"]}


def test_fifty_stations_one_killed_one_stale(broker: Mosquitto, hq: HQ, publisher: Any,
                                              tmp_path: Path, station_process: Any) -> None:
    # the real station, as systemd runs it, then killed without a goodbye
    real = station_process(station_config(tmp_path, broker.port)).start()
    hq.wait_presence(lambda d: d["state"] == "online", timeout=15)
    hq.complaint("dark-1", priority="emergency")
    hq.wait_status(lambda d: d["alarms"]["active"] == 1, timeout=15)
    real.kill()
    hq.wait_presence(lambda d: d["state"] == "offline", timeout=15)
    died_at = time.time()

    docs = [status(f"st-{i:02d}") for i in range(47)]
    docs[10] = status("st-10", alarms=2, oldest=42.0, faults=["clock_unsynced"])
    docs[20] = status("st-20", faults=["button_stuck"], outbox=3)
    docs.append(status("st-old", at=time.time() - 600, interval_s=30))          # stale
    docs.append(status("st-nosync", at=time.time() - 600, synced=False))        # fake-hwclock
    publish_all(publisher, docs)

    snapshot, _ = monitor_once(broker)
    rows = by_station(snapshot)
    assert len(rows) == 50
    assert rows[STATION]["state"] == "offline" and rows[STATION]["reason"] == "lost"
    # It went dark with an alarm sounding: the desk still shows the alarm and when it was
    # last heard of, not the moment the monitor read the retained will.
    assert rows[STATION]["alarms"]["active"] == 1
    assert rows[STATION]["version"]
    last = time.mktime(time.strptime(rows[STATION]["last_status_at"][:19], "%Y-%m-%dT%H:%M:%S"))
    assert last - time.timezone <= died_at + 1
    assert rows["st-old"]["state"] == "stale" and rows["st-old"]["age_s"] >= 590
    assert rows["st-nosync"]["state"] == "online"      # unsynced clock: receive time counts
    assert rows["st-10"]["alarms"]["active"] == 2
    assert rows["st-10"]["alarms"]["oldest_unacked_s"] >= 42.0
    assert rows["st-10"]["outputs"] == {"siren": True, "beacon": True}
    assert rows["st-20"]["faults"] == ["button_stuck"] and rows["st-20"]["outbox_pending"] == 3
    assert sum(r["state"] == "online" for r in rows.values()) == 48
    order = [r["station"] for r in snapshot["stations"]]
    assert order[:4] == [STATION, "st-old", "st-10", "st-20"]   # trouble on top


def test_live_desk_ignores_a_late_will_and_records_ack_latency(broker: Mosquitto,
                                                              publisher: Any) -> None:
    import argparse
    desk = Desk(ROOT)
    args = argparse.Namespace(root=ROOT, protocol="5", ca_file=None, cert_file=None,
                              key_file=None, username=None, password_file=None)
    sub = Subscription(args, desk)
    with connected(sub.client, "127.0.0.1", broker.port):
        assert sub.subscribed.wait(5)
        publish_all(publisher, [birth("st-a", boot_id="B", session=5),
                                status("st-a", boot_id="B", session=5)])
        publish_all(publisher, [will("st-a", boot_id="B", session=4)])        # late will
        publish_all(publisher, [birth("st-b", boot_id="A", session=7),
                                birth("st-b", boot_id="C", session=1),        # state wiped
                                will("st-b", boot_id="A", session=7)])        # old process
        publisher.publish(f"{ROOT}/station/st-a/events", encode(
            {"v": 1, "type": "ack", "complaint_id": "110-1", "ack_latency_ms": 812.5,
             "station": "st-a"}), qos=1).wait_for_publish(5)
        wait_for(lambda: desk.messages >= 7, 5, what="messages at the desk")
        rows = by_station({"stations": desk.rows()})
        assert rows["st-a"]["state"] == "online" and rows["st-b"]["state"] == "online"
        assert rows["st-a"]["last_ack_latency_ms"] == 812.5
        publish_all(publisher, [will("st-a", boot_id="B", session=5)])        # the real one
        wait_for(lambda: by_station({"stations": desk.rows()})["st-a"]["state"] == "offline",
                 5, what="genuine will applied")


def test_late_will_rules() -> None:
    desk = Desk(ROOT, wall=lambda: 1000.0)
    topic = f"{ROOT}/station/s1/presence"
    desk.handle(f"{ROOT}/station/s1/status",
                encode(status("s1", at=1000.0, boot_id="B", session=3, alarms=1, oldest=5.0)))
    desk.handle(topic, encode(birth("s1", boot_id="B", session=3)))
    view = desk.stations["s1"]
    def late(doc: dict[str, Any]) -> bool:
        read = PresenceDoc.read(encode(doc))
        assert read is not None
        return is_late_will(view, read)
    assert late(will("s1", boot_id="B", session=2))
    assert not late(will("s1", boot_id="B", session=3))
    assert not late(will("s1", boot_id="D", session=4))   # a newer process
    desk.handle(topic, encode(will("s1", boot_id="B", session=3, reason="shutdown")))
    assert desk.rows()[0]["state"] == "offline" and desk.rows()[0]["reason"] == "shutdown"
    assert desk.rows()[0]["outputs"] == {"siren": None, "beacon": None}
    assert desk.rows()[0]["alarms"]["active"] == 1        # the last health document stays


def test_stale_by_receive_time_for_live_statuses() -> None:
    now = [1000.0]
    desk = Desk(ROOT, wall=lambda: now[0])
    desk.handle(f"{ROOT}/station/s1/status", encode(status("s1", at=0.0, interval_s=5)))
    assert desk.rows()[0]["state"] == "online"        # live: its own "at" does not count
    now[0] += 15.1
    assert desk.rows()[0]["state"] == "stale"
    desk.handle(f"{ROOT}/station/s1/status", b"")     # retained status cleared
    assert desk.rows() == []


def test_desk_survives_garbage() -> None:
    desk = Desk(ROOT)
    for payload in (b"\xff", b"[1]", b"{", b'{"state": "online", "alarms": "x"}'):
        desk.handle(f"{ROOT}/station/s1/status", payload)
    desk.handle(f"{ROOT}/station/s1/extra/status", b"{}")
    desk.handle("other/station/s1/status", b"{}")
    assert desk.rows() == [] and desk.errors == 4          # counted, nothing invented
    desk.handle(f"{ROOT}/station/s1/presence", encode(will("s2")))   # names another station
    assert desk.rows() == [] and desk.errors == 5
    desk.handle(f"{ROOT}/station/s1/status", encode(status("s1")))
    assert [r["station"] for r in desk.rows()] == ["s1"]


def test_table_renders_trouble_first() -> None:
    desk = Desk(ROOT)
    desk.handle(f"{ROOT}/station/ok-1/status", encode(status("ok-1")))
    desk.handle(f"{ROOT}/station/down-1/presence", encode(will("down-1")))
    desk.handle(f"{ROOT}/station/alarm-1/status",
                encode(status("alarm-1", alarms=1, oldest=75.0)))
    console = Console(record=True, width=140, color_system=None)
    console.print(render_table(desk.rows(), title="desk"))
    text = console.export_text()
    lines = [line for line in text.splitlines() if "-1 " in line]
    assert "down-1" in lines[0] and "offline (lost)" in lines[0]
    assert "alarm-1" in lines[1] and re.search(r"1 \(75s\)\s+S B", lines[1])
    assert "ok-1" in lines[2]
    assert "3 stations: 1 offline, 1 alarm, 1 ok" in text


@pytest.mark.slow
def test_two_thousand_stations_snapshot(broker: Mosquitto, publisher: Any) -> None:
    docs = [status(f"st-{i:04d}", alarms=int(i % 97 == 0), oldest=5.0 if i % 97 == 0 else None)
            for i in range(2000)]
    publish_all(publisher, docs)
    snapshot, elapsed = monitor_once(broker)
    print(f"\nmonitor --once --json with 2,000 retained statuses: {elapsed:.2f} s")
    assert len(snapshot["stations"]) == 2000
    assert snapshot["stations"][0]["alarms"]["active"] == 1
    assert elapsed < 20


@pytest.mark.parametrize("option", [["--json"], ["--wait", "1"]])
def test_snapshot_options_without_once_are_a_usage_error(broker: Mosquitto,
                                                         option: list[str]) -> None:
    """``--json`` and ``--wait`` shape the ``--once`` snapshot (docs/CLI.md §3); alone they
    would start the full-screen live view, which a script waiting for JSON never leaves."""
    r = subprocess.run([sys.executable, "-m", "station.cli", "monitor", "--broker",
                        broker.address, *option], capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r.stdout[-300:] + r.stderr
    assert "--once" in r.stderr and option[0] in r.stderr


def test_offline_station_shows_since_when() -> None:
    """Offline is shown with its reason *and since when* (docs/INTERFACE.md §6), in the JSON
    snapshot and in both tables, not only the age of the last status."""
    t0 = 1_780_000_000.0
    now = [t0]
    desk = Desk(ROOT, wall=lambda: now[0])
    desk.handle(f"{ROOT}/station/gone-1/status", encode(status("gone-1", at=t0, alarms=1,
                                                               oldest=10.0)))
    stop = {**will("gone-1", reason="shutdown"), "at": rfc3339(t0 + 5)}
    desk.handle(f"{ROOT}/station/gone-1/presence", encode(stop))
    now[0] = t0 + 5 + 125
    row = desk.rows()[0]
    assert (row["state"], row["reason"], row["since_s"]) == ("offline", "shutdown", 125.0)
    assert "offline (shutdown) 2m05s" in plain_table([row])
    console = Console(record=True, width=140, color_system=None)
    console.print(render_table([row]))
    assert "offline (shutdown) 2m05s" in console.export_text()


@pytest.mark.parametrize("value", ["-1", "nan"])
def test_once_wait_must_be_a_time(value: str) -> None:
    r = subprocess.run([sys.executable, "-m", "station.cli", "monitor", "--broker",
                        "127.0.0.1:1", "--once", "--wait", value],
                       capture_output=True, text=True, timeout=20)
    assert r.returncode == 2, r.stderr
    assert "--wait" in r.stderr and "Traceback" not in r.stderr
