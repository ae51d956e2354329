"""The state directory fills up or turns read-only under a running station; the database file
is corrupt or truncated at start (issue 5, docs/BEHAVIOUR.md §3).

Full: a small tmpfs mounted over the state directory (root only; otherwise SQLite's
``max_page_count`` caps the writer's database, the same SQLITE_FULL). Read-only while running:
``PRAGMA query_only`` on the writer's connection gives SQLite's SQLITE_READONLY, what a
filesystem remounted read-only after I/O errors gives (a tmpfs cannot be remounted read-only
with the database open). Read-only at start: a read-only bind mount (root only).
"""
from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from helpers import ROOT, REGION, STATION, station_config, wait_for
from faults.chaos import Dispatch, assert_clean, seq_problems
from station.store import Store

TOPIC = f"{ROOT}/region/{REGION}/complaints"


def _mount(*args: str) -> bool:
    return subprocess.run(["mount", *args], capture_output=True).returncode == 0


@contextlib.contextmanager
def small_tmpfs(path: Path, size: str = "4m") -> Iterator[bool]:
    path.mkdir(parents=True, exist_ok=True)
    mounted = (os.geteuid() == 0 and not os.environ.get("FAULT_NO_MOUNT")
               and _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                                           str(path)))
    try:
        yield mounted
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)


def fill(directory: Path) -> Path:
    """Write a filler file until the filesystem says ENOSPC."""
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            os.write(fd, b"\0" * 4096)
    except OSError as e:
        assert e.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


class _CappedWriter:
    """Fallback without root: every Store the station opens for writing gets SQLite's
    ``max_page_count`` just above its size (SQLITE_FULL) or ``query_only`` (SQLITE_READONLY),
    until ``lift()``."""

    def __init__(self, monkeypatch, *, pages: int | None = None,
                 query_only: bool = False) -> None:
        from station import store as store_mod
        self.stores: list = []
        self.active = True
        self.pages, self.query_only = pages, query_only
        original = store_mod.Store.__init__
        capper = self

        def init(store, *a, **kw):
            original(store, *a, **kw)
            if not store.readonly:
                capper.stores.append(store)
                if capper.active:
                    capper._cap(store)
        monkeypatch.setattr(store_mod.Store, "__init__", init)

    def _cap(self, store) -> None:
        if self.pages is not None:
            n = store._conn.execute("PRAGMA page_count").fetchone()[0]
            store._conn.execute(f"PRAGMA max_page_count = {n + self.pages}")
        if self.query_only:
            store._conn.execute("PRAGMA query_only = ON")

    def engage(self) -> None:
        """Cap the stores already open too (read-only from now on)."""
        for store in self.stores:
            with contextlib.suppress(Exception):
                self._cap(store)

    def lift(self) -> None:
        self.active = False
        for store in self.stores:
            with contextlib.suppress(Exception):
                store._conn.execute("PRAGMA max_page_count = 1073741823")
                store._conn.execute("PRAGMA query_only = OFF")


@pytest.mark.parametrize("trouble", ["full", "read-only"])
def test_storage_fails_siren_sounds_storage_fault_nothing_lost(broker, hq, tmp_path,
                                                               start_station, monkeypatch,
                                                               figures, trouble):
    state = tmp_path / "state"
    with small_tmpfs(state) as mounted:
        d = Dispatch(hq, TOPIC)
        cfg = station_config(tmp_path, broker.port)
        if trouble == "read-only":
            mounted = False
            capped = _CappedWriter(monkeypatch, query_only=True)
            capped.active = False
        elif not mounted:
            capped = _CappedWriter(monkeypatch, pages=0)
        s = start_station(cfg)
        hq.wait_status(lambda doc: doc["state"] == "online")
        for i in range(3):
            d.send(f"df-before-{i}", wait=True)
        d.wait_alerted()
        s.press(0.1)
        d.wait_acked()
        wait_for(lambda: s.station.outbox.pending == 0, 10)
        if mounted:
            filler = fill(state)
        elif trouble == "read-only":
            capped.active = True
            capped.engage()

        # Complaints until the disk refuses a write (WAL space may be reused first).
        during = []
        for i in range(400):
            cid = f"df-during-{i:03d}"
            d.send(cid, priority="urgent", wait=True)
            during.append(cid)
            d.wait_alerted([cid])
            if "storage" in s.station.machine.faults:
                break
        assert "storage" in s.station.machine.faults, "the disk never filled"
        full_after = len(during)
        for i in range(3):                      # more complaints while the disk is full
            cid = f"df-full-{i}"
            d.send(cid, priority="emergency", wait=True)
            during.append(cid)
        d.wait_alerted()
        assert s.relay_on("siren") and s.relay_on("beacon")       # the siren still sounds
        st = hq.wait_status(lambda doc: "storage" in doc["faults"]
                            and doc["alarms"]["active"] == len(during))
        assert st["outputs"] == {"siren": True, "beacon": True}
        fault = hq.wait_event("fault", fault="storage")[0]
        assert fault["detail"]
        s.press(0.1)                                               # acks from memory
        d.wait_acked()
        wait_for(lambda: not s.relay_on("beacon"), 2)

        if mounted:
            filler.unlink()                                        # the technician frees space
        else:
            capped.lift()
        hq.wait_event("fault_cleared", fault="storage", timeout=15)
        wait_for(lambda: "storage" not in s.station.machine.faults, 5)
        d.send("df-after", wait=True)
        d.wait_alerted()
        s.press(0.1)
        d.wait_acked()
        wait_for(lambda: s.station.outbox.pending == 0, 10)
        s.stop()

        # Nothing stored before is lost; what happened meanwhile was stored on recovery.
        with Store(s.config.storage.path, readonly=True) as store:
            hist = {r.complaint_id: r for r in store.history(limit=10_000)}
            seen = store.seen_count()
        missing = [c for c in d.sent if c not in hist]
        assert not missing, missing
        assert all(hist[c].state == "acked" for c in d.sent)
        assert seen >= len(d.sent)

        s2 = start_station(cfg)                   # restart: nothing alarms again
        wait_for(lambda: s2.station.link.connected, 10)
        for c in d.sent[:5]:
            d.send(c, wait=True)                  # HQ re-sends: duplicates, not alarms
        time.sleep(0.5)
        assert not s2.relay_on("beacon")
        v = d.verdict()
        assert_clean(v, acked=len(d.sent))
        how = "tmpfs" if mounted else ("query_only" if trouble == "read-only" else
                                       "max_page_count")
        figures.record(f"state directory {trouble} while running ({how})",
                       complaints=v["complaints"], presses=4, lost=v["lost"],
                       doubled=v["doubled"], crashes=0, full_after_complaints=full_after,
                       complaints_while_full=len(during) - full_after + 1,
                       stored_after_recovery=len(hist))


def test_ack_made_while_disk_full_and_broker_away_arrives_after_both_recover(
        broker, hq, proxy, tmp_path, start_station, monkeypatch, figures):
    """The worst afternoon: the disk is full and the link is down when the operator presses.
    The ack exists only in memory; the disk recovers first, then the link: the ack must still
    go out (acks are never dropped)."""
    d = Dispatch(hq, TOPIC)
    capped = _CappedWriter(monkeypatch, query_only=True)
    capped.active = False
    s = start_station(station_config(tmp_path, proxy.port))
    hq.wait_status(lambda doc: doc["state"] == "online")
    d.send("dfl-1", wait=True)
    d.wait_alerted()
    wait_for(lambda: s.station.outbox.pending == 0, 10)

    capped.active = True
    capped.engage()                                   # the disk refuses writes
    proxy.refuse()
    proxy.reset()                                     # and the broker is out of reach
    wait_for(lambda: not s.station.link.connected, 10)
    s.press(0.1)
    wait_for(lambda: "storage" in s.station.machine.faults, 5, what="storage fault")
    assert not s.relay_on("beacon")
    capped.lift()                                     # disk back first ...
    wait_for(lambda: "storage" not in s.station.machine.faults, 15, what="storage recovered")
    proxy.admit()                                     # ... then the link
    d.wait_acked(timeout=20)
    wait_for(lambda: s.station.outbox.pending == 0, 10)
    time.sleep(0.3)
    v = d.verdict()
    assert_clean(v, acked=1)
    figures.record("ack while disk read-only and broker away, disk recovers first",
                   complaints=1, presses=1, lost=v["lost"], doubled=v["doubled"], crashes=0,
                   acks_delivered=v["acks"])


def test_outbox_leaves_memory_mode_after_only_a_delete_failed(tmp_path, monkeypatch):
    """The disk refuses the delete of a confirmed event (nothing else): once it accepts
    writes again the station leaves memory mode, clears the fault and deletes the row."""
    from station import outbox as outbox_mod
    from station.outbox import Outbox, Write
    from station.protocol import event

    monkeypatch.setattr(outbox_mod, "RETRY_S", 0.05)
    path = tmp_path / "state.db"
    storage: list[bool] = []

    class Link:
        connected = True
        mids = 0

        def publish(self, topic, payload, *, qos=1, retain=False):
            Link.mids += 1
            return Link.mids

        def ack(self, mid, qos, generation):
            return True

    ob = Outbox(lambda: Store(path), Link(), "t", on_storage=lambda ok, _: storage.append(ok))
    ob.start()
    ob.link_up(True)
    ob.submit(Write(events=[event("selftest", {"trigger": "cli", "result": "ok"},
                                  station="s", region="r", wall=time.time(),
                                  clock_synced=True)]))
    wait_for(lambda: Link.mids == 1, 5)
    ob._store._conn.execute("PRAGMA query_only = ON")      # the disk turns read-only
    ob.delivered(1)
    wait_for(lambda: storage == [False], 5, what="storage fault")
    ob._store._conn.execute("PRAGMA query_only = OFF")     # and recovers
    wait_for(lambda: storage == [False, True], 5, what="storage recovered")
    ob.stop()
    with Store(path, readonly=True) as s:
        assert s.outbox_count() == 0


@contextlib.contextmanager
def read_only(directory: Path) -> Iterator[str]:
    """The state directory read-only: a read-only bind mount (root), else no write bits."""
    if os.geteuid() == 0:
        if not _mount("--bind", "-o", "ro", str(directory), str(directory)):
            pytest.fail("cannot bind-mount read-only here (the fault tests run as root)")
        try:
            yield "read-only bind mount"
        finally:
            subprocess.run(["umount", str(directory)], capture_output=True)
    else:
        modes = {p: p.stat().st_mode for p in [directory, *directory.iterdir()]}
        for p in modes:
            p.chmod(0o555 if p.is_dir() else 0o444)
        try:
            yield "no write permission"
        finally:
            for p, m in modes.items():
                p.chmod(m)


def test_read_only_state_directory_at_start_still_alarms(broker, hq, tmp_path, harness,
                                                         figures):
    """Started with its state directory read-only (filesystem remounted read-only after
    errors, files left owned by another user): the station must not refuse to run — a room
    without its siren is the worst outcome. It runs on a temporary copy with a ``storage``
    fault, resumes the stored alarms, alarms new complaints, and once the directory is
    writable again a restart takes over what the copy recorded."""
    d = Dispatch(hq, TOPIC)
    cfg = station_config(tmp_path, broker.port)
    env = {"RUNTIME_DIRECTORY": str(tmp_path / "run")}
    state = tmp_path / "state"
    st = harness(cfg, **env).start()
    hq.wait_status(lambda doc: doc["state"] == "online")
    d.send("ro-1", wait=True)
    d.wait_alerted()
    assert st.terminate() == 0

    with read_only(state) as how:
        st.start()
        doc = hq.wait_status(lambda doc: doc["state"] == "online" and "storage" in doc["faults"],
                             timeout=15)
        assert doc["alarms"]["active"] == 1 and doc["outputs"]["beacon"]   # resumed
        assert st.pins()["beacon"]
        d.send("ro-2", priority="emergency", wait=True)
        d.wait_alerted()
        wait_for(lambda: st.pins()["siren"], 2, what="siren for a complaint, disk read-only")
        st.press()
        d.wait_acked()
        assert st.terminate() == 0
    st.start()                                            # repaired: a normal start
    doc = hq.wait_status(lambda doc: doc["state"] == "online" and "storage" not in doc["faults"]
                         and doc["boot_id"] != "", timeout=15)
    time.sleep(0.5)
    assert not st.pins()["beacon"]                        # the acks made meanwhile were kept
    d.send("ro-1", wait=True)                             # re-sent by HQ: a duplicate
    time.sleep(0.3)
    assert not st.pins()["beacon"]
    with Store(state / "state.db", readonly=True) as store:
        assert {r.complaint_id: r.state for r in store.history()} == {"ro-1": "acked",
                                                                      "ro-2": "acked"}
    v = d.verdict()
    assert_clean(v, acked=2)
    figures.record(f"state directory read-only at start ({how})", complaints=2, presses=1,
                   lost=v["lost"], doubled=v["doubled"], crashes=0,
                   exit_code_before_fix=74, ran_with_storage_fault=1)


def test_unreadable_state_database_starts_empty_and_asks_hq_to_resend(broker, hq, tmp_path,
                                                                       start_station,
                                                                       monkeypatch):
    """Nothing of the database can be read (here: the path is a directory): the station
    alarms on an empty temporary database, loudly — ``storage`` fault and a
    ``resync_request`` so HQ re-sends every unacknowledged complaint."""
    monkeypatch.setenv("RUNTIME_DIRECTORY", str(tmp_path / "run"))
    (tmp_path / "state" / "state.db").mkdir(parents=True)
    s = start_station(station_config(tmp_path, broker.port))
    hq.wait_status(lambda doc: doc["state"] == "online" and "storage" in doc["faults"])
    req = hq.wait_event("resync_request")[0]
    assert req["seq"] >= 1
    d = Dispatch(hq, TOPIC)
    d.send("ur-1", wait=True)
    d.wait_alerted()
    assert s.relay_on("beacon")


def _zero(db: Path) -> None:
    os.truncate(db, 0)


def _half(db: Path) -> None:
    os.truncate(db, db.stat().st_size // 2)


def _garbage_page(db: Path) -> None:
    with open(db, "r+b") as f:        # page 3: a table's root page (a free page would do no
        f.seek(2 * 4096)              # harm and quick_check rightly ignores it)
        f.write(os.urandom(4096))


def _not_a_database(db: Path) -> None:
    db.write_bytes(os.urandom(db.stat().st_size))


@pytest.mark.parametrize("damage", [_zero, _half, _garbage_page, _not_a_database],
                         ids=["zero-length", "truncated", "garbage-page", "not-a-database"])
def test_corrupt_database_refused_then_recovered(broker, hq, tmp_path, harness, figures,
                                                 damage):
    """A damaged database is never started over silently: ``run`` exits 74 naming the file
    and the recovery command; ``quarantine-db`` moves it aside; the station then starts fresh,
    asks HQ to re-send (``resync_request``), and the unacknowledged complaint alarms again."""
    import sys
    d = Dispatch(hq, TOPIC)
    cfg = station_config(tmp_path, broker.port)
    db = tmp_path / "state" / "state.db"
    st = harness(cfg).start()
    hq.wait_status(lambda doc: doc["state"] == "online")
    d.send("cr-acked", wait=True)
    d.wait_alerted()
    st.press()
    d.wait_acked()
    d.send("cr-open", priority="urgent", wait=True)        # still sounding at the crash
    d.wait_alerted()
    # Filler so that a truncation cuts real pages (a small database fits in a few).
    for i in range(150):
        hq.command("status", cmd_id=f"fill-{i}")
    hq.wait_event("cmd_result", cmd_id="fill-149")
    assert st.terminate() == 0
    for side in ("-wal", "-shm"):
        assert not Path(f"{db}{side}").exists()             # a clean stop checkpoints
    damage(db)

    cli = [sys.executable, "-m", "station.cli"]
    t0 = time.monotonic()
    refused = subprocess.run([*cli, "run", "-c", str(cfg)], capture_output=True, text=True,
                             timeout=30)
    refuse_s = time.monotonic() - t0
    assert refused.returncode == 74, refused.stderr
    assert str(db) in refused.stderr and "quarantine-db" in refused.stderr
    assert f"quarantine-db -c {cfg}" in refused.stderr
    moved = subprocess.run([*cli, "quarantine-db", "-c", str(cfg)], capture_output=True,
                           text=True, timeout=30)
    assert moved.returncode == 0, moved.stderr
    assert list(db.parent.glob("state.db.corrupt-*")), "kept for audit"

    st.start()
    hq.wait_event("resync_request", timeout=15)
    d.answer_resyncs()                                      # HQ re-sends cr-open only
    hq.wait_event("alerting", count=3, timeout=15)
    wait_for(lambda: st.pins()["beacon"], 5, what="the open complaint alarms again")
    st.press()
    hq.wait_event("ack", count=2, timeout=15)
    alerts = [e["complaint_id"] for e in hq.of_type("alerting")]
    assert sorted(alerts) == ["cr-acked", "cr-open", "cr-open"]
    figures.record(f"corrupt database ({damage.__name__.strip('_')})", exit_code=74,
                   refused_after_s=round(refuse_s, 1), silent_empty_starts=0,
                   unacked_alarmed_again=alerts.count("cr-open") - 1,
                   acked_alarmed_again=alerts.count("cr-acked") - 1,
                   resync_requests=len(hq.of_type("resync_request")))


def test_crash_while_disk_full_loses_no_alarm(broker, hq, tmp_path, harness, figures):
    """The station crashes while the disk is full, with an alarm that lived only in memory
    (alarmed and PUBACKed, never stored): after the restart — disk still full — that complaint
    must sound again. The broker will not re-deliver it; HQ must be asked to."""
    state = tmp_path / "state"
    with small_tmpfs(state) as mounted:
        if not mounted:
            pytest.fail("needs a tmpfs (root): the disk must stay full across the restart")
        d = Dispatch(hq, TOPIC)
        cfg = station_config(tmp_path, broker.port)
        st = harness(cfg).start()
        hq.wait_status(lambda doc: doc["state"] == "online")
        d.send("cf-stored", wait=True)
        d.wait_alerted()
        filler = fill(state)
        for i in range(400):
            cid = f"cf-mem-{i:03d}"
            d.send(cid, wait=True)
            d.wait_alerted([cid])
            if hq.of_type("fault"):
                break
        hq.wait_event("fault", fault="storage")
        crashed = hq.status[STATION]["boot_id"]
        st.kill()
        st.start()                                      # the disk is still full

        def all_sounding() -> bool:
            d.answer_resyncs()                          # HQ re-sends what has no ack
            doc = hq.status.get(STATION) or {}         # the new process's health document
            return doc.get("boot_id") != crashed and \
                doc.get("alarms", {}).get("active") == len(d.sent)
        wait_for(all_sounding, 15, what=f"all {len(d.sent)} unacknowledged alarms sounding")
        assert st.pins()["beacon"]
        filler.unlink()
        st.press()
        d.wait_acked(timeout=20)
        alerts = [e["complaint_id"] for e in hq.of_type("alerting")]
        figures.record("crash while the disk is full", complaints=len(d.sent),
                       memory_only_alarms=len(d.sent) - 1,
                       sounding_again_after_restart=len(d.sent) - 1,
                       resync_requests=len(hq.of_type("resync_request")),
                       alerting_events=len(alerts),
                       seq_reused=sum(1 for p in seq_problems(hq.events) if "used by" in p))
        assert not [p for p in seq_problems(hq.events) if "used by" in p]
