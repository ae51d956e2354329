"""Tests of the SQLite state store (docs/BEHAVIOUR.md §1 seen ids/history, §3 outbox and seq)."""
from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest

from station.errors import StorageError
from station.store import SCHEMA_VERSION, AlarmRow, CorruptDatabase, OutboxRow, SeenFilter, Store

DAY = 86_400.0


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "state" / "state.db"


@pytest.fixture
def store(db: Path):
    with Store(db) as s:
        yield s


def event(n: int, type_: str = "alerting", **extra) -> dict:
    return {"v": 1, "type": type_, "event_id": f"ev-{n}", "station": "st1", **extra}


def alarm(cid: str, at: float, state: str = "active", **kw) -> AlarmRow:
    return AlarmRow(cid, "urgent", "kejahatan", "2026-11-27T20:15:02Z", state, at, **kw)


def make_db(path: Path, n: int = 300) -> None:
    with Store(path) as s:
        s.commit(seen=[(f"c-{i}", 1000.0 + i) for i in range(n)],
                 alarms=[alarm(f"c-{i}", 1000.0 + i) for i in range(n)],
                 events=[event(i, detail="x" * 200) for i in range(n)])


# --- open, schema --------------------------------------------------------------------------

def test_open_creates_dir_wal_and_schema(db: Path, store: Store) -> None:
    assert db.is_file()
    assert (db.parent.stat().st_mode & 0o777) == 0o750 & ~_umask()
    conn = store._conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2   # FULL
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] == 5000
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert store.get_meta("schema_version") == str(SCHEMA_VERSION)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_schema_idempotent_on_reopen(db: Path) -> None:
    with Store(db) as s:
        s.commit(seen=[("a", 1.0)], events=[event(1)])
    with Store(db) as s:
        assert s.is_seen("a")
        assert s.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert s.outbox_count() == 1
        tables = {r[0] for r in s._conn.execute("SELECT name FROM sqlite_master")}
    assert {"meta", "seen", "alarms", "outbox", "seen_by_time"} <= tables


def test_newer_schema_is_refused(db: Path) -> None:
    with Store(db) as s:
        s.set_meta("schema_version", str(SCHEMA_VERSION + 1))
    with pytest.raises(StorageError, match="newer"):
        Store(db)


# --- seq, events ---------------------------------------------------------------------------

def test_seq_strictly_plus_one_and_survives_reopen(db: Path) -> None:
    with Store(db) as s:
        assert s.last_seq() == 0
        first = s.commit(events=[event(1), event(2)])
        second = s.commit(events=[event(3)])
    with Store(db) as s:
        third = s.commit(events=[event(4), event(5)])
        assert s.last_seq() == 5
    assert [r.seq for r in first + second + third] == [1, 2, 3, 4, 5]


def test_payload_is_compact_json_with_seq_after_event_id(store: Store) -> None:
    ev = {"type": "ack", "event_id": "e1", "v": 1, "seq": 99, "by": "Budi ü",
          "complaint_id": "110-1"}
    (row,) = store.commit(events=[ev])
    assert row == OutboxRow(1, "e1", "ack", row.payload)
    assert row.payload == (
        '{"v":1,"type":"ack","event_id":"e1","seq":1,"by":"Budi ü","complaint_id":"110-1"}'
    ).encode()
    assert list(json.loads(row.payload)) == ["v", "type", "event_id", "seq", "by", "complaint_id"]


def test_commit_is_atomic(store: Store) -> None:
    store.commit(events=[event(1)])
    bad = event(3, when=object())   # not JSON-serialisable
    with pytest.raises(TypeError):
        store.commit(seen=[("new", 5.0)], alarms=[alarm("new", 5.0)], events=[event(2), bad])
    assert not store.is_seen("new")
    assert store.alarm("new") is None
    assert store.last_seq() == 1
    assert [r.seq for r in store.outbox_rows()] == [1]
    assert store.commit(events=[event(4)])[0].seq == 2   # still usable; no seq gap


def test_nan_and_missing_keys_are_refused(store: Store) -> None:
    with pytest.raises(ValueError):
        store.commit(events=[event(1, relay_latency_ms=float("nan"))])
    with pytest.raises(ValueError):
        store.commit(events=[{"type": "ack"}])
    assert store.last_seq() == 0


def test_commit_nothing_returns_empty(store: Store) -> None:
    assert store.commit() == []
    assert store.last_seq() == 0


# --- outbox --------------------------------------------------------------------------------

def test_outbox_order_paging_and_deletion(store: Store) -> None:
    rows = store.commit(events=[event(i) for i in range(1, 8)])
    assert store.outbox_rows() == rows
    assert [r.seq for r in store.outbox_rows(after_seq=2, limit=3)] == [3, 4, 5]
    store.delete_outbox([2, 4, 999])
    store.delete_outbox([])
    assert [r.seq for r in store.outbox_rows()] == [1, 3, 5, 6, 7]
    assert store.outbox_count() == 5
    assert store.last_seq() == 7        # deleting never lowers the counter


def test_outbox_bound_drops_oldest_non_ack(db: Path) -> None:
    with Store(db, outbox_max=5) as s:
        s.commit(events=[event(1), event(2, "ack"), event(3), event(4), event(5, "ack")])
        s.commit(events=[event(6), event(7)])
        assert [(r.seq, r.type) for r in s.outbox_rows()] == [
            (2, "ack"), (4, "alerting"), (5, "ack"), (6, "alerting"), (7, "alerting")]
        assert s.outbox_dropped() == 2


def test_outbox_bound_keeps_every_ack_beyond_bound(db: Path) -> None:
    with Store(db, outbox_max=3) as s:
        s.commit(events=[event(1), event(2)])
        returned = s.commit(events=[event(i, "ack") for i in range(3, 9)])
        assert [r.seq for r in returned] == [3, 4, 5, 6, 7, 8]   # the batch is returned whole
        assert [r.type for r in s.outbox_rows()] == ["ack"] * 6
        assert s.outbox_count() == 6


def test_outbox_bound_counts_other_connections_changes(db: Path) -> None:
    """The kept row count follows rows another connection added or deleted meanwhile."""
    with Store(db, outbox_max=4) as s, Store(db, outbox_max=4, check=False) as other:
        s.commit(events=[event(1), event(2)])
        other.put_outbox([OutboxRow(10, "ev-10", "alerting", b"{}")], last_seq=10)
        s.commit(events=[event(11), event(12)])            # 5 rows: the oldest goes
        assert [r.seq for r in s.outbox_rows()] == [2, 10, 11, 12]
        other.delete_outbox([2, 10, 11])
        s.commit(events=[event(13), event(14), event(15)])   # 4 rows: none goes
        assert [r.seq for r in s.outbox_rows()] == [12, 13, 14, 15]
        assert s.outbox_dropped() == 1


def test_outbox_bound_after_a_rolled_back_batch(db: Path) -> None:
    with Store(db, outbox_max=3) as s:
        s.commit(events=[event(1), event(2)])
        with pytest.raises(ValueError):
            s.commit(events=[event(3), {"type": "alerting"}])
        s.commit(events=[event(4)])
        assert s.outbox_count() == 3 and s.outbox_dropped() == 0


def test_commit_stores_meta_in_the_same_transaction(store: Store) -> None:
    (row,) = store.commit(events=[event(1)], meta={"session_known": "1"})
    assert row.seq == 1 and store.get_meta("session_known") == "1"
    assert store.commit(meta={"faults": "[]"}) == []
    assert store.get_meta("faults") == "[]"
    with pytest.raises(ValueError):
        store.commit(events=[{"type": "ack"}], meta={"faults": "[\"gpio\"]"})
    assert store.get_meta("faults") == "[]"      # rolled back with the batch


def test_quick_delete_of_confirmed_events_leaves_later_writes_durable(store: Store) -> None:
    rows = store.commit(events=[event(1), event(2)])
    store.delete_outbox([rows[0].seq], durable=False)
    assert [r.seq for r in store.outbox_rows()] == [rows[1].seq]
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2     # FULL again


# --- seen ids ------------------------------------------------------------------------------

def test_seen_insert_ignores_existing(store: Store) -> None:
    store.commit(seen=[("a", 10.0)])
    store.commit(seen=[("a", 99.0), ("a", 98.0)])
    assert store.is_seen("a") and not store.is_seen("b")
    assert store._conn.execute("SELECT seen_at FROM seen").fetchall() == [(10.0,)]


def test_prune_seen_by_age(db: Path) -> None:
    now = 100 * DAY
    with Store(db, seen_ids_days=30) as s:
        s.commit(seen=[("old", now - 31 * DAY), ("edge", now - 29 * DAY), ("new", now)])
        assert s.prune_seen(now) == 1
        assert not s.is_seen("old") and s.is_seen("edge") and s.is_seen("new")
        assert s.prune_seen(now) == 0


def test_prune_seen_by_count(db: Path) -> None:
    now = 100 * DAY
    with Store(db, seen_ids_max=3) as s:
        s.commit(seen=[(f"c{i}", now - i) for i in range(6)] + [("ancient", 0.0)])
        assert s.prune_seen(now) == 4        # ancient by age, then c5, c4, c3 by count
        assert [c for c in ("c0", "c1", "c2") if s.is_seen(c)] == ["c0", "c1", "c2"]
        assert s.seen_count() == 3


def test_seen_ids_reads_every_id_in_chunks(store: Store) -> None:
    store.commit(seen=[(f"c{i}", float(i)) for i in range(10)])
    assert sorted(store.seen_ids(chunk=3)) == sorted(f"c{i}" for i in range(10))


def test_seen_filter_never_misses_and_rarely_says_maybe() -> None:
    f = SeenFilter.sized_for(10_000)
    added = [f"jkt-{i}" for i in range(10_000)]
    for cid in added:
        f.add(cid)
    assert all(cid in f for cid in added) and f.count == 10_000
    maybe = sum(f"other-{i}" in f for i in range(10_000))
    assert maybe < 100                       # ~0.1 % expected; each "maybe" is one lookup
    assert 5 not in f and "other-x" not in SeenFilter()


def test_take_over_only_a_copy_that_continues_this_database(tmp_path: Path) -> None:
    main, copy = tmp_path / "main.db", tmp_path / "copy.db"

    def fallback_copy(seq: int) -> None:
        shutil.copyfile(main, copy)
        with Store(copy) as c:
            c.mark_copy_of(main)
            c.commit(events=[event(seq)])           # recorded while main was unwritable

    with Store(main) as s:
        s.commit(events=[event(1)])
    fallback_copy(2)
    with Store(main) as s:
        assert s.take_over(copy) and s.last_seq() == 2
        assert s.get_meta("fallback_of") == ""
    fallback_copy(3)
    with Store(main) as s:
        s.commit(events=[event(4)])                 # main moved on: the copy no longer fits
        assert not s.take_over(copy) and s.last_seq() == 3
    with Store(tmp_path / "other.db") as other:
        assert not other.take_over(copy)


# --- alarms --------------------------------------------------------------------------------

def test_active_alarms_history_and_upsert(store: Store) -> None:
    store.commit(alarms=[alarm("b", 20.0), alarm("a", 10.0), alarm("c", 30.0)])
    assert [a.complaint_id for a in store.active_alarms()] == ["a", "b", "c"]
    acked = alarm("b", 20.0, state="acked", relay_latency_ms=0.4, escalated=True,
                  acked_at=25.0, ack_method="remote", ack_by="desk", ack_latency_ms=5000.0)
    store.commit(alarms=[acked])
    assert [a.complaint_id for a in store.active_alarms()] == ["a", "c"]
    assert store.alarm("b") == acked
    assert store.alarm("b").escalated is True and store.alarm("b").silenced is False
    assert store.alarm("zzz") is None
    assert [a.complaint_id for a in store.history()] == ["c", "b", "a"]
    assert [a.complaint_id for a in store.history(limit=2)] == ["c", "b"]
    assert [a.complaint_id for a in store.history(since=20.0)] == ["c", "b"]


def test_relay_latency_is_stored_once(store: Store) -> None:
    store.commit(alarms=[alarm("a", 10.0, relay_latency_ms=0.6)])
    store.commit(alarms=[alarm("a", 10.0, escalated=True)])                 # no figure
    store.commit(alarms=[alarm("a", 10.0, state="acked", relay_latency_ms=0.1, acked_at=12.0,
                               ack_method="button", ack_latency_ms=2000.0)])  # another figure
    row = store.alarm("a")
    assert row is not None and row.state == "acked" and row.escalated is False
    assert row.relay_latency_ms == 0.6


def test_alarm_row_validates() -> None:
    with pytest.raises(ValueError):
        alarm("x", 1.0, state="sounding")
    with pytest.raises(ValueError):
        alarm("x", 1.0, state="acked", ack_method="telepathy")


def test_no_summary_column(store: Store) -> None:
    cols = {r[1] for t in ("alarms", "seen", "outbox", "meta")
            for r in store._conn.execute(f"PRAGMA table_info({t})")}
    assert not any("summary" in c for c in cols)


# --- meta ----------------------------------------------------------------------------------

def test_session_and_meta_persist(db: Path) -> None:
    with Store(db) as s:
        assert s.bump_session() == 1
        assert s.bump_session() == 2
        assert s.get_meta("k") is None and s.get_meta("k", "d") == "d"
        s.set_meta("k", "v1")
        s.set_meta("k", "v2")
    with Store(db) as s:
        assert s.bump_session() == 3
        assert s.get_meta("k") == "v2"


# --- concurrency ---------------------------------------------------------------------------

def test_reader_does_not_wait_for_open_write_transaction(db: Path) -> None:
    Store(db).close()
    in_tx, release, done = threading.Event(), threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            with Store(db) as w:
                w._conn.execute("BEGIN IMMEDIATE")
                w._conn.execute("INSERT INTO seen VALUES ('pending', 1.0)")
                in_tx.set()
                release.wait(10)
                w._conn.execute("COMMIT")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)
            in_tx.set()
        finally:
            done.set()

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert in_tx.wait(5)
        with Store(db) as r:                   # opening takes no write lock either
            r._conn.execute("PRAGMA busy_timeout = 0")   # a wait would now fail at once
            assert not r.is_seen("pending")
            assert r.outbox_rows() == [] and r.active_alarms() == []
            release.set()
            assert done.wait(5)
            assert r.is_seen("pending")
    finally:
        release.set()
        t.join(5)
    assert not errors


def test_concurrent_first_open_creates_schema_once(db: Path) -> None:
    results: list[object] = []

    def opener() -> None:
        try:
            with Store(db) as s:
                results.append(s.get_meta("schema_version"))
        except BaseException as exc:  # pragma: no cover
            results.append(exc)

    threads = [threading.Thread(target=opener) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [str(SCHEMA_VERSION)] * 4


# --- corruption, quarantine ----------------------------------------------------------------

def test_random_bytes_are_refused_with_recovery_hint(db: Path) -> None:
    db.parent.mkdir(parents=True)
    db.write_bytes(os.urandom(8192))
    before = db.read_bytes()
    with pytest.raises(CorruptDatabase) as info:
        Store(db)
    msg = str(info.value)
    assert str(db) in msg and "move it aside" in msg and "restore a backup" in msg
    assert isinstance(info.value, StorageError) and info.value.path == db
    assert db.read_bytes() == before               # never overwritten


def test_truncated_database_is_refused(db: Path) -> None:
    make_db(db)
    size = db.stat().st_size
    assert size > 4 * 4096 and not Path(f"{db}-wal").exists()
    with open(db, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(CorruptDatabase, match="corrupt"):
        Store(db)


def test_quarantine_renames_db_and_side_files(db: Path) -> None:
    make_db(db, n=3)
    Path(f"{db}-wal").write_bytes(b"w")
    Path(f"{db}-shm").write_bytes(b"s")
    moved = Store.quarantine(db)
    assert moved.parent == db.parent and moved.name.startswith("state.db.corrupt-")
    assert moved.name.endswith("Z")
    assert not db.exists() and not Path(f"{db}-wal").exists()
    assert Path(f"{moved}-wal").read_bytes() == b"w"
    assert Path(f"{moved}-shm").read_bytes() == b"s"
    db.write_bytes(b"again")
    assert Store.quarantine(db) != moved           # same second: a distinct name
    with Store(db) as s:                           # a fresh database starts after quarantine
        assert s.last_seq() == 0


def test_quarantine_missing_file_raises(db: Path) -> None:
    with pytest.raises(StorageError):
        Store.quarantine(db)


def test_unopenable_path_is_storage_error_not_corruption(tmp_path: Path) -> None:
    (tmp_path / "dir.db").mkdir()
    with pytest.raises(StorageError) as info:
        Store(tmp_path / "dir.db")
    assert not isinstance(info.value, CorruptDatabase)


# --- read-only, failed writes --------------------------------------------------------------

def test_readonly_reads_and_refuses_writes(db: Path) -> None:
    make_db(db, n=3)
    with Store(db, readonly=True) as ro:
        assert ro.last_seq() == 3 and ro.is_seen("c-1")
        assert len(ro.history()) == 3
        with pytest.raises(StorageError, match="readonly"):
            ro.set_meta("k", "v")
        with pytest.raises(StorageError):
            ro.commit(seen=[("x", 1.0)], events=[event(9)])
        assert ro.last_seq() == 3 and not ro.is_seen("x")    # still readable


def test_readonly_missing_or_empty_file(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="no state database"):
        Store(tmp_path / "nope.db", readonly=True)
    assert not (tmp_path / "nope.db").exists()
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(StorageError, match="start the service"):
        Store(tmp_path / "empty.db", readonly=True)


def test_disk_full_write_raises_and_store_stays_readable(store: Store) -> None:
    store.commit(seen=[("kept", 1.0)], events=[event(1)])
    pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
    store._conn.execute(f"PRAGMA max_page_count = {pages}")
    big = [event(i, detail="x" * 4000) for i in range(2, 50)]
    with pytest.raises(StorageError, match="full"):
        store.commit(seen=[("lost", 2.0)], events=big)
    assert store.is_seen("kept") and not store.is_seen("lost")
    assert store.last_seq() == 1 and store.outbox_count() == 1
    assert not store._conn.in_transaction
    store._conn.execute("PRAGMA max_page_count = 1073741823")
    assert store.commit(events=[event(2)])[0].seq == 2


def test_query_only_write_raises(store: Store) -> None:
    store._conn.execute("PRAGMA query_only = 1")
    with pytest.raises(StorageError):
        store.bump_session()
    assert store.get_meta("session") is None


def test_close_is_idempotent(db: Path) -> None:
    s = Store(db)
    s.close()
    s.close()
    with pytest.raises(sqlite3.ProgrammingError):
        s.last_seq()
