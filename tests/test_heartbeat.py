"""The retained status document (docs/INTERFACE.md §5–6) and its heartbeat schedule."""
from __future__ import annotations


from helpers import REGION, STATION, station_config, wait_for
from station.heartbeat import Identity, Schedule, host_figures, status

SPEC_KEYS = {"v", "station", "region", "state", "at", "version", "started_at", "uptime_s",
             "interval_s", "alarms", "outputs", "button", "outbox_pending", "faults", "host",
             "boot_id", "session"}


def test_status_document_has_every_spec_field(tmp_path):
    ident = Identity("s", "r", "boot-1", started_at=0.0, interval_s=30)
    doc = status(ident, now_wall=10.0, uptime_s=10.0, session=2, alarms_active=1,
                 oldest_unacked_s=4.04, siren=True, beacon=True, button="released",
                 outbox_pending=3, faults=["storage"], host=host_figures(tmp_path, True))
    assert SPEC_KEYS <= set(doc)
    assert doc["alarms"] == {"active": 1, "oldest_unacked_s": 4.0}
    assert doc["outputs"] == {"siren": True, "beacon": True}
    assert {"cpu_temp_c", "load1", "disk_free_mb", "clock_synced"} <= set(doc["host"])
    assert doc["host"]["disk_free_mb"] > 0


def test_schedule_is_due_once_per_interval():
    t = [0.0]
    s = Schedule(30, lambda: t[0])
    assert not s.due(29.9)
    assert s.due(30.0) and not s.due(30.1)
    assert s.due(60.0)


def test_heartbeat_published_every_interval_and_on_change(broker, hq, tmp_path, start_station):
    start_station(station_config(tmp_path, broker.port, heartbeat={"interval_s": 1}))
    first = hq.wait_status(lambda d: d["state"] == "online")
    assert SPEC_KEYS <= set(first) and first["station"] == STATION
    assert first["region"] == REGION and first["interval_s"] == 1
    n = len(hq.status_log)
    wait_for(lambda: len(hq.status_log) >= n + 2, 5, what="two heartbeats")
    hq.complaint("hb-1")
    st = hq.wait_status(lambda d: d["alarms"]["active"] == 1, timeout=2)
    assert st["outputs"]["siren"] and st["alarms"]["oldest_unacked_s"] >= 0


def test_adjtimex_is_found_among_the_loaded_symbols():
    # libc's adjtimex without ctypes.util.find_library (which runs `ldconfig -p` in a child
    # process at start); if the lookup broke, clock_synced() would silently say "synced".
    from station.heartbeat import _adjtimex, clock_synced
    assert _adjtimex() is not None
    assert isinstance(clock_synced(), bool)
