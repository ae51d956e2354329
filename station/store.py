"""Durable station state in SQLite (docs/BEHAVIOUR.md §1, §3): seen ids, alarms, meta, outbox.

One :class:`Store` is one ``sqlite3`` connection used by one thread at a time; every thread that
needs the database opens its own ``Store`` on the same file. The file is in WAL mode, so readers
never wait for the writer and the writer never waits for readers. Every write is one explicit
``BEGIN IMMEDIATE … COMMIT`` with ``synchronous=FULL``: when a write method returns, the data
survives a power cut (a deletion of confirmed events may ask for less: :meth:`delete_outbox`).

Times named ``*_at`` of type ``float`` are wall-clock seconds since the epoch (``time.time()``);
latencies are milliseconds. Complaint summaries (personal data) are never stored.

Errors: anything SQLite refuses (disk full, read-only file, I/O error, lock timeout) raises
:class:`~station.errors.StorageError` carrying SQLite's message; a failed write is rolled back
and the store stays usable for reads. A file that is not a database, or is corrupt or truncated,
raises :class:`CorruptDatabase` (a ``StorageError``) on open — the store never starts empty over
it. ``ValueError``/``TypeError`` mean the caller passed bad data (the write is rolled back too).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import tempfile
import time
import uuid
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, fields
from pathlib import Path
from enum import StrEnum
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence, TypeVar

from .alarms import AlarmRecord, AlarmState, ResumedAlarm
from .errors import StorageError
from .protocol import AckMethod, Priority

log = logging.getLogger(__name__)
_E = TypeVar("_E", bound=StrEnum)

BUSY_TIMEOUT_MS = 5000
SIDE_FILES = ("-wal", "-shm", "-journal")
RECOVERY_HINT = (
    "stop the service, move it aside with `polres-station quarantine-db` (the station then "
    "starts on a fresh database and asks HQ to re-send every unacknowledged complaint) and "
    "start it again, or restore a backup"
)

# Schema migrations: entry i (0-based) takes the schema from version i to i + 1. Append only;
# never edit a released entry. The `meta` table itself predates every migration.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (
        """CREATE TABLE seen (
               complaint_id TEXT PRIMARY KEY,
               seen_at      REAL NOT NULL
           ) WITHOUT ROWID""",
        "CREATE INDEX seen_by_time ON seen (seen_at)",
        """CREATE TABLE alarms (
               complaint_id     TEXT PRIMARY KEY,
               priority         TEXT NOT NULL,
               category         TEXT,
               reported_at      TEXT,
               state            TEXT NOT NULL CHECK (state IN ('active', 'acked')),
               alerted_at       REAL NOT NULL,
               relay_latency_ms REAL,
               escalated        INTEGER NOT NULL DEFAULT 0,
               silenced         INTEGER NOT NULL DEFAULT 0,
               acked_at         REAL,
               ack_method       TEXT CHECK (ack_method IN ('button', 'remote')),
               ack_by           TEXT,
               ack_latency_ms   REAL
           )""",
        "CREATE INDEX alarms_by_time ON alarms (alerted_at)",
        "CREATE INDEX alarms_active ON alarms (alerted_at) WHERE state = 'active'",
        """CREATE TABLE outbox (
               seq        INTEGER PRIMARY KEY,
               event_id   TEXT NOT NULL,
               type       TEXT NOT NULL,
               payload    BLOB NOT NULL,
               created_at REAL NOT NULL
           )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)


class NoDatabase(StorageError):
    """A read-only open found no database file: the station has not run yet (it creates the
    file on its first start). Not a fault: ``status``/``history`` say so and exit 0."""

    def __init__(self, path: Path) -> None:
        self.path = path
        super().__init__(f"{path}: no state database here")


class CorruptDatabase(StorageError):
    """The file is not an SQLite database, or is corrupt or truncated.

    ``path`` is the file. Recovery: :meth:`Store.quarantine` it (a fresh database is then
    created; the broker re-delivers unacknowledged complaints) or restore a backup.
    """

    recoverable_by_quarantine = True   # read by terminal.run_handler for its recovery hint

    def __init__(self, path: Path, detail: str) -> None:
        self.path = path
        super().__init__(
            f"{path}: the state database is corrupt or not a database ({detail}); "
            f"{RECOVERY_HINT}"
        )


@dataclass(frozen=True)
class AlarmRow:
    """One alarm, active or in history. Times ``*_at`` (float) are wall-clock epoch seconds.

    ``relay_latency_ms`` is stored once, by the first row of an alarm that carries it (the
    shell's one measurement, also in the ``alerting`` event); a later row never changes it.
    """

    complaint_id: str
    priority: Priority
    category: str | None
    reported_at: str | None            # RFC 3339 as HQ sent it
    state: AlarmState
    alerted_at: float
    relay_latency_ms: float | None = None
    escalated: bool = False
    silenced: bool = False
    acked_at: float | None = None
    ack_method: AckMethod | None = None
    ack_by: str | None = None
    ack_latency_ms: float | None = None

    def __post_init__(self) -> None:
        """Convert the plain strings of a database row to their enums; raise ``ValueError``
        for a priority, state or ack method outside its set (the schema would refuse it)."""
        object.__setattr__(self, "priority", _member(Priority, self.priority, "priority"))
        object.__setattr__(self, "state", _member(AlarmState, self.state, "alarm state"))
        if self.ack_method is not None:
            object.__setattr__(self, "ack_method",
                               _member(AckMethod, self.ack_method, "ack_method"))

    @classmethod
    def from_record(cls, r: AlarmRecord, *, to_wall: Callable[[float], float],
                    relay_latency_ms: float | None = None) -> AlarmRow:
        """The machine's snapshot (monotonic times, mapped by ``to_wall``) as a row."""
        return cls(
            complaint_id=r.complaint_id, priority=r.priority, category=r.category,
            reported_at=r.reported_at, state=r.state, alerted_at=to_wall(r.alerted_at),
            relay_latency_ms=relay_latency_ms, escalated=r.escalated, silenced=r.silenced,
            acked_at=None if r.acked_at is None else to_wall(r.acked_at),
            ack_method=r.ack_method, ack_by=r.ack_by, ack_latency_ms=r.ack_latency_ms)

    def resumed(self, wall: float) -> ResumedAlarm:
        """This (active) alarm for the machine after a restart at wall time ``wall``."""
        return ResumedAlarm(self.complaint_id, self.priority,
                            age_s=max(0.0, wall - self.alerted_at), escalated=self.escalated,
                            silenced=self.silenced, category=self.category,
                            reported_at=self.reported_at)


def _member(kind: type[_E], value: str, what: str) -> _E:
    try:
        return kind(value)
    except ValueError:
        raise ValueError(f"{what} must be one of {', '.join(kind)}, not {value!r}") from None


@dataclass(frozen=True)
class OutboxRow:
    """One durable event awaiting the broker's confirmation; ``payload`` is the UTF-8 JSON."""

    seq: int
    event_id: str
    type: str
    payload: bytes


ALARM_COLUMNS = tuple(f.name for f in fields(AlarmRow))
_ALARM_SELECT = f"SELECT {', '.join(ALARM_COLUMNS)} FROM alarms"
_ALARM_UPSERT = (
    f"INSERT INTO alarms ({', '.join(ALARM_COLUMNS)}) "
    f"VALUES ({', '.join('?' * len(ALARM_COLUMNS))}) ON CONFLICT (complaint_id) DO UPDATE SET "
    + ", ".join("relay_latency_ms = coalesce(alarms.relay_latency_ms, excluded.relay_latency_ms)"
                if c == "relay_latency_ms" else f"{c} = excluded.{c}"
                for c in ALARM_COLUMNS if c != "complaint_id")
)


def _alarm_from_row(row: Sequence[Any]) -> AlarmRow:
    values = dict(zip(ALARM_COLUMNS, row, strict=True))
    values["escalated"] = bool(values["escalated"])
    values["silenced"] = bool(values["silenced"])
    return AlarmRow(**values)


def encode_event(event: Mapping[str, Any], seq: int) -> bytes:
    """Serialise ``{**event, "seq": seq}`` compactly, keys ordered v, type, event_id, seq, rest.

    Raises ``ValueError`` when ``event_id``/``type`` are missing or not non-empty strings, or a
    float is NaN/infinite (not JSON); ``TypeError`` for a value JSON cannot represent.
    """
    for key in ("event_id", "type"):
        if not isinstance(event.get(key), str) or not event[key]:
            raise ValueError(f"event needs a non-empty string {key!r}: {event.get(key)!r}")
    doc = {"v": event["v"]} if "v" in event else {}
    doc["type"], doc["event_id"], doc["seq"] = event["type"], event["event_id"], seq
    for k, v in event.items():
        if k not in doc:
            doc[k] = v
    return _EVENT_JSON.encode(doc).encode()


# One encoder for every event (json.dumps with options builds one per call); it keeps no state
# between calls, so the writer and any other thread may share it.
_EVENT_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _is_corruption(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


class Store:
    """The station's SQLite state store. See the module docstring for threading and errors.

    ``seen_ids_days``/``seen_ids_max`` bound the duplicate-id memory (:meth:`prune_seen`);
    ``outbox_max`` bounds the outbox (acks excepted, :meth:`commit`). ``readonly=True`` opens the
    existing file read-only (``mode=ro``) for the CLI's ``status``/``history``: no directory or
    schema is created and every write raises ``StorageError``. ``check=False`` skips the
    ``quick_check`` on open (for a second instance opened after the first has checked).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        seen_ids_max: int = 200_000,
        seen_ids_days: int = 30,
        outbox_max: int = 10_000,
        readonly: bool = False,
        check: bool = True,
    ) -> None:
        """Open (creating if needed) the database at ``path``; raise ``StorageError`` if not."""
        self.path = Path(path)
        self.seen_ids_max = seen_ids_max
        self.seen_ids_days = seen_ids_days
        self.outbox_max = outbox_max
        self.readonly = readonly
        self._found_empty = False
        # The outbox's row count, kept across commits so that bounding it costs nothing per
        # event (a COUNT(*) is O(outbox): every alarm during a long outage paid it). Valid
        # while ``PRAGMA data_version`` still reads ``_outbox_version``, i.e. no other
        # connection has committed since; else it is counted again inside the transaction.
        self._outbox_n: int | None = None
        self._outbox_version = -1
        self._conn = self._connect()
        try:
            self._setup(check)
        except BaseException:
            self._conn.close()
            raise

    # --- opening ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        try:
            if self.readonly:
                if not self.path.exists():
                    raise NoDatabase(self.path)
                if not self.path.is_file():
                    raise StorageError(f"{self.path}: not a file")
                uri = self.path.resolve().as_uri() + "?mode=ro"
                return self._open(uri, uri=True)
            self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
            if not self.path.exists():
                self._create_empty()
            self._found_empty = self.path.stat().st_size == 0
            return self._open(str(self.path), uri=False)
        except (OSError, sqlite3.Error) as exc:
            if isinstance(exc, StorageError):
                raise
            raise StorageError(f"{self.path}: cannot open the state database: {exc}") from exc

    def _create_empty(self) -> None:
        """Create the file atomically (built aside, then linked into place), so a database
        this class creates is never zero-length, even for an instant: a zero-length file
        can then only be a truncated one (refused in :meth:`_migrate`)."""
        tmp = self.path.with_name(f".{self.path.name}.new-{uuid.uuid4().hex[:12]}")
        try:
            conn = sqlite3.connect(str(tmp))
            try:
                conn.execute("PRAGMA journal_mode = WAL")     # writes the header page
            finally:
                conn.close()
            try:
                os.link(tmp, self.path)                        # never replaces a file
            except FileExistsError:
                pass                                           # a concurrent opener won
            except OSError:                                    # no hard links here
                if not self.path.exists():
                    os.replace(tmp, self.path)
        finally:
            for suffix in ("", *SIDE_FILES):
                Path(f"{tmp}{suffix}").unlink(missing_ok=True)

    @staticmethod
    def _open(target: str, *, uri: bool) -> sqlite3.Connection:
        # check_same_thread=False only allows handing the Store to the thread that will use it;
        # the connection is still never shared between threads concurrently.
        return sqlite3.connect(
            target, uri=uri, isolation_level=None, check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1000,
        )

    def _setup(self, check: bool) -> None:
        try:
            self._conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if check:
                self._quick_check()
            self._conn.execute("PRAGMA foreign_keys = ON")
            if self.readonly:
                self._require_schema()
            else:
                self._set_journal()
                self._migrate()
        except sqlite3.Error as exc:
            if _is_corruption(exc):
                raise CorruptDatabase(self.path, str(exc)) from exc
            raise StorageError(f"{self.path}: cannot open the state database: {exc}") from exc

    def _quick_check(self) -> None:
        problems = [row[0] for row in self._conn.execute("PRAGMA quick_check(3)")]
        if problems != ["ok"]:
            raise CorruptDatabase(self.path, "quick_check: " + "; ".join(problems))

    def _set_journal(self) -> None:
        mode = self._conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning("%s: journal mode is %s, not WAL: readers may wait for writes",
                        self.path, mode)
        self._conn.execute("PRAGMA synchronous = FULL")

    def _schema_version(self) -> int:
        has_meta = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'").fetchone()
        if not has_meta:
            return 0
        row = self._conn.execute(
            "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _check_not_newer(self, version: int) -> None:
        if version > SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: schema version {version} is newer than this release supports "
                f"({SCHEMA_VERSION}); upgrade polres-station or restore a matching backup")

    def _require_schema(self) -> None:
        version = self._schema_version()
        self._check_not_newer(version)
        if version < SCHEMA_VERSION:
            raise StorageError(
                f"{self.path}: schema version {version}, expected {SCHEMA_VERSION}; "
                "start the service once to create or migrate it")

    def _migrate(self) -> None:
        """Apply pending migrations in one transaction; takes no write lock when up to date."""
        version = self._schema_version()
        self._check_not_newer(version)
        if version == SCHEMA_VERSION:
            return
        with self._write("create the schema") as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
            version = self._schema_version()  # re-read under the lock: another opener may win
            self._check_not_newer(version)
            if version == 0 and self._found_empty:
                # Truncated to nothing (a zero-length file after a power cut): starting
                # empty over it would forget every alarm without a word.
                raise CorruptDatabase(self.path, "the file is empty (zero bytes): truncated")
            for statements in MIGRATIONS[version:]:
                for sql in statements:
                    conn.execute(sql)
            self._put_meta(conn, "schema_version", str(SCHEMA_VERSION))

    # --- plumbing -----------------------------------------------------------------------

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE … COMMIT``; any failure rolls back; sqlite errors →
        StorageError."""
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            self._rollback()
            self._outbox_n = None          # whatever this transaction counted is void
            if isinstance(exc, sqlite3.Error) and not isinstance(exc, sqlite3.ProgrammingError):
                raise StorageError(f"{self.path}: cannot {what}: {exc}") from exc
            raise

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error as exc:  # SQLite may already have rolled back (e.g. disk full)
                log.debug("%s: rollback failed: %s", self.path, exc)

    @contextmanager
    def _reading(self, what: str) -> Iterator[sqlite3.Connection]:
        try:
            yield self._conn
        except sqlite3.Error as exc:
            if isinstance(exc, sqlite3.ProgrammingError):
                raise
            raise StorageError(f"{self.path}: cannot {what}: {exc}") from exc

    @staticmethod
    def _put_meta(conn: sqlite3.Connection, key: str, value: str) -> None:
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    @staticmethod
    def _int_meta(conn: sqlite3.Connection, key: str) -> int:
        row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, conn: sqlite3.Connection, key: str, by: int = 1) -> int:
        value = self._int_meta(conn, key) + by
        self._put_meta(conn, key, str(value))
        return value

    # --- group commit -------------------------------------------------------------------

    def commit(
        self,
        *,
        seen: Sequence[tuple[str, float]] = (),
        alarms: Sequence[AlarmRow] = (),
        events: Sequence[Mapping[str, Any]] = (),
        meta: Mapping[str, str] | None = None,
    ) -> list[OutboxRow]:
        """Durably record one batch in ONE transaction and return the new outbox rows.

        ``seen``: ``(complaint_id, seen_at)`` pairs, existing ids keep their first time.
        ``alarms``: full-row upserts. ``events``: dicts with ``event_id``, ``type`` and the rest
        of the event except ``seq``; each gets the next ``seq`` (persisted, +1 per event,
        starting at 1) and is stored as JSON ordered ``v, type, event_id, seq, …``.
        Then the outbox is bounded to ``outbox_max`` by dropping the oldest non-``ack`` rows
        (acks are never dropped; dropped rows are counted in :meth:`outbox_dropped`). The
        returned rows (seq order) are all events of this batch, even one dropped by the bound.

        Raises ``StorageError`` (SQLite refused: disk full, read-only, …) or ``ValueError``/
        ``TypeError`` (an event cannot be serialised); either way nothing of the batch is kept.
        ``meta``: key → value pairs stored in the same transaction (see :meth:`set_meta`).
        """
        if not (seen or alarms or events or meta):
            return []
        with self._write("record a batch") as conn:
            if seen:
                conn.executemany(
                    "INSERT OR IGNORE INTO seen (complaint_id, seen_at) VALUES (?, ?)", seen)
            if alarms:   # a shallow tuple: dataclasses.astuple deep-copies every value
                conn.executemany(_ALARM_UPSERT, [tuple(getattr(a, c) for c in ALARM_COLUMNS)
                                                 for a in alarms])
            rows = self._append_events(conn, events) if events else []
            if rows:
                self._bound_outbox(conn)
            for key, value in (meta or {}).items():
                self._put_meta(conn, key, value)
        return rows

    def _append_events(self, conn: sqlite3.Connection,
                       events: Sequence[Mapping[str, Any]]) -> list[OutboxRow]:
        first = self._int_meta(conn, "seq") + 1
        payloads = [encode_event(ev, seq) for seq, ev in enumerate(events, start=first)]
        rows = [OutboxRow(seq, ev["event_id"], ev["type"], payload) for seq, (ev, payload)
                in enumerate(zip(events, payloads, strict=True), start=first)]
        now = time.time()
        n = self._outbox_rows_now(conn)
        conn.executemany(
            "INSERT INTO outbox (seq, event_id, type, payload, created_at) VALUES (?, ?, ?, ?, ?)",
            [(r.seq, r.event_id, r.type, r.payload, now) for r in rows])
        self._outbox_n = n + len(rows)
        self._put_meta(conn, "seq", str(rows[-1].seq))
        return rows

    def _outbox_rows_now(self, conn: sqlite3.Connection) -> int:
        """The outbox's row count inside a write transaction: the kept one, or counted again
        when another connection has committed since it was kept (or it never was)."""
        version = conn.execute("PRAGMA data_version").fetchone()[0]
        if self._outbox_n is None or version != self._outbox_version:
            self._outbox_n = conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            self._outbox_version = version
        return self._outbox_n

    def _bound_outbox(self, conn: sqlite3.Connection) -> None:
        excess = self._outbox_rows_now(conn) - self.outbox_max
        if excess <= 0:
            return
        dropped = conn.execute(
            "DELETE FROM outbox WHERE seq IN "
            "(SELECT seq FROM outbox WHERE type != 'ack' ORDER BY seq LIMIT ?)", (excess,)
        ).rowcount
        self._outbox_n = self._outbox_rows_now(conn) - dropped
        if dropped:
            self._bump(conn, "outbox_dropped", dropped)
            log.warning("%s: outbox over %d rows: dropped the %d oldest non-ack events",
                        self.path, self.outbox_max, dropped)

    # --- seen ids -----------------------------------------------------------------------

    def is_seen(self, complaint_id: str) -> bool:
        """True when ``complaint_id`` was recorded by :meth:`commit` and not yet pruned."""
        with self._reading("look up a complaint id") as conn:
            row = conn.execute("SELECT 1 FROM seen WHERE complaint_id = ?",
                               (complaint_id,)).fetchone()
        return row is not None

    def prune_seen(self, now_wall: float) -> int:
        """Forget ids seen more than ``seen_ids_days`` before ``now_wall`` (epoch seconds), then
        the oldest beyond ``seen_ids_max``. Returns how many ids were deleted."""
        cutoff = now_wall - self.seen_ids_days * 86_400.0
        with self._write("prune seen complaint ids") as conn:
            aged = conn.execute("DELETE FROM seen WHERE seen_at < ?", (cutoff,)).rowcount
            excess = conn.execute("SELECT COUNT(*) FROM seen").fetchone()[0] - self.seen_ids_max
            counted = 0
            if excess > 0:
                counted = conn.execute(
                    "DELETE FROM seen WHERE complaint_id IN "
                    "(SELECT complaint_id FROM seen ORDER BY seen_at LIMIT ?)", (excess,)
                ).rowcount
        return aged + counted

    def seen_ids(self, chunk: int = 2048) -> Iterator[str]:
        """Every remembered complaint id, read in chunks (for :class:`SeenFilter`)."""
        with self._reading("read complaint ids") as conn:
            cursor = conn.execute("SELECT complaint_id FROM seen")
            while rows := cursor.fetchmany(chunk):
                yield from (row[0] for row in rows)

    def seen_count(self) -> int:
        """How many complaint ids are remembered."""
        with self._reading("count seen complaint ids") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM seen").fetchone()[0])

    # --- outbox -------------------------------------------------------------------------

    def delete_outbox(self, seqs: Iterable[int], *, durable: bool = True) -> None:
        """Remove the rows the broker confirmed; unknown seqs are ignored.

        ``durable=False`` commits without waiting for the disk (``synchronous=NORMAL`` for
        this transaction only; the next durable commit carries it to the disk): a power cut
        right after may bring the rows back, and they are sent again with their own
        ``event_id`` and ``seq`` — which HQ already handles for any re-send — instead of one
        fsync per batch of the broker's PUBACKs on the alarm path's thread."""
        params = [(int(s),) for s in seqs]
        if not params:
            return
        if not durable:
            self._set_synchronous("NORMAL")
        try:
            with self._write("delete confirmed events") as conn:
                n = self._outbox_rows_now(conn)
                deleted = conn.executemany("DELETE FROM outbox WHERE seq = ?", params).rowcount
                self._outbox_n = n - deleted
        finally:
            if not durable:
                self._set_synchronous("FULL")

    def _set_synchronous(self, level: str) -> None:
        try:
            self._conn.execute(f"PRAGMA synchronous = {level}")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: cannot set synchronous={level}: {exc}") from exc

    def put_outbox(self, rows: Sequence[OutboxRow], *, last_seq: int) -> None:
        """Store events numbered while the database could not be written: they keep their
        ``seq``, ``event_id`` and payload (HQ may already have them). Rows whose ``seq`` is
        present are kept as they are; the ``seq`` counter is raised to ``last_seq``."""
        now = time.time()
        with self._write("store events kept in memory") as conn:
            n = self._outbox_rows_now(conn)
            added = conn.executemany(
                "INSERT OR IGNORE INTO outbox (seq, event_id, type, payload, created_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(r.seq, r.event_id, r.type, r.payload, now) for r in rows]).rowcount
            self._outbox_n = n + max(0, added)
            if last_seq > self._int_meta(conn, "seq"):
                self._put_meta(conn, "seq", str(last_seq))
            if rows:
                self._bound_outbox(conn)

    def outbox_rows(self, *, after_seq: int = 0, limit: int = 100) -> list[OutboxRow]:
        """Up to ``limit`` pending rows with ``seq > after_seq``, in ``seq`` order."""
        with self._reading("read the outbox") as conn:
            rows = conn.execute(
                "SELECT seq, event_id, type, payload FROM outbox WHERE seq > ? "
                "ORDER BY seq LIMIT ?", (after_seq, limit)).fetchall()
        return [OutboxRow(seq, eid, typ, bytes(payload)) for seq, eid, typ, payload in rows]

    def outbox_size(self) -> int:
        """Rows in the outbox, from the count kept across this connection's writes (no scan)
        unless another connection has committed since; then counted."""
        with self._reading("count the outbox") as conn:
            version = conn.execute("PRAGMA data_version").fetchone()[0]
            if self._outbox_n is None or version != self._outbox_version:
                self._outbox_n = int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
                self._outbox_version = version
            return self._outbox_n

    def outbox_count(self) -> int:
        """How many events await the broker's confirmation."""
        with self._reading("count the outbox") as conn:
            return int(conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def outbox_dropped(self) -> int:
        """How many non-ack events the outbox bound has dropped, ever (persisted)."""
        with self._reading("read the outbox drop count") as conn:
            return self._int_meta(conn, "outbox_dropped")

    def last_seq(self) -> int:
        """The last ``seq`` given to an event (0 before the first)."""
        with self._reading("read the event counter") as conn:
            return self._int_meta(conn, "seq")

    # --- alarms -------------------------------------------------------------------------

    def active_alarms(self) -> list[AlarmRow]:
        """Alarms in state ``active``, oldest ``alerted_at`` first."""
        with self._reading("read active alarms") as conn:
            rows = conn.execute(
                f"{_ALARM_SELECT} WHERE state = 'active' ORDER BY alerted_at, complaint_id"
            ).fetchall()
        return [_alarm_from_row(r) for r in rows]

    def history(self, *, limit: int = 50, since: float | None = None) -> list[AlarmRow]:
        """Up to ``limit`` alarms (any state), newest ``alerted_at`` first; ``since`` (epoch
        seconds) keeps only alarms alerted at or after it."""
        where, params = ("WHERE alerted_at >= ?", [since]) if since is not None else ("", [])
        with self._reading("read alarm history") as conn:
            rows = conn.execute(
                f"{_ALARM_SELECT} {where} ORDER BY alerted_at DESC, complaint_id DESC LIMIT ?",
                [*params, limit]).fetchall()
        return [_alarm_from_row(r) for r in rows]

    def alarm(self, complaint_id: str) -> AlarmRow | None:
        """The alarm for ``complaint_id``, or None."""
        with self._reading("read an alarm") as conn:
            row = conn.execute(f"{_ALARM_SELECT} WHERE complaint_id = ?",
                               (complaint_id,)).fetchone()
        return _alarm_from_row(row) if row else None

    # --- meta ---------------------------------------------------------------------------

    def bump_session(self) -> int:
        """Add 1 to the persisted broker-session counter and return it (1 the first time)."""
        with self._write("count a broker session") as conn:
            return self._bump(conn, "session")

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        """The stored value for ``key``, else ``default``."""
        with self._reading("read meta") as conn:
            row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        """Durably store ``value`` under ``key`` (replacing any previous value)."""
        with self._write("write meta") as conn:
            self._put_meta(conn, key, value)

    # --- temporary copies (an unwritable state directory) -------------------------------

    def mark_copy_of(self, origin: Path | str) -> None:
        """Record that this database began as a copy of ``origin`` at its current state."""
        self.set_meta("fallback_of", f"{origin}@{self.last_seq()}")

    def take_over(self, copy: Path | str) -> bool:
        """Replace this database's content with that of ``copy`` — in one transaction — if
        ``copy`` began (:meth:`mark_copy_of`) as a copy of this database in its present state;
        else change nothing and return False (the copy does not continue this database)."""
        with Store(copy) as other:
            if other.get_meta("fallback_of") != f"{self.path}@{self.last_seq()}":
                return False
            other.set_meta("fallback_of", "")
            other._conn.backup(self._conn)
        self._outbox_n = None                 # replaced content: count it again
        return True

    # --- lifetime -----------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (idempotent); the Store is unusable afterwards."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @staticmethod
    def salvage_counters(path: Path | str) -> dict[str, str]:
        """``seq`` and ``session`` from a damaged database, if SQLite can still read them, so
        HQ sees the event counter continue rather than restart at 1 ({} if unreadable)."""
        try:
            conn = sqlite3.connect(Path(path).resolve().as_uri() + "?mode=ro", uri=True)
            try:
                rows = conn.execute(
                    "SELECT key, value FROM meta WHERE key IN ('seq', 'session')").fetchall()
            finally:
                conn.close()
            return {str(k): str(int(v)) for k, v in rows}
        except (sqlite3.Error, ValueError, TypeError):
            return {}

    @staticmethod
    def quarantine(path: Path | str) -> Path:
        """Rename a (corrupt) database and its -wal/-shm/-journal files aside.

        The new name is ``<name>.corrupt-<UTC YYYYmmddTHHMMSSZ>`` (with ``-N`` appended if
        taken); the side files keep their suffix after it. Returns the new database path. No
        Store may have the file open. Raises ``StorageError`` if the rename fails.
        """
        src = Path(path)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        dst = src.with_name(f"{src.name}.corrupt-{stamp}")
        n = 0
        while any(Path(f"{dst}{s}").exists() for s in ("", *SIDE_FILES)):
            n += 1
            dst = src.with_name(f"{src.name}.corrupt-{stamp}-{n}")
        try:
            src.rename(dst)
            for suffix in SIDE_FILES:
                side = Path(f"{src}{suffix}")
                if side.exists():
                    side.rename(f"{dst}{suffix}")
        except OSError as exc:
            raise StorageError(f"{src}: cannot move the database aside: {exc}") from exc
        log.warning("%s: moved aside to %s", src, dst)
        return dst


class SeenFilter:
    """A Bloom filter of complaint ids in front of the ``seen`` table.

    ``id not in f`` is certain, so a new complaint (the usual case) is known to be new without
    a database read before the siren; ``id in f`` is only "maybe": ask :meth:`Store.is_seen`.
    It keys on Python's ``str`` hash (salted per process), so it never leaves the process.
    ``bits`` is rounded up to a power of two; ids are never removed (pruned ids just cost a
    lookup).

        >>> f = SeenFilter(bits=1 << 16)
        >>> f.add("c-1")
        >>> "c-1" in f, "c-2" in f
        (True, False)
    """

    def __init__(self, *, bits: int = 1 << 20, hashes: int = 4) -> None:
        size = 1 << max(6, (bits - 1).bit_length())
        self._mask = size - 1
        self._bits = bytearray(size // 8)
        self._hashes = hashes
        self.count = 0

    @classmethod
    def sized_for(cls, n: int) -> SeenFilter:
        """Room for ``n`` ids at about 0.1 % false "maybe" (20 bits per id, 4 hashes)."""
        return cls(bits=max(1 << 16, 20 * n))

    def add(self, complaint_id: str) -> None:
        for p in self._positions(complaint_id):
            self._bits[p >> 3] |= 1 << (p & 7)
        self.count += 1

    def __contains__(self, complaint_id: object) -> bool:
        return isinstance(complaint_id, str) and all(
            self._bits[p >> 3] & (1 << (p & 7)) for p in self._positions(complaint_id))

    def _positions(self, complaint_id: str) -> list[int]:
        h = hash(complaint_id) & 0xFFFF_FFFF_FFFF_FFFF
        h1, h2 = h & 0xFFFF_FFFF, (h >> 32) | 1      # double hashing; odd step
        return [(h1 + i * h2) & self._mask for i in range(self._hashes)]



class SeenIds:
    """Has a complaint id been seen before? For a new id (the usual case) the answer needs no
    disk read before the siren once :meth:`load` has run: the ids this process saw (the last
    ``recent`` exactly, all of them in a filter), a filter of those the store held when the
    process began, and the store itself only for a filter's "maybe". Used by one thread (the
    loop), except :meth:`load`, which runs in a thread of its own."""

    def __init__(self, store: Store, *, recent: int = 4096) -> None:
        self._store = store
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._recent_max = recent
        self._here = SeenFilter()
        self.before: SeenFilter | None = None     # the stored ids, once loaded

    def __contains__(self, complaint_id: str) -> bool:
        """True if seen; an unreadable store answers False: alarm rather than stay silent."""
        if complaint_id in self._recent:
            return True
        before = self.before
        if before is not None and complaint_id not in before and complaint_id not in self._here:
            return False                          # certain: no disk read before the siren
        try:
            return self._store.is_seen(complaint_id)
        except Exception:  # noqa: BLE001 — unreadable store: alarm rather than stay silent
            log.exception("cannot check complaint id %s; treating as new", complaint_id)
            return False

    def add(self, complaint_id: str) -> None:
        self._recent[complaint_id] = None
        self._here.add(complaint_id)
        if len(self._recent) > self._recent_max:
            self._recent.popitem(last=False)

    def load(self, open_store: Callable[[], Store]) -> None:
        """Thread: a filter of the ids stored before this process began, read on a connection
        of its own from ``open_store()``. Until it is in place every id not recently seen is
        looked up; ids added meanwhile are in this process's own filter, which the snapshot
        may miss. A failure is logged: every id is then simply looked up."""
        try:
            with open_store() as store:
                loaded = SeenFilter.sized_for(store.seen_count())
                for complaint_id in store.seen_ids():
                    loaded.add(complaint_id)
        except Exception as e:  # noqa: BLE001 — without it every id is simply looked up
            log.warning("complaint ids not loaded into memory (%s); looking each one up", e)
            return
        self.before = loaded
        log.debug("%d stored complaint ids loaded into the duplicate filter", loaded.count)

# --- the state directory unusable: a temporary copy ---------------------------------------------

def temporary_copy_path(station_id: str, db_path: Path) -> Path:
    """Where the temporary copy of ``db_path`` lives: systemd's ``RUNTIME_DIRECTORY`` (the unit
    keeps it across restarts in one boot), else the system's temporary directory."""
    base = os.environ.get("RUNTIME_DIRECTORY", "").split(":")[0] or tempfile.gettempdir()
    return Path(base) / f"polres-station-{station_id}" / db_path.name


@dataclass(frozen=True)
class Opened:
    """The station's main store, as :func:`open_state` found it."""

    store: Store
    fault: str | None = None           # set when running on a temporary copy: a storage fault


def open_state(path: Path, copy: Path, open_at: Callable[[Path], Store]) -> Opened:
    """The database at ``path``; if it cannot be written (read-only filesystem, wrong owner,
    full at creation) the temporary ``copy`` of it, so the room still alarms, with the fault
    to report. A usable ``path`` first takes over what an earlier ``copy`` recorded since.
    ``open_at(p)`` opens a Store at ``p`` with the caller's options.

    Raises :class:`CorruptDatabase` for a corrupt database (never replaced) and the original
    ``StorageError`` if the copy cannot be opened either.
    """
    try:
        store = open_at(path)
    except CorruptDatabase:
        raise
    except StorageError as error:
        return _open_copy(path, copy, open_at, error)
    _adopt_copy(store, copy)
    return Opened(store)


def _open_copy(src: Path, dst: Path, open_at: Callable[[Path], Store],
               error: StorageError) -> Opened:
    fresh = copied = False
    if not dst.exists():            # else: the copy a previous run of this boot used
        dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            shutil.copyfile(src, f"{dst}.part")
            wal = Path(f"{src}-wal")
            if wal.exists():
                shutil.copyfile(wal, f"{dst}-wal")
            os.replace(f"{dst}.part", dst)
            copied = True
        except OSError as e:
            log.error("%s: cannot read the state database either (%s): starting on an "
                      "empty temporary database, HQ will be asked to re-send", src, e)
            fresh = True
    try:
        store = open_at(dst)
        if fresh:
            store.set_meta("resync_pending", "1")
        elif copied:
            store.mark_copy_of(src)
    except StorageError:
        raise error from None
    detail = (f"{error}; running on a temporary copy {dst} — records made now are lost "
              f"at reboot unless the state directory is repaired and the service restarted")
    log.error("storage: %s", detail)
    return Opened(store, detail[:500])


def _adopt_copy(store: Store, copy: Path) -> None:
    """The state directory is usable again: take over what a temporary copy recorded since
    (it began as a copy of this database, which could not change meanwhile)."""
    if copy == store.path or not copy.exists():
        return
    try:
        if not store.take_over(copy):
            log.warning("%s: a temporary copy %s exists but does not continue this "
                        "database; left for audit", store.path, copy)
            return
        log.warning("%s: took over the records of the temporary copy %s", store.path, copy)
    except (StorageError, OSError, sqlite3.Error) as e:
        log.error("%s: cannot take over the temporary copy %s: %s", store.path, copy, e)
        return
    for suffix in ("", *SIDE_FILES):
        Path(f"{copy}{suffix}").unlink(missing_ok=True)
